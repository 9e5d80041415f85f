"""CSV import throughput: the worker's chunked import against a raw COPY of the same rows into a bare table.

Run with `.venv/bin/python tests/bench/bench_import.py`. Both sides take the same CSV file (BENCH_IMPORT_ROWS rows,
default 100,000: e-mail, first and last name, company, job title, phone) on one PostgreSQL database of their own:

- raw COPY: `COPY bare FROM STDIN (FORMAT csv, HEADER)` of the file's bytes into a table without indexes;
- SQL floor: the same rows from the bare table into `contacts` (with its indexes) and one outbox row each, by two
  INSERT ... SELECT statements on a database of their own: no validation, no events' JSON, no checkpoints;
  what any import that keeps the contacts' indexes and writes an event per contact pays at the least;
- import: the code path of the contacts worker's import job (`ImportRunner.claim` + `run_import`): every row
  read and validated, upserted into `contacts` by e-mail in chunks, an outbox event per new contact, a
  checkpoint per chunk. Timed from the claim to the completed import; storing the upload (what the POST does)
  is printed beside it. Then the same file once more, where every row is unchanged.

Prints rows per second of each and the ratio import / raw COPY, and the load average before and after.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import psycopg  # noqa: E402

from crm.registry import SUITE  # noqa: E402
from services.common.settings import from_env  # noqa: E402
from services.contacts import imports  # noqa: E402
from services.contacts.app import build  # noqa: E402
from services.contacts.import_jobs import CHUNK_ROWS, ImportRunner  # noqa: E402
from tests.support import infra  # noqa: E402

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
MAPPING = {"E-mail": "email", "First name": "first_name", "Last name": "last_name", "Company": "company",
           "Job title": "job_title", "Phone": "phone"}


def csv_file(rows: int) -> bytes:
    """The benchmark's file: unique addresses over 50 domains, every column filled."""
    lines = [",".join(MAPPING)]
    lines += [f"person{i}@example{i % 50}.com,First{i},Last{i},Company {i % 300},Engineer,+1 555 {i:07d}"
              for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def raw_copy(url: str, data: bytes) -> float:
    """Seconds to COPY the file into a bare table (no indexes, no checks): the ceiling."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE bare (email text, first_name text, last_name text, company text, "
                     "job_title text, phone text)")
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy("COPY bare FROM STDIN (FORMAT csv, HEADER true)") as copy:
            copy.write(data)
        conn.commit()
        elapsed = time.perf_counter() - started
        assert conn.execute("SELECT count(*) FROM bare").fetchone()[0] == ROWS
    return elapsed


def sql_floor(data: bytes) -> float:
    """Seconds to write the rows into contacts (its indexes) and an outbox row each, set-based, nothing checked."""
    url = infra.create_database("bench_floor")
    try:
        SUITE.migrate("contacts", url)
        raw_copy(url, data)
        with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
            started = time.perf_counter()
            conn.execute("INSERT INTO contacts (id, email, email_normalized, first_name, last_name, company, "
                         "job_title, phone, tags, attributes, consents, created_at, updated_at, version) "
                         "SELECT gen_random_uuid(), email, lower(email), first_name, last_name, company, job_title, "
                         "phone, '[]', '{}', '{}', now(), now(), 1 FROM bare ORDER BY lower(email)")
            conn.execute("INSERT INTO outbox (event_id, event_type, payload, created_at, attempts) "
                         "SELECT gen_random_uuid(), 'crm.contact.created', '{}', now(), 0 FROM bare")
            conn.commit()
            return time.perf_counter() - started
    finally:
        infra.drop_database(url)


def import_once(runtime, data: bytes) -> tuple[float, float, imports.ContactImport]:
    """(seconds to store the upload, seconds for the worker's part, the finished import)."""
    started = time.perf_counter()
    submitted = imports.submit_import(runtime.uow(), data, MAPPING, requested_by="bench")
    stored = time.perf_counter() - started
    runner = ImportRunner(runtime)
    started = time.perf_counter()
    assert runner.claim() == submitted.id
    assert runner.run_import(submitted.id) == imports.COMPLETED
    applied = time.perf_counter() - started
    return stored, applied, imports.get_import(runtime.uow(read_only=True), submitted.id)


def main() -> None:
    load_before = os.getloadavg()
    data = csv_file(ROWS)
    url = infra.create_database("bench_import")
    try:
        SUITE.migrate("contacts", url)
        runtime = build(from_env("contacts", {"CONTACTS_DATABASE_URL": url,
                                              "CRM_IDENTITY_PUBLIC_KEY": infra.IDENTITY_PUBLIC_KEY}))
        copy_seconds = raw_copy(url, data)
        floor_seconds = sql_floor(data)
        stored, applied, first = import_once(runtime, data)
        assert (first.created, first.failed) == (ROWS, 0)
        stored_again, applied_again, again = import_once(runtime, data)
        assert again.unchanged == ROWS
        runtime.engine.dispose()
    finally:
        infra.drop_database(url)
    copy_rate, import_rate, again_rate = ROWS / copy_seconds, ROWS / applied, ROWS / applied_again
    floor_rate = ROWS / floor_seconds
    print(f"CSV import, {ROWS:,} rows ({len(data) / 1e6:.1f} MB), chunks of {CHUNK_ROWS:,}, PostgreSQL on loopback")
    print(f"  raw COPY into a bare table        {copy_rate:10,.0f} rows/s  ({copy_seconds:.2f} s)")
    print(f"  SQL floor: INSERT ... SELECT        {floor_rate:10,.0f} rows/s  ({floor_seconds:.2f} s; contacts and "
          "outbox rows, nothing checked)")
    print(f"  import, new contacts (worker)     {import_rate:10,.0f} rows/s  ({applied:.2f} s; storing the "
          f"upload {stored:.2f} s)")
    print(f"  import, same file again (no-op)   {again_rate:10,.0f} rows/s  ({applied_again:.2f} s; storing "
          f"{stored_again:.2f} s)")
    print(f"  ratio import / raw COPY: {import_rate / copy_rate:.3f}  (unchanged rows: {again_rate / copy_rate:.3f}); "
          f"import / SQL floor: {import_rate / floor_rate:.2f}")
    load_after = os.getloadavg()
    print(f"  load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
