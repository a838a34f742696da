"""Fuzz `POST /api/events/ingest` through the real view with hostile bodies.

Whatever arrives, the answer is never a 5xx or a trace; a refusal is `{code, message, ...}` and
stores nothing; an acceptance counts exactly the rows it added. Bodies are written as JSON text
by `dump` below, so they can hold what `json.dumps` cannot: NaN/Infinity literals, numbers beyond
any float, lone surrogates as `\\ud800` escapes, duplicate keys and absurd nesting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.models import Event

URL = "/api/events/ingest"
NOW = datetime.now(UTC)  # at collection: minutes before the run at most, inside the late window

FUZZ_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    # `api` is function-scoped on purpose: every example checks the Event count it changed.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- JSON text with what `json.dumps` refuses to write -------------------------------------------


@dataclass(frozen=True)
class Raw:
    """A token written as is: `NaN`, `1e999999999`, `-0E+400000`, or a broken fragment."""

    text: str


@dataclass(frozen=True)
class Pairs:
    """An object as a list of (key, value) pairs, so a key may repeat."""

    items: tuple[tuple[str, object], ...]


def dump(value: object) -> str:
    """JSON text; strings are ASCII-escaped, so a lone surrogate travels as `\\ud800`."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Pairs):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value.items) + "}"
    if isinstance(value, dict):
        return dump(Pairs(tuple(value.items())))
    if isinstance(value, list | tuple):
        return "[" + ",".join(dump(item) for item in value) + "]"
    return json.dumps(value)  # str, int, float (NaN and Infinity as their literals), bool, None


# --- strategies ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # includes NaN and +-Infinity, written as bare literals
    | st.text(max_size=30)
)
any_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)

# Small pools of known-hostile values, so each is drawn often in a few hundred examples.
HUGE_NUMBERS = [
    Raw(token)
    for token in [
        "NaN",
        "-NaN",
        "Infinity",
        "-Infinity",
        "1e999999999",
        "-1e999999999",
        "1e-999999999",
        "0E+999999999",
        "-0E+400000",
        "0e-400000",
        "1e20",
        "99999999999999999999",
        "-99999999999999999999.5",
        "0.123456789012345678901",
        "1" * 5000,  # beyond Python's int-to-string limit
        "0." + "0" * 5000 + "1",
        "1.0e+",
        "01",
        "-",
        "+1",
        ".5",
    ]
] + [10**30, -(10**19), 2**63, -(2**63) - 1]
NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udfff",
    "x\udc00y",
    "\ufeff",
    "\u2028",
    "' OR 1=1 --",
    "%s%s%s",
    "ümlaut-ключ-鍵-🙂",
    "x" * 101,
    "x" * 256,
    "x" * 501,
    "x" * 100_000,
]
NASTY_TIMESTAMPS = [
    "0001-01-01T00:00:00+01:00",  # before the first representable UTC time
    "9999-12-31T23:59:59-01:00",  # after the last
    "0001-01-01",
    "9999-12-31T23:59:59.999999",
    "2024-02-30T00:00:00Z",
    "2024-01-01T25:00:00Z",
    "T",
    "now",
    (NOW + timedelta(minutes=10)).isoformat(),
    (NOW - timedelta(days=400)).isoformat(),
    1_700_000_000,
]
WRONG_TYPES = [None, True, 0, -1, [], {}, [1, "a"], {"a": 1}, Raw("1.5")]


def deep(depth: int, kind: str) -> Raw:
    return Raw("[" * depth + "]" * depth if kind == "list" else '{"a":' * depth + "1" + "}" * depth)


deep_nesting = st.builds(
    deep, st.sampled_from([50, 1_000, 100_000]), st.sampled_from(["list", "object"])
)
hostile = st.one_of(
    st.sampled_from(HUGE_NUMBERS),
    st.sampled_from(NASTY_STRINGS),
    st.sampled_from(WRONG_TYPES),
    deep_nesting,
    json_scalars,
)
# What to put where: mostly the hostile values meant for that spot, sometimes any of them.
hostile_for = {
    "event_id": st.sampled_from(NASTY_STRINGS) | hostile,
    "customer_id": st.sampled_from(NASTY_STRINGS) | hostile,
    "event_name": st.sampled_from(NASTY_STRINGS) | hostile,
    "timestamp": st.sampled_from(NASTY_TIMESTAMPS) | hostile,
    "metadata": st.sampled_from(WRONG_TYPES) | deep_nesting | any_json,
    "metadata value": st.one_of(
        st.sampled_from(HUGE_NUMBERS),
        st.sampled_from(HUGE_NUMBERS),
        st.sampled_from(NASTY_STRINGS),
        hostile,
    ),
    "metadata key": st.sampled_from(NASTY_STRINGS) | st.text(max_size=5),
}


def iso(offset: timedelta) -> str:
    return (NOW - offset).isoformat()


valid_timestamps = st.one_of(
    st.none(),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)).map(iso),
    st.just((NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")),  # no offset: UTC
)
metadata_keys = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FFF, exclude_categories=["Cs"]),
    min_size=1,
    max_size=20,
)
metadata_values = st.one_of(
    st.booleans(),
    st.integers(min_value=-(10**19), max_value=10**19),
    st.decimals(
        min_value=-(10**12), max_value=10**12, places=6, allow_nan=False, allow_infinity=False
    ).map(lambda d: Raw(str(d))),
    st.text(max_size=50).filter(lambda s: "\x00" not in s),
)


@st.composite
def valid_events(draw, index: int) -> dict:
    event = {
        "event_id": f"fz-{draw(st.uuids()).hex}-{index}",
        "customer_id": draw(st.sampled_from(["cus_fuzz_1", "cus_fuzz_2", "no-such-customer"])),
        "event_name": draw(st.sampled_from(["api.call", "image.generated", "Ünïcode"])),
        "metadata": draw(st.dictionaries(metadata_keys, metadata_values, max_size=5)),
    }
    timestamp = draw(valid_timestamps)
    if timestamp is not None or draw(st.booleans()):
        event["timestamp"] = timestamp
    return event


@st.composite
def valid_batches(draw) -> list[dict]:
    size = draw(st.integers(min_value=1, max_value=5))
    return [draw(valid_events(i)) for i in range(size)]


FIELDS = ["event_id", "customer_id", "event_name", "timestamp", "metadata"]
EDITS = {  # edit -> weight
    "replace field": 6,
    "metadata value": 6,
    "metadata key": 3,
    "drop field": 1,
    "extra field": 1,
    "many metadata keys": 1,
    "duplicate key": 2,
    "duplicate event_id": 1,
    "replace event": 1,
    "empty event": 1,
    "replace events": 1,
    "replace body": 1,
}


@st.composite
def mutated_batches(draw) -> object:
    """A valid batch with one to three hostile edits, anywhere from the envelope to a value."""
    events: list[object] = draw(valid_batches())
    body: object = {"events": events}
    edits = [edit for edit, weight in EDITS.items() for _ in range(weight)]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        index = draw(st.integers(min_value=0, max_value=len(events) - 1))
        event = events[index]
        if not isinstance(event, dict):
            continue
        edit = draw(st.sampled_from(edits))
        field = draw(st.sampled_from(FIELDS))
        metadata = event.get("metadata")
        if edit == "replace field":
            event[field] = draw(hostile_for[field])
        elif edit == "metadata value" and isinstance(metadata, dict):
            metadata[draw(metadata_keys)] = draw(hostile_for["metadata value"])
        elif edit == "metadata key" and isinstance(metadata, dict):
            metadata[draw(hostile_for["metadata key"])] = draw(metadata_values)
        elif edit == "drop field":
            event.pop(field, None)
        elif edit == "extra field":
            event[draw(hostile_for["metadata key"])] = draw(hostile)
        elif edit == "many metadata keys":
            count = draw(st.sampled_from([50, 51, 500]))
            event["metadata"] = {f"k{i}": i for i in range(count)}
        elif edit == "duplicate key":
            # The same key twice: the parser keeps the last, so the second value is what counts.
            events[index] = Pairs((*event.items(), (field, draw(hostile_for[field]))))
        elif edit == "duplicate event_id":
            events.append({**event})
        elif edit == "replace event":
            events[index] = draw(hostile)
        elif edit == "empty event":
            events[index] = {}
        elif edit == "replace events":
            body = {"events": draw(hostile | any_json)}
        elif edit == "replace body":
            body = draw(hostile | any_json)
    return body


def encode(body: object) -> bytes:
    return dump(body).encode()  # ASCII: every non-ASCII character is a \u escape


json_values = st.one_of(
    any_json,
    any_json.map(lambda value: {"events": value}),
    any_json.map(lambda value: {"events": [value]}),
    valid_batches().map(lambda events: {"events": events}),
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"   ",
            b"\x00",
            b'{"events": [',
            b"\xff\xfe{}",
            b'\xef\xbb\xbf{"events": []}',  # a UTF-8 byte order mark
            b'{"events": [{"event_id": "\xed\xa0\x80"}]}',  # a surrogate encoded as UTF-8
            b'{"events": [{"event_id": "a\x00b"}]}',  # a raw NUL inside a string
            b'{"events": [] } trailing',
            b"[" * 200_000,
            b'{"events": [{"metadata": ' + b'{"a":' * 50_000 + b"1" + b"}" * 50_000 + b"}]}",
        ]
    ),
)


# --- the property ------------------------------------------------------------------------------


def check_ingest(api, body: bytes) -> None:
    before = Event.objects.count()
    response = api.generic("POST", URL, body, content_type="application/json")
    after = Event.objects.count()
    text = response.content.decode("utf-8", "replace")
    assert response.status_code < 500, text[:2000]
    assert "Traceback" not in text
    payload = json.loads(text)
    if response.status_code == 200:
        assert set(payload) == {"ingested_count"}, payload
        assert payload["ingested_count"] == after - before, (payload, after - before)
    else:
        assert 400 <= response.status_code < 500
        assert isinstance(payload.get("code"), str) and payload["code"], payload
        assert isinstance(payload.get("message"), str) and payload["message"], payload
        assert after == before, f"{after - before} events stored by a refused request"


@pytest.mark.slow
@settings(FUZZ_SETTINGS, max_examples=300)
@given(body=mutated_batches())
def test_near_valid_batches_never_break_ingestion(api, body):
    check_ingest(api, encode(body))


@pytest.mark.slow
@settings(FUZZ_SETTINGS, max_examples=100)
@given(body=json_values)
def test_arbitrary_json_never_breaks_ingestion(api, body):
    check_ingest(api, encode(body))


@pytest.mark.slow
@settings(FUZZ_SETTINGS, max_examples=100)
@given(body=raw_bodies)
def test_arbitrary_bytes_never_break_ingestion(api, body):
    check_ingest(api, body)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"events": [{"event_id": "e", "customer_id": "c", "event_name": "n", '
        b'"timestamp": "0001-01-01T00:00:00+01:00"}]}',
        b'{"events": [{"event_id": "e", "customer_id": "c", "event_name": "n", '
        b'"metadata": {"v": 1e999999999}}]}',
        b'{"events": [{"event_id": "e", "customer_id": "c", "event_name": "n", '
        b'"metadata": {"\\ud800": 1}}]}',
    ],
    ids=["deep-nesting", "timestamp-overflow", "number-overflow", "surrogate-key-echoed"],
)
def test_inputs_fuzzing_found_are_refused(api, body):
    """Regressions: each of these once answered 500."""
    check_ingest(api, body)
    assert Event.objects.count() == 0
