"""Marshmallow pieces every service's API shares: trimmed input, common formats, plugin decision parts."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import timezone
from decimal import Decimal
from typing import ClassVar

from marshmallow import Schema, ValidationError, fields, missing, pre_load, validate

# Lower-case slugs: lead sources, program codes.
SLUG = validate.Regexp(r"^[a-z0-9][a-z0-9_\-]{0,49}$", error="Use 1-50 lower-case letters, digits, '_' or '-'.")
CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="Use a three-letter ISO 4217 code in capitals, e.g. EUR.")
PHONE = validate.Regexp(r"^\+?[0-9 ()./\-]{3,50}$", error="Not a phone number.")


class TrimmedInput(Schema):
    """A request body whose top-level strings lose their surrounding white space before validation."""

    @pre_load
    def _strip_strings(self, data, **_kw):
        # Form tools pad values with spaces; "  Ann@Corp.Example " is a valid address once trimmed.
        if isinstance(data, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        return data


class Trimmed(fields.String):
    """A string with surrounding white space removed before it is validated (for query arguments too)."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class Moment(fields.AwareDateTime):
    """A time with an offset that is also a time in UTC: `0001-01-01T00:00:00+01:00` is in no year UTC can hold.

    Stored times are UTC; converting such a value overflowed into a 500. Refused here with the field's name.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            moment.astimezone(timezone.utc)
        except OverflowError:
            raise ValidationError("The time is out of range.") from None
        return moment


class TrimmedEmail(fields.Email):
    """An e-mail address with surrounding white space removed before it is validated."""

    def _deserialize(self, value, attr, data, **kwargs):
        return super()._deserialize(value, attr, data, **kwargs).strip()


class ScoreFactorSchema(Schema):
    """One plugin's contribution to a decision (a lead's score, a purchase's points), with its reason."""

    plugin = fields.String()
    code = fields.String()
    points = fields.Integer()
    reason = fields.String()


class DegradedSchema(Schema):
    """A plugin that failed, answered badly or too late during a decision; the others still counted.

    Only the plugin's name and a code (`plugin_error`, `plugin_malformed_result`, `plugin_timeout`,
    `plugin_unavailable`) go out: what a plugin raised may quote anything it had at hand, so it stays in the log.
    """

    plugin = fields.String()
    hook = fields.String()
    code = fields.Method("_code")

    @staticmethod
    def _code(row) -> str:
        # Rows stored before the codes existed carry only an `error` text, which is never shown.
        code = row.get("code")
        if code:
            return code
        return "plugin_malformed_result" if str(row.get("error", "")).startswith("malformed result") else "plugin_error"


class DictDump(Schema):
    """A response schema whose `dump` of a plain dict or an object skips marshmallow's per-field lookup machinery.

    The output is the one `Schema.dump` gives, byte for byte: each field's own `_serialize` formats the value, a
    nested schema dumps through its own `dump`, an object's attribute is read as marshmallow reads it (getattr,
    for an object without `__getitem__`), and anything else (a key the dict lacks, a missing attribute, a dotted
    attribute, a field or schema with its own accessor, default or hooks) goes the ordinary way. For the hot
    read paths (a contact's record: ~55 fields in five schemas), where the lookups cost as much as the formatting.
    """

    _dict_plan: tuple | None

    def _plan(self) -> tuple | None:
        plan = self.__dict__.get("_dict_plan", False)
        if plan is not False:
            return plan
        plan = None
        # Read through getattr with a default: should a marshmallow release rename these internals, the schema
        # takes the ordinary path (slower, still right) instead of breaking.
        hooks = getattr(self, "_hooks", None)
        if (isinstance(hooks, Mapping) and not hooks.get("pre_dump") and not hooks.get("post_dump")
                and self.dict_class is dict and type(self).get_attribute is Schema.get_attribute):
            entries = []
            for attr, field in self.dump_fields.items():
                source = field.attribute if field.attribute is not None else attr
                if (getattr(field, "_CHECK_ATTRIBUTE", None) is not True or "." in source
                        or not callable(getattr(field, "_serialize", None))
                        or type(field).serialize is not fields.Field.serialize
                        or type(field).get_value is not fields.Field.get_value):
                    entries = None
                    break
                entries.append((attr, source, field.data_key if field.data_key is not None else attr, field))
            plan = tuple(entries) if entries is not None else None
        self._dict_plan = plan
        return plan

    def _dump_dict(self, obj: dict, plan: tuple) -> dict:
        out = {}
        for attr, source, key, field in plan:
            if source in obj:
                value = field._serialize(obj[source], attr, obj)
            else:
                value = field.serialize(attr, obj, accessor=self.get_attribute)
            if value is not missing:
                out[key] = value
        return out

    def _dump_object(self, obj, plan: tuple) -> dict:
        # marshmallow reads an attribute of an object without __getitem__ with getattr(obj, name, missing).
        out = {}
        for attr, source, key, field in plan:
            value = getattr(obj, source, missing)
            if value is missing:
                value = field.serialize(attr, obj, accessor=self.get_attribute)
            else:
                value = field._serialize(value, attr, obj)
            if value is not missing:
                out[key] = value
        return out

    def _dumper(self, obj):
        kind = type(obj)
        if kind is dict:
            return self._dump_dict
        # The type, where marshmallow asks the instance: they differ only for an instance that answers
        # "__getitem__" itself (its own attribute, or __getattr__), and then marshmallow's obj[key] fails as
        # `obj[...]` looks on the type, and it falls back to the getattr this path uses; the result is the same.
        if not hasattr(kind, "__getitem__") and kind.__module__ not in _BUILTIN_MODULES:
            return self._dump_object  # e.g. a mapped row object; lists, tuples, strings go the ordinary way
        return None

    def dump(self, obj, *, many: bool | None = None):
        plan = self._plan()
        if plan is not None:
            many = self.many if many is None else bool(many)
            if not many:
                dumper = self._dumper(obj)
                if dumper is not None:
                    return dumper(obj, plan)
            elif type(obj) is list:
                dumpers = [self._dumper(item) for item in obj]
                if None not in dumpers:
                    return [dumper(item, plan) for dumper, item in zip(dumpers, obj)]
        return super().dump(obj, many=many)


_BUILTIN_MODULES = frozenset({"builtins"})


# -- exact decimals: money and quantities ----------------------------------------------------------------------

def decimal_places(value: Decimal) -> int:
    """The decimal places `value` needs, trailing zeros aside: 1.2500 needs 2, 100 and 0.000 none.

    Counted on the digits themselves: `normalize()` rounds to the context's 28 digits, which let
    1.0000000000000000000000000000001 pass as 1 (and the column round it away).
    """
    _sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or not any(digits):
        return 0
    places = -exponent
    for digit in reversed(digits):
        if places <= 0 or digit:
            break
        places -= 1
    return max(places, 0)


def at_most_places(places: int):
    """A validator refusing a Decimal with more than `places` decimal places (trailing zeros aside)."""
    def check(value: Decimal) -> None:
        if decimal_places(value) > places:
            raise ValidationError(f"Use at most {places} decimal places.")

    return check


class ExactDecimal(fields.Decimal):
    """An amount of money or a quantity: Decimal in, decimal string out, never through a float; NaN and infinity
    refused, then (each error under the field's name, all of them) the range and the decimal places.

    `minimum` to `maximum` (inclusive unless told otherwise), with marshmallow's Range message unless
    `range_error` is given (`{min}` and `{max}` are filled in); at most `places` decimal places. Trailing zeros
    past `places` are dropped from what is loaded ("1.50000" loads as 1.5000 with 4 places): the value goes on
    into events, whose readers may count the exponent (contacts' purchase facts refuse more than 4 places).
    `strings_only`: a JSON number is refused (`not_string`, worded through `error_messages`), since it may
    already be a binary float by the time it is parsed.
    """

    default_error_messages: ClassVar[dict] = {"not_string": 'Send the number as a decimal string, e.g. "12.50".'}

    def __init__(self, places: int, maximum: Decimal, *, minimum: Decimal = Decimal(0), min_inclusive: bool = True,
                 max_inclusive: bool = True, range_error: str | None = None, strings_only: bool = False, **kwargs):
        in_range = validate.Range(min=minimum, max=maximum, min_inclusive=min_inclusive,
                                  max_inclusive=max_inclusive, error=range_error)
        # A caller's own validators run after these (marshmallow takes one callable or a list of them).
        extra = kwargs.pop("validate", None) or []
        extra = [extra] if callable(extra) else list(extra)
        super().__init__(as_string=True, places=None, allow_nan=False,
                         validate=[in_range, at_most_places(places), *extra], **kwargs)
        self.exact_places = places
        self.strings_only = strings_only

    def _deserialize(self, value, attr, data, **kwargs):
        if self.strings_only and not isinstance(value, str):
            raise self.make_error("not_string")
        return _without_excess_zeros(super()._deserialize(value, attr, data, **kwargs), self.exact_places)


def _without_excess_zeros(value: Decimal, places: int) -> Decimal:
    """`value` with the trailing zeros past `places` dropped; exact (built from its digits, no context rounding)."""
    sign, digits, exponent = value.as_tuple()
    excess = -exponent - places if isinstance(exponent, int) else 0
    if excess <= 0 or any(digits[-excess:]):
        return value
    return Decimal((sign, digits[:-excess] or (0,), -places))
