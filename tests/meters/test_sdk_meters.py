"""The official `dodopayments` SDK manages meters against the real server, and lists exactly the
events a meter matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dodopayments import APIStatusError, NotFoundError

pytestmark = pytest.mark.django_db(transaction=True)

HD_OR_BIG = {
    "conjunction": "or",
    "clauses": [
        {
            "conjunction": "and",
            "clauses": [
                {"key": "quality", "operator": "equals", "value": "hd"},
                {"key": "steps", "operator": "greater_than_or_equals", "value": 0.5},
            ],
        },
        {
            "conjunction": "and",
            "clauses": [
                {"key": "size", "operator": "greater_than", "value": 1024},
                {"key": "model", "operator": "does_not_contain", "value": "mini"},
            ],
        },
    ],
}


def wanted(metadata: dict) -> bool:
    """HD_OR_BIG in plain Python: typed comparisons, missing keys never match."""

    def number(name):
        value = metadata.get(name)
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    steps, size, model = number("steps"), number("size"), metadata.get("model")
    hd = metadata.get("quality") == "hd" and steps is not None and steps >= 0.5
    big = size is not None and size > 1024 and isinstance(model, str) and "mini" not in model
    return hd or big


def create_images_meter(sdk, name: str = "HD images"):
    return sdk.meters.create(
        name=name,
        event_name="image.generated",
        measurement_unit="images",
        aggregation={"type": "count"},
        filter=HD_OR_BIG,
        description="Images worth billing",
    )


def test_sdk_creates_and_retrieves_a_meter_with_a_filter(sdk):
    meter = create_images_meter(sdk)
    assert meter.id.startswith("mtr_")
    assert meter.aggregation.type == "count"
    assert meter.event_name == "image.generated"
    assert meter.filter is not None and meter.filter.conjunction == "or"
    assert meter.filter.to_dict() == HD_OR_BIG

    again = sdk.meters.retrieve(meter.id)
    assert again.id == meter.id
    assert again.name == "HD images"
    assert again.description == "Images worth billing"
    assert again.filter.to_dict() == HD_OR_BIG
    with pytest.raises(NotFoundError):
        sdk.meters.retrieve("mtr_missing")


def test_sdk_sum_meter_reports_its_key(sdk):
    meter = sdk.meters.create(
        name="Tokens",
        event_name="tokens.used",
        measurement_unit="tokens",
        aggregation={"type": "sum", "key": "tokens"},
    )
    assert (meter.aggregation.type, meter.aggregation.key) == ("sum", "tokens")
    assert meter.filter is None


def test_sdk_archives_and_unarchives_a_meter(sdk):
    kept = create_images_meter(sdk, "kept")
    retired = create_images_meter(sdk, "retired")

    assert sdk.meters.archive(retired.id) is None

    def ids(**params):
        return {m.id for m in sdk.meters.list(page_size=100, **params).items}

    assert ids() == {kept.id}
    assert ids(archived=False) == {kept.id}
    assert ids(archived=True) == {retired.id}

    assert sdk.meters.unarchive(retired.id) is None
    assert ids() == {kept.id, retired.id}
    assert ids(archived=True) == set()


def test_sdk_renames_a_meter_and_keeps_its_definition(sdk):
    meter = create_images_meter(sdk)
    renamed = sdk.meters.update(meter.id, name="Billable images")
    assert renamed.name == "Billable images"
    assert renamed.filter.to_dict() == HD_OR_BIG
    assert renamed.updated_at >= meter.updated_at
    assert sdk.meters.retrieve(meter.id).name == "Billable images"

    cleared = sdk.meters.update(meter.id, description=None, name=None, measurement_unit="pics")
    assert cleared.description is None
    assert cleared.name == "Billable images"  # a name cannot be cleared: null keeps it
    assert cleared.measurement_unit == "pics"


def test_sdk_lists_exactly_the_events_a_meter_matches(sdk):
    meter = create_images_meter(sdk)
    base = datetime.now(UTC) - timedelta(hours=2)
    samples = [
        {"quality": "hd", "steps": 1},
        {"quality": "hd", "steps": 0.5},
        {"quality": "hd", "steps": 0.25},
        {"quality": "hd", "steps": "30"},  # a string is never compared as a number
        {"quality": "HD", "steps": 50},  # equals is case-sensitive
        {"quality": "hd"},  # missing key: the AND never holds
        {"size": 2048, "model": "sdxl"},
        {"size": 2048, "model": "sdxl-mini"},
        {"size": 1024, "model": "sdxl"},
        {"size": 4096},
        {"size": True, "model": "sdxl"},
        {},
    ]
    events = [
        {
            "event_id": f"img-{i}",
            "customer_id": "cus_sdk",
            "event_name": "image.generated",
            "timestamp": (base + timedelta(minutes=i)).isoformat(),
            "metadata": metadata,
        }
        for i, metadata in enumerate(samples)
    ]
    # Same metadata under another event name: never the meter's.
    events += [
        {**e, "event_id": f"other-{e['event_id']}", "event_name": "image.edited"} for e in events
    ]
    assert sdk.usage_events.ingest(events=events).ingested_count == len(events)

    expected = {
        e["event_id"]
        for e in events
        if e["event_name"] == "image.generated" and wanted(e["metadata"])
    }
    assert expected == {"img-0", "img-1", "img-6"}

    listed = sdk.usage_events.list(meter_id=meter.id, page_size=100).items
    assert {e.event_id for e in listed} == expected
    assert len(listed) == len(expected)

    same_name = sdk.usage_events.list(
        meter_id=meter.id, event_name="image.generated", page_size=100
    ).items
    assert {e.event_id for e in same_name} == expected


def test_sdk_event_name_that_contradicts_the_meter_is_refused(sdk):
    meter = create_images_meter(sdk)
    with pytest.raises(APIStatusError) as refused:
        sdk.usage_events.list(meter_id=meter.id, event_name="image.edited")
    assert 400 <= refused.value.status_code < 500
    assert refused.value.body["code"]


def test_sdk_unknown_meter_id_on_events_is_refused(sdk):
    with pytest.raises(APIStatusError) as refused:
        sdk.usage_events.list(meter_id="mtr_missing")
    assert 400 <= refused.value.status_code < 500
