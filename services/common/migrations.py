"""One Alembic environment per service, run programmatically by `crm migrate` and the test fixtures."""
from __future__ import annotations

from pathlib import Path

from alembic import command, context
from alembic.config import Config

from .db import UTCDateTime, make_engine


def alembic_config(service: str, database_url: str, script_location: str | Path) -> Config:
    """The Alembic configuration of one service, pointing at its own migrations folder."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    cfg.attributes["service"] = service
    return cfg


def upgrade(service: str, database_url: str, script_location: str | Path, revision: str = "head") -> None:
    """Migrate a service database to `revision` with the scripts in `script_location`."""
    command.upgrade(alembic_config(service, database_url, script_location), revision)


def _render_item(type_, obj, autogen_context):
    # Migrations store plain timestamps; the UTC handling lives in the models, not in the schema.
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_env(service: str, target_metadata) -> None:
    """Body of each service's migrations/env.py."""
    url = context.config.get_main_option("sqlalchemy.url")
    options = dict(target_metadata=target_metadata, version_table=f"alembic_version_{service}",
                   render_as_batch=True, compare_type=True, render_item=_render_item)
    if context.is_offline_mode():
        context.configure(url=url, literal_binds=True, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()
