"""Every service's migrations build exactly the schema its models declare, on the real PostgreSQL."""
from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from alembic import command
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.autogenerate import compare_metadata
from sqlalchemy import inspect

from crm.registry import SUITE
from services.common.db import UNPUBLISHED_INDEX, make_engine
from services.common.migrations import alembic_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", SUITE.names)
def test_the_migrated_schema_matches_the_models(make_database, name):
    url = make_database(name)
    SUITE.migrate(name, url)
    metadata = importlib.import_module(f"{SUITE.entry(name).package}.models").Base.metadata
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True,
                                                             "version_table": f"alembic_version_{name}"})
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", [e.name for e in SUITE.workers])
def test_the_outbox_index_holds_only_unpublished_rows_and_downgrades(make_database, name):
    url = make_database(name)
    SUITE.migrate(name, url)
    engine = make_engine(url)
    try:
        indexes = {i["name"]: i for i in inspect(engine).get_indexes("outbox")}
        assert indexes[UNPUBLISHED_INDEX]["column_names"] == ["seq"]
        assert "published_at IS NULL" in indexes[UNPUBLISHED_INDEX]["dialect_options"]["postgresql_where"]
        # Down to just before the index's migration (later migrations, e.g. the e-mail keys, come down too).
        config = alembic_config(name, url, SUITE.migrations_dir(name))
        index_revision = next(r for r in ScriptDirectory.from_config(config).walk_revisions()
                              if "index_unpublished_outbox()" in Path(r.path).read_text())
        command.downgrade(config, index_revision.down_revision)
        assert "ix_outbox_published_at" in {i["name"] for i in inspect(engine).get_indexes("outbox")}
        SUITE.migrate(name, url)
        assert UNPUBLISHED_INDEX in {i["name"] for i in inspect(engine).get_indexes("outbox")}
    finally:
        engine.dispose()
