"""Meter health: what in the recent events suggests a meter is missing usage. Event names that
differ from the meter's only by case or a typo, metadata keys close to the aggregation or filter
keys, numbers sent as strings, filter conditions no event passed, events of unknown customers;
each with a count and examples.

Bounded: it reads the latest HEALTH_SAMPLE_EVENTS events of the meter's name in the last
HEALTH_WINDOW_DAYS (through the (event_name, timestamp) index), and the skip scan of event names,
so its cost does not grow with the events table. Counts are over that sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db import connection

from billing_site.names import MAX_NAME_DISTANCE, name_distance
from events.queries import EVENTS_TABLE, event_names
from meters.filters import Filter, describe_condition, filter_sql
from meters.models import Aggregation, Meter
from products.models import Customer

HEALTH_WINDOW_DAYS = 7
HEALTH_SAMPLE_EVENTS = 10_000
EXAMPLES = 3
# Event names compared with the meter's (the first ones by name, as the admin's filter reads).
MAX_EVENT_NAMES = 1_000
NUMERIC_TEXT_SQL = r"^\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


@dataclass(frozen=True)
class Health:
    meter_id: str
    window_start: datetime
    window_end: datetime
    sampled_events: int
    similar_event_names: list[dict]
    near_keys: list[dict]
    numeric_strings: list[dict]
    conditions: list[dict]
    unknown_customers: dict

    @property
    def problems(self) -> int:
        """How many findings there are, for a badge."""
        return (
            len(self.similar_event_names)
            + len(self.near_keys)
            + len(self.numeric_strings)
            + sum(1 for c in self.conditions if c["passed"] == 0)
            + (1 if self.unknown_customers["events"] else 0)
        )

    def wire(self) -> dict:
        return {
            "meter_id": self.meter_id,
            "window_start": self.window_start.isoformat(),
            "window_end": self.window_end.isoformat(),
            "sampled_events": self.sampled_events,
            "similar_event_names": self.similar_event_names,
            "near_keys": self.near_keys,
            "numeric_strings": self.numeric_strings,
            "conditions": self.conditions,
            "conditions_never_passed": [c for c in self.conditions if c["passed"] == 0],
            "unknown_customers": self.unknown_customers,
        }


def _leaf_conditions(group: Filter | None, path: str = "filter") -> list[tuple[str, Filter]]:
    if group is None:
        return []
    found = []
    for index, clause in enumerate(group["clauses"]):
        clause_path = f"{path}.clauses[{index}]"
        if "clauses" in clause:
            found.extend(_leaf_conditions(clause, clause_path))
        else:
            found.append((clause_path, clause))
    return found


def _sample_sql() -> str:
    return f"""
        SELECT event_id, customer_id, metadata FROM {EVENTS_TABLE}
        WHERE event_name = %s AND timestamp >= %s AND timestamp < %s
        ORDER BY timestamp DESC LIMIT %s
    """


def meter_health(meter: Meter, *, now: datetime) -> Health:
    """The health of `meter` over the last HEALTH_WINDOW_DAYS before `now`."""
    start = now - timedelta(days=HEALTH_WINDOW_DAYS)
    sample = _sample_sql()
    sample_params: list[Any] = [meter.event_name, start, now, HEALTH_SAMPLE_EVENTS]
    conditions = _leaf_conditions(meter.filter)
    keys = {c["key"] for _, c in conditions}
    if meter.aggregation_key:
        keys.add(meter.aggregation_key)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM ({sample}) s", sample_params)
        sampled = cursor.fetchone()[0]
        near_keys = _near_keys(cursor, sample, sample_params, keys)
        numeric = _numeric_strings(cursor, sample, sample_params, meter, conditions)
        passed = _condition_passes(cursor, sample, sample_params, conditions)
        unknown = _unknown_customers(cursor, sample, sample_params)
        similar = _similar_names(cursor, meter, start, now)
    return Health(meter.id, start, now, sampled, similar, near_keys, numeric, passed, unknown)


def _similar_names(cursor: Any, meter: Meter, start: datetime, end: datetime) -> list[dict]:
    folded = meter.event_name.casefold()
    found = []
    for name in event_names(MAX_EVENT_NAMES):
        if name == meter.event_name:
            continue
        if name.casefold() == folded:
            relation = "case"
        elif name_distance(name, meter.event_name) <= MAX_NAME_DISTANCE:
            relation = "edit"
        else:
            continue
        cursor.execute(
            f"""SELECT count(*), (array_agg(event_id ORDER BY timestamp DESC))[1:%s]
                FROM (SELECT event_id, timestamp FROM {EVENTS_TABLE}
                      WHERE event_name = %s AND timestamp >= %s AND timestamp < %s
                      ORDER BY timestamp DESC LIMIT %s) recent""",
            [EXAMPLES, name, start, end, HEALTH_SAMPLE_EVENTS],
        )
        count, examples = cursor.fetchone()
        if count:
            found.append(
                {"event_name": name, "relation": relation, "events": count, "examples": examples}
            )
    return found


def _near_keys(cursor: Any, sample: str, params: list, keys: set[str]) -> list[dict]:
    """Keys on the sampled events that are not a key the meter reads but close to one."""
    if not keys:
        return []
    cursor.execute(
        f"""SELECT key, count(*), (array_agg(event_id ORDER BY event_id))[1:%s]
            FROM ({sample}) s, jsonb_object_keys(
                CASE WHEN jsonb_typeof(s.metadata) = 'object' THEN s.metadata ELSE '{{}}' END
            ) AS key
            GROUP BY key""",
        [EXAMPLES, *params],
    )
    found = []
    for key, count, examples in cursor.fetchall():
        if key in keys:
            continue
        close = sorted(
            k
            for k in keys
            if k.casefold() == key.casefold() or name_distance(k, key) <= MAX_NAME_DISTANCE
        )
        if close:
            found.append({"key": key, "close_to": close, "events": count, "examples": examples})
    return sorted(found, key=lambda k: (-k["events"], k["key"]))


def _numeric_strings(
    cursor: Any, sample: str, params: list, meter: Meter, conditions: list[tuple[str, Filter]]
) -> list[dict]:
    """Keys where a number is expected (the value of sum/max/min/last, a number condition) that
    events sent as a numeric string ("150"): skipped, or failing the condition."""
    expected: dict[str, str] = {}
    if meter.aggregation_key and meter.aggregation_type not in (
        Aggregation.COUNT,
        Aggregation.UNIQUE_COUNT,
    ):
        expected[meter.aggregation_key] = "aggregation"
    for path, condition in conditions:
        value = condition["value"]
        if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
            expected.setdefault(condition["key"], path)
    found = []
    for key, where in sorted(expected.items()):
        cursor.execute(
            f"""SELECT count(*), (array_agg(event_id ORDER BY event_id))[1:%s]
                FROM ({sample}) s
                WHERE jsonb_typeof(s.metadata -> %s) = 'string'
                  AND (s.metadata ->> %s) ~ %s""",
            [EXAMPLES, *params, key, key, NUMERIC_TEXT_SQL],
        )
        count, examples = cursor.fetchone()
        if count:
            found.append({"key": key, "expected_by": where, "events": count, "examples": examples})
    return found


def _condition_passes(
    cursor: Any, sample: str, params: list, conditions: list[tuple[str, Filter]]
) -> list[dict]:
    """How many sampled events pass each condition on its own (the compiled SQL of each)."""
    if not conditions:
        return []
    parts, part_params = [], []
    for _, condition in conditions:
        sql, condition_params = filter_sql(
            {"conjunction": "and", "clauses": [condition]}, column="s.metadata"
        )
        parts.append(f"count(*) FILTER (WHERE {sql})")
        part_params.extend(condition_params)
    cursor.execute(f"SELECT {', '.join(parts)} FROM ({sample}) s", [*part_params, *params])
    counts = cursor.fetchone()
    return [
        {
            "path": path,
            "condition": describe_condition(condition),
            "passed": int(count),
        }
        for (path, condition), count in zip(conditions, counts, strict=True)
    ]


def _unknown_customers(cursor: Any, sample: str, params: list) -> dict:
    cursor.execute(
        f"""SELECT count(*), count(DISTINCT customer_id),
                   (array_agg(DISTINCT customer_id))[1:%s]
            FROM ({sample}) s
            WHERE NOT EXISTS (SELECT 1 FROM {Customer._meta.db_table} c
                              WHERE c.customer_id = s.customer_id)""",
        [EXAMPLES, *params],
    )
    events, customers, examples = cursor.fetchone()
    return {"events": events, "customer_ids": customers, "examples": examples or []}
