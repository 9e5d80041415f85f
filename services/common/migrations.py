"""One Alembic environment per service, run programmatically by `crm migrate` and the test fixtures."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command, context, op
from alembic.config import Config

from .db import UNPUBLISHED, UNPUBLISHED_INDEX, UTCDateTime, make_engine


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


def index_unpublished_outbox() -> None:
    """Migration step shared by every service: replace the outbox's published_at index with a partial index of
    the unpublished rows' seq, which is what the relay's claim reads."""
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_index("ix_outbox_published_at")
    op.create_index(UNPUBLISHED_INDEX, "outbox", ["seq"], unique=False,
                    postgresql_where=sa.text(UNPUBLISHED), sqlite_where=sa.text(UNPUBLISHED))


def unindex_unpublished_outbox() -> None:
    """The downgrade of `index_unpublished_outbox`."""
    op.drop_index(UNPUBLISHED_INDEX, table_name="outbox")
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.create_index("ix_outbox_published_at", ["published_at"], unique=False)
