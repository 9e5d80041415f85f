"""Weak entity tags over a record's version number, and the If-Match precondition (RFC 9110 §13.1.1, RFC 6585 §3).

A view parses If-Match once into a `Precondition` and hands it to its use case, which checks it against the
version it reads under lock: 428 when the use case requires one and none was sent, 412 when it is stale.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .problems import PreconditionFailed, Problem

_ENTITY_TAG = re.compile(r'\s*(?:W/)?"(\d{1,18})"\s*')

ANY, VERSIONS, MISSING = "any", "versions", "missing"


class PreconditionRequired(Problem):
    status, slug, title = 428, "precondition-required", "Precondition required"


def etag(version: int) -> str:
    """The weak entity tag of a version."""
    return f'W/"{version}"'


@dataclass(frozen=True)
class Precondition:
    """What If-Match says: `any` current version (`*`), one of `versions`, or nothing (`missing`)."""

    kind: str
    versions: frozenset[int] = frozenset()

    @classmethod
    def from_request(cls) -> Precondition:
        """The current Flask request's If-Match."""
        from flask import request

        return cls.from_header(request.headers.get("If-Match"))

    @classmethod
    def from_header(cls, header: str | None) -> Precondition:
        """Parse an If-Match value; absent or blank is `missing`.

        Compared weakly, since the tags are weak. A tag this API never issued names no version, so it never
        matches (412), rather than being ignored.
        """
        if header is None or not header.strip():
            return NO_PRECONDITION
        if header.strip() == "*":
            return ANY_VERSION
        return cls(VERSIONS, frozenset(int(found.group(1)) for tag in header.split(",")
                                       if (found := _ENTITY_TAG.fullmatch(tag))))

    @classmethod
    def of(cls, *versions: int) -> Precondition:
        """A precondition naming these versions (for callers that are not HTTP views)."""
        return cls(VERSIONS, frozenset(versions))

    @property
    def missing(self) -> bool:
        return self.kind == MISSING

    def holds(self, current_version: int) -> bool:
        """True when the caller's belief matches the version in force (nothing demanded holds too)."""
        return self.kind != VERSIONS or current_version in self.versions

    def check(self, current_version: int, *, required: bool, what: str) -> None:
        """Raise 428 when `required` and nothing was sent, 412 when the version named is not `current_version`.

        `what` names the record in the messages, e.g. "the contract's terms".
        """
        if self.missing and required:
            raise PreconditionRequired(f'Send If-Match: {etag(current_version)} (the ETag of {what}) to change it.',
                                       current_version=current_version)
        if not self.holds(current_version):
            raise PreconditionFailed(f"{what[0].upper()}{what[1:]} changed meanwhile; the current version is "
                                     f"{current_version}. Fetch it again and retry.", current_version=current_version)


ANY_VERSION = Precondition(ANY)
NO_PRECONDITION = Precondition(MISSING)
