"""The meters API, Dodo-compatible: create, list (`archived`), retrieve, update, archive (DELETE),
unarchive, and validation errors that name the bad field and store nothing."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.core.management import call_command
from dodopayments.types import MeterFilter

from billing_site.jsonutil import exact_loads
from meters.models import Meter
from tests.factories import event, ingest_events

pytestmark = pytest.mark.django_db

TOKENS = {
    "name": "Tokens",
    "event_name": "tokens.used",
    "measurement_unit": "tokens",
    "aggregation": {"type": "sum", "key": "tokens"},
}


def create(api, body: dict | str):
    text = body if isinstance(body, str) else json.dumps(body)
    return api.post("/api/meters", text, content_type="application/json")


def patch(api, meter_id: str, body: dict | str):
    text = body if isinstance(body, str) else json.dumps(body)
    return api.patch(f"/api/meters/{meter_id}", text, content_type="application/json")


def listed(api, query: str = "") -> list[str]:
    response = api.get(f"/api/meters{query}")
    assert response.status_code == 200, response.content
    return [meter["id"] for meter in response.json()["items"]]


def condition(key: str, operator: str, value) -> dict:
    return {"key": key, "operator": operator, "value": value}


def group(conjunction: str, *clauses: dict) -> dict:
    return {"conjunction": conjunction, "clauses": list(clauses)}


def is_homogeneous(flt: dict) -> bool:
    kinds = {"group" if "clauses" in clause else "condition" for clause in flt["clauses"]}
    nested = [clause for clause in flt["clauses"] if "clauses" in clause]
    return len(kinds) == 1 and all(is_homogeneous(clause) for clause in nested)


def depth(flt: dict) -> int:
    return 1 + max((depth(c) for c in flt["clauses"] if "clauses" in c), default=0)


# --- create, retrieve --------------------------------------------------------------------------


def test_create_answers_the_meter_as_dodo_describes_it(api):
    flt = group("and", condition("model", "equals", "gpt"))
    response = create(api, {**TOKENS, "description": "LLM tokens", "filter": flt})

    assert response.status_code == 201, response.content
    meter = response.json()
    assert meter["id"].startswith("mtr_")
    assert meter["business_id"]
    assert meter["name"] == "Tokens"
    assert meter["description"] == "LLM tokens"
    assert meter["event_name"] == "tokens.used"
    assert meter["measurement_unit"] == "tokens"
    assert meter["aggregation"] == {"type": "sum", "key": "tokens"}
    assert meter["filter"] == flt
    assert meter["created_at"] and meter["updated_at"]
    stored = Meter.objects.get(id=meter["id"])
    assert (stored.aggregation_type, stored.aggregation_key) == ("sum", "tokens")
    assert stored.filter == flt


def test_a_count_meter_needs_no_key_and_no_filter(api):
    response = create(api, {**TOKENS, "aggregation": {"type": "count"}})
    assert response.status_code == 201, response.content
    assert response.json()["aggregation"] == {"type": "count", "key": None}
    assert response.json()["filter"] is None
    assert response.json()["description"] is None


def test_retrieve_answers_the_same_meter(api):
    created = create(api, TOKENS).json()
    response = api.get(f"/api/meters/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_unknown_meter_is_404_with_an_error_code(api):
    for response in (
        api.get("/api/meters/mtr_missing"),
        patch(api, "mtr_missing", {"name": "x"}),
        api.delete("/api/meters/mtr_missing"),
        api.post("/api/meters/mtr_missing/unarchive"),
    ):
        assert response.status_code == 404
        assert response.json()["code"] == "NOT_FOUND"


def test_a_meter_may_precede_its_events(api):
    response = create(api, {**TOKENS, "event_name": "nobody.sent.this.yet"})
    assert response.status_code == 201, response.content
    assert Meter.objects.get(id=response.json()["id"]).event_name == "nobody.sent.this.yet"


def test_api_needs_a_key(client):
    response = client.get("/api/meters")
    assert response.status_code == 401


# --- list, archive, unarchive ------------------------------------------------------------------


def test_list_shows_active_meters_unless_archived_is_asked_for(api):
    kept = create(api, {**TOKENS, "name": "kept"}).json()["id"]
    retired = create(api, {**TOKENS, "name": "retired"}).json()["id"]

    response = api.delete(f"/api/meters/{retired}")
    assert response.status_code == 204
    assert response.content == b""

    assert listed(api) == [kept]
    assert listed(api, "?archived=false") == [kept]
    assert listed(api, "?archived=true") == [retired]


def test_an_archived_meter_is_kept_and_still_retrievable(api):
    meter_id = create(api, TOKENS).json()["id"]
    api.delete(f"/api/meters/{meter_id}")
    api.delete(f"/api/meters/{meter_id}")  # archiving twice is harmless

    assert Meter.objects.get(id=meter_id).archived_at is not None
    response = api.get(f"/api/meters/{meter_id}")
    assert response.status_code == 200
    assert response.json()["archived"] is True


def test_unarchive_brings_a_meter_back_to_the_active_list(api):
    meter_id = create(api, TOKENS).json()["id"]
    api.delete(f"/api/meters/{meter_id}")

    response = api.post(f"/api/meters/{meter_id}/unarchive")
    assert response.status_code == 200  # Dodo: 200, no body
    assert response.content == b""

    assert listed(api) == [meter_id]
    assert listed(api, "?archived=true") == []
    assert api.get(f"/api/meters/{meter_id}").json()["archived"] is False


def test_list_pages_like_dodo(api):
    ids = [create(api, {**TOKENS, "name": f"m{i}"}).json()["id"] for i in range(3)]
    first = listed(api, "?page_size=2&page_number=0")
    second = listed(api, "?page_size=2&page_number=1")
    assert len(first) == 2 and len(second) == 1
    assert sorted(first + second) == sorted(ids)
    assert listed(api, "?page_size=2&page_number=2") == []


def test_a_bad_archived_flag_is_422_naming_it(api):
    response = api.get("/api/meters?archived=maybe")
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["archived"]


# --- update ------------------------------------------------------------------------------------


def test_patch_renames_and_redescribes(api):
    meter_id = create(api, {**TOKENS, "description": "old"}).json()["id"]
    response = patch(api, meter_id, {"name": "Renamed", "measurement_unit": "k tokens"})
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Renamed"
    assert response.json()["measurement_unit"] == "k tokens"
    assert response.json()["description"] == "old"

    response = patch(api, meter_id, {"description": None})
    assert response.json()["description"] is None
    assert Meter.objects.get(id=meter_id).name == "Renamed"


def test_patch_with_null_keeps_what_a_meter_cannot_lack_and_clears_the_filter(api):
    flt = group("and", condition("model", "equals", "a"))
    meter_id = create(api, {**TOKENS, "description": "d", "filter": flt}).json()["id"]
    response = patch(
        api,
        meter_id,
        {"name": None, "event_name": None, "measurement_unit": None, "aggregation": None},
    )
    assert response.status_code == 200, response.content
    kept = response.json()
    assert (kept["name"], kept["event_name"], kept["measurement_unit"]) == (
        "Tokens",
        "tokens.used",
        "tokens",
    )
    assert kept["aggregation"] == {"type": "sum", "key": "tokens"}
    assert kept["filter"] == flt and kept["description"] == "d"

    cleared = patch(api, meter_id, {"filter": None, "description": None}).json()
    assert cleared["filter"] is None and cleared["description"] is None
    assert Meter.objects.get(id=meter_id).filter is None


def test_patch_of_the_filter_waits_for_the_rollup_before_rollups_are_ready(api):
    ingest_events(
        [
            event(f"t{i}", "cus_1", "tokens.used", metadata={"tokens": i, "model": "a"})
            for i in range(5)
        ]
    )
    meter_id = create(api, TOKENS).json()["id"]
    assert api.get(f"/api/meters/{meter_id}").json()["rollups_ready"] is False
    call_command("rollup")
    assert api.get(f"/api/meters/{meter_id}").json()["rollups_ready"] is True

    renamed = patch(api, meter_id, {"name": "Only a name"}).json()
    assert renamed["rollups_ready"] is True  # what it counts did not change

    flt = group("and", condition("model", "equals", "b"))
    response = patch(api, meter_id, {"filter": flt})
    assert response.status_code == 200, response.content
    assert response.json()["filter"] == flt
    assert response.json()["rollups_ready"] is False
    assert api.get(f"/api/meters/{meter_id}").json()["rollups_ready"] is False

    call_command("rollup")
    meter = api.get(f"/api/meters/{meter_id}").json()
    assert meter["rollups_ready"] is True
    assert meter["backfill_progress"] == 1.0


# --- validation --------------------------------------------------------------------------------

DEEP = group("and", group("or", group("and", group("or", condition("a", "equals", 1)))))

INVALID_CREATES = {
    "sum without a key": ({"aggregation": {"type": "sum"}}, "aggregation.key"),
    "max with a null key": ({"aggregation": {"type": "max", "key": None}}, "aggregation.key"),
    "last without a key": ({"aggregation": {"type": "last"}}, "aggregation.key"),
    "unknown aggregation": ({"aggregation": {"type": "avg", "key": "t"}}, "aggregation.type"),
    "unknown operator": (
        {"filter": group("and", condition("a", "is_about", 1))},
        "filter.clauses[0].operator",
    ),
    "unknown operator deep inside": (
        {
            "filter": group(
                "or", condition("a", "equals", 1), group("and", condition("b", "like", "x"))
            )
        },
        "filter.clauses[1].clauses[0].operator",
    ),
    "empty clause list": ({"filter": group("and")}, "filter.clauses"),
    "empty nested clause list": (
        {"filter": group("and", group("or"))},
        "filter.clauses[0].clauses",
    ),
    "four levels deep": ({"filter": DEEP}, "filter.clauses[0].clauses[0].clauses[0]"),
    "order operator with a numeric string": (
        {"filter": group("and", condition("t", "greater_than", "5"))},
        "filter.clauses[0].value",
    ),
    "order operator with a boolean": (
        {"filter": group("and", condition("t", "less_than_or_equals", True))},
        "filter.clauses[0].value",
    ),
    "order operator with a word": (
        {"filter": group("and", condition("t", "greater_than_or_equals", "abc"))},
        "filter.clauses[0].value",
    ),
    "unknown conjunction": (
        {"filter": {"conjunction": "xor", "clauses": [condition("a", "equals", 1)]}},
        "filter.conjunction",
    ),
    "missing name": ({"name": None}, "name"),
    "missing event name": ({"event_name": None}, "event_name"),
}


@pytest.mark.parametrize("change, field", INVALID_CREATES.values(), ids=INVALID_CREATES.keys())
def test_an_invalid_meter_is_422_naming_the_field_and_nothing_is_stored(api, change, field):
    body = {**TOKENS, **change}
    body = {name: value for name, value in body.items() if value is not None}
    response = create(api, body)

    assert response.status_code == 422, response.content
    error = response.json()
    assert error["code"].isupper() and error["message"]
    assert field in [e["field"] for e in error["errors"]], error
    assert all(e["message"] for e in error["errors"])
    assert not Meter.objects.exists()


def test_every_bad_clause_is_named_at_once(api):
    flt = group(
        "and",
        condition("a", "bogus", 1),
        condition("b", "less_than", "5"),
        condition("c", "equals", "fine"),
    )
    response = create(api, {**TOKENS, "filter": flt})
    assert response.status_code == 422
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"filter.clauses[0].operator", "filter.clauses[1].value"}


def test_a_rejected_patch_changes_nothing(api):
    flt = group("and", condition("model", "equals", "a"))
    meter_id = create(api, {**TOKENS, "filter": flt}).json()["id"]
    before = Meter.objects.get(id=meter_id)

    for body, field in (
        ({"name": "New name", "filter": group("and", condition("t", "less_than", "5"))}, None),
        ({"name": "New name", "aggregation": {"type": "max"}}, "aggregation.key"),
        ({"name": "New name", "filter": group("or")}, "filter.clauses"),
    ):
        response = patch(api, meter_id, body)
        assert response.status_code == 422, response.content
        if field:
            assert field in [e["field"] for e in response.json()["errors"]]

    after = Meter.objects.get(id=meter_id)
    assert after.name == "Tokens"
    assert after.filter == flt
    assert (after.aggregation_type, after.aggregation_key) == ("sum", "tokens")
    assert after.definition_version == before.definition_version
    assert after.updated_at == before.updated_at


# --- filters on the wire -----------------------------------------------------------------------


def test_a_mixed_clause_list_is_accepted_and_answered_homogeneous(api):
    mixed = group(
        "or",
        condition("tier", "equals", "pro"),
        group(
            "and",
            condition("tokens", "greater_than", 100),
            group("or", condition("model", "contains", "gpt"), condition("cached", "equals", True)),
        ),
    )
    response = create(api, {**TOKENS, "filter": mixed})
    assert response.status_code == 201, response.content
    answered = response.json()["filter"]

    assert is_homogeneous(answered)
    assert depth(answered) <= 3
    # The official SDK's strict parse accepts it (a mixed list fails there).
    MeterFilter.model_validate_json(json.dumps(answered), strict=True)
    assert api.get(f"/api/meters/{response.json()['id']}").json()["filter"] == answered

    # Same meaning: a meter built from the answered filter matches the same events as the
    # original, and both match what the filter says in plain Python.
    twin_id = create(api, {**TOKENS, "name": "twin", "filter": answered}).json()["id"]

    def wanted(m: dict) -> bool:
        tokens = m.get("tokens")
        big = isinstance(tokens, int) and not isinstance(tokens, bool) and tokens > 100
        gpt = isinstance(m.get("model"), str) and "gpt" in m["model"]
        return m.get("tier") == "pro" or (big and (gpt or m.get("cached") is True))

    samples = [
        {"tier": "pro"},
        {"tier": "free", "tokens": 500, "model": "gpt-4"},
        {"tokens": 500, "cached": True},
        {"tokens": 500, "cached": "true"},
        {"tokens": 50, "model": "gpt-4"},
        {"tokens": "500", "model": "gpt-4"},
        {"tokens": 101, "model": "claude"},
        {},
    ]
    events = [event(f"s{i}", "cus_1", "tokens.used", metadata=m) for i, m in enumerate(samples)]
    ingest_events(events)
    expected = {e["event_id"] for e in events if wanted(e.get("metadata", {}))}
    assert expected == {"s0", "s1", "s2"}
    for meter_id in (response.json()["id"], twin_id):
        got = api.get(f"/api/events?meter_id={meter_id}&page_size=100").json()["items"]
        assert {e["event_id"] for e in got} == expected


def test_decimal_filter_values_round_trip_exactly(api):
    body = (
        '{"name": "Exact", "event_name": "e", "measurement_unit": "u",'
        ' "aggregation": {"type": "sum", "key": "x"},'
        ' "filter": {"conjunction": "and", "clauses": ['
        '{"key": "x", "operator": "greater_than", "value": 0.1},'
        '{"key": "y", "operator": "equals", "value": 12345678901234567.891},'
        '{"key": "z", "operator": "less_than", "value": 2.50}]}}'
    )
    response = create(api, body)
    assert response.status_code == 201, response.content
    meter_id = response.json()["id"]

    stored = Meter.objects.get(id=meter_id).filter
    assert [c["value"] for c in stored["clauses"]] == [
        Decimal("0.1"),
        Decimal("12345678901234567.891"),
        Decimal("2.50"),
    ]
    for answer in (response, api.get(f"/api/meters/{meter_id}")):
        # Read the answer as exact decimals: a float on the wire (1.2345678901234568e+16) shows.
        clauses = exact_loads(answer.content)["filter"]["clauses"]
        assert [c["value"] for c in clauses] == [
            Decimal("0.1"),
            Decimal("12345678901234567.891"),
            Decimal("2.5"),
        ]


def test_an_sdk_style_float_in_a_filter_is_accepted(api):
    # json.dumps writes floats with a fraction; the server reads them as exact decimals.
    flt = group("and", condition("tokens", "greater_than_or_equals", 0.5))
    response = create(api, {**TOKENS, "filter": flt})
    assert response.status_code == 201, response.content
    assert response.json()["filter"] == flt
