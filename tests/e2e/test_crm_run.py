"""`crm run` as a new user would start it: SQLite under the data dir, every process, one admin key."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.support import infra
from tests.support.suite import wait_until

pytestmark = pytest.mark.e2e


def _env(tmp_path, amqp_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and not k.startswith("CRM_")}
    env.update({"AMQP_URL": amqp_url, "CRM_DATA_DIR": str(tmp_path / "var"), "CRM_RELAY_POLL_INTERVAL": "0.1",
                "CRM_GATEWAY_PORT": str(infra.free_port())})
    for svc in ("contacts", "leads", "loyalty", "partners"):
        env[f"CRM_{svc.upper()}_PORT"] = str(infra.free_port())
    return env


def _crm_run(env, cwd) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "crm", "run"], env=env, cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _read_until(proc, pattern: str, timeout: float = 60) -> tuple[re.Match, list[str]]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if m := re.search(pattern, line):
            return m, seen
    raise AssertionError(f"{pattern!r} not printed; output was:\n{''.join(seen)}")


def _stop(proc, data_dir) -> int:
    """SIGTERM the supervisor, then make sure no process it started outlives the test."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        code = proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
    # honcho gives each child a process group of its own; a child it was still starting when the signal came
    # can miss the shutdown. Every child carries this test's unique CRM_DATA_DIR, which finds the stragglers.
    marker = f"CRM_DATA_DIR={data_dir}".encode()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        os.kill(int(entry), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                pass
    return code


def test_crm_run_starts_the_suite_on_sqlite_and_prints_the_url_and_an_admin_key_once(tmp_path, amqp_url):
    env = _env(tmp_path, amqp_url)
    proc = _crm_run(env, tmp_path)
    try:
        url = _read_until(proc, r"gateway: (http://\S+)")[0].group(1)
        key = _read_until(proc, r"Admin API key.*: (crm_internal_\S+)")[0].group(1)
        # Keep draining the output so the supervisor never blocks on a full pipe.
        import threading
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        wait_until(lambda: _ok(url + "/readyz"), timeout=60, message="gateway ready")
        auth = {"Authorization": f"Bearer {key}"}
        lead = requests.post(url + "/api/v1/leads", json={"email": "first@user.example"}, headers=auth, timeout=10)
        assert lead.status_code == 201, lead.text
        requests.post(url + f"/api/v1/leads/{lead.json()['id']}/convert", headers=auth, timeout=10)
        wait_until(lambda: requests.get(url + f"/api/v1/leads/{lead.json()['id']}", headers=auth, timeout=10)
                   .json()["status"] == "converted", timeout=60, message="lead converted over SQLite")
    finally:
        _stop(proc, env["CRM_DATA_DIR"])
    assert (tmp_path / "var" / "leads.db").exists() and (tmp_path / "var" / "contacts.db").exists()

    again = _crm_run(env, tmp_path)
    try:
        # Read past the banner to the supervisor's first process line, so the key line would have been seen.
        _, seen = _read_until(again, r"started \(pid=")
        first_lines = "".join(seen)
    finally:
        _stop(again, env["CRM_DATA_DIR"])
    assert "Admin API key" not in first_lines, "the admin key is printed on the first start only"


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def test_crm_run_exits_at_once_with_a_clear_message_when_rabbitmq_is_unreachable(tmp_path):
    env = _env(tmp_path, f"amqp://guest:guest@127.0.0.1:{infra.free_port()}/%2F")
    # No broker: it must exit by itself (a hang would hit the timeout and fail), without starting anything.
    result = subprocess.run([sys.executable, "-m", "crm", "run"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "started (pid=" not in result.stdout
    assert "RabbitMQ is not reachable" in result.stderr
    assert "rabbitmq-server" in result.stderr
