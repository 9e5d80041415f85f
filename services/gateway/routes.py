"""The gateway's route table: which upstream serves a path; derived from the suite registry or read from a JSON file."""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PARTNER_PORTAL = "/api/v1/partner-portal"


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

    @classmethod
    def from_mapping(cls, routes: Mapping[str, str], optional=(), *, source: str = "route table") -> RouteTable:
        """Build and validate a table from {prefix: upstream}."""
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
        return cls(tuple(parsed), frozenset(optional))

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
        return cls.from_mapping(data.get("routes"), data.get("optional") or (), source=str(file))

    def match(self, path: str) -> Route | None:
        """The most specific route serving `path`, or None."""
        for route in self.routes:
            if route.prefix == "/" or under(path, route.prefix):
                return route
        return None

    @property
    def upstreams(self) -> list[str]:
        """Every upstream the table names, sorted."""
        return sorted({r.upstream for r in self.routes})
