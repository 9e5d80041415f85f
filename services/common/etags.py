"""Weak entity tags over a record's version number, and reading them back from If-Match (RFC 9110 §13.1.1)."""
from __future__ import annotations

import re

_ENTITY_TAG = re.compile(r'\s*(?:W/)?"(\d{1,18})"\s*')


def etag(version: int) -> str:
    """The weak entity tag of a version."""
    return f'W/"{version}"'


def if_match_versions(header: str) -> frozenset[int] | None:
    """The versions an If-Match value names; None for `*` (any current version).

    Compared weakly, since the tags are weak. A tag this API never issued names no version, so it never matches.
    """
    if header.strip() == "*":
        return None
    return frozenset(int(found.group(1)) for tag in header.split(",") if (found := _ENTITY_TAG.fullmatch(tag)))
