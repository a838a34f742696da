"""The meter filter language: SQL compiled by meters.filters.filter_sql must select exactly the
events an independent Python oracle (written here) selects, and meters.filters.matches must
agree with it too. Talks to PostgreSQL directly with psycopg, so no Django settings are needed.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from fractions import Fraction
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meters import filters
from meters.filters import InvalidFilter, filter_sql, matches, validate_filter

DATABASE_URL = os.environ.get(
    "FILTER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

try:
    psycopg.connect(DATABASE_URL, connect_timeout=5).close()
except psycopg.Error as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"PostgreSQL not reachable at {DATABASE_URL}: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def conn():
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute("CREATE TEMP TABLE ev (id serial PRIMARY KEY, metadata jsonb)")
        yield connection


# --- independent oracle ----------------------------------------------------------------------


def to_json(value: Any) -> str:
    """JSON text with exact numbers (Decimals written as numbers, not strings)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int | float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"


def json_kind(value: Any) -> tuple[str, Any]:
    """(JSON type name, comparable value); numbers become exact Fractions of their JSON text."""
    if type(value) is bool:
        return ("boolean", value)
    if type(value) is str:
        return ("string", value)
    if type(value) in (int, float, Decimal):
        return ("number", Fraction(repr(value) if type(value) is float else value))
    return ("other", None)


def oracle(flt: dict | None, metadata: Any) -> bool:
    if flt is None:
        return True
    outcomes = []
    for clause in flt["clauses"]:
        if "conjunction" in clause:
            outcomes.append(oracle(clause, metadata))
            continue
        key, op, want = clause["key"], clause["operator"], clause["value"]
        if not isinstance(metadata, dict) or key not in metadata:
            outcomes.append(False)
            continue
        have_type, have = json_kind(metadata[key])
        want_type, want_value = json_kind(want)
        same = have_type == want_type and have == want_value
        both_numbers = have_type == want_type == "number"
        both_strings = have_type == want_type == "string"
        outcomes.append(
            {
                "equals": same,
                "not_equals": not same,
                "greater_than": both_numbers and have > want_value,
                "greater_than_or_equals": both_numbers and have >= want_value,
                "less_than": both_numbers and have < want_value,
                "less_than_or_equals": both_numbers and have <= want_value,
                "contains": both_strings and want_value in have,
                "does_not_contain": both_strings and want_value not in have,
            }[op]
        )
    return all(outcomes) if flt["conjunction"] == "and" else any(outcomes)


def sql_selection(conn: psycopg.Connection, flt: dict | None, events: list[Any]) -> set[int]:
    """Insert the events (ids 1..n) and return the ids the compiled filter selects."""
    sql, params = filter_sql(flt, column="e.metadata")
    with conn.transaction(force_rollback=True):
        conn.execute("DELETE FROM ev")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO ev (id, metadata) VALUES (%s, %s::jsonb)",
                [(i, None if m is None else to_json(m)) for i, m in enumerate(events, 1)],
            )
        rows = conn.execute(f"SELECT e.id FROM ev AS e WHERE {sql}", params).fetchall()
    return {row[0] for row in rows}


def check(conn: psycopg.Connection, flt: dict | None, events: list[Any]) -> set[int]:
    expected = {i for i, m in enumerate(events, 1) if oracle(flt, m)}
    assert sql_selection(conn, flt, events) == expected
    assert {i for i, m in enumerate(events, 1) if matches(flt, m)} == expected
    return expected


# --- strategies ------------------------------------------------------------------------------

KEYS = ["amount", "region", "tier", "a_b", "%"]
TRICKY_STRINGS = [
    "",
    "150",
    "1",
    "1.0",
    "100",
    "-5",
    "true",
    "%",
    "_",
    "\\",
    "a%b",
    "a_b",
    "50%",
    "x\\y",
    "é",
    "Ünïcödé 🚀",
    "EU",
    "eu-west",
]
TRICKY_NUMBERS = [
    0,
    1,
    -1,
    100,
    150,
    Decimal("0.1"),
    Decimal("1.0"),
    Decimal("-0"),
    Decimal("-2.5"),
    Decimal("1E+2"),
    Decimal("150.000"),
    0.1,
    1.0,
    -2.5,
]

text = st.one_of(
    st.sampled_from(TRICKY_STRINGS),
    st.text(
        alphabet=st.one_of(
            st.sampled_from("%_\\ab1.0-é🚀"),
            st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        ),
        max_size=6,
    ),
)
numbers = st.one_of(
    st.sampled_from(TRICKY_NUMBERS),
    st.integers(-200, 200),
    st.decimals(min_value=-200, max_value=200, places=2),
    st.floats(allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(text, numbers, st.booleans())
event_values = st.one_of(scalars, st.just(None), st.just([1]))  # null/array: robustness
events_strategy = st.lists(
    st.dictionaries(st.sampled_from(KEYS), event_values, max_size=len(KEYS)), max_size=10
)


@st.composite
def conditions(draw: st.DrawFn) -> dict:
    op = draw(st.sampled_from(filters.OPERATORS))
    if op in filters.ORDER_OPERATORS:
        value = draw(numbers)
    elif op in filters.STRING_OPERATORS:
        value = draw(text)
    else:
        value = draw(scalars)
    return {"key": draw(st.sampled_from([*KEYS, "missing"])), "operator": op, "value": value}


def groups(level: int = 1) -> st.SearchStrategy[dict]:
    clause = conditions() if level == 3 else st.one_of(conditions(), groups(level + 1))
    return st.fixed_dictionaries(
        {
            "conjunction": st.sampled_from(["and", "or"]),
            "clauses": st.lists(clause, min_size=1, max_size=4),
        }
    )


# --- property tests --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flt=groups(), events=events_strategy)
def test_sql_and_python_agree_with_oracle(conn, flt, events):
    normalized = validate_filter(flt)
    assert validate_filter(normalized) == normalized  # idempotent
    assert filters.filter_depth(normalized) <= filters.MAX_DEPTH
    reloaded = json.loads(filters.filter_to_json(normalized), parse_float=Decimal)
    assert validate_filter(reloaded) == normalized
    check(conn, flt, events)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), text),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["conjunction", "clauses", "key", "operator", "value", "x"]),
            inner,
            max_size=4,
        ),
    ),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(data=json_values)
def test_validation_only_raises_invalid_filter(data):
    try:
        normalized = validate_filter(data)
    except InvalidFilter as exc:
        assert exc.errors
        assert all(e["field"].startswith("filter") and e["message"] for e in exc.errors)
    else:
        filter_sql(normalized)


# --- examples --------------------------------------------------------------------------------


def cond(key: str, operator: str, value: Any) -> dict:
    return {"conjunction": "and", "clauses": [{"key": key, "operator": operator, "value": value}]}


def test_number_like_string_is_not_greater_than_number(conn):
    events = [{"amount": "150"}, {"amount": 150}, {"amount": Decimal("100.5")}, {"amount": True}]
    assert check(conn, cond("amount", "greater_than", 100), events) == {2, 3}


def test_missing_key_is_false_for_every_operator(conn):
    events = [{}, {"other": "x"}, None, [1, 2], 5, "str"]
    for op in filters.OPERATORS:
        value = "x" if op in filters.STRING_OPERATORS else 1
        assert check(conn, cond("region", op, value), events) == set()


def test_not_equals_needs_the_key(conn):
    events = [{"region": "eu"}, {"region": "us"}, {}, {"region": 1}]
    assert check(conn, cond("region", "not_equals", "eu"), events) == {2, 4}


def test_contains_is_literal(conn):
    events = [{"s": "50%"}, {"s": "5000"}, {"s": "a_b"}, {"s": "axb"}, {"s": "x\\y"}, {"s": 50}]
    assert check(conn, cond("s", "contains", "%"), events) == {1}
    assert check(conn, cond("s", "contains", "_"), events) == {3}
    assert check(conn, cond("s", "contains", "\\"), events) == {5}
    assert check(conn, cond("s", "does_not_contain", "%"), events) == {2, 3, 4, 5}
    assert check(conn, cond("s", "contains", "B"), events) == set()  # case-sensitive


def test_empty_needle(conn):
    events = [{"s": ""}, {"s": "abc"}, {"s": 1}, {}]
    assert check(conn, cond("s", "contains", ""), events) == {1, 2}
    assert check(conn, cond("s", "does_not_contain", ""), events) == set()


def test_equals_is_typed_and_numeric(conn):
    events = [{"n": 1}, {"n": Decimal("1.0")}, {"n": "1"}, {"n": True}, {"n": 1.0}, {"n": 2}]
    assert check(conn, cond("n", "equals", 1), events) == {1, 2, 5}
    assert check(conn, cond("n", "equals", Decimal("1.00")), events) == {1, 2, 5}
    assert check(conn, cond("n", "equals", "1"), events) == {3}
    assert check(conn, cond("n", "equals", True), events) == {4}
    assert check(conn, cond("n", "not_equals", 1), events) == {3, 4, 6}


def test_decimal_precision_is_exact(conn):
    events = [{"n": 0.1}, {"n": Decimal("0.30000000000000000001")}, {"n": Decimal("0.3")}]
    assert check(conn, cond("n", "greater_than", 0.3), events) == {2}
    assert check(conn, cond("n", "less_than_or_equals", Decimal("0.1")), events) == {1}


def test_nested_or_and(conn):
    flt = {
        "conjunction": "or",
        "clauses": [
            {"key": "tier", "operator": "equals", "value": "gold"},
            {
                "conjunction": "and",
                "clauses": [
                    {"key": "amount", "operator": "greater_than_or_equals", "value": 10},
                    {
                        "conjunction": "or",
                        "clauses": [
                            {"key": "region", "operator": "contains", "value": "eu"},
                            {"key": "region", "operator": "equals", "value": "apac"},
                        ],
                    },
                ],
            },
        ],
    }
    events = [
        {"tier": "gold"},
        {"amount": 10, "region": "eu-west"},
        {"amount": 9, "region": "eu-west"},
        {"amount": 10, "region": "us"},
        {"amount": 11, "region": "apac"},
    ]
    assert check(conn, flt, events) == {1, 2, 5}


def test_none_filter_selects_everything(conn):
    assert filter_sql(None) == ("TRUE", [])
    assert check(conn, None, [{}, {"a": 1}, None]) == {1, 2, 3}


def test_validation_normalizes():
    raw = {"conjunction": "and", "clauses": [{"key": "n", "operator": "less_than", "value": 0.1}]}
    value = validate_filter(raw)["clauses"][0]["value"]
    assert value == Decimal("0.1") and isinstance(value, Decimal)
    raw["clauses"][0]["value"] = 7
    assert type(validate_filter(raw)["clauses"][0]["value"]) is int


def error_fields(data: Any) -> dict[str, str]:
    with pytest.raises(InvalidFilter) as info:
        validate_filter(data)
    assert str(info.value)
    return {e["field"]: e["message"] for e in info.value.errors}


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (cond("a", "like", "x"), "filter.clauses[0].operator"),
        ({"conjunction": "and", "clauses": []}, "filter.clauses"),
        (cond("a", "greater_than", "150"), "filter.clauses[0].value"),
        (cond("a", "greater_than", True), "filter.clauses[0].value"),
        (cond("a", "contains", 5), "filter.clauses[0].value"),
        (cond("a", "equals", None), "filter.clauses[0].value"),
        (cond("a", "equals", float("nan")), "filter.clauses[0].value"),
        (cond("", "equals", 1), "filter.clauses[0].key"),
        (cond("a\x00", "equals", 1), "filter.clauses[0].key"),
        (cond("a", "equals", "x" * 501), "filter.clauses[0].value"),
        (
            {"conjunction": "and", "clauses": [{"operator": "equals", "value": 1}]},
            "filter.clauses[0].key",
        ),
        (
            {"conjunction": "xor", "clauses": [{"key": "a", "operator": "equals", "value": 1}]},
            "filter.conjunction",
        ),
        (
            {"conjunction": "and", "clauses": [{"key": "a", "value": 1}]},
            "filter.clauses[0].operator",
        ),
        ({"conjunction": "and", "clauses": [{}]}, "filter.clauses[0]"),
        ({"conjunction": "and", "clauses": [{"key": "a"}], "extra": 1}, "filter.extra"),
        ("not an object", "filter"),
        ([], "filter"),
        (None, "filter"),
    ],
)
def test_validation_errors_name_the_field(data, field):
    fields = error_fields(data)
    assert field in fields, fields


def test_missing_conjunction_and_clauses_are_reported():
    assert "filter.conjunction" in error_fields({"clauses": [cond("a", "equals", 1)]})
    assert "filter.clauses" in error_fields({"conjunction": "or"})


def test_depth_four_is_rejected_and_three_accepted():
    level3 = {"conjunction": "or", "clauses": [{"key": "a", "operator": "equals", "value": 1}]}
    level2 = {"conjunction": "and", "clauses": [level3]}
    assert filters.filter_depth(validate_filter({"conjunction": "and", "clauses": [level2]})) == 3
    level4 = {"conjunction": "and", "clauses": [{"key": "a", "operator": "equals", "value": 1}]}
    level3_deep = {"conjunction": "or", "clauses": [level4]}
    too_deep = {
        "conjunction": "and",
        "clauses": [{"conjunction": "and", "clauses": [level3_deep]}],
    }
    assert "filter.clauses[0].clauses[0].clauses[0]" in error_fields(too_deep)


def test_every_error_is_reported_at_once():
    data = {
        "conjunction": "and",
        "clauses": [
            {"key": "a", "operator": "equals", "value": 1},
            {"key": "b", "operator": "nope", "value": 1},
            {"conjunction": "or", "clauses": [{"key": "c", "operator": "contains", "value": 3}]},
            "junk",
        ],
    }
    assert set(error_fields(data)) == {
        "filter.clauses[1].operator",
        "filter.clauses[2].clauses[0].value",
        "filter.clauses[3]",
    }


def test_too_many_clauses():
    data = {"conjunction": "or", "clauses": [cond("a", "equals", i) for i in range(51)]}
    assert "filter.clauses" in error_fields(data)
