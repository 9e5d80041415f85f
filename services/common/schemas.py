"""Marshmallow pieces every service's API shares: trimmed input, common formats, plugin decision parts."""
from __future__ import annotations

from datetime import timezone

from marshmallow import Schema, ValidationError, fields, pre_load, validate

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
