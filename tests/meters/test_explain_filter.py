"""The explanation of a filter (meters.filters.failed_conditions) against the same independent
oracle and the same compiled SQL the filter tests use: an event fails to match exactly when the
explanation names a failed condition, and every condition it names is one of the filter's, at
the path it gives, and fails on its own for that event."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings

from meters.filters import failed_conditions
from tests.meters.test_filters import conn, events_strategy, groups, oracle, sql_selection

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
