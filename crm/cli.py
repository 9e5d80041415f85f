"""The `crm` command: run the suite, migrate, run workers, inspect dead letters, manage API keys."""
from __future__ import annotations

import json
import os
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
    from services.common.logs import configure_logging
    from services.common.runtime import freeze_startup_objects

    settings = _settings(service)
    # JSON lines on stderr like the web processes: one per handled event, with its correlation id.
    configure_logging(service, settings.log_level)
    built = SUITE.create_worker(service, settings)
    freeze_startup_objects()
    built.run_forever()


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


@cli.group()
def contacts() -> None:
    """Work on the contacts database directly (CONTACTS_DATABASE_URL, as `crm migrate` reads it)."""


def _import_mapping(maps: tuple[str, ...], map_file: Path | None) -> dict[str, str]:
    mapping: dict[str, str] = {}
    if map_file is not None:
        try:
            loaded = json.loads(map_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise click.BadParameter(f"cannot read {map_file}: {exc}", param_hint="--map-file") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise click.BadParameter("expected a JSON object of CSV header -> contact field", param_hint="--map-file")
        mapping.update(loaded)
    for item in maps:
        header, equals, field = item.rpartition("=")
        if not equals or not header or not field:
            raise click.BadParameter(f"{item!r} is not HEADER=FIELD", param_hint="--map")
        mapping[header] = field
    return mapping


@contacts.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--map", "maps", multiple=True, metavar="HEADER=FIELD",
              help="Map a CSV column to a contact field (email, first_name, last_name, company, job_title, phone, "
                   "tags, attributes.<name>); repeat it. Overrides --map-file.")
@click.option("--map-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A JSON object of CSV header -> contact field.")
@click.option("--errors", "show_errors", default=20, show_default=True, type=click.IntRange(0, 1000),
              help="Print at most this many refused values.")
def contacts_import(file: Path, maps: tuple[str, ...], map_file: Path | None, show_errors: int) -> None:
    """Import FILE (CSV, UTF-8, header row) into the contacts, in chunks, exactly as the worker would.

    Rows upsert by e-mail; events go to the outbox for the contacts worker to publish. Prints the counts and
    the first refused values (row, field, why).
    """
    from services.common.problems import Problem
    from services.contacts import imports
    from services.contacts.app import build
    from services.contacts.import_jobs import ImportRunner

    mapping = _import_mapping(maps, map_file)
    runtime = build(_settings("contacts", require_secret=False))
    try:
        runner = ImportRunner(runtime)
        try:
            started = runner.submit(file.read_bytes(), mapping, requested_by="cli")
        except Problem as exc:
            raise click.ClickException(_problem_text(exc)) from None
        with click.progressbar(length=max(started.total_rows, 1), label="importing", file=sys.stderr) as bar:
            done = runner.run_here(started.id, on_chunk=lambda state: bar.update(state.processed - bar.pos))
        click.echo(f"import {done.id}: {done.status}: {done.total_rows} rows, {done.created} created, "
                   f"{done.updated} updated, {done.unchanged} unchanged, {done.failed} failed")
        if done.failed and show_errors:
            page = imports.list_import_errors(runtime.uow(read_only=True), done.id, limit=show_errors, cursor=None)
            for error in page["items"]:
                click.echo(f"  row {error.row}, {error.field or 'the row'}: {error.message}")
            if page["next_cursor"]:
                click.echo(f"  (more: GET /api/v1/contacts/imports/{done.id}/errors)")
        if done.status != imports.COMPLETED:
            raise click.ClickException(f"the import {done.status}: {done.error}")
    finally:
        runtime.engine.dispose()


def _problem_text(problem) -> str:
    """A 422's detail and its field errors on one line each (`mapping.E-mail: Not a column ...`)."""
    lines = [problem.detail]

    def walk(prefix: str, errors) -> None:
        if isinstance(errors, dict):
            for name, inner in errors.items():
                walk(f"{prefix}.{name}" if prefix else str(name), inner)
        else:
            lines.extend(f"  {prefix}: {message}" for message in errors)

    walk("", problem.extra.get("errors", {}))
    return "\n".join(lines)


@cli.group()
def analytics() -> None:
    """Customer analytics: ABC, RFM, lifetime value, the profitability matrix, the pyramid, lifecycle stages."""


def _analytics_parameters(items: tuple[str, ...]) -> dict:
    """`--param name=value` overrides: the value as JSON when it parses (90, 0.7, {...}), else as text (median);
    `interaction_costs.<kind>=value` overrides one kind's cost."""
    overrides: dict = {}
    for item in items:
        name, equals, raw = item.partition("=")
        if not equals or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        group, dot, key = name.partition(".")
        if dot:
            overrides.setdefault(group, {})[key] = value
        else:
            overrides[name] = value
    return overrides


def _as_of(raw: str | None):
    from datetime import datetime, timezone

    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise click.BadParameter(f"{raw!r} is not an ISO 8601 time", param_hint="--as-of") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


@analytics.command("refresh")
@click.option("--currency", help="ISO 4217 code; default: CRM_BASE_CURRENCY.")
@click.option("--as-of", "as_of", metavar="ISO-TIME", help="The instant the measures describe (UTC unless an "
              "offset is given); default: now.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="Override a parameter for this refresh (docs/analytics.md), e.g. window_days=90, "
                   "current_threshold=median, interaction_costs.complaint=40; repeat it.")
def analytics_refresh(currency: str | None, as_of: str | None, params: tuple[str, ...]) -> None:
    """Compute every measure of one currency into a new snapshot, here and now, as the worker would.

    Shows a progress bar over the steps and ends with each step's time.
    """
    from services.common.problems import Problem
    from services.contacts.analytics.refresh import STEPS, RefreshRunner
    from services.contacts.app import build

    overrides = _analytics_parameters(params)
    moment = _as_of(as_of)
    settings = _settings("contacts", require_secret=False)
    try:
        runtime = build(settings)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    try:
        runner = RefreshRunner(runtime)
        try:
            started = runner.request(currency=currency or settings.base_currency, parameters=overrides,
                                     as_of=moment, trigger="cli", requested_by="cli")
            with click.progressbar(length=len(STEPS), label="refreshing", file=sys.stderr,
                                   item_show_func=lambda step: step) as bar:
                done = runner.run_here(started.id,
                                       on_step=lambda state: bar.update(state.steps_done - bar.pos, state.step))
        except Problem as exc:
            raise click.ClickException(_problem_text(exc)) from None
        click.echo(f"refresh {done.id}: {done.status}: {done.currency} as of {done.as_of.isoformat()}, "
                   f"{done.customers if done.customers is not None else 0} customers")
        width = max(len(step) for step in STEPS)
        for step in (step for step in STEPS if step in done.timings):  # in run order (JSONB keeps no order)
            click.echo(f"  {step:<{width}} {done.timings[step]:>9.3f} s")
        click.echo(f"  {'total':<{width}} {sum(done.timings.values()):>9.3f} s")
        if done.status != "completed":
            raise click.ClickException(f"the refresh {done.status}: {done.error}")
    finally:
        runtime.engine.dispose()


@cli.group()
def partners() -> None:
    """Partners: contract renewals and expiry."""


@partners.command("renewals")
@click.option("--today", metavar="DATE", help="The day to run for (ISO 8601, e.g. 2026-12-31); default: today, UTC.")
def partners_renewals(today: str | None) -> None:
    """Publish the contract notices due (expiring, expired, renewed), here and now, as the worker's daily job would.

    Each notice is published once per terms version, so running it again, or beside the workers, repeats nothing.
    """
    from datetime import date

    from services.partners.app import build
    from services.partners.renewals import run_once

    try:
        day = None if today is None else date.fromisoformat(today)
    except ValueError:
        raise click.BadParameter(f"{today!r} is not an ISO 8601 date", param_hint="--today") from None
    runtime = build(_settings("partners", require_secret=False))
    try:
        result = run_once(runtime, day)
    finally:
        runtime.engine.dispose()
    click.echo(f"{result.expiring} expiring, {result.expired} expired, {result.renewed} renewed, "
               f"{result.failed} failed to renew")
    if result.failed:
        raise click.ClickException(f"{result.failed} contracts did not renew (see the log); the next run tries again")


@cli.command()
@click.argument("service", type=click.Choice(tuple(e.name for e in SUITE.entries if e.web)))
@click.option("--bind", default="0.0.0.0:8080", show_default=True, help="HOST:PORT to listen on.")
def web(service: str, bind: str) -> None:
    """Serve SERVICE's web process: the gateway on waitress, every other service on gunicorn."""
    from .processes import GATEWAY_CHANNEL_TIMEOUT, GATEWAY_CONNECTION_LIMIT, gunicorn_argv

    entry = SUITE.entry(service)
    if service != SUITE.gateway:
        argv = gunicorn_argv(entry.wsgi_app, bind, os.environ)
        os.execv(argv[0], argv)
    import signal

    import waitress

    from services.common.runtime import freeze_startup_objects
    from services.common.settings import web_concurrency

    _settings(service)  # a configuration error ends here, before the port opens
    _processes, threads = web_concurrency()
    app = SUITE.create_app(service)
    freeze_startup_objects()

    def stop(_signum, _frame):
        raise SystemExit(0)  # waitress closes its sockets and lets running requests finish

    signal.signal(signal.SIGTERM, stop)
    waitress.serve(app, listen=bind, threads=threads, connection_limit=GATEWAY_CONNECTION_LIMIT,
                   channel_timeout=GATEWAY_CHANNEL_TIMEOUT, asyncore_use_poll=True, ident="", _quiet=True)


@cli.group()
def identity() -> None:
    """The Ed25519 key pair of identity tokens: the gateway signs with the private key, services verify."""


def _write_new(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def ensure_key_pair(private_path: Path, public_path: Path) -> bool:
    """Write a new key pair unless one is there; True when written. A lone public key is an error (its private
    half is lost, so every service would trust tokens nobody can sign); a lone private key gets its public half."""
    from services.common.identity import IdentityKeyError, generate_keypair, load_private_key, public_pem

    if private_path.exists():
        try:
            derived = public_pem(load_private_key(private_path.read_text()))
        except (OSError, IdentityKeyError) as exc:
            raise click.ClickException(f"{private_path}: {exc}") from None
        if not public_path.exists():
            _write_new(public_path, derived, 0o644)
        elif public_path.read_text().strip() != derived.strip():
            raise click.ClickException(f"{public_path} is not the public half of {private_path}")
        return False
    if public_path.exists():
        raise click.ClickException(f"{public_path} exists without its private key {private_path}; "
                                   "remove it to make a new pair")
    private, public = generate_keypair()
    _write_new(private_path, private, 0o600)
    _write_new(public_path, public, 0o644)
    return True


@identity.command("init")
@click.option("--private", "private_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where the private key goes (give it to the gateway only).")
@click.option("--public", "public_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where the public key goes (every service reads it).")
def identity_init(private_path: Path, public_path: Path) -> None:
    """Write a new key pair, or keep the one already there (safe to run on every start)."""
    written = ensure_key_pair(private_path, public_path)
    click.echo(f"identity keys {'written' if written else 'kept'}: {private_path} (private), {public_path} (public)",
               err=True)


def _identity_env(env: dict[str, str], data_dir: Path) -> dict[str, str]:
    """Move the private key out of the environment every process shares; returns the gateway's own variables.

    Keys from the environment are used as given (an inline private key is written to a 0600 file first, so it
    never shows on a command line); without any, a pair is made once under the data dir.
    """
    key_dir = data_dir / "identity"
    private_file = env.pop("CRM_IDENTITY_PRIVATE_KEY_FILE", "")
    inline = env.pop("CRM_IDENTITY_PRIVATE_KEY", "")
    if inline:
        private_file = str(key_dir / "private-from-env.pem")
        Path(private_file).unlink(missing_ok=True)
        _write_new(Path(private_file), inline, 0o600)
    if not private_file:
        private_file = str(key_dir / "private.pem")
        if not (env.get("CRM_IDENTITY_PUBLIC_KEY") or env.get("CRM_IDENTITY_PUBLIC_KEY_FILE")):
            ensure_key_pair(Path(private_file), key_dir / "public.pem")
            env["CRM_IDENTITY_PUBLIC_KEY_FILE"] = str(key_dir / "public.pem")
    if not (env.get("CRM_IDENTITY_PUBLIC_KEY") or env.get("CRM_IDENTITY_PUBLIC_KEY_FILE")):
        from services.common.identity import IdentityKeyError, load_private_key, public_pem

        try:
            derived = public_pem(load_private_key(Path(private_file).read_text()))
        except (OSError, IdentityKeyError) as exc:
            raise click.ClickException(f"configuration error: CRM_IDENTITY_PRIVATE_KEY: {exc}") from None
        public_file = key_dir / "public-derived.pem"
        public_file.unlink(missing_ok=True)
        _write_new(public_file, derived, 0o644)
        env["CRM_IDENTITY_PUBLIC_KEY_FILE"] = str(public_file)
    return {"CRM_IDENTITY_PRIVATE_KEY_FILE": private_file}


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
    gateway_env = _identity_env(env, data_dir)
    ports = {e.name: _port(f"CRM_{e.env_prefix}_PORT", e.port) for e in SUITE.entries if e.web}
    gateway_port = ports[SUITE.gateway]
    env["CRM_GATEWAY_PORT"] = str(gateway_port)
    for e in SUITE.upstreams:
        env.setdefault(f"CRM_{e.env_prefix}_URL", f"http://127.0.0.1:{ports[e.name]}")
    os.environ.clear()
    os.environ.update(env)
    try:  # the gateway's settings as its process will read them, before anything starts
        SUITE.settings(SUITE.gateway, {**env, **gateway_env})
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None

    settings = _settings("gateway", require_secret=False)
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
        SUITE.migrate(service, _settings(service, require_secret=service != SUITE.gateway).database_url)
    admin_key = _first_admin_key()

    host = os.environ.get("CRM_GATEWAY_HOST", "127.0.0.1")
    try:
        processes = suite_processes(ports, env, host=host, gateway_env=gateway_env)
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

    engine = make_engine(_settings("gateway", require_secret=False).database_url)
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
