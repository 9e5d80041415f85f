"""The e-mail key migrations re-key stored contacts and leads to NFKC + IDNA (issue 7 §2).

Rows are written at the revision before, with the keys the old rule (trim, lower-case) gave them. After the
upgrade a non-ASCII address has its new key, so the API finds it under any spelling; an ASCII row is not
touched; a row whose new key another row already holds keeps its old key and is logged; the downgrade
restores the old keys.
"""
from __future__ import annotations

import logging
import uuid

import pytest
from alembic import command
from sqlalchemy import MetaData, Table, inspect, select

from crm.registry import SUITE
from services.common.db import make_engine
from services.common.migrations import alembic_config
from tests.support import infra
from tests.support.auth import identity_headers

pytestmark = pytest.mark.integration

MIGRATIONS = {"contacts": ("0004", "0005"), "leads": ("0003", "0004")}


@pytest.fixture(params=["postgresql", "sqlite"])
def database(request, tmp_path):
    """Factory: an empty database of the parametrised kind for one service."""
    made = []

    def make(name: str) -> str:
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path}/{name}.db"
        url = infra.create_database(name)
        made.append(url)
        return url

    yield make
    for url in made:
        infra.drop_database(url)


def _model(name: str):
    if name == "contacts":
        from services.contacts.models import Contact
        return Contact
    from services.leads.models import Lead
    return Lead


def _write_old_rows(url: str, name: str, rows: list[dict]) -> dict[str, uuid.UUID]:
    """Rows as the old code stored them: the key is the trimmed, lower-cased address."""
    model, engine, ids = _model(name), make_engine(url), {}
    try:
        with engine.begin() as conn:
            # Only the columns the old revision has (typed and defaulted as the model says): later ones are not there.
            existing = {c["name"] for c in inspect(conn).get_columns(model.__tablename__)}
            old_table = Table(model.__tablename__, MetaData(),
                              *(c._copy() for c in model.__table__.columns if c.name in existing))
            for row in rows:
                ids[row["email"]] = row_id = uuid.uuid4()
                conn.execute(old_table.insert().values(
                    id=row_id, email=row["email"], email_normalized=row["email"].strip().lower(),
                    **({"status": row["status"]} if "status" in row else {})))
    finally:
        engine.dispose()
    return ids


def _keys(url: str, name: str) -> dict[uuid.UUID, str]:
    model, engine = _model(name), make_engine(url)
    try:
        with engine.connect() as conn:
            return dict(conn.execute(select(model.id, model.email_normalized)).all())
    finally:
        engine.dispose()


@pytest.mark.parametrize("name", sorted(MIGRATIONS))
def test_stored_keys_are_renormalised_and_a_clash_keeps_its_old_key(database, name, caplog):
    before, after = MIGRATIONS[name]
    url = database(name)
    command.upgrade(alembic_config(name, url, SUITE.migrations_dir(name)), before)
    status = {"status": "new"} if name == "leads" else {}
    ids = _write_old_rows(url, name, [
        {"email": "Ann@Bücher.Example", **status},        # re-keyed to the IDNA form
        {"email": "ann@example.com", **status},           # ASCII: untouched
        {"email": "ａｎｎ@example.com", **status},          # full width: its new key is taken by the row above
        {"email": "Zoë@Exämple.org", **status},
    ])
    if name == "leads":
        ids |= _write_old_rows(url, name, [{"email": "ＡＮＮ@Example.com", "status": "converted"}])

    with caplog.at_level(logging.WARNING, logger="alembic.runtime.migration"):
        command.upgrade(alembic_config(name, url, SUITE.migrations_dir(name)), after)

    keys = _keys(url, name)
    assert keys[ids["Ann@Bücher.Example"]] == "ann@xn--bcher-kva.example"
    assert keys[ids["ann@example.com"]] == "ann@example.com"
    assert keys[ids["ａｎｎ@example.com"]] == "ａｎｎ@example.com"
    assert keys[ids["Zoë@Exämple.org"]] == "zoë@xn--exmple-cua.org"
    assert str(ids["ａｎｎ@example.com"]).replace("-", "") in caplog.text.replace("-", "")
    if name == "leads":  # a closed lead is outside the unique index: it takes the new key
        assert keys[ids["ＡＮＮ@Example.com"]] == "ann@example.com"

    command.downgrade(alembic_config(name, url, SUITE.migrations_dir(name)), before)
    restored = _keys(url, name)
    assert restored[ids["Ann@Bücher.Example"]] == "ann@bücher.example"
    assert restored[ids["Zoë@Exämple.org"]] == "zoë@exämple.org"
    assert restored[ids["ann@example.com"]] == "ann@example.com"


def test_after_the_migration_the_api_finds_a_stored_contact_under_any_spelling(make_database, make_settings):
    url = make_database("contacts")
    command.upgrade(alembic_config("contacts", url, SUITE.migrations_dir("contacts")), "0004")
    ids = _write_old_rows(url, "contacts", [{"email": "Ann@Bücher.Example"}])
    SUITE.migrate("contacts", url)
    app = SUITE.create_app("contacts", make_settings("contacts", url))
    try:
        headers = identity_headers("contacts:read", "contacts:write")
        client = app.test_client()
        for spelling in ("ann@bücher.example", "ann@xn--bcher-kva.example", "ＡＮＮ@BÜCHER.example"):
            found = client.get("/api/v1/contacts", headers=headers, query_string={"email": spelling}).json["items"]
            assert [c["id"] for c in found] == [str(ids["Ann@Bücher.Example"])], spelling
        again = client.post("/api/v1/contacts", headers=headers, json={"email": "ann@xn--bcher-kva.example"})
        assert again.status_code == 409
    finally:
        app.extensions["crm.runtime"].engine.dispose()
