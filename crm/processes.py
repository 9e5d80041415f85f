"""The processes of a running suite, derived from the registry: what `crm run` and the test suite start."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import web_concurrency

from .registry import SUITE, Registry


@dataclass(frozen=True)
class Process:
    name: str  # e.g. "contacts-web", "contacts-worker", "gateway"
    service: str
    kind: str  # "web" | "worker"
    argv: tuple[str, ...]


def gunicorn_argv(app: str, bind: str, env: Mapping[str, str]) -> tuple[str, ...]:
    """gunicorn for one web process, sized by CRM_WEB_PROCESSES/CRM_WEB_THREADS; no access log (we log each
    request once, ourselves)."""
    processes, threads = web_concurrency(env)
    return (sys.executable, "-m", "gunicorn", "--worker-class", "gthread", "--workers", str(processes),
            "--threads", str(threads), "--bind", bind, "--graceful-timeout", "10", "--keep-alive", "75", app)


def crm_argv(*args: str) -> tuple[str, ...]:
    """The `crm` command run with this interpreter."""
    return (sys.executable, "-m", "crm", *args)


def suite_processes(ports: Mapping[str, int], env: Mapping[str, str] | None = None, *, host: str = "127.0.0.1",
                    registry: Registry = SUITE) -> list[Process]:
    """Every web process (the gateway on `host`, upstreams on loopback), then every worker."""
    env = os.environ if env is None else env
    procs = []
    for entry in registry.entries:
        if entry.web:
            bind = f"{host if entry.name == registry.gateway else '127.0.0.1'}:{ports[entry.name]}"
            name = entry.name if entry.name == registry.gateway else f"{entry.name}-web"
            procs.append(Process(name, entry.name, "web", gunicorn_argv(entry.wsgi_app, bind, env)))
    for entry in registry.workers:
        procs.append(Process(f"{entry.name}-worker", entry.name, "worker", crm_argv("worker", entry.name)))
    return procs
