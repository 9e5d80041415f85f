"""Which scopes a key may carry, and what each one grants (issue 7 §2).

`admin` is the only super scope; `admin:*` is not a scope at all (it once matched `<name>:*` and, through
the `<svc>:*` expansion, granted `admin`). `<svc>:*` is read and write on a service, never its privileged
`<svc>:admin` actions; a service name must be one the suite registry knows.
"""
from __future__ import annotations

import importlib

import pytest
from flask.views import MethodView

from crm.registry import SUITE
from services.common.identity import Principal
from services.common.problems import Unprocessable
from services.gateway import keys


def _principal(*scopes: str) -> Principal:
    return Principal(key_id="k", kind="internal", scopes=frozenset(scopes))


@pytest.mark.parametrize("scope", ["admin:*", "admin:read", "admin:write", "admin:admin", "nosuchservice:read",
                                   "gateway:read", "leads:admin", "contacts:admin"])
def test_a_key_cannot_be_created_with_a_scope_no_service_defines(scope):
    with pytest.raises(Unprocessable) as err:
        keys.validate_scopes(["contacts:read", scope])
    assert scope in err.value.detail
    assert err.value.extra["errors"] == {"scopes": [f"Unknown scope {scope!r}."]}


@pytest.mark.parametrize("scope", ["admin", "loyalty:admin", "loyalty:*", "partners:read", "contacts:write"])
def test_the_suite_scopes_are_accepted(scope):
    assert keys.validate_scopes([scope]) == [scope]


def test_admin_star_grants_nothing_even_on_a_token_signed_before_the_check():
    stale = _principal("admin:*")
    assert not stale.has_scope("admin")
    assert not stale.has_scope("leads:read")
    assert not stale.has_scope("loyalty:admin")


def test_a_service_wildcard_is_read_and_write_but_not_the_privileged_scope():
    loyalty = _principal("loyalty:*")
    assert loyalty.has_scope("loyalty:read") and loyalty.has_scope("loyalty:write")
    assert not loyalty.has_scope("loyalty:admin")
    assert not _principal("loyalty:write").has_scope("loyalty:admin")
    assert _principal("loyalty:admin").has_scope("loyalty:admin")
    assert not _principal("loyalty:admin").has_scope("loyalty:write")
    assert _principal("admin").has_scope("loyalty:admin")


def _required_scopes(module) -> set[str]:
    """The scopes the views of an api module ask for in `@requires` (its MethodView classes)."""
    found = set()
    for view_class in vars(module).values():
        if isinstance(view_class, type) and issubclass(view_class, MethodView):
            for method in ("get", "post", "put", "patch", "delete"):
                scope = getattr(getattr(view_class, method, None), "_crm_scope", None)
                if scope:
                    found.add(scope)
    return found


def test_every_scope_a_view_requires_is_one_a_key_can_carry():
    required = set()
    for entry in SUITE.entries:
        required |= _required_scopes(importlib.import_module(f"{entry.package}.api"))
    assert {"admin", "loyalty:admin", "contacts:read", "partners:write"} <= required
    assert keys.validate_scopes(required) == sorted(required)
