"""A PostgreSQL server of a test's own, for tests that stop or restart it (the shared one on 5432 is never touched).

initdb runs as the `postgres` OS user (the server refuses to run as root) into a temporary directory, and the
server listens on a free loopback port with trust authentication and its socket in that directory.
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from tests.support.infra import free_port

OS_USER = "postgres"


class PrivatePostgresUnavailable(RuntimeError):
    """This machine cannot run a private PostgreSQL (no binaries, no `postgres` user, initdb failed)."""


def _bin_dir() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if not found:
        raise PrivatePostgresUnavailable("no initdb under /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary directory; `stop`/`start` it at will, `destroy` when done."""

    def __init__(self):
        self.bin = _bin_dir()
        if shutil.which("runuser") is None:
            raise PrivatePostgresUnavailable("runuser is not installed")
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="crm-private-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        try:
            shutil.chown(self.root, user=OS_USER)
        except (LookupError, PermissionError) as exc:
            shutil.rmtree(self.root, ignore_errors=True)
            raise PrivatePostgresUnavailable(f"cannot hand {self.root} to the {OS_USER} user: {exc}") from exc
        result = self._as_postgres("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                   "--encoding=UTF8", "--no-sync", check=False)
        if result.returncode != 0:
            shutil.rmtree(self.root, ignore_errors=True)
            raise PrivatePostgresUnavailable(f"initdb failed: {result.stderr.strip() or result.stdout.strip()}")
        self.running = False

    def _as_postgres(self, program: str, *args: str, check: bool = True, timeout: float = 120):
        return subprocess.run(["runuser", "-u", OS_USER, "--", str(self.bin / program), *args], capture_output=True,
                              text=True, check=check, timeout=timeout, cwd=self.root)

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        # Durability is not under test (the server is stopped cleanly), so fsync is off to spare the shared disk.
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=300 "
                   f"-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._as_postgres("pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options, "-w", "-t", "60",
                          "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast` ends every session with 57P01 admin shutdown, as a restart does)."""
        self._as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        try:
            if self.running or (self.data / "postmaster.pid").exists():
                self._as_postgres("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            self.running = False
            shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log."""
        if not self.logfile.exists():
            return ""
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])

    # -- databases ------------------------------------------------------------------------------------------
    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of one database on this server."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, label: str) -> str:
        """Create an empty database; returns its SQLAlchemy URL."""
        name = f"crmt_{uuid.uuid4().hex[:10]}_{label}"
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def private_postgres_or_reason() -> tuple[PrivatePostgres | None, str | None]:
    """A fresh private server (not started), or why this machine cannot make one."""
    if os.geteuid() != 0:
        return None, "creating a private PostgreSQL needs root (to run initdb as the postgres user)"
    try:
        return PrivatePostgres(), None
    except PrivatePostgresUnavailable as exc:
        return None, str(exc)
