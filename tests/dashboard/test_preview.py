"""The live preview rule (meters/preview.py): counts over the last 7 days of events with the draft's
event name, computed in SQL, must equal plain Python over the same events with the filter
evaluator, and skipped events are split into "missing key" and "not a number"."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_site.errors import InvalidInput
from billing_site.jsonutil import exact_dumps
from meters import preview
from meters.filters import matches
from products.billing import ingest_events as ingest
from tests.factories import event

NAME = "llm.request"

# Metadata chosen to hit every typed corner: numbers as strings, booleans, decimals, missing keys.
METADATA = [
    {"model": "gpt-4", "tokens": 1200, "region": "eu", "cached": False},
    {"model": "gpt-4", "tokens": 80, "region": "us"},
    {"model": "gpt-4o-mini", "tokens": Decimal("0.5"), "region": "eu"},
    {"model": "claude", "tokens": "150", "region": "eu"},
    {"model": "claude", "tokens": True, "region": "ap"},
    {"model": "llama", "region": "eu", "cached": True},
    {"model": "GPT-4", "tokens": 999, "region": "us"},
    {"tokens": 3000},
    {},
    {"model": "gpt-4", "tokens": 1000, "region": "eu", "cached": True},
    {"model": "mistral", "tokens": 1001, "region": "EU"},
    {"model": "gpt-4", "tokens": Decimal("1000.0"), "region": "us"},
]


@pytest.fixture
def window_events(db):
    """METADATA as events inside the window, plus events the preview must ignore."""
    now = timezone.now()
    events = [
        event(f"in-{i}", f"cus_{i % 3}", NAME, timestamp=now - timedelta(hours=i + 1), metadata=md)
        for i, md in enumerate(METADATA)
    ]
    events += [
        event("old", "cus_0", NAME, timestamp=now - timedelta(days=8), metadata=METADATA[0]),
        event("other-name", "cus_0", "llm.Request", timestamp=now, metadata=METADATA[0]),
    ]
    ingest(exact_dumps({"events": events}).encode(), now=now)  # exact decimals, unlike json
    return now


def draft(filter=None, kind="sum", key="tokens", event_name=NAME) -> preview.Draft:
    return preview.parse_draft(
        {"event_name": event_name, "aggregation": {"type": kind, "key": key}, "filter": filter}
    )


def expected_counts(flt, key: str | None) -> tuple[int, int, int]:
    """(matched, missing key, not a number) in plain Python over METADATA."""
    matched = [md for md in METADATA if matches(flt, md)]
    if key is None:
        return len(matched), 0, 0
    missing = sum(1 for md in matched if key not in md)
    not_number = sum(
        1
        for md in matched
        if key in md and (isinstance(md[key], bool) or not isinstance(md[key], int | Decimal))
    )
    return len(matched), missing, not_number


def test_without_a_filter_every_event_of_the_name_in_the_last_7_days_is_examined(window_events):
    result = preview.preview(draft(), now=window_events)
    assert result.examined == len(METADATA)
    assert result.matched == len(METADATA)
    # tokens is missing on two events ({} and llama), a string on one and a boolean on one
    assert (result.skipped_missing_key, result.skipped_not_a_number) == (2, 2)
    assert result.contributing == len(METADATA) - 4


def test_count_meters_skip_nothing(window_events):
    result = preview.preview(draft(kind="count", key=None), now=window_events)
    assert (result.matched, result.skipped) == (len(METADATA), 0)
    assert all(sample.value is None and sample.skip_reason is None for sample in result.sample)


def test_typed_filter_counts_agree_with_python(window_events):
    flt = {
        "conjunction": "and",
        "clauses": [
            {"key": "region", "operator": "equals", "value": "eu"},
            {
                "conjunction": "or",
                "clauses": [
                    {"key": "model", "operator": "contains", "value": "gpt"},
                    {"key": "tokens", "operator": "greater_than", "value": 100},
                ],
            },
        ],
    }
    result = preview.preview(draft(flt), now=window_events)
    matched, missing, not_number = expected_counts(flt, "tokens")
    assert (result.matched, result.skipped_missing_key, result.skipped_not_a_number) == (
        matched,
        missing,
        not_number,
    )
    # region eu AND (gpt in model OR tokens > 100): in-0, in-2, in-9 (the string "150" is no number)
    assert sorted(sample.event_id for sample in result.sample) == ["in-0", "in-2", "in-9"]


def test_sample_is_newest_first_and_shows_what_each_event_contributes(window_events):
    result = preview.preview(draft(), now=window_events, sample_size=4)
    assert [s.event_id for s in result.sample] == ["in-0", "in-1", "in-2", "in-3"]
    assert [s.value for s in result.sample] == [Decimal(1200), Decimal(80), Decimal("0.5"), None]
    assert result.sample[3].skip_reason == preview.SKIP_NOT_A_NUMBER
    assert result.sample[3].metadata == METADATA[3]


def test_skip_reasons_name_missing_keys_and_non_numbers(window_events):
    result = preview.preview(draft(key="cached"), now=window_events, sample_size=20)
    reasons = {s.event_id: s.skip_reason for s in result.sample}
    assert reasons["in-0"] == preview.SKIP_NOT_A_NUMBER  # a boolean is not a number
    assert reasons["in-1"] == preview.SKIP_MISSING_KEY


def test_invalid_drafts_name_every_bad_field():
    with pytest.raises(InvalidInput) as raised:
        preview.parse_draft(
            {
                "event_name": "",
                "aggregation": {"type": "sum"},
                "filter": {
                    "conjunction": "and",
                    "clauses": [
                        {"key": "region", "operator": "equals", "value": "eu"},
                        {"key": "tokens", "operator": "greater_than", "value": "100"},
                    ],
                },
            }
        )
    fields = [error["field"] for error in raised.value.errors]
    assert fields == ["event_name", "aggregation.key", "filter.clauses[1].value"]


def test_suggestions_list_event_names_and_the_keys_seen_with_their_type(window_events):
    assert preview.known_event_names() == ["llm.Request", NAME]
    keys = {s.key: s.value_type for s in preview.metadata_keys(NAME)}
    assert keys == {"model": "string", "tokens": "number", "region": "string", "cached": "boolean"}


# --- the SQL counts and the Python evaluator agree on generated filters ------------------------

KEYS = ["model", "tokens", "region", "cached", "absent"]
VALUES = st.one_of(
    st.sampled_from(["gpt-4", "gpt", "eu", "EU", "150", "", "claude"]),
    st.integers(-5, 3100),
    st.sampled_from([Decimal("0.5"), Decimal("1000.0"), Decimal("999.99")]),
    st.booleans(),
)


@st.composite
def conditions(draw):
    operator = draw(
        st.sampled_from(
            [
                "equals",
                "not_equals",
                "greater_than",
                "greater_than_or_equals",
                "less_than",
                "less_than_or_equals",
                "contains",
                "does_not_contain",
            ]
        )
    )
    if operator.startswith(("greater", "less")):
        value = draw(st.one_of(st.integers(-5, 3100), st.sampled_from([Decimal("0.5")])))
    elif "contain" in operator:
        value = draw(st.sampled_from(["gpt", "4", "", "e", "EU"]))
    else:
        value = draw(VALUES)
    return {"key": draw(st.sampled_from(KEYS)), "operator": operator, "value": value}


def groups(depth: int):
    clause = conditions() if depth >= 3 else st.one_of(conditions(), groups(depth + 1))
    return st.fixed_dictionaries(
        {
            "conjunction": st.sampled_from(["and", "or"]),
            "clauses": st.lists(clause, min_size=1, max_size=3),
        }
    )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flt=groups(1), key=st.sampled_from(["tokens", "cached", "absent"]))
def test_generated_filters_count_the_same_in_sql_and_python(window_events, flt, key):
    result = preview.preview(draft(flt, key=key), now=window_events, sample_size=50)
    assert (result.matched, result.skipped_missing_key, result.skipped_not_a_number) == (
        expected_counts(flt, key)
    )
    assert result.examined == len(METADATA)
