"""`sort=` keyset pagination: every row exactly once in the requested order, nulls last, cursors bound to their sort."""
from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import ValidationError
from sqlalchemy import (
    Boolean,
    Date,
    Integer,
    Numeric,
    String,
    Uuid,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.orm import Mapped, Session, mapped_column

from services.common.db import SeqType, make_base
from services.common.pagination import (
    PageArgs,
    decode_sort_cursor,
    encode_cursor,
    encode_sort_cursor,
    paginate,
    sort_field,
)
from services.common.problems import Unprocessable

Base = make_base()
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Item(Base):
    __tablename__ = "items"
    seq: Mapped[int] = mapped_column(SeqType, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(40))
    score: Mapped[int | None] = mapped_column(Integer)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    day: Mapped[date | None] = mapped_column(Date)
    flag: Mapped[bool | None] = mapped_column(Boolean)
    ref: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    created_at: Mapped[datetime]


COLUMNS = {"name": Item.name, "score": Item.score, "amount": Item.amount, "day": Item.day, "flag": Item.flag,
           "ref": Item.ref, "created_at": Item.created_at, "lower_name": func.lower(Item.name, type_=String())}


class ItemQuery(PageArgs):
    sort = sort_field("name", "score", "created_at")


@pytest.fixture(scope="module")
def session():
    yield from filled_session(create_engine("sqlite://"))


def filled_session(engine):
    """A session on `engine` with the 23 items every test walks."""
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        # 23 rows with many ties and a null in every sortable column, in an order unlike any sort's.
        for i in range(23):
            s.add(Item(name=None if i % 7 == 3 else ["b", "a", "C", "a"][i % 4],
                       score=None if i % 5 == 0 else (i * 3) % 4,
                       amount=None if i % 6 == 1 else Decimal(i % 3) + Decimal("0.25"),
                       day=None if i % 4 == 2 else date(2024, 1, 1 + i % 3),
                       flag=None if i % 8 == 5 else i % 2 == 0,
                       ref=None if i % 9 == 4 else uuid.UUID(int=(i * 7919) % 5),
                       created_at=T0 + timedelta(minutes=i // 5)))  # five rows share each time
        s.commit()
        yield s


def _value(item, name):
    return getattr(item, name) if name != "lower_name" else (item.name.lower() if item.name else None)


def _expected(session, name, descending):
    items = list(session.scalars(select(Item)))
    present = sorted((i for i in items if _value(i, name) is not None), key=lambda i: (_value(i, name), i.seq),
                     reverse=descending)
    absent = sorted((i for i in items if _value(i, name) is None), key=lambda i: i.seq, reverse=descending)
    return [i.seq for i in present + absent]


def _walk(session, sort, limit):
    seen, cursor, pages = [], None, 0
    while True:
        page = paginate(session, select(Item), Item.seq, limit=limit, cursor=cursor, sort=sort, columns=COLUMNS)
        seen += [i.seq for i in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages


@pytest.mark.parametrize("name", sorted(COLUMNS))
@pytest.mark.parametrize("descending", [False, True])
@pytest.mark.parametrize("limit", [1, 4, 23])
def test_walking_a_sort_returns_every_row_once_in_order_with_nulls_last(session, name, descending, limit):
    seen, pages = _walk(session, ("-" if descending else "") + name, limit)

    assert seen == _expected(session, name, descending)
    assert pages == -(-23 // limit)  # no empty last page, not even when the rows fill the pages exactly


def test_rows_with_the_same_created_at_are_ordered_by_seq_in_the_sort_direction(session):
    newest, _ = _walk(session, "-created_at", 2)
    oldest, _ = _walk(session, "created_at", 2)

    assert newest[:5] == [23, 22, 21, 20, 19] and oldest[:5] == [1, 2, 3, 4, 5]
    assert newest == oldest[::-1]


def test_without_a_sort_the_list_is_newest_first_by_seq_and_todays_cursors_still_work(session):
    page = paginate(session, select(Item), Item.seq, limit=3, cursor=encode_cursor(10))

    assert [i.seq for i in page["items"]] == [9, 8, 7]
    assert page["next_cursor"] == encode_cursor(7)


def test_each_page_is_one_query(session):
    statements = []
    listener = lambda *args: statements.append(args[2])
    event.listen(session.get_bind(), "before_cursor_execute", listener)
    try:
        first = paginate(session, select(Item), Item.seq, limit=5, cursor=None, sort="-amount", columns=COLUMNS)
        paginate(session, select(Item), Item.seq, limit=5, cursor=first["next_cursor"], sort="-amount",
                 columns=COLUMNS)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listener)
    # Keyset: the second page starts after the first page's last (amount, seq), it does not skip rows.
    assert len(statements) == 2 and "(items.amount, items.seq) < (?, ?)" in statements[1]


def _problem_field(call) -> str:
    with pytest.raises(Unprocessable) as err:
        call()
    return next(iter(err.value.extra["errors"]))


def test_a_cursor_made_for_another_sort_is_a_422_naming_the_cursor(session):
    by_name = paginate(session, select(Item), Item.seq, limit=2, cursor=None, sort="name", columns=COLUMNS)
    plain = paginate(session, select(Item), Item.seq, limit=2, cursor=None)

    for sort, cursor in (("-name", by_name["next_cursor"]), ("score", by_name["next_cursor"]),
                         ("name", plain["next_cursor"]), (None, by_name["next_cursor"])):
        assert _problem_field(lambda cursor=cursor, sort=sort: paginate(
            session, select(Item), Item.seq, limit=2, cursor=cursor, sort=sort, columns=COLUMNS)) == "cursor"


def _forged(*position, kind="k") -> str:
    return base64.urlsafe_b64encode(f"{kind}:{json.dumps(list(position))}".encode()).decode().rstrip("=")


@pytest.mark.parametrize("cursor", [
    "zzz", "!!!", _forged("score", "i", "1", 5)[:-2] + "@@",
    _forged("score", "s", "1", 5),  # a string for an integer column
    _forged("score", "i", "01", 5), _forged("score", "i", "1e3", 5), _forged("score", "i", " 1", 5),
    _forged("score", "i", str(2**63), 5), _forged("score", "i", 1, 5),
    _forged("score", "i", "1", 0), _forged("score", "i", "1", 2**63), _forged("score", "i", "1", "5"),
    _forged("score", "i", "1", True), _forged("score", "i", "1", 5.0), _forged("score", "i", "1", 5, 6),
    _forged("score", "i", "1"), _forged("score", "n", "1", 5), _forged("score", "x", "1", 5),
    _forged("score", "i", "1", 5, kind="q"), _forged("score", "i", "1" * 5000, 5),
])
def test_a_tampered_cursor_is_a_422_naming_the_cursor(session, cursor):
    assert _problem_field(lambda: paginate(session, select(Item), Item.seq, limit=2, cursor=cursor, sort="score",
                                           columns=COLUMNS)) == "cursor"


@pytest.mark.parametrize("tag, column, text", [
    ("s", "name", "a\x00"), ("d", "amount", "NaN"), ("d", "amount", "1.50e2"), ("d", "amount", "+1.5"),
    ("t", "created_at", "2024-05-01T12:00:00"), ("t", "created_at", "2024-05-01 12:00:00+00:00"),
    ("D", "day", "2024-1-01"), ("b", "flag", "True"), ("u", "ref", "{00000000-0000-0000-0000-000000000001}"),
])
def test_a_forged_value_that_is_not_in_its_canonical_form_never_reaches_the_query(session, tag, column, text):
    assert _problem_field(lambda: decode_sort_cursor(_forged(column, tag, text, 5), column, tag)) == "cursor"


def test_nan_and_floats_in_the_cursor_json_are_refused():
    raw = base64.urlsafe_b64encode(b'k:["score","i",NaN,5]').decode()

    assert _problem_field(lambda: decode_sort_cursor(raw, "score", "i")) == "cursor"


@given(st.one_of(st.none(), st.text(alphabet=st.characters(blacklist_characters="\x00")), st.booleans(),
                 st.integers(min_value=-2**63, max_value=2**63 - 1),
                 st.decimals(allow_nan=False, allow_infinity=False, places=4, max_value=10**12, min_value=-10**12),
                 st.datetimes(timezones=st.just(UTC)), st.dates(), st.uuids()),
       st.integers(min_value=1, max_value=2**63 - 1))
def test_sorted_cursors_round_trip_every_value_type(value, seq):
    cursor = encode_sort_cursor("x", value, seq)
    tag = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))[2:])[1]

    assert decode_sort_cursor(cursor, "x", tag) == (value, seq)


def test_an_unknown_sort_is_a_422_naming_sort(session):
    assert _problem_field(lambda: paginate(session, select(Item), Item.seq, limit=2, cursor=None, sort="-colour",
                                           columns=COLUMNS)) == "sort"


def test_the_sort_field_accepts_only_its_names_in_either_direction_and_lists_them():
    assert ItemQuery().load({})["sort"] == "-created_at"
    assert ItemQuery().load({"sort": "-score"})["sort"] == "-score"
    for bad in ("colour", "--name", "+name", "name,score", ""):
        with pytest.raises(ValidationError) as err:
            ItemQuery().load({"sort": bad})
        assert "-score" in err.value.messages["sort"][0] and "created_at" in err.value.messages["sort"][0]


def test_a_list_that_keeps_todays_order_has_no_default_sort():
    class Legacy(PageArgs):
        sort = sort_field("name", default=None)

    assert Legacy().load({})["sort"] is None
    with pytest.raises(ValueError):
        sort_field("name")  # "-created_at" is not among its names
