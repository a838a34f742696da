"""Meter filters: validate the JSON filter language, compile it to a PostgreSQL boolean
expression over an event's jsonb ``metadata`` column, and evaluate it in Python with exactly
the same typed semantics (the SQL and Python sides must always select the same events).
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from billing_site.errors import InvalidInput, describe
from billing_site.jsonutil import exact_dumps

OPERATORS: tuple[str, ...] = (
    "equals",
    "not_equals",
    "greater_than",
    "greater_than_or_equals",
    "less_than",
    "less_than_or_equals",
    "contains",
    "does_not_contain",
)
ORDER_OPERATORS: tuple[str, ...] = (
    "greater_than",
    "greater_than_or_equals",
    "less_than",
    "less_than_or_equals",
)
STRING_OPERATORS: tuple[str, ...] = ("contains", "does_not_contain")
CONJUNCTIONS: tuple[str, ...] = ("and", "or")

MAX_DEPTH = 3
MAX_CLAUSES = 50
# Conditions in one filter, all levels together: 50 clauses a group over 3 levels would allow
# 125,000, and 87,500 took 4.3 s to create and 5 s per rollup.
MAX_CONDITIONS = 100
MAX_KEY_LENGTH = 100
MAX_STRING_LENGTH = 500
# Bounds every number well inside PostgreSQL's numeric range so the casts can never fail.
MAX_NUMBER_DIGITS = 1000

_GROUP_FIELDS = ("conjunction", "clauses")
_CONDITION_FIELDS = ("key", "operator", "value")
_SQL_ORDER = {
    "greater_than": ">",
    "greater_than_or_equals": ">=",
    "less_than": "<",
    "less_than_or_equals": "<=",
}

# A number written as text, as JSON would write it (surrounding blanks allowed): "150", "-2.5e3".
_NUMERIC_TEXT = re.compile(r"\s*-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*")

Number = int | Decimal
Value = str | Number | bool
Filter = dict[str, Any]


class InvalidFilter(InvalidInput):
    """A filter failed validation; ``errors`` lists every problem with the field it concerns."""

    code = "INVALID_FILTER"

    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__(describe(errors), errors=list(errors))


# --- validation ---------------------------------------------------------------------------


def validate_filter(data: object) -> Filter:
    """Check raw JSON (API body, form, stored value) and return the normalized filter.

    Normalized numbers are ``int`` or ``Decimal`` (floats go through ``str()`` so 0.1 stays
    0.1). Idempotent: a normalized filter validates to an equal filter. Raises InvalidFilter
    listing every problem rather than only the first, so a UI can mark all bad fields. At most
    MAX_CONDITIONS conditions in all: the API and the admin's meter builder both come here.
    """
    conditions = count_conditions(data)
    if conditions > MAX_CONDITIONS:
        # Before anything else, so an oversized filter costs no more than this count.
        raise InvalidFilter(
            [
                {
                    "field": "filter",
                    "message": f"has {conditions} conditions; at most {MAX_CONDITIONS} are "
                    "allowed in all, counting every level",
                }
            ]
        )
    return _normalized(data)


def _normalized(data: object) -> Filter:
    """Validation without the cap on conditions: stored filters are re-checked with this, so a
    meter saved before the cap existed still counts and bills."""
    errors: list[dict[str, str]] = []
    result = _validate_group(data, "filter", 1, errors)
    if errors or result is None:
        raise InvalidFilter(errors)
    return result


def count_conditions(data: object) -> int:
    """Conditions (clauses that are not groups) in raw filter JSON, at every level; iterative,
    and it looks no deeper than groups can nest, so any input is counted quickly."""
    count = 0
    pending: list[tuple[object, int]] = [(data, 1)]
    while pending:
        group, level = pending.pop()
        clauses = group.get("clauses") if isinstance(group, dict) else None
        if not isinstance(clauses, list | tuple):
            continue
        for clause in clauses:
            if isinstance(clause, dict) and any(name in clause for name in _GROUP_FIELDS):
                if level < MAX_DEPTH:
                    pending.append((clause, level + 1))
            else:
                count += 1
    return count


def _error(errors: list[dict[str, str]], field: str, message: str) -> None:
    errors.append({"field": field, "message": message})


def _validate_group(
    data: object, path: str, level: int, errors: list[dict[str, str]]
) -> Filter | None:
    if not isinstance(data, dict):
        _error(errors, path, "must be an object with 'conjunction' and 'clauses'")
        return None
    before = len(errors)
    for name in data:
        if name not in _GROUP_FIELDS:
            _error(errors, f"{path}.{name}", "unknown field")

    conjunction = data.get("conjunction")
    if "conjunction" not in data:
        _error(errors, f"{path}.conjunction", "this field is required")
    elif not isinstance(conjunction, str) or conjunction not in CONJUNCTIONS:
        _error(errors, f"{path}.conjunction", "must be 'and' or 'or'")

    raw_clauses = data.get("clauses")
    clauses: list[Filter] = []
    if "clauses" not in data:
        _error(errors, f"{path}.clauses", "this field is required")
    elif not isinstance(raw_clauses, list | tuple):
        _error(errors, f"{path}.clauses", "must be a list")
    elif not raw_clauses:
        _error(errors, f"{path}.clauses", "must contain at least one clause")
    elif len(raw_clauses) > MAX_CLAUSES:
        _error(errors, f"{path}.clauses", f"must contain at most {MAX_CLAUSES} clauses")
    else:
        for index, clause in enumerate(raw_clauses):
            normalized = _validate_clause(clause, f"{path}.clauses[{index}]", level, errors)
            if normalized is not None:
                clauses.append(normalized)

    if len(errors) != before:
        return None
    return {"conjunction": conjunction, "clauses": clauses}


def _validate_clause(
    data: object, path: str, level: int, errors: list[dict[str, str]]
) -> Filter | None:
    if not isinstance(data, dict):
        _error(errors, path, "must be an object (a condition or a nested filter)")
        return None
    is_group = any(name in data for name in _GROUP_FIELDS)
    is_condition = any(name in data for name in _CONDITION_FIELDS)
    if is_group and is_condition:
        _error(
            errors,
            path,
            "must be either a condition (key, operator, value) or a nested filter "
            "(conjunction, clauses), not both",
        )
        return None
    if is_group:
        if level >= MAX_DEPTH:
            _error(errors, path, f"filters can be nested at most {MAX_DEPTH} levels deep")
            return None
        return _validate_group(data, path, level + 1, errors)
    if is_condition:
        return _validate_condition(data, path, errors)
    _error(
        errors,
        path,
        "must be a condition (key, operator, value) or a nested filter (conjunction, clauses)",
    )
    return None


def _bad_text(text: str) -> bool:
    """NUL and surrogate code points cannot be stored in jsonb/UTF-8 text."""
    return any(ch == "\x00" or "\ud800" <= ch <= "\udfff" for ch in text)


def _validate_condition(
    data: dict[Any, Any], path: str, errors: list[dict[str, str]]
) -> Filter | None:
    before = len(errors)
    for name in data:
        if name not in _CONDITION_FIELDS:
            _error(errors, f"{path}.{name}", "unknown field")

    key = data.get("key")
    if "key" not in data:
        _error(errors, f"{path}.key", "this field is required")
    elif not isinstance(key, str):
        _error(errors, f"{path}.key", "must be a string")
    elif not key:
        _error(errors, f"{path}.key", "must not be empty")
    elif len(key) > MAX_KEY_LENGTH:
        _error(errors, f"{path}.key", f"must be at most {MAX_KEY_LENGTH} characters")
    elif _bad_text(key):
        _error(errors, f"{path}.key", "must not contain NUL or unpaired surrogate characters")

    operator = data.get("operator")
    operator_ok = False
    if "operator" not in data:
        _error(errors, f"{path}.operator", "this field is required")
    elif not isinstance(operator, str) or operator not in OPERATORS:
        _error(
            errors, f"{path}.operator", f"unknown operator; must be one of {', '.join(OPERATORS)}"
        )
    else:
        operator_ok = True

    value: Value | None = None
    if "value" not in data:
        _error(errors, f"{path}.value", "this field is required")
    else:
        value, message = _normalize_value(data["value"])
        if message is not None:
            _error(errors, f"{path}.value", message)
        elif operator_ok and operator in ORDER_OPERATORS and not _is_number(value):
            _error(errors, f"{path}.value", f"operator '{operator}' requires a number value")
        elif operator_ok and operator in STRING_OPERATORS and not isinstance(value, str):
            _error(errors, f"{path}.value", f"operator '{operator}' requires a string value")

    if len(errors) != before:
        return None
    return {"key": key, "operator": operator, "value": value}


def _normalize_value(raw: object) -> tuple[Value | None, str | None]:
    """Return (normalized value, None) or (None, error message)."""
    if isinstance(raw, bool):
        return raw, None
    if isinstance(raw, str):
        if len(raw) > MAX_STRING_LENGTH:
            return None, f"must be at most {MAX_STRING_LENGTH} characters"
        if _bad_text(raw):
            return None, "must not contain NUL or unpaired surrogate characters"
        return raw, None
    if isinstance(raw, int | float | Decimal):
        if isinstance(raw, float) and not math.isfinite(raw):
            return None, "must be a finite number"
        number = Decimal(str(raw)) if isinstance(raw, float) else Decimal(raw)
        if not number.is_finite():
            return None, "must be a finite number"
        exponent = number.as_tuple().exponent
        assert isinstance(exponent, int)  # finite Decimals have an int exponent
        if exponent < -MAX_NUMBER_DIGITS or (
            not number.is_zero() and number.adjusted() >= MAX_NUMBER_DIGITS
        ):
            return None, (
                f"must have at most {MAX_NUMBER_DIGITS} digits before and after the decimal point"
            )
        return (raw if isinstance(raw, int) else number), None
    return None, "must be a string, number or boolean"


def _is_number(value: object) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def filter_depth(filter: Filter | None) -> int:
    """Nesting level of a (validated) filter: 0 for None, 1 for a flat filter."""
    if filter is None:
        return 0
    nested = [filter_depth(c) for c in filter["clauses"] if "clauses" in c]
    return 1 + max(nested, default=0)


def homogeneous(filter: Filter | None) -> Filter | None:
    """The same filter with no clause list mixing conditions and groups, for the wire.

    The SDK types `clauses` as all-conditions or all-groups; a mixed list is rewritten by wrapping
    each condition in a one-clause group, which means the same thing. Mixed lists only occur above
    the deepest level, so the wrapping never exceeds the depth limit.
    """
    if filter is None:
        return None
    clauses = filter["clauses"]
    has_groups = any("clauses" in clause for clause in clauses)
    has_conditions = any("clauses" not in clause for clause in clauses)
    rewritten = []
    for clause in clauses:
        if "clauses" in clause:
            rewritten.append(homogeneous(clause))
        elif has_groups and has_conditions:
            rewritten.append({"conjunction": "and", "clauses": [clause]})
        else:
            rewritten.append(clause)
    return {"conjunction": filter["conjunction"], "clauses": rewritten}


def filter_to_json(filter: Filter | None) -> str:
    """Serialize a filter to JSON text keeping numbers exact (read back with `exact_loads`)."""
    return exact_dumps(None if filter is None else _normalized(filter))


# --- SQL compilation ----------------------------------------------------------------------


def filter_sql(filter: Filter | None, column: str = "metadata") -> tuple[str, list[Any]]:
    """Compile a filter into a SQL boolean expression over the jsonb ``column``.

    ``column`` is trusted code (e.g. ``"e.metadata"``); all user data travels as ``%s``
    parameters. Every condition is guarded (CASE/COALESCE) so the expression is never NULL
    and never raises, whatever an event's metadata holds. The filter is (re)validated, so a
    raw stored filter is accepted too.
    """
    if filter is None:
        return "TRUE", []
    filter = _normalized(filter)
    params: list[Any] = []
    return _group_sql(filter, column, params), params


def _group_sql(group: Filter, column: str, params: list[Any]) -> str:
    parts = []
    for clause in group["clauses"]:
        if "clauses" in clause:
            parts.append(_group_sql(clause, column, params))
        else:
            parts.append(_condition_sql(clause, column, params))
    joiner = " AND " if group["conjunction"] == "and" else " OR "
    return "(" + joiner.join(parts) + ")"


def _condition_sql(condition: Filter, column: str, params: list[Any]) -> str:
    key, operator, value = condition["key"], condition["operator"], condition["value"]
    field = f"({column} -> %s::text)"
    if operator in ("equals", "not_equals"):
        # jsonb equality is typed (1 <> "1", true <> 1) and numeric-aware (1 = 1.0);
        # a missing key gives NULL, which COALESCE turns into FALSE for both operators.
        sql_op = "=" if operator == "equals" else "<>"
        params.extend([key, exact_dumps(value)])
        return f"COALESCE({field} {sql_op} %s::jsonb, FALSE)"
    if operator in ORDER_OPERATORS:
        # CASE (not AND) guarantees the ::numeric cast only runs on JSON numbers.
        params.extend([key, key, Decimal(value)])
        return (
            f"CASE WHEN jsonb_typeof({field}) = 'number' "
            f"THEN ({column} ->> %s::text)::numeric {_SQL_ORDER[operator]} %s::numeric "
            "ELSE FALSE END"
        )
    # contains / does_not_contain: strpos is a literal substring test (no LIKE wildcards).
    test = "> 0" if operator == "contains" else "= 0"
    params.extend([key, key, value])
    return (
        f"CASE WHEN jsonb_typeof({field}) = 'string' "
        f"THEN strpos({column} ->> %s::text, %s::text) {test} "
        "ELSE FALSE END"
    )


# --- Python evaluation --------------------------------------------------------------------


def matches(filter: Filter | None, metadata: dict[str, Any] | None) -> bool:
    """Evaluate a filter against one event's metadata, exactly as ``filter_sql`` would."""
    if filter is None:
        return True
    filter = _normalized(filter)
    if not isinstance(metadata, dict):
        metadata = {}
    return _match_group(filter, metadata)


def _match_group(group: Filter, metadata: dict[str, Any]) -> bool:
    results = (
        _match_group(c, metadata) if "clauses" in c else _match_condition(c, metadata)
        for c in group["clauses"]
    )
    return all(results) if group["conjunction"] == "and" else any(results)


def _typed(value: object) -> tuple[str, object]:
    """Classify a value by JSON type; numbers become Decimal (bool is not a number)."""
    if isinstance(value, bool):
        return "boolean", value
    if isinstance(value, str):
        return "string", value
    if isinstance(value, int):
        return "number", Decimal(value)
    if isinstance(value, float):
        return ("number", Decimal(str(value))) if math.isfinite(value) else ("other", value)
    if isinstance(value, Decimal):
        return ("number", value) if value.is_finite() else ("other", value)
    return "other", value


def _match_condition(condition: Filter, metadata: dict[str, Any]) -> bool:
    key, operator = condition["key"], condition["operator"]
    if key not in metadata:
        return False
    kind, event_value = _typed(metadata[key])
    want_kind, want = _typed(condition["value"])
    if operator in ("equals", "not_equals"):
        equal = kind == want_kind and event_value == want
        return equal if operator == "equals" else not equal
    if operator in ORDER_OPERATORS:
        if kind != "number" or want_kind != "number":
            return False
        a, b = event_value, want
        assert isinstance(a, Decimal) and isinstance(b, Decimal)
        if operator == "greater_than":
            return a > b
        if operator == "greater_than_or_equals":
            return a >= b
        if operator == "less_than":
            return a < b
        return a <= b
    if kind != "string" or want_kind != "string":
        return False
    assert isinstance(event_value, str) and isinstance(want, str)
    found = want in event_value
    return found if operator == "contains" else not found


# --- explaining one event -----------------------------------------------------------------


def describe_condition(condition: Filter) -> str:
    """`amount greater_than 100`, with the value written as JSON (so "150" shows its quotes)."""
    return f"{condition['key']} {condition['operator']} {exact_dumps(condition['value'])}"


def failed_conditions(filter: Filter | None, metadata: dict[str, Any] | None) -> list[dict]:
    """Why `matches` is False for this metadata: each condition on the failure path, with its
    path in the notation of the filter errors (`filter.clauses[1].clauses[0]`), the condition
    and the event's value; empty when the filter matches.

    An `and` group fails at its first failing clause; an `or` group fails at every clause, so
    each of them is listed. Evaluated by `_match_condition` itself, so it never disagrees with
    `matches` (and so with `filter_sql`).
    """
    if filter is None:
        return []
    filter = _normalized(filter)
    if not isinstance(metadata, dict):
        metadata = {}
    failures: list[dict] = []
    _group_failures(filter, metadata, "filter", failures)
    return failures


def _group_failures(group: Filter, metadata: dict[str, Any], path: str, out: list[dict]) -> bool:
    """Append the failures of `group` to `out`; return whether the group matched."""
    found: list[dict] = []
    for index, clause in enumerate(group["clauses"]):
        clause_path = f"{path}.clauses[{index}]"
        if "clauses" in clause:
            passed = _group_failures(clause, metadata, clause_path, found)
        else:
            passed = _match_condition(clause, metadata)
            if not passed:
                found.append(_failure(clause, metadata, clause_path))
        if group["conjunction"] == "and" and not passed:
            out.extend(found)  # the clauses before it passed: these are its own failures
            return False
        if group["conjunction"] == "or" and passed:
            return True
    if group["conjunction"] == "and":
        return True
    out.extend(found)
    return False


def value_type(metadata: dict[str, Any], key: str) -> str:
    """The JSON type of `metadata[key]` as PostgreSQL's jsonb_typeof names it, or "missing"."""
    if key not in metadata:
        return "missing"
    kind, _ = _typed(metadata[key])
    return "null" if metadata[key] is None else kind


def is_numeric_string(value: object) -> bool:
    """A string that reads as a finite number ("150", "2.5"): a number sent as text."""
    return isinstance(value, str) and _NUMERIC_TEXT.fullmatch(value) is not None


def _failure(condition: Filter, metadata: dict[str, Any], path: str) -> dict:
    key = condition["key"]
    kind = value_type(metadata, key)
    event_value = metadata.get(key)
    want_kind, _ = _typed(condition["value"])
    if kind == "missing":
        why = f"the event has no {key!r} key"
    elif kind != want_kind:
        why = f"the event's {key} is {exact_dumps(event_value)} (a {kind}), not a {want_kind}"
        if kind == "string" and want_kind == "number" and is_numeric_string(event_value):
            why += ': numbers must be sent as numbers (150, not "150")'
    else:
        why = f"the event's {key} is {exact_dumps(event_value)}"
    return {
        "path": path,
        "condition": {"key": key, "operator": condition["operator"], "value": condition["value"]},
        "event_value": event_value,
        "event_value_type": kind,
        "message": f"{path}: {describe_condition(condition)} failed: {why}.",
    }
