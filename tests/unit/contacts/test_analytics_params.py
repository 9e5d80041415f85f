"""The analytics parameters: overrides checked one by one and together, the JSON form, the suite-wide setting."""
from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import ValidationError

from services.common.settings import Settings, SettingsError
from services.contacts.analytics.params import MEDIAN, PARAMETER_NAMES, Parameters, parameters_from_settings


def test_the_json_form_holds_every_parameter_and_reads_back_equal():
    params = Parameters().merged({"window_days": 90, "current_threshold": "12.5", "abc_a_share": 0.7,
                                  "interaction_costs": {"complaint": "40.25"}})

    document = params.to_json()

    assert list(document) == list(PARAMETER_NAMES)
    assert document["abc_a_share"] == "0.7" and document["current_threshold"] == "12.5"
    assert document["future_threshold"] == MEDIAN
    assert document["interaction_costs"]["complaint"] == "40.25"
    assert Parameters.from_json(document) == params
    assert Parameters.from_json({}) == Parameters()


def test_an_override_changes_only_what_it_names():
    params = Parameters().merged({"interaction_costs": {"call": 7}, "max_retention": "0.9"})

    assert params.interaction_costs == {**Parameters().interaction_costs, "call": Decimal(7)}
    assert params.max_retention == Decimal("0.9")
    assert params.window_days == Parameters().window_days
    assert Parameters().merged(None) == Parameters().merged({}) == Parameters()


@pytest.mark.parametrize(("overrides", "field"), [
    ({"window_days": 0}, "window_days"),
    ({"window_days": "90"}, "window_days"),  # whole numbers are numbers
    ({"window_days": 1.5}, "window_days"),
    ({"abc_a_share": "0"}, "abc_a_share"),
    ({"abc_a_share": "1.01"}, "abc_a_share"),
    ({"abc_a_share": "NaN"}, "abc_a_share"),
    ({"max_retention": "1"}, "max_retention"),  # 1 would make the remaining years infinite at a 0 discount
    ({"discount_rate": "-0.1"}, "discount_rate"),
    ({"repeater_min_purchases": 1}, "repeater_min_purchases"),
    ({"interaction_costs": {"fax": 1}}, "interaction_costs"),
    ({"interaction_costs": {"call": "-1"}}, "interaction_costs"),
    ({"current_threshold": "average"}, "current_threshold"),
    ({"future_threshold": True}, "future_threshold"),
    ({"future_threshold": "1e20"}, "future_threshold"),
    ({"colour": "blue"}, "colour"),
    ({"abc_a_share": "0.9", "abc_b_share": "0.8"}, "abc_b_share"),
    ({"pyramid_top_share": "0.5", "pyramid_big_share": "0.3", "pyramid_medium_share": "0.3"}, "pyramid_medium_share"),
    ({"repeater_min_purchases": 7}, "loyal_min_purchases"),  # above the default loyal threshold (6)
])
def test_an_invalid_override_is_refused_naming_the_parameter(overrides, field):
    with pytest.raises(ValidationError) as refused:
        Parameters().merged(overrides)

    assert list(refused.value.messages) == [field]


def test_a_threshold_is_median_or_an_amount():
    params = Parameters().merged({"current_threshold": 0, "future_threshold": "-250.5"})

    assert (params.current_threshold, params.future_threshold) == (Decimal(0), Decimal("-250.5"))
    assert Parameters().merged({"current_threshold": "median"}).current_threshold == MEDIAN


def test_the_suite_wide_setting_overrides_the_defaults():
    settings = Settings(service="contacts", database_url="sqlite://",
                        analytics_parameters='{"window_days": 180, "lapsed_after_days": 400}')

    params = parameters_from_settings(settings)

    assert (params.window_days, params.lapsed_after_days) == (180, 400)
    assert parameters_from_settings(Settings(service="contacts", database_url="sqlite://")) == Parameters()


@pytest.mark.parametrize(("raw", "says"), [
    ("{", "not JSON"),
    ("[1]", "must be a JSON object"),
    ('{"window_days": -1}', "window_days:"),
    ('{"abc_a_share": "0.9", "abc_b_share": "0.5"}', "abc_b_share:"),
])
def test_a_malformed_setting_names_the_variable(raw, says):
    with pytest.raises(SettingsError) as refused:
        parameters_from_settings(Settings(service="contacts", database_url="sqlite://", analytics_parameters=raw))

    assert refused.value.variable == "CRM_ANALYTICS_PARAMETERS"
    assert says in str(refused.value)
