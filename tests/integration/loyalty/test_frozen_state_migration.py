"""Loyalty migration 0006 drops the frozen columns copied onto each membership: a membership frozen before stays frozen,
with the same time and reason, now read from its contact's record; the downgrade copies them back."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from sqlalchemy import Column, DateTime, MetaData, String, Table, inspect, select
from sqlalchemy.orm import Session

from crm.registry import SUITE
from services.common.db import make_engine
from services.common.migrations import alembic_config
from services.loyalty.models import Base, FrozenContact, Member
from tests.support import infra

pytestmark = pytest.mark.integration

RECORDED_AT = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
COPIED_AT = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)
LATER_AT = datetime(2026, 2, 5, 8, 0, tzinfo=UTC)
DEFAULT_PROGRAM_ID = uuid.UUID("5b0c3f52-8d3e-4a7e-9b61-6c0d1f2a9e01")


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/loyalty.db"
        return
    made = infra.create_database("loyalty")
    yield made
    infra.drop_database(made)


def _table(conn, name: str) -> Table:
    """The table as it is in the database, typed as the models say (the copied columns as 0005 made them)."""
    existing = {c["name"] for c in inspect(conn).get_columns(name)}
    columns = [c._copy() for c in Base.metadata.tables[name].columns if c.name in existing]
    if name == "members" and "frozen_at" in existing:
        columns += [Column("frozen_at", DateTime(timezone=True)), Column("frozen_reason", String(500))]
    return Table(name, MetaData(), *columns)


def _write_at_0005(url: str) -> dict[str, uuid.UUID]:
    """Memberships as the 0005 code stored them: the freeze copied onto each, next to the contact's record."""
    recorded, copy_only, active = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    club = uuid.uuid4()
    ids = {name: uuid.uuid4() for name in ("recorded", "copy_only", "copy_only_later", "active")}
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            programs, members, frozen = (_table(conn, n) for n in ("programs", "members", "frozen_contacts"))
            conn.execute(programs.insert().values(id=club, code="club", name="Club", currency="EUR",
                                                  points_per_unit=1, auto_enrol=False, is_default=False,
                                                  created_at=RECORDED_AT, updated_at=RECORDED_AT))
            conn.execute(frozen.insert().values(contact_id=recorded, frozen_at=RECORDED_AT, reason="Serial complainer"))

            def member(key, contact_id, program_id=DEFAULT_PROGRAM_ID, **frozen_columns):
                conn.execute(members.insert().values(id=ids[key], program_id=program_id, contact_id=contact_id,
                                                     enrolled_via="api", enrolled_at=RECORDED_AT, **frozen_columns))

            member("recorded", recorded, frozen_at=RECORDED_AT, frozen_reason="Serial complainer")
            # A copy whose contact has no record (not written by 0005's code, but a copy is what the API showed):
            # the contact gets one, from its earliest frozen membership.
            member("copy_only_later", copy_only, club, frozen_at=LATER_AT, frozen_reason="later")
            member("copy_only", copy_only, frozen_at=COPIED_AT, frozen_reason="Fraud")
            member("active", active)
    finally:
        engine.dispose()
    return ids


def test_a_membership_frozen_before_the_migration_stays_frozen_and_the_downgrade_restores_the_copies(url):
    config = alembic_config("loyalty", url, SUITE.migrations_dir("loyalty"))
    SUITE.migrate("loyalty", url, "0005")
    ids = _write_at_0005(url)

    SUITE.migrate("loyalty", url)
    engine = make_engine(url)
    try:
        assert not {"frozen_at", "frozen_reason"} & {c["name"] for c in inspect(engine).get_columns("members")}
        with Session(engine) as s:
            shown = {m.id: (m.frozen_at, m.frozen_reason) for m in s.scalars(select(Member))}
            assert s.scalar(select(FrozenContact.frozen_at).where(FrozenContact.reason == "Fraud")) == COPIED_AT
        assert shown == {ids["recorded"]: (RECORDED_AT, "Serial complainer"), ids["copy_only"]: (COPIED_AT, "Fraud"),
                         ids["copy_only_later"]: (COPIED_AT, "Fraud"), ids["active"]: (None, None)}

        command.downgrade(config, "0005")
        with engine.connect() as conn:
            members = _table(conn, "members")
            copied = dict((row[0], (row[1], row[2])) for row in conn.execute(
                select(members.c.id, members.c.frozen_at, members.c.frozen_reason)))
        # Back as one record per contact says (SQLite hands back naive UTC times).
        assert {key: (at.replace(tzinfo=UTC) if at else None, reason) for key, (at, reason) in copied.items()} == shown
    finally:
        engine.dispose()
