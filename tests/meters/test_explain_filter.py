"""The explanation of a filter (meters.filters.failed_conditions) against the same independent
oracle and the same compiled SQL the filter tests use: an event fails to match exactly when the
explanation names a failed condition, and every condition it names is one of the filter's, at
the path it gives, and fails on its own for that event."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters.filters import failed_conditions
from tests.meters.test_filters import (
    conn,
    events_strategy,
    groups,
    oracle,
    sql_selection,
    to_json,
)

__all__ = ["conn"]  # the PostgreSQL fixture of the filter tests, shared


def clause_at(flt: dict, path: str) -> dict:
    """The clause a path such as `filter.clauses[1].clauses[0]` names, read off the raw filter."""
    assert path.startswith("filter")
    clause = flt
    for index in re.findall(r"\.clauses\[(\d+)\]", path):
        clause = clause["clauses"][int(index)]
    return clause


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flt=groups(), events=events_strategy)
def test_explanation_agrees_with_oracle_and_sql(conn, flt, events):
    selected = sql_selection(conn, flt, events)
    for number, metadata in enumerate(events, 1):
        failures = failed_conditions(flt, metadata)
        matched = oracle(flt, metadata)
        assert (number in selected) == matched
        assert (not failures) == matched
        for failure in failures:
            clause = clause_at(flt, failure["path"])
            assert "clauses" not in clause
            assert failure["condition"]["key"] == clause["key"]
            assert failure["condition"]["operator"] == clause["operator"]
            alone = {"conjunction": "and", "clauses": [clause]}
            assert not oracle(alone, metadata)
            assert failure["event_value"] == (
                metadata.get(clause["key"]) if isinstance(metadata, dict) else None
            )
            assert failure["path"] in failure["message"]


def test_or_group_lists_every_failed_branch_and_group_stops_at_first():
    flt = {
        "conjunction": "and",
        "clauses": [
            {"key": "a", "operator": "equals", "value": 1},
            {"key": "b", "operator": "equals", "value": 2},
        ],
    }
    [only] = failed_conditions(flt, {"a": 0, "b": 0})
    assert only["path"] == "filter.clauses[0]"
    flt["conjunction"] = "or"
    assert [f["path"] for f in failed_conditions(flt, {"a": 0, "b": 0})] == [
        "filter.clauses[0]",
        "filter.clauses[1]",
    ]
    assert failed_conditions(flt, {"a": 0, "b": 2}) == []


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_strategy, kind=st.sampled_from(["count", "sum", "max", "unique_count"]))
def test_counted_or_skipped_agrees_with_the_usage_sql(conn, events, kind):
    """Whether a matching event counts (products.explain) is what meters.usage's SQL says."""
    from meters.models import Meter
    from meters.usage import event_value_sql
    from products.explain import _skipped

    meter = Meter(event_name="x", aggregation_type=kind, aggregation_key="amount")
    valid_sql, _, params = event_value_sql(meter, alias="e")
    valid_params = params[:1] if kind != "count" else []
    with conn.transaction(force_rollback=True):
        conn.execute("DELETE FROM ev")
        for number, metadata in enumerate(events, 1):
            conn.execute(
                "INSERT INTO ev (id, metadata) VALUES (%s, %s::jsonb)", [number, to_json(metadata)]
            )
        rows = conn.execute(f"SELECT e.id FROM ev AS e WHERE {valid_sql}", valid_params).fetchall()
    counted_by_sql = {row[0] for row in rows}
    for number, metadata in enumerate(events, 1):
        assert (_skipped(meter, metadata) is None) == (number in counted_by_sql), metadata
