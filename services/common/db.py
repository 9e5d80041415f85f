"""SQLAlchemy 2 engine, per-service declarative bases and the messaging tables every service owns."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone
from pathlib import Path

import psycopg
from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, create_engine, event, text, types
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

# A JSON document: JSONB on PostgreSQL (containment `@>` and GIN indexes), JSON text elsewhere.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")

# SQLite only auto-increments an INTEGER PRIMARY KEY, so the 64-bit sequence column narrows there.
SeqType = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(types.TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; CRM stores timezone-aware UTC times only")
            value = value.astimezone(timezone.utc)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


def new_id() -> uuid.UUID:
    """A fresh random identifier for an aggregate or event."""
    return uuid.uuid4()


def make_base() -> type[DeclarativeBase]:
    """A declarative base with its own metadata: one per service, so services never share tables."""

    class Base(DeclarativeBase):
        type_annotation_map = {datetime: UTCDateTime(), dict: JSON(), list: JSON()}

    return Base


UNPUBLISHED_INDEX = "ix_outbox_unpublished"
UNPUBLISHED = "published_at IS NULL"


def messaging_models(Base):
    """Define the outbox and inbox tables on a service's base; returns (OutboxMessage, InboxEntry)."""

    class OutboxMessage(Base):
        __tablename__ = "outbox"
        # The relay claims unpublished rows oldest first; published rows pile up until they are purged, so the
        # index holds only the unpublished ones: a claim reads its batch, never the history before it.
        __table_args__ = (Index(UNPUBLISHED_INDEX, "seq", postgresql_where=text(UNPUBLISHED),
                                sqlite_where=text(UNPUBLISHED)),)
        seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
        event_id: Mapped[uuid.UUID] = mapped_column(types.Uuid, unique=True)
        event_type: Mapped[str] = mapped_column(String(200))
        payload: Mapped[str] = mapped_column(Text)  # the CloudEvents JSON, exactly as it will be published
        created_at: Mapped[datetime] = mapped_column(default=utcnow)
        published_at: Mapped[datetime | None] = mapped_column(default=None)
        lease_owner: Mapped[str | None] = mapped_column(String(64), default=None)
        lease_until: Mapped[datetime | None] = mapped_column(default=None)
        attempts: Mapped[int] = mapped_column(Integer, default=0)

    class InboxEntry(Base):
        __tablename__ = "inbox"
        event_id: Mapped[uuid.UUID] = mapped_column(types.Uuid, primary_key=True)
        handler: Mapped[str] = mapped_column(String(200), primary_key=True)
        event_type: Mapped[str] = mapped_column(String(200))
        processed_at: Mapped[datetime] = mapped_column(default=utcnow)

    return OutboxMessage, InboxEntry


def _sqlite_pragmas(dbapi_connection, _record):
    # pysqlite opens transactions on its own (only before DML), so a SAVEPOINT issued after a SELECT became
    # the outermost transaction and its RELEASE committed half a unit of work. Hand control to SQLAlchemy.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    # WAL lets the web process read while the worker writes; busy_timeout waits instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


# The execution option that marks a read-only unit of work's connection (see `read_only_engine`).
READ_ONLY = "crm_read_only"

# A pooled PostgreSQL connection older than this is replaced at checkout, before a server-side idle timeout or
# a NAT/firewall drops it silently. Dead connections in between are not pinged for (a round trip on every
# checkout): SQLAlchemy recognises a disconnect error when a statement fails, invalidates that connection and
# every older one in the pool, so one request fails and the next ones run on fresh connections.
POOL_RECYCLE_SECONDS = 300


def _sqlite_begin(connection):
    if connection.get_execution_options().get(READ_ONLY):
        # A deferred BEGIN takes no lock until the first read, and in WAL mode a reader never waits for the
        # writer, so GETs keep answering while the worker holds the write lock. The transaction still reads
        # one snapshot from its first SELECT to its end.
        connection.exec_driver_sql("BEGIN")
        return
    # IMMEDIATE takes the single writer lock up front, so a read-then-write transaction waits (busy_timeout)
    # instead of failing with SQLITE_BUSY_SNAPSHOT when another connection wrote in between.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine for a service database: PostgreSQL via psycopg 3, or a SQLite file in WAL mode."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 15, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=POOL_RECYCLE_SECONDS)
    event.listen(engine, "before_cursor_execute", _refuse_writes)
    return engine


def read_only_engine(engine: Engine) -> Engine:
    """The same engine and pool, for units of work that only read.

    SQLite begins them without the write lock. On PostgreSQL they run in autocommit: each SELECT is its own
    snapshot and no BEGIN/ROLLBACK round trips surround it (a GET by id is one statement, so one round trip in
    all). A read use case that writes by mistake is refused before the statement leaves (see `_refuse_writes`):
    an ORM flush or an INSERT/UPDATE/DELETE construct raises instead of committing on its own.
    """
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READ_ONLY: True}, isolation_level="AUTOCOMMIT")
    return engine.execution_options(**{READ_ONLY: True})


class ReadOnlyUnitOfWork(RuntimeError):
    """A use case tried to change state through a read-only unit of work (a programming error)."""


def _refuse_writes(conn, _cursor, statement, _params, context, _executemany):
    if conn.get_execution_options().get(READ_ONLY) and context is not None and (
            context.isinsert or context.isupdate or context.isdelete):
        raise ReadOnlyUnitOfWork(f"a read-only unit of work cannot write: {statement[:80]}")


def make_session_factory(engine: Engine) -> sessionmaker:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


def is_postgres(engine_or_session) -> bool:
    """True when the bound database is PostgreSQL."""
    bind = getattr(engine_or_session, "bind", None) or engine_or_session
    return bind.dialect.name == "postgresql"


# SQLSTATEs of a server that cannot serve us now: class 08 (connection exception), 57P01 admin shutdown (a fast
# stop or restart), 57P02 crash shutdown, 57P03 cannot connect now (starting up or shutting down).
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")


def is_database_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database cannot be reached now (down, restarting, connection lost, pool
    exhausted), so the same work may succeed later; False for an error in the work itself.

    Web processes answer such errors with a 503 and Retry-After; consumers return the batch to the queue
    instead of spending its events' retries. A deadlock, a timeout or a constraint is not "unavailable".
    """
    if isinstance(exc, PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:  # SQLAlchemy saw a disconnect and invalidated the pool's connections
            return True
        exc = exc.orig
    if not isinstance(exc, psycopg.OperationalError):
        return False
    # No SQLSTATE: the failure is the client's own (connection refused, the server closed the connection).
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in _UNAVAILABLE_STATES
