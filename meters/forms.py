"""Staff forms for meters: the create/edit form behind the filter builder, and the analytics range.

The form checks plain fields; the aggregation and filter are checked by the meter rules themselves
(`validate_aggregation`, `validate_filter`), whose field paths the builder uses to mark the exact
condition that is wrong. Saving goes through `meters.services`, the only way to change a meter.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django import forms

from billing_site.errors import InvalidInput
from billing_site.jsonutil import exact_dumps, exact_loads
from meters import analytics, services
from meters.filters import InvalidFilter, validate_filter
from meters.models import Aggregation, Meter
from meters.usage import GRANULARITIES

# Which form field shows an error the meter rules report for a field path.
_FIELD_FOR_PATH = {
    "aggregation": "aggregation_type",
    "aggregation.type": "aggregation_type",
    "aggregation.key": "aggregation_key",
}


class FilterJSONField(forms.CharField):
    """The builder's hidden JSON; changed only if it means something else (PostgreSQL's jsonb
    keeps object keys in its own order, so stored and posted text differ in order alone)."""

    widget = forms.HiddenInput

    def has_changed(self, initial: Any, data: Any) -> bool:
        return parse_filter_text(initial or "") != parse_filter_text(data or "")


class MeterForm(forms.Form):
    name = forms.CharField(max_length=255)
    description = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 40})
    )
    event_name = forms.CharField(
        max_length=255,
        help_text="Case-sensitive. Names already received are suggested.",
        widget=forms.TextInput(attrs={"list": "event-name-suggestions", "autocomplete": "off"}),
    )
    aggregation_type = forms.ChoiceField(
        label="Aggregation",
        choices=Aggregation.choices,
        help_text="count: matching events; sum / max / min: of a numeric metadata property; "
        "last: its value on the latest event; unique_count: its distinct values (typed: 1 and "
        '1.0 are one value, "1" another).',
    )
    aggregation_key = forms.CharField(
        label="Aggregation key",
        required=False,
        max_length=100,
        help_text="The metadata property to aggregate. Events where it is missing (or, but for "
        "unique_count, not a number) are skipped.",
        widget=forms.TextInput(attrs={"list": "metadata-key-suggestions", "autocomplete": "off"}),
    )
    measurement_unit = forms.CharField(label="Unit", max_length=100)
    filter = FilterJSONField(required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Errors on the filter as the rules report them ({field, message}), for the builder.
        self.filter_errors: list[dict[str, str]] = []

    @classmethod
    def initial_for(cls, meter: Meter) -> dict[str, Any]:
        return {
            "name": meter.name,
            "description": meter.description or "",
            "event_name": meter.event_name,
            "aggregation_type": meter.aggregation_type,
            "aggregation_key": meter.aggregation_key or "",
            "measurement_unit": meter.measurement_unit,
            "filter": "" if meter.filter is None else exact_dumps(meter.filter),
        }

    def clean_filter(self) -> dict | None:
        text = self.cleaned_data.get("filter") or ""
        raw = parse_filter_text(text)
        if raw is _UNPARSABLE:
            self.filter_errors = [{"field": "filter", "message": "Is not valid JSON."}]
            raise forms.ValidationError("The filter is not valid JSON.")
        if raw is None:
            return None
        try:
            return validate_filter(raw)
        except InvalidFilter as exc:
            self.filter_errors = exc.errors
            raise forms.ValidationError(
                [f"{e['field']}: {e['message']}" for e in exc.errors]
            ) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        assert cleaned is not None  # a ModelForm's clean() returns its cleaned_data
        kind = cleaned.get("aggregation_type")
        if kind:
            key = cleaned.get("aggregation_key") or None
            cleaned["aggregation_key"] = None if kind == Aggregation.COUNT else key
            try:
                services.validate_aggregation({"type": kind, "key": cleaned["aggregation_key"]})
            except InvalidInput as exc:
                self._add_rule_errors(exc)
        return cleaned

    def _add_rule_errors(self, exc: InvalidInput) -> None:
        for error in exc.errors or [{"field": None, "message": exc.message}]:
            path = error.get("field") or ""
            if path.startswith("filter"):
                self.filter_errors.append(error)
                self.add_error("filter", f"{path}: {error['message']}")
            else:
                self.add_error(_FIELD_FOR_PATH.get(path), error["message"])

    def save(self, *, now: datetime, meter: Meter | None = None) -> Meter | None:
        """Create or update through the meter services; None (with errors added) if refused."""
        data = self.cleaned_data
        fields = {
            "name": data["name"],
            "description": data["description"] or None,
            "event_name": data["event_name"],
            "measurement_unit": data["measurement_unit"],
            "aggregation": {"type": data["aggregation_type"], "key": data["aggregation_key"]},
            "filter": data["filter"],
        }
        try:
            if meter is None:
                return services.create_meter(**fields, now=now)
            return services.update_meter(meter, now=now, **fields)
        except InvalidInput as exc:
            self._add_rule_errors(exc)
            return None

    def builder_state(self) -> dict[str, Any] | None:
        """The filter as the builder edits it (see `builder_tree`), from what was posted or
        stored, so a refused form comes back with the staff member's work intact."""
        text = self.data.get("filter", "") if self.is_bound else self.initial.get("filter", "")
        raw = parse_filter_text(text or "")
        return None if raw is _UNPARSABLE else builder_tree(raw)


_UNPARSABLE = object()


def parse_filter_text(text: str) -> object:
    """The hidden field's JSON (numbers exact); blank or `null` means no filter."""
    if not text.strip():
        return None
    try:
        return exact_loads(text)
    except ValueError:
        return _UNPARSABLE


def builder_tree(raw: object, depth: int = 1) -> dict[str, Any] | None:
    """A filter (valid or not) as the builder's tree: each condition gets a value type and its
    value as text, so numbers reach the browser and come back without float rounding."""
    if not isinstance(raw, dict):
        return None
    clauses = raw.get("clauses")
    tree: dict[str, Any] = {
        "conjunction": raw.get("conjunction") if raw.get("conjunction") in ("and", "or") else "and",
        "clauses": [],
    }
    for clause in clauses if isinstance(clauses, list) else []:
        if not isinstance(clause, dict):
            continue
        if "clauses" in clause or "conjunction" in clause:
            nested = builder_tree(clause, depth + 1)
            if nested is not None:
                tree["clauses"].append(nested)
            continue
        value = clause.get("value")
        if isinstance(value, bool):
            value_type, text = "boolean", "true" if value else "false"
        elif isinstance(value, int | Decimal | float):
            value_type, text = "number", exact_dumps(value)
        else:
            value_type, text = "string", "" if value is None else str(value)
        tree["clauses"].append(
            {
                "key": str(clause.get("key") or ""),
                "operator": str(clause.get("operator") or "equals"),
                "type": value_type,
                "value": text,
            }
        )
    return tree


class AnalyticsRangeForm(forms.Form):
    """The range, granularity, tab and event filters of the analytics page (all optional)."""

    range = forms.ChoiceField(
        required=False, choices=[(key, key) for key in analytics.RANGE_PRESETS]
    )
    start = forms.DateTimeField(required=False)
    end = forms.DateTimeField(required=False)
    granularity = forms.ChoiceField(required=False, choices=[(g, g) for g in GRANULARITIES])
    customer = forms.CharField(required=False, max_length=255)
    page = forms.IntegerField(required=False, min_value=0)  # past MAX_PAGE: clamped, an empty page
    sort = forms.ChoiceField(
        required=False,
        choices=[(s, s) for key in analytics.CUSTOMER_SORTS for s in (key, f"-{key}")],
    )
    tab = forms.ChoiceField(
        required=False, choices=[(t, t) for t in ("overview", "events", "customers")]
    )

    def clean_page(self) -> int | None:
        # A page far past the end is empty; clamped, its OFFSET stays a number PostgreSQL takes.
        page = self.cleaned_data.get("page")
        return None if page is None else min(page, analytics.MAX_PAGE)

    def window(self, *, now: datetime) -> tuple[datetime, datetime, str, str]:
        """(start, end, preset or "custom", granularity); a custom start/end wins over presets.
        A custom range is clamped (`analytics.EARLIEST`, `LATEST_AHEAD`, `MAX_RANGE`), so any
        dates typed (0001-01-01, 9999-12-31) make a range the chart and the queries can hold."""
        data = self.cleaned_data if self.is_valid() else {}
        preset = data.get("range") or "7d"
        start, end = data.get("start"), data.get("end")
        if start or end:
            earliest, latest = analytics.EARLIEST, now + analytics.LATEST_AHEAD
            end = _clamp((end or now).astimezone(UTC), earliest + timedelta(days=1), latest)
            start = start.astimezone(UTC) if start else end - analytics.RANGE_PRESETS[preset]
            start = _clamp(start, max(earliest, end - analytics.MAX_RANGE), latest)
            preset = "custom"
            if start >= end:
                start = max(end - analytics.RANGE_PRESETS["24h"], earliest)
        else:
            start, end = now - analytics.RANGE_PRESETS[preset], now
        granularity = data.get("granularity") or analytics.DEFAULT_GRANULARITY.get(preset, "day")
        return start, end, preset, analytics.fitting_granularity(start, end, granularity)


def _clamp(moment: datetime, earliest: datetime, latest: datetime) -> datetime:
    return min(max(moment, earliest), latest)
