"""The `crm` command: run the suite, migrate, run workers, inspect dead letters, manage API keys."""
from __future__ import annotations

import json
import os
import secrets
import shlex
import sys
from pathlib import Path

import click

from services.common.settings import SettingsError

from .registry import SUITE

MIGRATED = SUITE.names
WORKER_SERVICES = tuple(e.name for e in SUITE.workers)


def _settings(service: str, *, require_secret: bool = True):
    try:
        return SUITE.settings(service, require_secret=require_secret)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """CRM Suite: contacts, leads, loyalty, partners and the gateway over RabbitMQ."""


@cli.command()
@click.argument("services", nargs=-1, type=click.Choice(MIGRATED))
def migrate(services: tuple[str, ...]) -> None:
    """Migrate the databases of SERVICES (all when none are named) to the newest schema."""
    for service in services or MIGRATED:
        settings = _settings(service, require_secret=False)
        SUITE.migrate(service, settings.database_url)
        click.echo(f"{service}: migrated", err=True)


@cli.command()
@click.argument("service", type=click.Choice(WORKER_SERVICES))
def worker(service: str) -> None:
    """Run SERVICE's outbox relay and event consumer until SIGTERM."""
    SUITE.create_worker(service, _settings(service)).run_forever()


@cli.group()
def dlq() -> None:
    """Inspect and replay a service's dead-letter queue."""


@dlq.command("list")
@click.argument("service", type=click.Choice(WORKER_SERVICES))
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 10000))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(service: str, limit: int, as_json: bool) -> None:
    """List dead letters without removing them."""
    from services.common.consumer import list_dead_letters

    letters = list_dead_letters(service, _settings(service, require_secret=False).amqp_url, limit)
    for letter in letters:
        if as_json:
            click.echo(json.dumps(letter))
        else:
            click.echo(f"{letter['message_id']}  {letter['type']}  attempts={letter['attempts']}  {letter['error']}")
    click.echo(f"{len(letters)} dead letter(s) in crm.{service}.dlq", err=True)


@dlq.command("replay")
@click.argument("service", type=click.Choice(WORKER_SERVICES))
@click.option("--limit", default=None, type=click.IntRange(1, None), help="At most this many (default all).")
def dlq_replay(service: str, limit: int | None) -> None:
    """Send dead letters back to the service queue with a fresh retry budget."""
    from services.common.consumer import replay_dead_letters

    moved = replay_dead_letters(service, _settings(service, require_secret=False).amqp_url, limit)
    click.echo(f"replayed {moved} dead letter(s) to crm.{service}", err=True)


def _identity_secret(data_dir: Path) -> str:
    """The secret from the environment, or one generated once and kept under the data dir."""
    if os.environ.get("CRM_IDENTITY_SECRET"):
        return os.environ["CRM_IDENTITY_SECRET"]
    path = data_dir / "identity.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _port(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise click.ClickException(f"configuration error: {name}: not a TCP port: {raw!r}")
    return int(raw)


@cli.command()
def run() -> None:
    """Migrate every database and start the whole suite (every web process, worker and the gateway)."""
    from honcho.manager import Manager

    from services.common.broker import ping

    from .processes import suite_processes

    data_dir = Path(os.environ.get("CRM_DATA_DIR") or "var").resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["CRM_DATA_DIR"] = str(data_dir)
    env["CRM_IDENTITY_SECRET"] = _identity_secret(data_dir)
    ports = {e.name: _port(f"CRM_{e.env_prefix}_PORT", e.port) for e in SUITE.entries if e.web}
    gateway_port = ports[SUITE.gateway]
    env["CRM_GATEWAY_PORT"] = str(gateway_port)
    for e in SUITE.upstreams:
        env.setdefault(f"CRM_{e.env_prefix}_URL", f"http://127.0.0.1:{ports[e.name]}")
    os.environ.update(env)

    settings = _settings("gateway")
    try:
        ping(settings.amqp_url)
    except Exception as exc:  # noqa: BLE001 — any failure means we cannot run
        click.echo(
            f"error: RabbitMQ is not reachable at {_redact(settings.amqp_url)} ({type(exc).__name__}).\n"
            "The suite is built on RabbitMQ and cannot start without it. Start one, for example:\n"
            "  rabbitmq-server -detached            (Debian/Ubuntu package rabbitmq-server)\n"
            "  docker run -d -p 5672:5672 rabbitmq:3.13\n"
            "or point AMQP_URL at a running broker.", err=True)
        sys.exit(1)

    for service in MIGRATED:
        SUITE.migrate(service, _settings(service).database_url)
    admin_key = _first_admin_key()

    host = os.environ.get("CRM_GATEWAY_HOST", "127.0.0.1")
    try:
        processes = suite_processes(ports, env, host=host)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    manager = Manager()
    for proc in processes:
        manager.add_process(proc.name, shlex.join(proc.argv), env=env)

    click.echo(f"CRM Suite gateway: http://{host}:{gateway_port}  (data in {data_dir})")
    if admin_key:
        click.echo(f"Admin API key (shown once, keep it safe): {admin_key}")
    sys.stdout.flush()
    manager.loop()
    sys.exit(manager.returncode)


def _first_admin_key() -> str | None:
    from services.gateway.keys import ensure_admin_key
    from services.common.db import make_engine, make_session_factory

    engine = make_engine(_settings("gateway").database_url)
    try:
        with make_session_factory(engine)() as session:
            key = ensure_admin_key(session)
            session.commit()
            return key
    finally:
        engine.dispose()


def _redact(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return url


def _mount_keys() -> None:
    from services.gateway.cli import keys

    cli.add_command(keys)


_mount_keys()


def main() -> None:
    """Console-script entry point."""
    cli()


if __name__ == "__main__":
    main()
