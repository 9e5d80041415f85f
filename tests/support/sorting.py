"""Walking a `sort=` list page by page, and the order a sort must give, for the lists' sorting tests."""
from __future__ import annotations


def walk(client, url: str, headers: dict, *, limit: int, **query) -> tuple[list[dict], int]:
    """Every item of a list, following `next_cursor` page by page: (items, number of pages)."""
    items, cursor, pages = [], None, 0
    while True:
        r = client.get(url, headers=headers, query_string={**query, "limit": limit,
                                                            **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.get_data(as_text=True)
        body = r.get_json()
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items, pages
        assert pages < 1000, "the cursor never ends"


def expected_order(rows, value, seq, *, descending: bool) -> list:
    """`rows` as a sort orders them: by `value(row)` with ties by `seq(row)`, both in one direction, nulls last."""
    present = sorted((r for r in rows if value(r) is not None), key=lambda r: (value(r), seq(r)), reverse=descending)
    absent = sorted((r for r in rows if value(r) is None), key=seq, reverse=descending)
    return present + absent
