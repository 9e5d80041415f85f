"""The segment rule grammar without a database: parsing, every operator per type, 422 paths, canonical documents."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.problems import Unprocessable
from services.contacts.segments import grammar
from services.contacts.segments.grammar import All, Any, Condition, Day, Moment, Not, parse_rules, to_document

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)


@dataclass
class Definition:
    type: str
    options: list


DEFINITIONS = {"tier": Definition("enum", ["gold", "silver"]), "score": Definition("number", []),
               "since": Definition("date", []), "vip": Definition("boolean", []), "nick": Definition("string", [])}


def _c(field, op, value=None, **extra):
    condition = {"field": field, "op": op, **extra}
    if value is not None:
        condition["value"] = value
    return condition


def _errors(document) -> dict:
    with pytest.raises(Unprocessable) as caught:
        parse_rules(document, DEFINITIONS)
    return caught.value.extra["errors"]


def _one(condition) -> Condition:
    [parsed] = parse_rules({"all": [condition]}, DEFINITIONS).parts
    return parsed


# -- parsing --------------------------------------------------------------------------------------------------

def test_a_document_becomes_a_tree_of_groups_and_typed_conditions():
    rule = parse_rules({"all": [_c("abc_class", "eq", "A"), {"any": [_c("tags", "has", "VIP")]},
                                {"not": _c("clv", "gt", "10.5")}]}, DEFINITIONS)
    assert isinstance(rule, All)
    first, group, negation = rule.parts
    assert (first.field, first.op, first.value, first.type.kind) == ("abc_class", "eq", "A", "enum")
    assert isinstance(group, Any) and group.parts[0].value == "vip"  # a tag as stored: lower-case
    assert isinstance(negation, Not) and negation.part.value == Decimal("10.5")


@pytest.mark.parametrize(("condition", "value"), [
    (_c("email", "eq", " Ann@Example.COM "), "ann@example.com"),
    (_c("company", "contains", "Acme"), "Acme"),
    (_c("last_name", "in", ["Smith", "Jones", "Smith"]), ("Smith", "Jones")),
    (_c("phone", "exists", True), True),
    (_c("job_title", "exists"), True),  # exists without a value: true
    (_c("account_id", "eq", "6F9619FF-8B86-D011-B42D-00C04FC964FF"), "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    (_c("purchase_count", "between", [1, 3]), (1, 3)),
    (_c("recency_score", "gte", 4), 4),
    (_c("total_spent", "lt", "99.9900"), Decimal("99.99")),
    (_c("net_spent", "eq", "-5"), Decimal("-5")),
    (_c("attributes.score", "gt", 10), Decimal(10)),
    (_c("attributes.score", "lte", "10.50"), Decimal("10.5")),
    (_c("attributes.tier", "not_in", ["silver"]), ("silver",)),
    (_c("attributes.vip", "eq", False), False),
    (_c("attributes.nick", "starts_with", "Al"), "Al"),
    (_c("consent.sms.service", "eq", "withdrawn"), "withdrawn"),
    (_c("rfm_segment", "in", ["champions", "at_risk"]), ("champions", "at_risk")),
    (_c("pyramid_level", "ne", "top"), "top"),
    (_c("quadrant", "eq", "invest"), "invest"),
    (_c("stage", "exists", False), False),
    (_c("tags", "has_all", ["b", "A"]), ("b", "a")),
])
def test_each_type_takes_its_values(condition, value):
    assert _one(condition).value == value


def test_times_are_instants_or_offsets_from_the_evaluation():
    assert _one(_c("created_at", "before", "-90d")).value.at(NOW) == NOW - timedelta(days=90)
    assert _one(_c("last_purchase_at", "after", "+30d")).value.at(NOW) == NOW + timedelta(days=30)
    assert _one(_c("first_purchase_at", "after", "-12h")).value.at(NOW) == NOW - timedelta(hours=12)
    low, high = _one(_c("last_purchase_at", "between", ["-2w", "2026-05-31T14:00:00+02:00"])).value
    assert (low.at(NOW), high.at(NOW)) == (NOW - timedelta(weeks=2), datetime(2026, 5, 31, 12, tzinfo=timezone.utc))
    assert _one(_c("attributes.since", "before", "-1d")).value.at(NOW) == date(2026, 5, 31)
    assert _one(_c("attributes.since", "after", "2020-02-29")).value.at(NOW) == date(2020, 2, 29)


@pytest.mark.parametrize("kind", sorted(grammar.OPERATORS))
def test_every_type_refuses_the_operators_of_others(kind):
    field = {"string": "email", "number": "attributes.score", "integer": "purchase_count", "money": "clv",
             "datetime": "created_at", "date": "attributes.since", "enum": "abc_class", "id": "account_id",
             "boolean": "attributes.vip", "tags": "tags", "consent": "consent.email.marketing"}[kind]
    every = {op for ops in grammar.OPERATORS.values() for op in ops}
    for op in sorted(every - set(grammar.OPERATORS[kind])):
        assert "rules.all.0.op" in _errors({"all": [_c(field, op, "x")]}), (kind, op)


# -- mistakes ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("document", "path"), [
    ({"all": [_c("nope", "eq", "x")]}, "rules.all.0.field"),
    ({"all": [_c("abc_class", "eq", "D")]}, "rules.all.0.value"),
    ({"all": [_c("abc_class", "like", "A")]}, "rules.all.0.op"),
    ({"all": [_c("email", "eq", "a"), _c("clv", "gt", 10.5)]}, "rules.all.1.value"),  # money is a decimal string
    ({"all": [_c("clv", "gt", "1.00001")]}, "rules.all.0.value"),  # more than four places
    ({"all": [_c("purchase_count", "eq", True)]}, "rules.all.0.value"),
    ({"all": [_c("purchase_count", "eq", "3")]}, "rules.all.0.value"),
    ({"all": [_c("attributes.score", "gt", 1.5)]}, "rules.all.0.value"),  # a float has been rounded already
    ({"all": [_c("attributes.missing", "eq", "x")]}, "rules.all.0.field"),
    ({"all": [_c("attributes.since", "before", "2020-02-30")]}, "rules.all.0.value"),
    ({"all": [_c("created_at", "before", "2026-01-01T00:00:00")]}, "rules.all.0.value"),  # no offset
    ({"all": [_c("created_at", "before", "-90y")]}, "rules.all.0.value"),
    ({"all": [_c("created_at", "before", "-99999999d")]}, "rules.all.0.value"),
    ({"all": [_c("created_at", "between", ["-9d"])]}, "rules.all.0.value"),
    ({"all": [_c("abc_class", "in", [])]}, "rules.all.0.value"),
    ({"all": [_c("abc_class", "in", "A")]}, "rules.all.0.value"),
    ({"all": [_c("tags", "has", "no spaces")]}, "rules.all.0.value"),
    ({"all": [_c("consent.fax.marketing", "eq", "granted")]}, "rules.all.0.field"),
    ({"all": [_c("consent.email.marketing", "eq", "maybe")]}, "rules.all.0.value"),
    ({"all": [_c("email", "eq")]}, "rules.all.0.value"),
    ({"all": [{"op": "eq", "value": "x"}]}, "rules.all.0.field"),
    ({"all": [_c("email", "eq", "x", extra=1)]}, "rules.all.0.extra"),
    ({"all": [[]]}, "rules.all.0"),
    ({"all": "x"}, "rules.all"),
    ({"any": [{"all": [], "any": []}]}, "rules.any.0"),
    ({"not": {"not": _c("nope", "eq", 1)}}, "rules.not.not.field"),
    (_c("email", "eq", "x"), "rules"),  # the top is a group
    ([], "rules"),
    ({"all": [{"all": [{"all": [{"all": [{"all": [{"all": []}]}]}]}]}]}, "rules.all.0.all.0.all.0.all.0.all.0.all"),
])
def test_a_mistake_names_its_path(document, path):
    assert path in _errors(document)


def test_every_mistake_is_reported_at_once():
    errors = _errors({"any": [_c("nope", "eq", 1), _c("stage", "gt", "new"), _c("clv", "eq", 3)]})
    assert set(errors) == {"rules.any.0.field", "rules.any.1.op", "rules.any.2.value"}


def test_at_most_fifty_conditions():
    parse_rules({"all": [_c("email", "exists", True)] * grammar.MAX_CONDITIONS})
    assert "rules" in _errors({"all": [_c("email", "exists", True)] * (grammar.MAX_CONDITIONS + 1)})


def test_at_most_fifty_groups():
    parse_rules({"any": [{"all": []}] * (grammar.MAX_GROUPS - 1)})
    assert "rules" in _errors({"any": [{"all": []}] * grammar.MAX_GROUPS})


def test_five_levels_of_groups_are_allowed():
    parse_rules({"all": [{"any": [{"not": {"all": [{"any": [_c("email", "exists", True)]}]}}]}]})


def test_the_attributes_a_document_names_are_found_before_checking():
    document = {"all": [_c("attributes.tier", "eq", "gold"), {"not": _c("attributes.score", "gt", "1")}, "junk",
                        _c("email", "eq", "x")]}
    assert grammar.attribute_names(document) == {"tier", "score"}


# -- canonical documents -----------------------------------------------------------------------------------------

def test_the_stored_document_is_canonical():
    rule = parse_rules({"all": [_c("tags", "has_any", ["B", "a", "b"]), _c("attributes.score", "gt", "010.50"),
                                _c("created_at", "after", "2026-01-01T01:00:00+01:00"), _c("phone", "exists")]}, DEFINITIONS)
    assert to_document(rule) == {"all": [_c("tags", "has_any", ["b", "a"]), _c("attributes.score", "gt", "10.5"),
                                         _c("created_at", "after", "2026-01-01T00:00:00+00:00"),
                                         _c("phone", "exists", True)]}


_FIELD_VALUES = {
    "email": st.sampled_from(["eq", "ne", "contains", "starts_with"]).map(lambda op: (op, "a@b.c")),
    "abc_class": st.tuples(st.sampled_from(["in", "not_in"]), st.lists(st.sampled_from(["A", "B", "C"]), min_size=1)),
    "purchase_count": st.tuples(st.sampled_from(["eq", "gt", "lte"]), st.integers(-10**6, 10**6)),
    "clv": st.tuples(st.sampled_from(["gte", "lt"]),
                     st.decimals(min_value=-10**9, max_value=10**9, places=4).map(lambda d: format(d, "f"))),
    "created_at": st.tuples(st.sampled_from(["before", "after"]),
                            st.builds(lambda n, u, s: f"{s}{n}{u}", st.integers(0, 999), st.sampled_from("hdw"),
                                      st.sampled_from("+-"))),
    "tags": st.tuples(st.sampled_from(["has_any", "has_all", "has_none"]),
                      st.lists(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True), min_size=1, max_size=4)),
    "attributes.tier": st.tuples(st.just("eq"), st.sampled_from(["gold", "silver"])),
    "consent.email.marketing": st.tuples(st.sampled_from(["eq", "ne"]), st.sampled_from(["granted", "withdrawn"])),
}
_CONDITIONS = st.sampled_from(sorted(_FIELD_VALUES)).flatmap(
    lambda field: _FIELD_VALUES[field].map(lambda pair: {"field": field, "op": pair[0], "value": pair[1]}))


def _groups(children):
    return st.one_of(st.builds(lambda items: {"all": items}, st.lists(children, max_size=3)),
                     st.builds(lambda items: {"any": items}, st.lists(children, max_size=3)),
                     st.builds(lambda item: {"not": item}, children))


_VALID = _groups(st.recursive(_CONDITIONS, _groups, max_leaves=12)).filter(
    lambda doc: _depth(doc) <= grammar.MAX_DEPTH)


def _depth(node) -> int:
    if "field" in node:
        return 0
    children = [node["not"]] if "not" in node else next(iter(node.values()))
    return 1 + max((_depth(child) for child in children), default=0)


@settings(max_examples=200, deadline=None)
@given(_VALID)
def test_any_valid_document_round_trips(document):
    rule = parse_rules(document, DEFINITIONS)
    canonical = to_document(rule)
    assert parse_rules(canonical, DEFINITIONS) == rule
    assert to_document(parse_rules(canonical, DEFINITIONS)) == canonical


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
                     lambda children: st.lists(children, max_size=4)
                     | st.dictionaries(st.sampled_from(["all", "any", "not", "field", "op", "value", "x"]) | st.text(
                         max_size=5), children, max_size=4), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_any_document_parses_or_is_a_422_never_an_error(document):
    try:
        parse_rules(document, DEFINITIONS)
    except Unprocessable as problem:
        assert problem.status == 422
        assert problem.extra["errors"] and all(path.startswith("rules") for path in problem.extra["errors"])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(grammar.FIELDS)), st.sampled_from(sorted({op for ops in grammar.OPERATORS.values()
                                                                          for op in ops})), _JSON)
def test_any_condition_parses_or_is_a_422(field, op, value):
    try:
        parse_rules({"all": [{"field": field, "op": op, "value": value}]}, DEFINITIONS)
    except Unprocessable as problem:
        assert set(problem.extra["errors"]) <= {"rules.all.0.op", "rules.all.0.value"}


def test_moments_and_days_keep_their_text():
    assert Moment(offset=timedelta(days=-1), text="-1d").at(NOW) == NOW - timedelta(days=1)
    assert Day(day=date(2020, 1, 1), text="2020-01-01").at(NOW) == date(2020, 1, 1)
