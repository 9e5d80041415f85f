"""The vocabulary of the measures and the parameters a refresh runs with (formulas: docs/analytics.md).

A refresh stores the parameters it ran with (`Parameters.to_json()`), so a snapshot can always be explained.
Defaults are below; CRM_ANALYTICS_PARAMETERS (a JSON object) overrides some of them suite-wide, and a
request for a refresh may override them for that refresh.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields as mf, validate

from services.common.settings import SettingsError

ABC_CLASSES = ("A", "B", "C")
RFM_SEGMENTS = ("champions", "loyal", "new", "potential", "at_risk", "hibernating", "needs_attention")
QUADRANTS = ("best", "invest", "hold", "worst")
PYRAMID_LEVELS = ("top", "big", "medium", "small", "inactive", "prospect")
STAGES = ("prospect", "new", "general", "repeater", "loyal", "lapsed")
MEASURES = ("abc", "rfm", "clv", "profitability", "pyramid", "lifecycle")
INTERACTION_KINDS = ("call", "meeting", "email", "inquiry", "complaint", "note")
MEDIAN = "median"
UNITS_PER_UNIT = 10_000  # money in the analytics tables is integer units of 1/10,000


def default_costs() -> dict[str, Decimal]:
    return {"call": Decimal("5"), "meeting": Decimal("50"), "email": Decimal("1"), "inquiry": Decimal("3"),
            "complaint": Decimal("25"), "note": Decimal("0")}


@dataclass(frozen=True)
class Parameters:
    """Everything a refresh's results depend on besides the data, the currency and `as_of`."""

    window_days: int = 365
    abc_a_share: Decimal = Decimal("0.80")  # cumulative revenue share that class A makes up
    abc_b_share: Decimal = Decimal("0.95")  # ... A and B together
    pyramid_top_share: Decimal = Decimal("0.01")  # share of active customers (by rank) at the top
    pyramid_big_share: Decimal = Decimal("0.04")
    pyramid_medium_share: Decimal = Decimal("0.15")
    repeater_min_purchases: int = 3
    loyal_min_purchases: int = 6
    lapsed_after_days: int = 365
    discount_rate: Decimal = Decimal("0.10")  # per year
    default_retention: Decimal = Decimal("0.50")  # when no customer bought in the year before last
    max_retention: Decimal = Decimal("0.95")
    min_tenure_days: int = 365
    interaction_costs: dict = field(default_factory=default_costs)  # kind -> cost, in the refresh's currency
    current_threshold: Decimal | str = MEDIAN  # profitability matrix: a number, or "median"
    future_threshold: Decimal | str = MEDIAN

    def to_json(self) -> dict:
        """The parameters as a JSON object (Decimals as strings), as a refresh row stores them."""
        return ParametersSchema().dump(asdict(self))

    @classmethod
    def from_json(cls, document: Mapping) -> "Parameters":
        """Parameters from `to_json()`'s form (a refresh row's); keys it lacks keep their defaults."""
        return cls().merged(document)

    def merged(self, overrides: Mapping | None) -> "Parameters":
        """These parameters with `overrides` (JSON values, any subset) applied, checked alone and together.

        `interaction_costs` overrides kind by kind. Raises marshmallow's ValidationError keyed by parameter name.
        """
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise ValidationError(["Must be a JSON object."])
        loaded = ParametersSchema(partial=True).load(overrides)
        if "interaction_costs" in loaded:
            loaded["interaction_costs"] = {**self.interaction_costs, **loaded["interaction_costs"]}
        result = replace(self, **loaded)
        result.check()
        return result

    def check(self) -> None:
        """Raise ValidationError when parameters contradict each other (each alone is checked by the schema)."""
        errors: dict[str, list[str]] = {}
        if self.abc_b_share < self.abc_a_share:
            errors["abc_b_share"] = ["Must not be below abc_a_share (B's share is cumulative: A and B together)."]
        if self.pyramid_top_share + self.pyramid_big_share + self.pyramid_medium_share > 1:
            errors["pyramid_medium_share"] = ["The top, big and medium shares together must not pass 1."]
        if self.loyal_min_purchases < self.repeater_min_purchases:
            errors["loyal_min_purchases"] = ["Must not be below repeater_min_purchases."]
        if errors:
            raise ValidationError(errors)


class _Threshold(mf.Field):
    """A profitability-matrix threshold: "median", or an amount in the refresh's currency (a decimal string)."""

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(value)

    def _deserialize(self, value, attr, data, **kwargs):
        if value == MEDIAN:
            return MEDIAN
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValidationError('Must be "median" or a decimal amount.')
        try:
            amount = Decimal(str(value))
        except ArithmeticError:
            raise ValidationError('Must be "median" or a decimal amount.') from None
        if not amount.is_finite() or abs(amount) >= Decimal(10) ** 14:
            raise ValidationError("Must be a finite amount below 10^14.")
        return amount


def _share(**kwargs) -> mf.Decimal:
    return mf.Decimal(as_string=True, validate=validate.Range(0, 1, **kwargs))


def _count(minimum: int, maximum: int) -> mf.Integer:
    return mf.Integer(strict=True, validate=validate.Range(minimum, maximum))


class ParametersSchema(Schema):
    """The parameters as JSON: load with `partial=True` for overrides (CRM_ANALYTICS_PARAMETERS, a request)."""

    class Meta:
        ordered = True

    window_days = _count(1, 36500)
    abc_a_share = _share(min_inclusive=False)
    abc_b_share = _share(min_inclusive=False)
    pyramid_top_share = _share()
    pyramid_big_share = _share()
    pyramid_medium_share = _share()
    repeater_min_purchases = _count(2, 1_000_000)
    loyal_min_purchases = _count(2, 1_000_000)
    lapsed_after_days = _count(1, 36500)
    discount_rate = mf.Decimal(as_string=True, validate=validate.Range(0, 10))
    default_retention = _share(max_inclusive=False)
    # Below 1, so the expected remaining years r / (1 + d - r) stay finite even at a discount rate of 0.
    max_retention = _share(max_inclusive=False)
    min_tenure_days = _count(1, 36500)
    interaction_costs = mf.Dict(keys=mf.String(validate=validate.OneOf(INTERACTION_KINDS)),
                                values=mf.Decimal(as_string=True, validate=validate.Range(0, 10 ** 9)))
    current_threshold = _Threshold()
    future_threshold = _Threshold()


PARAMETER_NAMES = tuple(f.name for f in fields(Parameters))


def parameters_from_settings(settings) -> Parameters:
    """The suite-wide parameters: the defaults with CRM_ANALYTICS_PARAMETERS applied; SettingsError when invalid."""
    raw = (settings.analytics_parameters or "").strip()
    if not raw:
        return Parameters()
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise SettingsError("CRM_ANALYTICS_PARAMETERS", f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsError("CRM_ANALYTICS_PARAMETERS", "must be a JSON object of parameter names to values")
    try:
        return Parameters().merged(document)
    except ValidationError as exc:
        raise SettingsError("CRM_ANALYTICS_PARAMETERS", _describe(exc.messages)) from None


def _describe(messages) -> str:
    if isinstance(messages, dict):
        return "; ".join(f"{name}: {_describe(inner)}" for name, inner in messages.items())
    if isinstance(messages, list):
        return " ".join(_describe(m) for m in messages)
    return str(messages)
