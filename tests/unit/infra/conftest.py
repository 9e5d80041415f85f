"""Shared readers for the container files checked statically (no Docker engine needed)."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "infra" / "docker" / "Dockerfile"

_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(value: str) -> str:
    """Resolve compose `${VAR:-default}` as on a machine where VAR is unset (`${VAR:?msg}` gives a placeholder)."""

    def resolve(match: re.Match) -> str:
        op, arg = match.group("op"), match.group("arg")
        if op in (":-", "-"):
            return arg
        if op in (":?", "?"):
            return "x" * 48  # a value the user must supply; long enough for any secret check
        return ""

    return _INTERPOLATION.sub(resolve, value)


@functools.cache
def load_compose() -> dict:
    """docker-compose.yml as PyYAML reads it (anchors and `<<` merges resolved)."""
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="session")
def compose() -> dict:
    return load_compose()


@pytest.fixture(scope="session")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="session")
def crm_services(services) -> dict:
    """The services that run the CRM image (built from infra/docker/Dockerfile)."""
    return {name: svc for name, svc in services.items() if "build" in svc}
