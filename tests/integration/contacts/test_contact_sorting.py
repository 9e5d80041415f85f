"""`sort=` on the contact list, on PostgreSQL: every contact once in the asked order, nulls last, cursors bound to their sort."""
from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, select

from services.common.pagination import encode_cursor
from services.contacts.filters import SORT_COLUMNS
from services.contacts.models import Contact
from tests.support.auth import identity_headers
from tests.support.sorting import expected_order, walk

BASE = "/api/v1/contacts"
READ = identity_headers("contacts:read")
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
LAST_NAMES = ["moss", "hart", None, "hart", "king", "moss", None, "baker", "hart", "king", "moss", "baker", "cole"]


@pytest.fixture
def contacts(runtime):
    """13 contacts stored in an order no sort gives: ties in every column, nulls in the optional ones."""
    with runtime.session_factory() as s, s.begin():
        for i, last in enumerate(LAST_NAMES):
            email = f"p{(i * 5) % 13:02d}@example.com"
            s.add(Contact(email=email.upper() if i % 2 else email, email_normalized=email, last_name=last,
                          first_name=None if i % 4 == 1 else ["ann", "bob", "cat"][i % 3],
                          company=None if i % 3 == 2 else ["acme", "globex"][i % 2],
                          created_at=T0 + timedelta(hours=i // 4), updated_at=T0 + timedelta(hours=(i * 7) % 5)))
    with runtime.session_factory() as s:
        return list(s.scalars(select(Contact)))


def _value(contact: Contact, name: str):
    return contact.email_normalized if name == "email" else getattr(contact, name)


@pytest.mark.parametrize("name", sorted(SORT_COLUMNS))
@pytest.mark.parametrize("descending", [False, True], ids=["asc", "desc"])
def test_every_sort_walks_every_contact_once_in_order_with_nulls_last(client, contacts, name, descending):
    items, pages = walk(client, BASE, READ, limit=4, sort=("-" if descending else "") + name)

    expected = expected_order(contacts, lambda c: _value(c, name), lambda c: c.seq, descending=descending)
    assert [i["id"] for i in items] == [str(c.id) for c in expected]
    assert pages == 4  # 13 contacts, 4 a page: no empty last page


def test_contacts_created_at_the_same_moment_are_ordered_by_their_sequence(client, contacts):
    oldest, _ = walk(client, BASE, READ, limit=3, sort="created_at")
    newest, _ = walk(client, BASE, READ, limit=3, sort="-created_at")

    first_four = [str(c.id) for c in sorted(contacts, key=lambda c: c.seq)[:4]]  # all created at T0
    assert [i["id"] for i in oldest[:4]] == first_four
    assert [i["id"] for i in newest] == [i["id"] for i in reversed(oldest)]


def test_without_a_sort_the_list_stays_newest_first_and_a_cursor_from_before_sort_still_works(client, contacts):
    by_seq = sorted(contacts, key=lambda c: c.seq, reverse=True)

    items, _ = walk(client, BASE, READ, limit=5)
    resumed = client.get(BASE, headers=READ, query_string={"limit": 2, "cursor": encode_cursor(by_seq[3].seq)})

    assert [i["id"] for i in items] == [str(c.id) for c in by_seq]
    assert [i["id"] for i in resumed.json["items"]] == [str(c.id) for c in by_seq[4:6]]


def test_a_sort_combines_with_the_filters(client, contacts):
    items, _ = walk(client, BASE, READ, limit=2, sort="-last_name", q="globex")

    matching = [c for c in contacts if c.company == "globex"]
    expected = expected_order(matching, lambda c: c.last_name, lambda c: c.seq, descending=True)
    assert [i["id"] for i in items] == [str(c.id) for c in expected]


def test_each_page_of_a_sorted_list_is_one_query(client, contacts, runtime):
    sent = []
    record = lambda _conn, _cursor, statement, *_rest: sent.append(statement)
    first = client.get(BASE, headers=READ, query_string={"limit": 4, "sort": "-company"}).json
    event.listen(runtime.engine, "before_cursor_execute", record)
    try:
        r = client.get(BASE, headers=READ, query_string={"limit": 4, "sort": "-company",
                                                         "cursor": first["next_cursor"]})
    finally:
        event.remove(runtime.engine, "before_cursor_execute", record)

    assert r.status_code == 200 and len(r.json["items"]) == 4
    assert len([s for s in sent if s.lstrip().upper().startswith("SELECT")]) == 1
    assert "OFFSET" not in sent[-1].upper()


def _problem(r, field: str) -> list[str]:
    assert r.status_code == 422 and r.content_type.startswith("application/problem+json"), r.get_data(as_text=True)
    return r.json["errors"][field]


@pytest.mark.parametrize("bad", ["colour", "--email", "+email", "email,last_name", "phone", ""])
def test_an_unknown_sort_is_a_422_naming_sort_and_listing_the_allowed_values(client, contacts, bad):
    [message] = _problem(client.get(BASE, headers=READ, query_string={"sort": bad}), "sort")

    assert all(name in message for name in ("created_at", "-last_name", "email", "-company"))


def test_a_cursor_is_bound_to_its_sort(client, contacts):
    by_name = client.get(BASE, headers=READ, query_string={"limit": 2, "sort": "last_name"}).json["next_cursor"]
    newest = client.get(BASE, headers=READ, query_string={"limit": 2}).json["next_cursor"]

    for sort, cursor in (("-last_name", by_name), ("email", by_name), ("last_name", newest), (None, by_name)):
        query = {"limit": 2, "cursor": cursor, **({"sort": sort} if sort else {})}
        assert _problem(client.get(BASE, headers=READ, query_string=query), "cursor")


def _forged(*position) -> str:
    return base64.urlsafe_b64encode(("k:" + json.dumps(list(position))).encode()).decode().rstrip("=")


@pytest.mark.parametrize("sort, cursor", [
    ("last_name", _forged("last_name", "i", "5", 3)),  # a number for a text column
    ("created_at", _forged("created_at", "t", "2026-03-01T09:00:00", 3)),  # no time zone
    ("created_at", _forged("created_at", "s", "yesterday", 3)),
    ("last_name", _forged("last_name", "s", "x\u0000", 3)),  # PostgreSQL text cannot hold NUL
    ("last_name", _forged("last_name", "s", "hart", 2**63)),  # past the largest BIGINT
    ("last_name", _forged("last_name", "s", "hart", "3; DROP TABLE contacts")),
    ("email", "not a cursor"),
])
def test_a_forged_cursor_is_a_422_naming_cursor_and_never_reaches_the_database(client, contacts, sort, cursor):
    assert _problem(client.get(BASE, headers=READ, query_string={"sort": sort, "cursor": cursor}), "cursor")
