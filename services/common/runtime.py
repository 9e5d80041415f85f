"""What one process of a service holds: settings, engine, messaging tables and plugins."""
from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from .db import make_engine, make_session_factory, read_only_engine
from .settings import Settings
from .uow import UnitOfWork


@dataclass
class Runtime:
    """The composition root's products, shared by the web app and the worker of one service."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker
    outbox_model: Any
    inbox_model: Any
    plugins: Any = None
    # Sessions for read-only units of work: the same pool, derived from the engine (see read_only_engine).
    read_session_factory: sessionmaker = field(init=False)

    def __post_init__(self):
        self.read_session_factory = make_session_factory(read_only_engine(self.engine))

    @property
    def source(self) -> str:
        """The CloudEvents `source` of this service."""
        return f"/services/{self.settings.service}"

    def uow(self, *, correlation_id: str | None = None, causation_id: str | None = None,
            read_only: bool = False) -> UnitOfWork:
        """A fresh unit of work on this service's database; `read_only` for use cases that only read."""
        factory = self.read_session_factory if read_only else self.session_factory
        return UnitOfWork(factory, self.outbox_model, source=self.source, correlation_id=correlation_id,
                          causation_id=causation_id, read_only=read_only)

    def check_database(self) -> None:
        """Raise when the database cannot answer a trivial query."""
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))


def build_runtime(settings: Settings, outbox_model, inbox_model, *, plugins: Any = None) -> Runtime:
    """Create the engine and session factory for one service process."""
    engine = make_engine(settings.database_url)
    return Runtime(settings=settings, engine=engine, session_factory=make_session_factory(engine),
                   outbox_model=outbox_model, inbox_model=inbox_model, plugins=plugins)


def freeze_startup_objects() -> None:
    """Leave what a long-running process built to start out of the garbage collector's full collections.

    Call once, in a server or worker process, when its app or worker is built. A full (generation 2) collection
    walks every tracked object, and a started service holds ~150,000 of them (modules, schemas, the OpenAPI
    spec, SQLAlchemy's mappers): ~75 ms each time, one request or event held up for it. They live as long as
    the process, so collecting garbage first and freezing the rest (gc.freeze) loses nothing and makes a later
    full collection walk only what came after. Not for tests or tools that build many apps in one process:
    frozen objects are never freed.
    """
    gc.collect()
    gc.freeze()
