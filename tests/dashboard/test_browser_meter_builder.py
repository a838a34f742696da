"""In a real browser: a staff member logs in, builds a meter whose filter has an OR group nested
in an AND by clicking through the filter builder, watches the live preview counts follow each
condition (checked against plain Python over the events this test sent), and saves it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.admin.utils import quote
from django.utils import timezone

from billing_site.jsonutil import exact_dumps
from meters.models import Meter
from products.billing import ingest_events as ingest
from tests.dashboard.browser import screenshot, skip_without_chromium
from tests.factories import event

skip_without_chromium()

from playwright.sync_api import expect  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = "llm.request"
METADATA = [
    {"model": "gpt-4", "tokens": 1200, "region": "eu"},
    {"model": "gpt-4", "tokens": 80, "region": "eu"},
    {"model": "gpt-4", "tokens": 5000, "region": "us"},
    {"model": "claude", "tokens": 2500, "region": "eu"},
    {"model": "claude", "tokens": "1500", "region": "eu"},
    {"model": "claude", "tokens": 700, "region": "eu"},
    {"model": "llama", "tokens": Decimal("1000.5"), "region": "eu"},
    {"model": "gpt-4", "region": "eu"},
    {"model": "GPT-4", "tokens": 3000, "region": "eu"},
    {"model": "gpt-4", "tokens": True, "region": "eu"},
    {"tokens": 10, "region": "us"},
    {"model": "gpt-4", "tokens": 42},
]


def is_number(value) -> bool:
    return isinstance(value, int | Decimal) and not isinstance(value, bool)


def expected(predicate) -> tuple[int, int, int]:
    """(matched, skipped for a missing `tokens`, skipped for a `tokens` that is not a number)."""
    matched = [md for md in METADATA if predicate(md)]
    missing = sum(1 for md in matched if "tokens" not in md)
    not_number = sum(1 for md in matched if "tokens" in md and not is_number(md["tokens"]))
    return len(matched), missing, not_number


def everything(md: dict) -> bool:
    return True


def in_eu(md: dict) -> bool:
    return md.get("region") == "eu"


def in_eu_and_gpt4(md: dict) -> bool:
    return in_eu(md) and md.get("model") == "gpt-4"


def in_eu_and_gpt4_or_big(md: dict) -> bool:
    big = is_number(md.get("tokens")) and md["tokens"] > 1000
    return in_eu(md) and (md.get("model") == "gpt-4" or big)


@pytest.fixture
def events(transactional_db):
    now = timezone.now()
    batch = [
        event(
            f"evt-{i}",
            f"cus_{i % 4}",
            NAME,
            timestamp=now - timedelta(hours=2 * i + 1),
            metadata=md,
        )
        for i, md in enumerate(METADATA)
    ]
    # Outside the preview: too old, and another event name.
    batch.append(
        event("too-old", "cus_0", NAME, timestamp=now - timedelta(days=8), metadata=METADATA[0])
    )
    batch.append(event("other", "cus_0", "llm.response", timestamp=now, metadata=METADATA[0]))
    ingest(exact_dumps({"events": batch}).encode(), now=now)


def expect_preview(page, counts: tuple[int, int, int]) -> None:
    matched, missing, not_number = counts
    expect(page.locator("#preview")).to_have_attribute("data-state", "ready")
    expect(page.locator("#preview-matched")).to_have_text(str(matched))
    expect(page.locator("#preview-skipped-missing")).to_have_text(str(missing))
    expect(page.locator("#preview-skipped-nan")).to_have_text(str(not_number))
    expect(page.locator("#preview-contributing")).to_have_text(str(matched - missing - not_number))


def fill_condition(page, path: str, key: str, value_type: str, operator: str, value: str) -> None:
    condition = page.locator(f'[data-path="{path}"]')
    condition.locator(".fb-key").fill(key)
    condition.locator(".fb-type").select_option(value_type)
    condition.locator(".fb-operator").select_option(operator)
    if value_type == "boolean":
        condition.locator(".fb-value").select_option(value)
    else:
        condition.locator(".fb-value").fill(value)


def add_condition(page, group_path: str) -> None:
    page.locator(f'[data-path="{group_path}"] > .fb-actions > .fb-add-condition').click()


def add_group(page, group_path: str) -> None:
    page.locator(f'[data-path="{group_path}"] > .fb-actions > .fb-add-group').click()


def test_build_a_nested_filter_watch_the_preview_and_save(live_server, page, staff_login, events):
    counts = [expected(p) for p in (everything, in_eu, in_eu_and_gpt4, in_eu_and_gpt4_or_big)]
    assert len({c[0] for c in counts}) == len(counts), "each step must change the match count"

    staff_login(page, live_server, "/admin/meters/meter/")
    page.locator(".object-tools a.addlink").click()  # the admin's own "Add meter" opens it
    page.wait_for_url("**/admin/meters/meter/add/")
    expect(page.locator("#filter-builder .fb-group")).to_have_count(1)
    assert NAME in page.locator("#event-name-suggestions option").evaluate_all(
        "options => options.map(o => o.value)"
    )

    page.fill("#id_name", "EU GPT-4 or big requests")
    page.fill("#id_event_name", NAME)
    page.fill("#id_measurement_unit", "tokens")
    expect(page.locator(".field-aggregation_key")).to_be_hidden()  # count needs no key
    page.select_option("#id_aggregation_type", "sum")
    expect(page.locator(".field-aggregation_key")).to_be_visible()
    page.fill("#id_aggregation_key", "tokens")
    expect_preview(page, counts[0])
    expect(page.locator("#preview-examined")).to_have_text(str(len(METADATA)))
    screenshot(page, "meter-builder-0-no-filter")

    # AND: region equals "eu"
    add_condition(page, "filter")
    fill_condition(page, "filter.clauses[0]", "region", "string", "equals", "eu")
    expect_preview(page, counts[1])

    # ... AND (model equals "gpt-4" OR tokens > 1000)
    add_group(page, "filter")
    group = page.locator('[data-path="filter.clauses[1]"]')
    group.locator("> .fb-group-header > .fb-conjunction").select_option("or")
    fill_condition(page, "filter.clauses[1].clauses[0]", "model", "string", "equals", "gpt-4")
    expect_preview(page, counts[2])
    add_condition(page, "filter.clauses[1]")
    number_condition = page.locator('[data-path="filter.clauses[1].clauses[1]"]')
    number_condition.locator(".fb-key").fill("tokens")
    number_condition.locator(".fb-type").select_option("number")
    # Number operators only once the type is a number; text operators are gone.
    operators = number_condition.locator(".fb-operator option").evaluate_all(
        "options => options.map(o => o.value)"
    )
    assert "greater_than" in operators and "contains" not in operators
    number_condition.locator(".fb-operator").select_option("greater_than")
    number_condition.locator(".fb-value").fill("abc")
    expect(page.locator("#preview")).to_have_attribute("data-state", "invalid")
    expect(number_condition.locator(".fb-errors")).to_contain_text("enter a number")
    number_condition.locator(".fb-value").fill("1000")
    expect_preview(page, counts[3])

    # Groups nest three levels deep at most: a third-level group offers no further group.
    add_group(page, "filter.clauses[1]")
    third = page.locator('[data-path="filter.clauses[1].clauses[2]"]')
    expect(third).to_have_attribute("data-level", "3")
    expect(third.locator(".fb-add-group")).to_have_count(0)
    third.locator("> .fb-group-header > .fb-remove-group").click()
    expect(third).to_have_count(0)
    expect_preview(page, counts[3])
    sample_ids = page.locator("#preview-sample tbody td.event-id").all_inner_texts()
    assert (
        sample_ids
        == [f"evt-{i}" for i, md in enumerate(METADATA) if in_eu_and_gpt4_or_big(md)][:10]
    )
    screenshot(page, "meter-builder-1-nested-filter")

    page.click("input[name=_save]")
    page.wait_for_url("**/analytics/")
    meter = Meter.objects.get(name="EU GPT-4 or big requests")
    assert meter.filter == {
        "conjunction": "and",
        "clauses": [
            {"key": "region", "operator": "equals", "value": "eu"},
            {
                "conjunction": "or",
                "clauses": [
                    {"key": "model", "operator": "equals", "value": "gpt-4"},
                    {"key": "tokens", "operator": "greater_than", "value": 1000},
                ],
            },
        ],
    }
    assert (meter.event_name, meter.aggregation_type, meter.aggregation_key) == (
        NAME,
        "sum",
        "tokens",
    )

    # Editing brings the same tree back into the builder.
    page.goto(f"{live_server.url}/admin/meters/meter/{quote(meter.pk)}/change/")
    expect(page.locator('[data-path="filter.clauses[1].clauses[1]"] .fb-value')).to_have_value(
        "1000"
    )
    expect(page.locator('[data-path="filter.clauses[1].clauses[1]"] .fb-type')).to_have_value(
        "number"
    )
    expect_preview(page, counts[3])


def test_server_errors_are_shown_next_to_the_condition(live_server, page, staff_login, events):
    staff_login(page, live_server, "/admin/meters/meter/add/")
    page.fill("#id_name", "Broken")
    page.fill("#id_event_name", NAME)
    page.fill("#id_measurement_unit", "tokens")
    add_condition(page, "filter")
    add_condition(page, "filter")
    fill_condition(page, "filter.clauses[0]", "region", "string", "equals", "eu")
    # The second condition keeps an empty key: the server names filter.clauses[1].key.
    page.click("input[name=_save]")
    second = page.locator('[data-path="filter.clauses[1]"]')
    expect(second.locator(".fb-errors")).to_contain_text("key: must not be empty")
    expect(second.locator(".fb-key")).to_have_class("fb-key fb-invalid")
    expect(page.locator("#preview")).to_have_attribute("data-state", "invalid")
    expect(page.locator("#preview-errors")).to_contain_text("filter.clauses[1].key")
    assert not Meter.objects.exists()
    screenshot(page, "meter-builder-2-errors")


def test_a_fresh_form_shows_no_errors_until_a_field_is_touched(
    live_server, page, staff_login, events
):
    """Nothing typed yet is not an error: no "Is required" on a pristine form, nor on a
    condition just added; each field's message appears once it was edited (or on submit)."""
    staff_login(page, live_server, "/admin/meters/meter/add/")
    expect(page.locator("#preview")).to_have_attribute("data-state", "incomplete")
    expect(page.locator("#preview-message")).to_contain_text("Fill in event name")
    expect(page.locator("#live-error-event_name")).to_have_text("")
    expect(page.locator("#preview-errors")).to_be_hidden()
    assert "Is required" not in page.locator("#meter-form").inner_text()
    assert "Is required" not in page.locator("#preview").inner_text()
    screenshot(page, "meter-builder-pristine")

    add_condition(page, "filter")  # an empty condition: no "must not be empty" yet
    expect(page.locator("#preview")).to_have_attribute("data-state", "incomplete")
    expect(page.locator('[data-path="filter.clauses[0]"] .fb-errors')).to_be_hidden()

    page.fill("#id_event_name", NAME)
    page.fill("#id_event_name", "")  # touched, then emptied: now it is an error
    expect(page.locator("#live-error-event_name")).to_have_text("Is required.")
    expect(page.locator("#preview")).to_have_attribute("data-state", "invalid")
    page.fill("#id_event_name", NAME)
    condition = page.locator('[data-path="filter.clauses[0]"]')
    condition.locator(".fb-value").fill("eu")  # edited, key still empty
    expect(condition.locator(".fb-errors")).to_contain_text("key")
    condition.locator(".fb-key").fill("region")
    expect(page.locator("#preview")).to_have_attribute("data-state", "ready")
    expect(page.locator("#preview-matched")).to_have_text(str(expected(in_eu)[0]))

    # Submitting shows every error at once, touched or not.
    page.goto(f"{live_server.url}/admin/meters/meter/add/")
    page.click("input[name=_save]")
    expect(page.locator("#live-error-event_name")).to_have_text("Is required.")
    expect(page.locator(".field-name .errorlist")).to_contain_text("required")
