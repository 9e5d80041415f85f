"""Start every process of the suite as real subprocesses, for end-to-end and reliability tests."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import requests

from crm.processes import crm_argv, suite_processes
from crm.registry import SUITE
from tests.support.infra import IDENTITY_PRIVATE_KEY, IDENTITY_PUBLIC_KEY, free_port

# Everything derives from the suite registry: the services with a database, and the processes `crm run` starts.
SERVICES = SUITE.names
WEB = tuple(e.name for e in SUITE.upstreams)


def replica_name(name: str, replica: int) -> str:
    """The name of one replica of a process: the first keeps the plain name, the others are `name#<n>`."""
    return name if replica == 1 else f"{name}#{replica}"


def _own_port(argv: list[str], variable: str, port: int) -> list[str]:
    """`argv` with the `<variable>=<port>` that `crm.processes.with_env` put on it replaced by `port`."""
    return [f"{variable}={port}" if arg.startswith(variable + "=") else arg for arg in argv]


class Suite:
    """Every web process, worker and the gateway on free ports, each on its own database and vhost.

    `replicas` runs more than one copy of a worker (`{"worker:contacts": 2}` adds `worker:contacts#2`, which
    competes with `worker:contacts` for its queue and outbox). A web service is scaled inside its one gunicorn
    with `CRM_WEB_PROCESSES` (the gateway knows one URL per upstream), so `replicas` takes workers only.
    """

    def __init__(self, workdir: Path, amqp_url: str, database_urls: dict[str, str], *,
                 replicas: dict[str, int] | None = None, **env_overrides):
        self.workdir = workdir
        self.database_urls = dict(database_urls)
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.ports = {e.name: free_port() for e in SUITE.entries if e.web}
        self.env = {
            **os.environ,
            "CRM_DATA_DIR": str(workdir / "var"),
            "CRM_IDENTITY_PUBLIC_KEY": IDENTITY_PUBLIC_KEY,
            "AMQP_URL": amqp_url,
            "CRM_RETRY_DELAYS": "0.3,0.6",
            "CRM_RELAY_POLL_INTERVAL": "0.05",
            "CRM_RELAY_LEASE_SECONDS": "3",
            "CRM_UPSTREAM_TIMEOUT": "5",
            # The fault tests send thousands of calls with one key in seconds; the limit has its own tests.
            "CRM_RATE_LIMIT": "off",
            # wait_ready polls /readyz five times a second; the address limits have their own tests.
            "CRM_RATE_LIMIT_PUBLIC": "off",
            "CRM_RATE_LIMIT_FAILED_AUTH": "off",
            "CRM_LOG_LEVEL": "INFO",
            "CRM_GATEWAY_PORT": str(self.ports["gateway"]),
            **{f"CRM_{e.env_prefix}_URL": f"http://127.0.0.1:{self.ports[e.name]}" for e in SUITE.upstreams},
            **{f"{svc.upper()}_DATABASE_URL": url for svc, url in database_urls.items()},
            **env_overrides,
        }
        # The private key goes to the gateway alone, as `crm run` gives it (every other process refuses it).
        private_key_file = workdir / "identity-private.pem"
        private_key_file.write_text(IDENTITY_PRIVATE_KEY)
        private_key_file.chmod(0o600)
        self.gateway_env = {"CRM_IDENTITY_PRIVATE_KEY_FILE": str(private_key_file)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.replicas = dict(replicas or {})
        for name, count in self.replicas.items():
            if not name.startswith("worker:") or count < 1:
                raise ValueError(f"replicas: {name}={count}; only workers (`worker:<svc>`) take replicas (>= 1); "
                                 f"scale a web service with CRM_WEB_PROCESSES")
        # Each further replica serves its /healthz and /metrics on a port of its own, kept across restarts.
        self.replica_ports = {replica_name(name, n): free_port()
                              for name, count in self.replicas.items() for n in range(2, count + 1)}
        self.gateway_url = f"http://127.0.0.1:{self.ports['gateway']}"

    # -- commands ----------------------------------------------------------------------------------------
    def crm(self, *args: str, check: bool = True, timeout: float = 120,
            as_gateway: bool = False) -> subprocess.CompletedProcess:
        """Run the `crm` console command with the suite's environment (`as_gateway`: and the gateway's key)."""
        env = {**self.env, **self.gateway_env} if as_gateway else self.env
        return subprocess.run(list(crm_argv(*args)), env=env, cwd=self.workdir,
                              capture_output=True, text=True, check=check, timeout=timeout)

    def processes(self) -> dict[str, list[str]]:
        """`web:<svc>` / `worker:<svc>` (and `worker:<svc>#<n>` replicas) -> argv: exactly what `crm run` starts
        (crm.processes)."""
        out = {}
        for p in suite_processes(self.ports, self.env, gateway_env=self.gateway_env):
            name = f"{p.kind}:{p.service}"
            for replica in self.replicas_of(name):
                port = self.replica_ports.get(replica)
                out[replica] = list(p.argv) if port is None else _own_port(list(p.argv), "CRM_WORKER_PORT", port)
        return out

    def replicas_of(self, name: str) -> list[str]:
        """Every replica of one process: `worker:contacts` -> [`worker:contacts`, `worker:contacts#2`]."""
        return [replica_name(name, replica) for replica in range(1, self.replicas.get(name, 1) + 1)]

    def _command(self, name: str) -> list[str]:
        try:
            return self.processes()[name]
        except KeyError:
            raise ValueError(f"no process {name!r}; expected one of {sorted(self.processes())}") from None

    def start(self, name: str) -> subprocess.Popen:
        """Start one process: `web:<svc>` (including `web:gateway`), `worker:<svc>` or a replica `worker:<svc>#<n>`."""
        # The child keeps its own copy of the log's descriptor; ours is closed at once.
        with open(self.logdir / f"{name.replace(':', '-')}.log", "ab") as log:
            proc = subprocess.Popen(self._command(name), env=self.env, cwd=self.workdir, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_all(self) -> None:
        """Migrate, then start every process and wait until the gateway reports ready."""
        self.crm("migrate")
        for name in self.processes():
            self.start(name)
        self.wait_ready()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to one process and wait for it to end."""
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        """Terminate every process (SIGTERM, then SIGKILL)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def wait_ready(self, timeout: float = 60) -> None:
        """Wait until the gateway's aggregated /readyz says every upstream is ready."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")
            try:
                last = requests.get(self.gateway_url + "/readyz", timeout=5)
                if last.status_code == 200:
                    return
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"suite not ready: {getattr(last, 'text', last)}")

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logdir / f"{name.replace(':', '-')}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def create_key(self, *, scopes: str | None = None, partner: str | None = None, name: str = "test") -> str:
        """Create an API key with `crm keys create`; returns the key printed on stdout."""
        args = ["keys", "create", "--name", name] + (["--scopes", scopes] if scopes else ["--partner", partner])
        # A partner key is checked with the partners service, signed as the gateway signs.
        out = self.crm(*args, as_gateway=partner is not None).stdout.strip().splitlines()
        assert len(out) == 1, out
        return out[0]


def stop_process(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; returns once the process is gone."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_until(predicate, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value; raise with `message` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {value!r}")
