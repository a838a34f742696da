"""The fast decoder (msgspec) changes no answer: what it accepts, the exact path (`json.loads` with
Decimal, then `validate_batch`) accepts with the same rows; everything else it leaves to the exact
path, so every error is the exact path's, code, fields, messages and order.

The edge cases where msgspec and `json.loads` differ are pinned one by one below, each through
the API against the exact path's own answer computed in the test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection
from hypothesis import given, settings
from hypothesis import strategies as st

from events.ingest import InvalidEvents, fast_rows, parse_body, validate_batch
from events.models import Event
from tests.fuzz.test_ingest_fuzz import (
    FUZZ_SETTINGS,
    encode,
    json_values,
    mutated_batches,
    raw_bodies,
    valid_batches,
)

URL = "/api/events/ingest"


def exact_answer(body: bytes, now: datetime):
    """What the exact path alone makes of `body`: its rows, or (status, code, message, errors)."""
    try:
        return validate_batch(parse_body(body), now=now)
    except InvalidEvents as exc:  # also a too-deep body, refused while parsing
        return (exc.status, exc.code, exc.message, exc.errors)
    except Exception as exc:  # MalformedJSON; anything else is the same failure either way
        return (getattr(exc, "status", None), getattr(exc, "code", None), str(exc), [])


def literal(metadata_json: str) -> object:
    """The metadata with every number as its literal text: equal means exactly equal."""
    return json.loads(metadata_json, parse_float=str, parse_int=str)


def assert_same_as_exact_path(body: bytes) -> bool:
    """Whenever the fast path gives rows, the exact path gives the same ones; True if it did."""
    now = datetime.now(UTC)
    fast = fast_rows(body, now=now)
    if fast is None:
        return False
    exact = exact_answer(body, now)
    assert isinstance(exact, list), (body[:300], exact)
    assert [row._replace(metadata_json="") for row in fast] == [
        row._replace(metadata_json="") for row in exact
    ]
    assert [literal(r.metadata_json) for r in fast] == [literal(r.metadata_json) for r in exact]
    return True


@settings(FUZZ_SETTINGS, max_examples=300)
@given(body=mutated_batches())
def test_fast_path_accepts_only_what_the_exact_path_accepts_near_valid(body):
    assert_same_as_exact_path(encode(body))


@settings(FUZZ_SETTINGS, max_examples=150)
@given(body=st.one_of(json_values.map(encode), raw_bodies))
def test_fast_path_accepts_only_what_the_exact_path_accepts_arbitrary(body):
    assert_same_as_exact_path(body)


@settings(FUZZ_SETTINGS, max_examples=150)
@given(events=valid_batches())
def test_valid_batches_take_the_fast_path(events):
    body = encode({"events": events})
    assert assert_same_as_exact_path(body), body[:300]
    # The same with every non-ASCII character as raw UTF-8 rather than a \u escape.
    assert assert_same_as_exact_path(json.dumps(json.loads(body), ensure_ascii=False).encode())


def post(api, body: bytes):
    return api.generic("POST", URL, body, content_type="application/json")


def body_with(event_fields: str = "", metadata: str = '{"k": 1}', *, events: str = "") -> bytes:
    """One event as JSON text, with `event_fields` (JSON text, leading comma) added."""
    event = (
        '{"event_id": "e1", "customer_id": "c", "event_name": "n", '
        f'"metadata": {metadata}{event_fields}}}'
    )
    return f'{{"events": [{events or event}]}}'.encode()


def assert_refused_as_exact_path(api, body: bytes, status: int, code: str, field: str | None):
    """The API's answer is the exact path's, word for word, and nothing is stored."""
    expected = exact_answer(body, datetime.now(UTC))
    assert isinstance(expected, tuple), expected
    response = post(api, body)
    payload = response.json()
    assert (response.status_code, payload["code"]) == (status, code), payload
    assert (response.status_code, payload["code"], payload["message"]) == expected[:3]
    assert payload.get("errors", []) == expected[3]
    if field is not None:
        assert field in [e["field"] for e in payload["errors"]]
    assert Event.objects.count() == 0


def stored_metadata_text(event_id: str, key: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT metadata->>%s FROM events_event WHERE event_id = %s", [key, event_id]
        )
        return cursor.fetchone()[0]


# --- where msgspec and json.loads differ ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (body_with().replace(b'"e1"', b'"\\ud800"'), "events[0].event_id"),
        (body_with().replace(b'"e1"', b'"x\\udc00y"'), "events[0].event_id"),
        (body_with().replace(b'"e1"', b'"\\ud800\\u0041"'), "events[0].event_id"),
        (body_with(metadata='{"\\udfff": 1}'), "events[0].metadata.\udfff"),
        (body_with(metadata='{"k": "\\ud800\\ud800"}'), "events[0].metadata.k"),
    ],
    ids=["high-alone", "low-alone", "high-then-letter", "in-key", "two-highs"],
)
def test_lone_surrogate_escapes_are_422_as_before(api, body, field):
    """msgspec refuses a lone surrogate escape as malformed JSON; the answer stays the 422 that
    names the field (`json.loads` reads the escape, validation refuses the character)."""
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 422, "INVALID_REQUEST_BODY", field)


def test_utf8_encoded_surrogate_bytes_are_422_as_before(api):
    body = body_with().replace(b'"e1"', b'"\xed\xa0\x80"')  # json.loads reads it as U+D800
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 422, "INVALID_REQUEST_BODY", "events[0].event_id")


def test_nul_escape_is_422_as_before(api):
    body = body_with(metadata='{"k": "a\\u0000b"}')
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 422, "INVALID_REQUEST_BODY", "events[0].metadata.k")


def test_surrogate_pair_escape_is_one_character_on_both_paths(api):
    """A valid pair decodes to one character and takes the fast path; lengths count characters
    (code points) on both paths: 255 astral characters pass, 256 do not."""
    pair = "\\ud83d\\ude00"
    accepted = body_with().replace(b'"e1"', f'"{pair * 255}"'.encode())
    assert assert_same_as_exact_path(accepted)
    too_long = body_with().replace(b'"e1"', f'"{pair * 256}"'.encode())
    assert fast_rows(too_long, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, too_long, 422, "INVALID_REQUEST_BODY", "events[0].event_id")
    assert post(api, accepted).json() == {"ingested_count": 1}
    assert Event.objects.get().event_id == "\U0001f600" * 255


@pytest.mark.parametrize(
    "number",
    ["18446744073709551617", "-9223372036854775809", "99999999999999999999"],
    ids=["2**64+1", "-(2**63)-1", "1e20-1"],
)
def test_integers_beyond_64_bits_are_stored_exactly(api, number):
    body = body_with(metadata=f'{{"big": {number}}}')
    assert assert_same_as_exact_path(body)
    assert post(api, body).json() == {"ingested_count": 1}
    assert stored_metadata_text("e1", "big") == number


@pytest.mark.parametrize(
    ("number", "status", "code"),
    [
        ("100000000000000000000", 422, "INVALID_REQUEST_BODY"),  # 1e20: over the limit
        ("-100000000000000000000", 422, "INVALID_REQUEST_BODY"),
        ("1" * 5000, 400, "INVALID_JSON"),  # past Python's int-to-string limit, past msgspec's
    ],
    ids=["1e20", "-1e20", "5000-digits"],
)
def test_integers_over_the_limit_are_refused_as_before(api, number, status, code):
    body = body_with(metadata=f'{{"big": {number}}}')
    assert fast_rows(body, now=datetime.now(UTC)) is None
    field = "events[0].metadata.big" if status == 422 else None
    assert_refused_as_exact_path(api, body, status, code, field)


@pytest.mark.parametrize("literal_text", ["NaN", "-NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_400_as_before(api, literal_text):
    body = body_with(metadata=f'{{"v": {literal_text}}}')
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 400, "INVALID_JSON", None)


def test_decimals_keep_their_digits_on_the_fast_path(api):
    body = body_with(metadata='{"v": 0.10000000000000000555, "scale": 1.50, "e": 1E+5}')
    assert assert_same_as_exact_path(body)
    assert post(api, body).status_code == 200
    assert stored_metadata_text("e1", "v") == "0.10000000000000000555"
    assert stored_metadata_text("e1", "scale") == "1.50"
    assert stored_metadata_text("e1", "e") == "100000"  # jsonb's reading of 1E+5, as before


def test_duplicate_keys_keep_the_last_value_on_both_paths(api):
    """`json.loads` keeps the last of a repeated key; so does msgspec, for the struct's fields,
    the metadata and the body's `events`."""
    body = (
        b'{"events": [{"event_id": "first", "customer_id": "c", "event_name": "n"}],'
        b' "events": [{"event_id": "e1", "event_id": "e2", "customer_id": "c",'
        b' "event_name": "n", "metadata": {"k": 1, "k": "last"}}]}'
    )
    assert assert_same_as_exact_path(body)
    assert post(api, body).json() == {"ingested_count": 1}
    assert list(Event.objects.values_list("event_id", "metadata")) == [("e2", {"k": "last"})]


def test_a_repeated_key_hiding_a_bad_value_is_refused_by_its_last_value(api):
    body = body_with(', "timestamp": "2026-01-01T00:00:00Z", "timestamp": "not a time"')
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 400, "INVALID_REQUEST_BODY", "events[0].timestamp")


@pytest.mark.parametrize(
    ("nesting", "field"),
    [(50, "events[0].metadata.k"), (100_000, "events[0].metadata.k")],
    ids=["past-32", "past-recursion"],
)
def test_deep_nesting_is_422_as_before(api, nesting, field):
    body = body_with(metadata='{"k": ' + "[" * nesting + "]" * nesting + "}")
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 422, "INVALID_REQUEST_BODY", field)


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": [{"event_id": "\xff", "customer_id": "c", "event_name": "n"}]}',
        b"\xff\xfe{}",
        body_with() + b" trailing",
        body_with() + b"{}",
        b"",
        b"   ",
    ],
    ids=["bad-utf8", "utf16-bom", "trailing-text", "two-documents", "empty", "blank"],
)
def test_malformed_bodies_are_400_as_before(api, body):
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert_refused_as_exact_path(api, body, 400, "INVALID_JSON", None)


def test_utf8_byte_order_mark_is_accepted_as_before(api):
    """`json.loads` skips a UTF-8 BOM at the start of bytes; msgspec does not, so such a body
    takes the exact path and is stored as before."""
    body = b"\xef\xbb\xbf" + body_with()
    assert fast_rows(body, now=datetime.now(UTC)) is None
    assert isinstance(exact_answer(body, datetime.now(UTC)), list)
    assert post(api, body).json() == {"ingested_count": 1}


def test_timestamps_read_the_same_on_both_paths():
    now = datetime.now(UTC)
    for timestamp in (
        (now - timedelta(days=34)).isoformat(),
        (now + timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%S"),  # no offset: UTC
        (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))).isoformat(),
        (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    ):
        assert assert_same_as_exact_path(body_with(f', "timestamp": "{timestamp}"'))
    for timestamp in (
        (now - timedelta(days=36)).isoformat(),
        (now + timedelta(minutes=6)).isoformat(),
        "0001-01-01T00:00:00+01:00",
        "yesterday",
    ):
        assert fast_rows(body_with(f', "timestamp": "{timestamp}"'), now=now) is None


def test_unknown_fields_and_wrong_types_leave_the_fast_path():
    for body in (
        body_with(', "quantity": 3'),
        body_with().replace(b'"events"', b'"events": [], "batch": 1, "x"', 1),
        body_with().replace(b'"e1"', b"12"),
        body_with(metadata="[1]"),
        body_with(metadata='{"k": null}'),
        body_with(metadata='{"k": {"a": 1}}'),
        body_with(metadata='{"": 1}'),
        body_with(metadata=json.dumps({f"k{i}": i for i in range(51)})),
        json.dumps({"events": [json.loads(body_with())["events"][0]] * 2}).encode(),
    ):
        assert fast_rows(body, now=datetime.now(UTC)) is None, body[:200]
        assert isinstance(exact_answer(body, datetime.now(UTC)), tuple)
