"""The processes of a running suite, derived from the registry: what `crm run` and the test suite start."""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.settings import SettingsError, web_concurrency

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


# The gateway is the one web process exposed to clients, so it runs on waitress, which reads every request in
# full on its I/O thread before a worker thread sees it: a slow client (slowloris) holds a socket and a buffer,
# never a thread. Up to this many connections; past it new ones wait in the listen backlog.
GATEWAY_CONNECTION_LIMIT = 1000
GATEWAY_CHANNEL_TIMEOUT = 60  # seconds a connection may stay silent before it is closed


def web_argv(entry, bind: str, env: Mapping[str, str], registry: Registry = SUITE) -> tuple[str, ...]:
    """The command line of one web process: `crm web gateway` for the gateway, gunicorn for the others."""
    if entry.name == registry.gateway:
        return crm_argv("web", entry.name, "--bind", bind)
    return gunicorn_argv(entry.wsgi_app, bind, env)


def crm_argv(*args: str) -> tuple[str, ...]:
    """The `crm` command run with this interpreter."""
    return (sys.executable, "-m", "crm", *args)


def with_env(own: Mapping[str, str], argv: tuple[str, ...]) -> tuple[str, ...]:
    """`argv` run with some variables of its own: every process of a suite gets the same environment (honcho,
    the test suite), so what only one process may see rides on its command line (`env` replaces itself)."""
    return ("env", *(f"{k}={v}" for k, v in own.items()), *argv) if own else argv


def suite_processes(ports: Mapping[str, int], env: Mapping[str, str] | None = None, *, host: str = "127.0.0.1",
                    registry: Registry = SUITE, gateway_env: Mapping[str, str] | None = None) -> list[Process]:
    """Every web process (the gateway on `host`, upstreams on loopback), then every worker.

    `gateway_env` is given to the gateway alone: the identity private key's file, which no other process may
    hold (the settings of every other process refuse it).
    """
    env = os.environ if env is None else env
    procs = []
    for entry in registry.entries:
        if entry.web:
            bind = f"{host if entry.name == registry.gateway else '127.0.0.1'}:{ports[entry.name]}"
            name = entry.name if entry.name == registry.gateway else f"{entry.name}-web"
            argv = web_argv(entry, bind, env, registry)
            if entry.name == registry.gateway:
                argv = with_env(gateway_env or {}, argv)
            procs.append(Process(name, entry.name, "web", argv))
    for entry in registry.workers:
        argv = crm_argv("worker", entry.name)
        ops = worker_ops_env(entry.name, ports.get(entry.name, entry.port), env)
        argv = with_env(ops, argv)  # its own ops port
        procs.append(Process(f"{entry.name}-worker", entry.name, "worker", argv))
    return procs


# A worker's ops port (/healthz, /readyz, /metrics) is its service's web port plus this, so every worker on one
# host has its own.
WORKER_PORT_OFFSET = 1000


def worker_ops_env(service: str, web_port: int, env: Mapping[str, str]) -> dict[str, str]:
    """CRM_WORKER_PORT (web port + 1000) and CRM_WORKER_HOST (loopback) for one worker, unless `env` sets them."""
    ops = {}
    if not env.get("CRM_WORKER_HOST"):
        ops["CRM_WORKER_HOST"] = "127.0.0.1"  # like the upstream web processes: only the gateway is public
    if not env.get("CRM_WORKER_PORT"):
        port = web_port + WORKER_PORT_OFFSET
        if port > 65535:
            raise SettingsError("CRM_WORKER_PORT", f"{service}'s web port {web_port} + {WORKER_PORT_OFFSET} is "
                                                   f"not a TCP port; choose a lower CRM_{service.upper()}_PORT")
        ops["CRM_WORKER_PORT"] = str(port)
    return ops
