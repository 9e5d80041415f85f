"""Running imports: the contacts worker's background job claims pending imports and applies them chunk by chunk.

Each chunk (CHUNK_ROWS data rows) is one transaction: its contacts, their events, its row errors and the import's
checkpoint (`processed`, the counts, a renewed lease) commit together. So a worker killed mid-way leaves the
import at its last checkpoint, and the next claim (once the lease has expired) resumes there: every row is
applied exactly once. An import is claimed with `FOR UPDATE SKIP LOCKED` and a lease, and every chunk first
locks the import's row and checks the lease is still its own, so two workers never run one import. The next
chunk is read and checked while the database writes the current one.
"""
from __future__ import annotations

import itertools
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import and_, insert, or_, select

from services.common.db import is_database_unavailable, utcnow
from services.common.leased_runs import LeasedRunner, LeaseLost
from services.common.runtime import Runtime
from services.common.scheduled_jobs import ClaimingJob

from . import import_rows, imports
from .import_chunks import apply_rows
from .models import ContactImport, ContactImportError, ContactImportFile

log = logging.getLogger("crm.contacts.imports")

CHUNK_ROWS = 5000
LEASE_SECONDS = 60.0
POLL_INTERVAL = 1.0
# A chunk that fails this often (not for a database outage) fails its import instead of blocking the job.
MAX_CHUNK_ATTEMPTS = 5
OPEN = (imports.PENDING, imports.RUNNING)


class DefinitionsChanged(Exception):
    """An attribute the import maps to was deleted or defined anew since the rows were read; read them again."""


class ImportRunner(LeasedRunner):
    """Claims imports and applies them; used by the worker's job and by `crm contacts import`.

    Claiming, locking, releasing and failing are the kit's LeasedRunner. An import is held while pending too:
    one stored by `submit` is pending and already leased to this runner (the CLI's way), so a claim takes an
    open import only once its lease, if any, has expired.
    """

    model, noun, holding = ContactImport, "import", OPEN

    def __init__(self, runtime: Runtime, *, chunk_rows: int = CHUNK_ROWS, lease_seconds: float = LEASE_SECONDS,
                 owner: str | None = None):
        super().__init__(runtime, lease_seconds=lease_seconds, owner=owner)
        self.chunk_rows = chunk_rows

    def claimable(self, now: datetime):
        """Pending or running, with no lease or an expired one."""
        m = ContactImport
        return and_(m.status.in_(OPEN), or_(m.lease_until.is_(None), m.lease_until < now))

    def _on_fail(self, session, held: ContactImport) -> None:
        imports.drop_file(session, held.id)

    def submit(self, data: bytes, mapping: dict, *, requested_by: str) -> ContactImport:
        """Store an import already leased to this runner, to apply it here with run_here (the CLI's way)."""
        return imports.submit_import(self.runtime.uow(), data, mapping, requested_by=requested_by,
                                     lease_owner=self.owner, lease_seconds=self.lease.total_seconds())

    def run_here(self, import_id: uuid.UUID, *, on_chunk: Callable[[ContactImport], None] | None = None
                 ) -> ContactImport:
        """Apply a submitted import in this process, as the worker would; returns it as it ended.

        Interrupted (Ctrl-C), the import is failed, keeping the chunks applied so far, rather than left for a
        worker to finish: whoever pressed Ctrl-C meant it to stop.
        """
        try:
            self.run_import(import_id, on_chunk=on_chunk)
        except KeyboardInterrupt:
            self.fail(import_id, "Interrupted from the command line; the rows before the last checkpoint "
                                 "(processed) were applied.")
            raise
        return imports.get_import(self.runtime.uow(read_only=True), import_id)

    def run_import(self, import_id: uuid.UUID, *, stop: threading.Event | None = None,
                   on_chunk: Callable[[ContactImport], None] | None = None) -> str:
        """Apply a claimed import from its checkpoint to the end (or until `stop`); returns its status.

        `on_chunk` is called with the import after each committed chunk (the CLI's progress bar).
        """
        with self.runtime.session_factory() as session:
            state = session.scalar(select(ContactImport).where(ContactImport.id == import_id))
            content = session.scalar(select(ContactImportFile.content)
                                     .where(ContactImportFile.import_id == import_id))
            definitions = imports.attribute_definitions(session, imports.mapped_attributes(state.mapping))
        if state.status not in OPEN:
            return state.status
        if content is None:
            self.fail(import_id, "The import's file is missing.")
            return imports.FAILED
        reader = import_rows.reader_for(content, state.mapping, definitions)
        rows = imports.data_rows(content)
        first_rows = import_rows.resume_point(reader, rows, state.processed)
        ahead: list = []  # the chunk read and not yet applied, or what reading it raised

        def read_chunk() -> None:
            try:
                chunk = list(itertools.islice(rows, self.chunk_rows))
                ahead.append(import_rows.check_chunk(reader, chunk, first_rows))
            except Exception as exc:  # noqa: BLE001 - raised when its chunk is due: the chunk before still commits
                ahead.append(exc)

        read_chunk()
        done = state.processed
        while True:
            checked = ahead.pop()
            if isinstance(checked, Exception):
                raise checked
            last = done + checked.size >= state.total_rows or checked.size < self.chunk_rows
            # The next chunk is read while the database writes this one (apply_rows' `meanwhile`).
            state = self._commit_chunk(import_id, checked, expected=done, last=last,
                                       correlation_id=state.correlation_id, definitions=definitions,
                                       meanwhile=None if last else read_chunk)
            done = state.processed
            if on_chunk is not None:
                on_chunk(state)
            if last:
                return state.status
            if stop is not None and stop.is_set():
                self.release(import_id)
                return state.status

    # -- one chunk ---------------------------------------------------------------------------------------
    def _commit_chunk(self, import_id: uuid.UUID, checked: import_rows.CheckedChunk, *, expected: int, last: bool,
                      correlation_id: str | None, definitions: dict,
                      meanwhile: Callable[[], None] | None = None) -> ContactImport:
        with self.runtime.uow(correlation_id=correlation_id) as uow:
            session = uow.session
            held = self.lock(session, import_id)
            if held.processed != expected:
                raise LeaseLost(f"import {import_id} is at row {held.processed}, not {expected}")
            self._hold(session, definitions, held.mapping)
            outcome = apply_rows(uow, checked.rows, meanwhile=meanwhile)
            errors = checked.errors + [import_rows.row_error(row, "tags", import_rows.TOO_MANY_TAGS)
                                       for row in outcome.refused_rows]
            if errors:
                errors.sort(key=lambda error: error["row"])  # stable: a row's values keep their order
                session.execute(insert(ContactImportError), [{"import_id": import_id, **error} for error in errors])
            now = utcnow()
            held.processed += checked.size
            held.created += outcome.created
            held.updated += outcome.updated
            held.unchanged += outcome.unchanged
            held.failed += checked.failed + len(outcome.refused_rows)
            held.lease_until = now + self.lease
            if last:
                held.status, held.finished_at = imports.COMPLETED, now
                held.lease_owner = held.lease_until = None
                imports.drop_file(session, import_id)
            uow.commit()
            return held

    @staticmethod
    def _hold(session, definitions: dict, mapping: dict) -> None:
        """Lock the mapped attributes' definitions (shared) and check they are the ones the rows were read with."""
        names = imports.mapped_attributes(mapping)
        if not names:
            return
        held = imports.attribute_definitions(session, names, lock=True)
        if {name: d.seq for name, d in held.items()} != {name: d.seq for name, d in definitions.items()}:
            raise DefinitionsChanged(f"attribute definitions changed under the import: {', '.join(names)}")


class ImportJob(ClaimingJob):
    """The worker's background job: claim an import, run it to the end, look again; it survives any failure.

    Imports have no schedule: the job only claims what was submitted.
    """

    what, log = "an import", log

    def __init__(self, runtime: Runtime, *, poll_interval: float = POLL_INTERVAL, **runner_options):
        super().__init__(poll_interval=poll_interval, schedule_every=None)
        self.runner = ImportRunner(runtime, **runner_options)
        self._failures: dict[uuid.UUID, int] = {}

    def run_once(self, stop: threading.Event | None = None) -> bool:
        """Claim one import and run it; False when none was waiting (or the database is unavailable)."""
        import_id = self.runner.claim()
        if import_id is None:
            return False
        try:
            status = self.runner.run_import(import_id, stop=stop)
        except LeaseLost as exc:
            log.warning("import %s taken over by another worker: %s", import_id, exc,
                        extra={"event": "import.lease_lost", "import_id": str(import_id)})
            return True
        except DefinitionsChanged:
            self.runner.release(import_id)  # claimed again at once, its rows read with today's definitions
            return True
        except Exception as exc:  # noqa: BLE001 - one import's failure must not end the job
            return self._failed(import_id, exc)
        self._failures.pop(import_id, None)
        log.info("import %s %s", import_id, status, extra={"event": f"import.{status}", "import_id": str(import_id)})
        return True

    def _failed(self, import_id: uuid.UUID, exc: Exception) -> bool:
        if is_database_unavailable(exc):
            # Not the import's fault: keep its retries, and let the lease expire (releasing needs the database).
            log.warning("import %s paused: database unavailable (%s)", import_id, type(exc).__name__,
                        extra={"event": "import.database_unavailable", "import_id": str(import_id)})
            return False
        attempts = self._failures[import_id] = self._failures.get(import_id, 0) + 1
        log.error("import %s: a chunk failed (attempt %d of %d)", import_id, attempts, MAX_CHUNK_ATTEMPTS,
                  exc_info=exc, extra={"event": "import.chunk_failed", "import_id": str(import_id)})
        if attempts < MAX_CHUNK_ATTEMPTS:
            self._release(import_id)  # claimed again, by this worker or another, and the chunk tried again
            return True
        self._failures.pop(import_id, None)
        try:
            self.runner.fail(import_id, f"Applying a chunk of rows failed {attempts} times ({type(exc).__name__}); "
                                        "the contacts worker's log has the details.")
        except Exception:  # noqa: BLE001 - the lease expires on its own and the next claim fails it again
            log.warning("could not mark import %s failed", import_id, exc_info=True)
        return True
