"""`crm keys create|list|revoke`: manage API keys on the gateway database (already migrated)."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError, ProgrammingError

from services.common.db import make_engine, make_session_factory
from services.common.problems import Problem
from crm.registry import SUITE
from services.common.settings import SettingsError

from . import keys as key_cases

EXIT_NOT_READY = 2


@contextlib.contextmanager
def _session():
    """One transaction on the gateway database; a missing table is a clear error (exit 2)."""
    try:
        settings = SUITE.settings("gateway", require_secret=False)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as session:
            try:
                yield session
                session.commit()
            except (OperationalError, ProgrammingError) as exc:
                session.rollback()
                message = str(exc.orig if getattr(exc, "orig", None) else exc).lower()
                if "api_keys" in message and ("no such table" in message or "does not exist" in message):
                    click.echo("error: the gateway database has no api_keys table; run `crm migrate` first.", err=True)
                    sys.exit(EXIT_NOT_READY)
                if isinstance(exc, OperationalError):
                    raise click.ClickException(f"cannot use the gateway database: {exc.orig or exc}") from None
                raise
            except Problem as exc:
                session.rollback()
                raise click.ClickException(exc.detail) from None
    finally:
        engine.dispose()


def _partner_lookup():
    """Ask the partners service, as the gateway would: signed with the gateway's identity key."""
    from .proxy import UpstreamProxy

    env = dict(os.environ)
    under_crm_run = Path(env.get("CRM_DATA_DIR") or "var") / "identity" / "private.pem"
    if not (env.get("CRM_IDENTITY_PRIVATE_KEY") or env.get("CRM_IDENTITY_PRIVATE_KEY_FILE")) and under_crm_run.is_file():
        env["CRM_IDENTITY_PRIVATE_KEY_FILE"] = str(under_crm_run)  # the pair `crm run` made
    try:
        settings = SUITE.settings("gateway", env, require_secret=False)
    except SettingsError as exc:
        raise click.ClickException(f"configuration error: {exc}") from None
    if not settings.identity_private_key:
        raise click.ClickException(
            "a partner key needs the partner checked with the partners service, signed with the gateway's identity "
            "key: set CRM_IDENTITY_PRIVATE_KEY_FILE (under `crm run`: var/identity/private.pem)")
    proxy = UpstreamProxy.from_settings(settings)

    def exists(partner_id) -> bool:
        try:
            return proxy.partner_exists(partner_id)
        finally:
            proxy.close()

    return exists


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value else "-"


@click.group()
def keys() -> None:
    """Create, list and revoke gateway API keys."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for (1 to 100 characters).")
@click.option("--scopes", default=None, help="Comma-separated scopes of an internal key, e.g. contacts:read,leads:*")
@click.option("--partner", "partner", default=None, metavar="UUID", help="Make a partner key bound to this partner id.")
def create(name: str, scopes: str | None, partner: str | None) -> None:
    """Create a key and print it (only the key) on stdout; it is not shown again."""
    if (scopes is None) == (partner is None):
        raise click.UsageError("give exactly one of --scopes (internal key) or --partner (partner key)")
    scope_list = [s for s in (scopes or "").split(",") if s.strip()]
    with _session() as session:
        key, plaintext = key_cases.create_key(session, name=name, scopes=scope_list, partner_id=partner,
                                              partner_exists=_partner_lookup() if partner else None)
        summary = f"partner {key.partner_id}" if key.kind == "partner" else f"scopes {','.join(key.scopes) or '-'}"
    click.echo(plaintext)
    click.echo(f"created {key.kind} key {key.id} ({key.name}, {summary}); store it now, it is shown only once",
               err=True)


@keys.command("list")
def list_() -> None:
    """List every key, newest first (never the key itself)."""
    with _session() as session:
        rows = key_cases.list_keys(session)["items"]
    header = ("ID", "NAME", "KIND", "PREFIX", "SCOPES/PARTNER", "CREATED", "LAST USED", "REVOKED")
    table = [header] + [
        (str(k.id), k.name, k.kind, k.prefix,
         str(k.partner_id) if k.kind == "partner" else (",".join(k.scopes) or "-"),
         _when(k.created_at), _when(k.last_used_at), _when(k.revoked_at))
        for k in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    click.echo(f"{len(rows)} key(s)", err=True)


@keys.command("revoke")
@click.argument("key_id")
def revoke(key_id: str) -> None:
    """Revoke KEY_ID at once."""
    with _session() as session:
        key = key_cases.revoke_key(session, key_id)
    click.echo(f"revoked key {key.id} ({key.name}) at {_when(key.revoked_at)}", err=True)
