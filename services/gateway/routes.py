"""The gateway's route table: which upstream serves a path; derived from the suite registry or read from a JSON file."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

PARTNER_PORTAL = "/api/v1/partner-portal"
_PARAMETER = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")  # a path template's segment such as {import_id}


class RouteTableError(ValueError):
    """The route table file is missing or malformed; the message names the file."""


def under(path: str, prefix: str) -> bool:
    """True when `path` is `prefix` itself or below it (a match only at a path-segment boundary)."""
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class Route:
    prefix: str
    upstream: str


@dataclass(frozen=True)
class RouteTable:
    """Path prefixes mapped to upstream names; longest prefix wins."""

    routes: tuple[Route, ...]
    optional: frozenset[str] = frozenset()
    # Paths (templates: /api/v1/contacts/{id}/photo) whose bodies may be uploads up to CRM_MAX_UPLOAD_BYTES.
    uploads: tuple[str, ...] = ()

    @classmethod
    def from_mapping(cls, routes: Mapping[str, str], optional=(), *, uploads: Iterable[str] = (),
                     source: str = "route table") -> RouteTable:
        """Build and validate a table from {prefix: upstream} and the upload routes' paths."""
        if not isinstance(routes, Mapping) or not routes:
            raise RouteTableError(f"{source}: 'routes' must be a non-empty object of prefix -> upstream")
        parsed = []
        for prefix, upstream in routes.items():
            if not isinstance(prefix, str) or not prefix.startswith("/") or "//" in prefix:
                raise RouteTableError(f"{source}: route prefix {prefix!r} must be an absolute path like /api/v1/leads")
            if not isinstance(upstream, str) or not upstream:
                raise RouteTableError(f"{source}: route {prefix!r} must name an upstream service")
            parsed.append(Route(prefix.rstrip("/") or "/", upstream))
        if len({r.prefix for r in parsed}) != len(parsed):
            raise RouteTableError(f"{source}: a prefix is listed twice")
        # Longest first, so the first match is the most specific one.
        parsed.sort(key=lambda r: len(r.prefix), reverse=True)
        if isinstance(optional, str) or not all(isinstance(o, str) for o in optional):
            raise RouteTableError(f"{source}: 'optional' must be a list of upstream names")
        if isinstance(uploads, str) or not all(isinstance(u, str) for u in uploads):
            raise RouteTableError(f"{source}: 'uploads' must be a list of paths")
        table = cls(tuple(parsed), frozenset(optional), tuple(uploads))
        for path in table.uploads:
            if not path.startswith("/") or "//" in path or table.match(path) is None:
                raise RouteTableError(f"{source}: upload route {path!r} must be an absolute path that a route serves")
        return table

    @classmethod
    def load(cls, path: str | Path) -> RouteTable:
        """Read a route-table file (CRM_GATEWAY_ROUTES); the default table comes from the suite registry."""
        file = Path(path)
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RouteTableError(f"CRM_GATEWAY_ROUTES: route table {file} does not exist") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise RouteTableError(f"CRM_GATEWAY_ROUTES: cannot read route table {file}: {exc}") from None
        if not isinstance(data, dict):
            raise RouteTableError(f"{file}: expected a JSON object with 'routes'")
        return cls.from_mapping(data.get("routes"), data.get("optional") or (), uploads=data.get("uploads") or (),
                                source=str(file))

    def match(self, path: str) -> Route | None:
        """The most specific route serving `path`, or None."""
        for route in self.routes:
            if route.prefix == "/" or under(path, route.prefix):
                return route
        return None

    @cached_property
    def _upload_patterns(self) -> tuple[re.Pattern, ...]:
        return tuple(re.compile("/".join("[^/]+" if _PARAMETER.match(segment) else re.escape(segment)
                                         for segment in path.rstrip("/").split("/")))
                     for path in self.uploads)

    def takes_upload(self, path: str) -> bool:
        """True when `path` is an upload route: its body may be up to CRM_MAX_UPLOAD_BYTES, in any media type."""
        path = path.rstrip("/")
        return any(pattern.fullmatch(path) for pattern in self._upload_patterns)

    @property
    def upstreams(self) -> list[str]:
        """Every upstream the table names, sorted."""
        return sorted({r.upstream for r in self.routes})
