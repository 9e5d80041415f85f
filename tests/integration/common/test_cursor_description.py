"""The engine's cursors make `description` on first use: the same columns as psycopg's own, on the real PostgreSQL."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text

from services.common.db import make_engine

pytestmark = pytest.mark.integration

QUERY = ("SELECT 1::bigint AS n, 'x'::varchar(20) AS name, 1.5::numeric(18, 4) AS amount, now() AS at, "
         "'{\"a\": 1}'::jsonb AS doc, ARRAY['a', 'b'] AS tags, NULL::uuid AS id, true AS flag")


def _columns(description) -> list[tuple]:
    return [(*column, column.type_display) for column in description]


def test_a_lazy_description_matches_psycopgs_and_stays_with_its_result(make_database):
    engine = make_engine(make_database("cursor_description"))
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            plain = psycopg.Cursor(raw)
            plain.execute(QUERY)
            expected = _columns(plain.description)
            assert [column[0] for column in expected] == ["n", "name", "amount", "at", "doc", "tags", "id", "flag"]

            cursor = raw.cursor()
            cursor.execute(QUERY)
            description = cursor.description
            assert type(cursor).__name__ == "_Cursor" and len(description) == 8
            cursor.execute("SELECT 2 AS other")  # read after the cursor moved on: still the first result's columns
            assert _columns(description) == expected
            assert description[1].name == "name" and description[-1][0] == "flag"
            assert cursor.description[0].name == "other"
            cursor.execute("SET search_path TO public")
            assert cursor.description is None and plain.description is not None

            # Through SQLAlchemy, whose result metadata reads it: keys and values as before.
            for _ in range(2):  # the second run takes the cached metadata
                result = conn.execute(text(QUERY))
                assert list(result.keys()) == [column[0] for column in expected]
                assert result.one().name == "x"
    finally:
        engine.dispose()
