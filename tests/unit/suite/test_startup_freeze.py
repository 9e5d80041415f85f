"""Every long-running process freezes what it built to start, so a full garbage collection later is cheap."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from crm import cli as crm_cli
from crm.registry import SUITE
from services.common.identity import generate_keypair

ROOT = Path(__file__).resolve().parents[3]
PRIVATE_KEY, PUBLIC_KEY = generate_keypair()


def _env(tmp_path, gateway: bool) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith("CRM_")}
    env.update(PYTHONPATH=str(ROOT), CRM_IDENTITY_PUBLIC_KEY=PUBLIC_KEY, CRM_DATA_DIR=str(tmp_path))
    if gateway:
        env["CRM_IDENTITY_PRIVATE_KEY"] = PRIVATE_KEY
    return env


@pytest.mark.parametrize("entry", SUITE.entries, ids=lambda entry: entry.name)
def test_each_gunicorn_entry_point_freezes_the_objects_its_app_was_built_from(entry, tmp_path):
    # In a process of its own: this one must stay unfrozen.
    probe = f"import gc, {entry.package}.wsgi; print(gc.get_freeze_count())"
    done = subprocess.run([sys.executable, "-c", probe], env=_env(tmp_path, entry.name == SUITE.gateway),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 10_000  # the app's modules, schemas and mappers


class _Worker:
    frozen_at_start: int | None = None

    def run_forever(self):
        _Worker.frozen_at_start = gc.get_freeze_count()


def test_crm_worker_freezes_once_the_worker_is_built_and_before_it_runs(monkeypatch):
    monkeypatch.setattr(crm_cli, "_settings", lambda service, **_kw: _Settings())
    monkeypatch.setattr(crm_cli, "SUITE", _Suite())
    _Worker.frozen_at_start = None
    gc.unfreeze()  # from an unfrozen collector: only the command's own freeze can make the count positive
    try:
        result = CliRunner().invoke(crm_cli.cli, ["worker", "leads"])
        assert result.exit_code == 0, result.output
        assert _Worker.frozen_at_start is not None and _Worker.frozen_at_start > 0
    finally:
        gc.unfreeze()  # back to the collector: a test process builds many apps


class _Settings:
    log_level = "WARNING"


class _Suite:
    def create_worker(self, service, settings):
        return _Worker()
