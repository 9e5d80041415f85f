"""The kit's outbox and inbox tables alone, for unit tests of the unit of work, the store and the dispatcher."""
from __future__ import annotations

from pathlib import Path

from services.common.db import make_base, make_engine, make_session_factory, messaging_models

Base = make_base()
Outbox, Inbox = messaging_models(Base)


def sqlite_session_factory(path: Path):
    """A session factory on a new SQLite file at `path` holding only the outbox and inbox; its engine with it."""
    engine = make_engine(f"sqlite:///{path}")
    Base.metadata.create_all(engine)
    return make_session_factory(engine), engine
