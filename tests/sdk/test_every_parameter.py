"""Every parameter the SDK's usage-billing methods can send, read from the SDK's own `*_params`
TypedDicts (and the nested ones: price, meters, credit links, billing, customer, events), is
either applied (the answer or the stored object shows it) or refused with a 422 naming it; a
refused field's neutral value (null, false, []) is accepted. A parameter a newer SDK adds fails
this test until it gets a probe here."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dodopayments
import pytest
from django.core import mail
from dodopayments import types as t
from dodopayments.types import credit_entitlements as ct
from dodopayments.types.customers import CustomerPortalCreateParams

from portal.models import PortalSession
from products.models import Invoice, Subscription

MISSING = object()


@dataclass
class Applied:
    value: Any
    check: Any  # (result, ctx) -> bool


@dataclass
class Refused:
    value: Any
    neutral: Any = MISSING  # also sent, and must be accepted
    names: list[str] = field(default_factory=list)  # the field path in the 422, if not the name


def keys(typed_dict) -> set[str]:
    return set(typing.get_type_hints(typed_dict))


def echo(attr: str | None = None, expect=MISSING):
    def check(result, ctx, *, name, value):
        got = getattr(result, attr or name)
        return got == (value if expect is MISSING else expect)

    return check


class Ctx:
    """The objects probes work on, built through the strict SDK itself."""

    def __init__(self, client):
        self.client = client
        self.now = datetime.now(UTC)
        self.entitlement = client.credit_entitlements.create(
            name="Credits", unit="credits", precision=0, rollover_enabled=False,
            overage_enabled=False,
        )  # fmt: skip
        self.calls = self.meter("Calls", "api.call")
        self.tokens = self.meter("Tokens", "tokens.used", {"type": "sum", "key": "n"})
        self.product = client.products.create(**self.product_args())
        self.customer = client.customers.create(email="ada@example.com", name="Ada")
        self.other = client.customers.create(email="bob@example.com", name="Bob")
        self.edited = client.customers.create(email="ed@example.com", name="Ed")
        self.subscription = client.subscriptions.create(**self.subscription_args())
        # Plan changes get their own subscription (of another customer) and target product.
        # (the products.update probes give self.product credits, which plan changes refuse).
        self.plus = client.products.create(**self.product_args(name="Plus"))
        basic = client.products.create(**self.product_args(name="Basic"))
        self.changing = client.subscriptions.create(
            **self.subscription_args(
                customer={"customer_id": self.edited.customer_id}, product_id=basic.product_id
            )
        )
        # Moving the billing date gets its own too (products with credits refuse it).
        self.dated = client.subscriptions.create(
            **self.subscription_args(
                customer={"customer_id": self.edited.customer_id}, product_id=basic.product_id
            )
        )
        stamps = [self.now - timedelta(minutes=m) for m in (3, 2, 1)]
        client.usage_events.ingest(
            events=[
                {"event_id": f"c{i}", "customer_id": self.customer.customer_id,
                 "event_name": "api.call", "timestamp": stamp}
                for i, stamp in enumerate(stamps)
            ]
            + [{"event_id": "t0", "customer_id": self.other.customer_id,
                "event_name": "tokens.used", "metadata": {"n": 2}}]
        )  # fmt: skip
        self.stamps = stamps
        client.credit_entitlements.balances.create_ledger_entry(
            self.customer.customer_id, credit_entitlement_id=self.entitlement.id,
            entry_type="credit", amount="5", idempotency_key="setup",
        )  # fmt: skip
        self.serial = 0

    def meter(self, name, event_name, aggregation=None):
        return self.client.meters.create(
            name=name, event_name=event_name, measurement_unit="units",
            aggregation=aggregation or {"type": "count"},
        )  # fmt: skip

    def unique(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def price(self, **extra) -> dict:
        return {
            "type": "usage_based_price",
            "currency": "USD",
            "fixed_price": 100,
            "payment_frequency_count": 1,
            "payment_frequency_interval": "Month",
            "subscription_period_count": 1,
            "subscription_period_interval": "Year",
            "meters": [{"meter_id": self.calls.id, "price_per_unit": "1"}],
            **extra,
        }

    def product_args(self, **extra) -> dict:
        return {"name": "Plan", "tax_category": "saas", "price": self.price(), **extra}

    def subscription_args(self, **extra) -> dict:
        return {
            "billing": {"country": "US"},
            "customer": {"customer_id": self.customer.customer_id},
            "product_id": self.product.product_id,
            "quantity": 1,
            **extra,
        }

    def link(self, **extra) -> dict:
        return {"credit_entitlement_id": self.entitlement.id, "credits_amount": "10", **extra}


def ids(page, attr):
    return [getattr(item, attr) for item in page.items]


# --- probes, per SDK method ---------------------------------------------------------------------
# Each: (params TypedDict, how to call with one parameter, probes by parameter name).


def meter_probes(update: bool) -> dict:
    probes = {
        "description": Applied("d", echo()),
        "measurement_unit": Applied("requests", echo()),
        "name": Applied("Renamed", echo()),
    }
    if not update:
        probes |= {
            "aggregation": Applied(
                {"type": "max", "key": "n"},
                lambda r, c, **_: (r.aggregation.type, r.aggregation.key) == ("max", "n"),
            ),
            "event_name": Applied("other.event", echo()),
            "filter": Applied(
                {"conjunction": "or", "clauses": [{"key": "a", "operator": "equals", "value": 1}]},
                lambda r, c, **_: r.filter.conjunction == "or" and r.filter.clauses[0].key == "a",
            ),
        }
    return probes


CUSTOMER_PROBES = {
    "email": Applied("new@example.com", echo()),
    "name": Applied("New", echo()),
    "metadata": Applied({"k": "v"}, echo()),
    "phone_number": Applied("+15550100", echo()),
    "preferred_locale": Applied("fr", echo()),
}


def product_probes(ctx: Ctx, update: bool) -> dict:
    probes = {
        "name": Applied("Renamed", echo()),
        "description": Applied("About", echo()),
        "metadata": Applied({"k": 1}, echo()),
        "tax_category": Applied("edtech", echo()),
        "price": Applied(ctx.price(fixed_price=777), lambda r, c, **_: r.price.fixed_price == 777),
        "credit_entitlements": Applied(
            [ctx.link()],
            lambda r, c, **_: (
                [e.credit_entitlement_id for e in r.credit_entitlements] == [c.entitlement.id]
            ),
        ),
        "brand_id": Applied("bus_selfhosted", lambda r, c, **_: r.brand_id == "bus_selfhosted"),
        "pricing_mode": Refused("by_country", neutral="by_currency"),
        "addons": Refused(["adn_1"], neutral=[]),
        "entitlements": Refused([{"entitlement_id": "ent_1"}], neutral=[]),
        "digital_product_delivery": Refused({"instructions": "Read me"}, neutral=None),
        "license_key_enabled": Refused(True, neutral=False),
        "license_key_activation_message": Refused("Welcome", neutral=None),
        "license_key_activations_limit": Refused(3, neutral=None),
        "license_key_duration": Refused({"count": 1, "interval": "Year"}, neutral=None),
    }
    if update:
        probes["image_id"] = Refused("img_1", neutral=None)
    return probes


def price_probes(ctx: Ctx) -> dict:
    def shows(name, value):
        return Applied(value, lambda r, c, **_: getattr(r.price, name) == value)

    return {
        "type": Applied("usage_based_price", lambda r, c, **_: r.price.type == "usage_based_price"),
        "currency": shows("currency", "EUR"),
        "fixed_price": shows("fixed_price", 55),
        "payment_frequency_count": shows("payment_frequency_count", 2),
        "payment_frequency_interval": shows("payment_frequency_interval", "Week"),
        "subscription_period_count": shows("subscription_period_count", 3),
        "subscription_period_interval": shows("subscription_period_interval", "Month"),
        "tax_inclusive": shows("tax_inclusive", True),
        "meters": Applied(
            [{"meter_id": ctx.tokens.id, "price_per_unit": "3"}],
            lambda r, c, **_: [m.meter_id for m in r.price.meters] == [c.tokens.id],
        ),
        "discount": Refused(10, neutral=0),
        "discount_bps": Refused(250, neutral=0),
        "purchasing_power_parity": Refused(True, neutral=False),
    }


def priced_meter_probes(ctx: Ctx) -> dict:
    def shown(name, value):
        return Applied(value, lambda r, c, **_: getattr(r.price.meters[0], name) == value)

    return {
        "meter_id": shown("meter_id", ctx.calls.id),
        "price_per_unit": shown("price_per_unit", "0.25"),
        "free_threshold": shown("free_threshold", 9),
        "credit_entitlement_id": Applied(
            ctx.entitlement.id,
            lambda r, c, **_: r.price.meters[0].credit_entitlement_id == c.entitlement.id,
        ),
        "meter_units_per_credit": shown("meter_units_per_credit", "4"),
        # "ignored on request, shown in response" in Dodo: the meter's own value is taken.
        "name": Refused("Not Calls", neutral="Calls"),
        "description": Refused("Not it", neutral=None),
        "measurement_unit": Refused("litres", neutral="units"),
    }


def link_probes() -> dict:
    def shown(name, value, expect=MISSING):
        want = value if expect is MISSING else expect
        return Applied(value, lambda r, c, **_: getattr(r.credit_entitlements[0], name) == want)

    return {
        "credit_entitlement_id": Applied(
            MISSING,
            lambda r, c, **_: r.credit_entitlements[0].credit_entitlement_id == c.entitlement.id,
        ),
        "credits_amount": shown("credits_amount", "12"),
        "currency": shown("currency", "EUR"),
        "price_per_unit": shown("price_per_unit", "0.5"),
        "expires_after_days": shown("expires_after_days", 9),
        "low_balance_threshold_percent": shown("low_balance_threshold_percent", 15),
        "max_rollover_count": shown("max_rollover_count", 2),
        "overage_behavior": shown("overage_behavior", "carry_deficit"),
        "overage_enabled": shown("overage_enabled", True),
        "overage_limit": shown("overage_limit", "40"),
        "rollover_enabled": shown("rollover_enabled", True),
        "rollover_percentage": shown("rollover_percentage", 60),
        "rollover_timeframe_count": shown("rollover_timeframe_count", 2),
        "rollover_timeframe_interval": shown("rollover_timeframe_interval", "Week"),
        "proration_behavior": Refused("prorate", neutral="no_prorate"),
        "trial_credits": Refused("5", neutral="0"),
        "trial_credits_expire_after_trial": Refused(True, neutral=False),
    }


def stored(check):
    """A subscription probe checked on the stored row."""
    return lambda r, c, **_: check(Subscription.objects.get(pk=r.subscription_id))


def subscription_create_probes() -> dict:
    neutral_false = ("force_3ds", "payment_link", "short_link", "redirect_immediately")
    probes = {
        "billing": Applied(
            {"country": "DE", "city": "Berlin"}, stored(lambda s: s.billing["city"] == "Berlin")
        ),
        "customer": Applied(
            {"email": "new@example.com", "name": "New"},
            lambda r, c, **_: r.customer.email == "new@example.com",
        ),
        "product_id": Applied(MISSING, stored(lambda s: s.product_id is not None)),
        "quantity": Applied(1, stored(lambda s: s.quantity == 1)),
        "metadata": Applied({"k": "v"}, echo()),
        "trial_period_days": Applied(5, stored(lambda s: s.trial_period_days == 5)),
        "customer_business_name": Applied(
            "Ada Ltd", stored(lambda s: s.customer_business_name == "Ada Ltd")
        ),
        "billing_currency": Applied("USD", stored(lambda s: s.product.currency == "USD")),
        "require_phone_number": Refused(True, neutral=False, names=["customer.phone_number"]),
        "show_saved_payment_methods": Refused(True, neutral=False),
        "addons": Refused([{"addon_id": "adn_1", "quantity": 1}], neutral=[]),
        "allowed_payment_method_types": Refused(["credit"], neutral=None),
        "discount_code": Refused("WELCOME", neutral=None),
        "discount_codes": Refused(["WELCOME"], neutral=[]),
        "mandate_min_amount_inr_paise": Refused(1000, neutral=None),
        "on_demand": Refused({"mandate_only": True}, neutral=None),
        "one_time_product_cart": Refused([{"product_id": "pdt_1", "quantity": 1}], neutral=[]),
        "payment_method_id": Refused("pm_1", neutral=None),
        "return_url": Refused("https://example.com/done", neutral=None),
        "tax_id": Refused("GB123", neutral=None),
    }
    probes |= {name: Refused(True, neutral=False) for name in neutral_false}
    return probes


def subscription_update_probes() -> dict:
    cancelling = {"cancel_at_next_billing_date": True}
    return {
        "billing": Applied(
            {"country": "FR", "state": "IDF"}, lambda r, c, **_: r.billing.state == "IDF"
        ),
        "cancel_at_next_billing_date": Applied(True, echo()),
        "cancel_reason": Applied(
            ("cancelled_by_merchant", cancelling),
            stored(lambda s: s.cancel_reason == "cancelled_by_merchant"),
        ),
        "cancellation_comment": Applied(("Bye", cancelling), echo(expect="Bye")),
        "cancellation_feedback": Applied(("unused", cancelling), echo(expect="unused")),
        "customer_business_name": Applied("Ada Labs", echo()),
        "customer_name": Applied("Ada L.", lambda r, c, **_: r.customer.name == "Ada L."),
        "metadata": Applied({"k": 2}, echo()),
        # Pausing and resuming: tests/sdk/test_pause.py (they close and open periods).
        "status": Applied("active", lambda r, c, **_: r.status == "active"),
        "credit_entitlement_cart": Refused(
            [{"credit_entitlement_id": "cde_1", "credits_amount": "5"}], neutral=None
        ),
        "disable_on_demand": Refused({"next_billing_date": "2030-01-01T00:00:00Z"}, neutral=None),
        "next_billing_date": Applied(
            "2030-01-01T00:00:00Z",
            lambda r, c, **_: r.next_billing_date == datetime(2030, 1, 1, tzinfo=UTC),
        ),
        "pause": Refused(True),
        "subscription_period_count": Refused(5, neutral=None),
        "subscription_period_interval": Refused("Month", neutral=None),
        "tax_id": Refused("GB123", neutral=None),
    }


def change_plan_probes(preview: bool) -> dict:
    """Both routes share one body. The change answers no subscription: the probe reads it back;
    the preview answers `new_plan` and its `immediate_charge`."""

    def plan(result):
        return result.new_plan if preview else result

    def fee_line(result, ctx):
        if preview:
            return result.immediate_charge.line_items[0].name
        invoice = Invoice.objects.filter(subscription_id=ctx.changing.subscription_id).latest(
            "period_index"
        )
        return invoice.lines.get(kind="fixed_fee").description

    return {
        "product_id": Applied(MISSING, lambda r, c, **_: plan(r).product_id == c.plus.product_id),
        "quantity": Applied(3, lambda r, c, **_: plan(r).quantity == 3),
        "proration_billing_mode": Applied(
            "full_immediately", lambda r, c, **_: fee_line(r, c).endswith(": fixed fee")
        ),
        "effective_at": Applied(
            "immediately", lambda r, c, **_: plan(r).previous_billing_date > c.now
        ),
        "adaptive_currency_fees_inclusive": Refused(True, neutral=None),
        "addons": Refused([{"addon_id": "adn_1", "quantity": 1}], neutral=[]),
        "cancel_older_payment_link": Refused(True, neutral=False),
        # Replaces a scheduled change (tests/sdk/test_plan_changes.py); with none, no-op.
        "cancel_scheduled_change_plan": Applied(
            True, lambda r, c, **_: plan(r).scheduled_change is None
        ),
        "collect_via_payment_link": Refused(True, neutral=False),
        "discount_code": Refused("SAVE10", neutral=None),
        "discount_codes": Refused(["SAVE10"], neutral=[]),
        "metadata": Refused({"k": 1}, neutral={}),
        "on_payment_failure": Refused("apply_change", neutral=None),
        "return_url": Refused("https://example.com/done", neutral=None),
    }


def entitlement_probes(update: bool) -> dict:
    probes = {
        "name": Applied("Updated credits" if update else "Created credits", echo()),
        "unit": Applied("tokens", echo()),
        "description": Applied("About", echo()),
        "currency": Applied("EUR", echo()),
        "price_per_unit": Applied(("0.75", {"currency": "EUR"}), echo(expect="0.75")),
        "overage_enabled": Applied(False, echo()),
        "overage_limit": Applied(30, echo()),
        "overage_behavior": Applied("invoice_at_billing", echo()),
        "expires_after_days": Applied(11, echo()),
        "rollover_enabled": Applied(True, echo()),
        "rollover_percentage": Applied(25, echo()),
        "rollover_timeframe_count": Applied(
            (3, {"rollover_timeframe_interval": "Day"}), echo(expect=3)
        ),
        "rollover_timeframe_interval": Applied(
            ("Week", {"rollover_timeframe_count": 1}), echo(expect="Week")
        ),
        "max_rollover_count": Applied(4, echo()),
    }
    if not update:
        probes["precision"] = Applied(3, echo())
    return probes


def list_probes(_, **probes) -> dict:
    """Paging probes shared by the lists: page_size 1 gives one item, page 1 the next one."""
    return {
        "page_size": Applied(1, lambda r, c, **_: len(r.items) == 1),
        "page_number": Applied((1, {"page_size": 1}), lambda r, c, **_: len(r.items) <= 1),
        **probes,
    }


# --- the walk -----------------------------------------------------------------------------------


def call_with(ctx: Ctx, method: str, name: str, value, extra: dict):
    """Call `method` with its required arguments plus `name=value` (and `extra`)."""
    c = ctx.client
    balances = c.credit_entitlements.balances
    cde, cus = ctx.entitlement.id, ctx.customer.customer_id
    kwargs = {**extra} if value is MISSING else {name: value, **extra}
    match method:
        case "usage_events.list":
            return c.usage_events.list(**kwargs)
        case "meters.create":
            base = {"name": "M", "event_name": "m", "measurement_unit": "u"}
            return c.meters.create(**{**base, "aggregation": {"type": "count"}, **kwargs})
        case "meters.update":
            return c.meters.update(ctx.tokens.id, **kwargs)
        case "meters.list":
            return c.meters.list(**kwargs)
        case "meters.retrieve":
            return c.meters.retrieve(ctx.calls.id, **kwargs)
        case "customers.create":
            return c.customers.create(
                **{"email": ctx.unique("x") + "@example.com", "name": "X", **kwargs}
            )
        case "customers.update":
            return c.customers.update(ctx.edited.customer_id, **kwargs)
        case "customers.list":
            return c.customers.list(**kwargs)
        case "customers.customer_portal.create":
            return c.customers.customer_portal.create(cus, **kwargs)
        case "products.create":
            return c.products.create(**{**ctx.product_args(), **kwargs})
        case "products.update":
            c.products.update(ctx.product.product_id, **kwargs)
            return c.products.retrieve(ctx.product.product_id)
        case "products.list":
            return c.products.list(**kwargs)
        case "products.retrieve":
            return c.products.retrieve(ctx.product.product_id, **kwargs)
        case "subscriptions.create":
            return c.subscriptions.create(**{**ctx.subscription_args(), **kwargs})
        case "subscriptions.update":
            target = ctx.dated if kwargs.get("next_billing_date") else ctx.subscription
            return c.subscriptions.update(target.subscription_id, **kwargs)
        case "subscriptions.list":
            return c.subscriptions.list(**kwargs)
        case "subscriptions.change_plan" | "subscriptions.preview_change_plan":
            body = {
                "product_id": ctx.plus.product_id,
                "quantity": 1,
                "proration_billing_mode": "do_not_bill",
                **kwargs,
            }
            if method == "subscriptions.preview_change_plan":
                return c.subscriptions.preview_change_plan(ctx.changing.subscription_id, **body)
            c.subscriptions.change_plan(ctx.changing.subscription_id, **body)
            return c.subscriptions.retrieve(ctx.changing.subscription_id)
        case "subscriptions.retrieve":
            return c.subscriptions.retrieve(ctx.subscription.subscription_id, **kwargs)
        case "subscriptions.retrieve_usage_history":
            return c.subscriptions.retrieve_usage_history(
                ctx.subscription.subscription_id, **kwargs
            )
        case "credit_entitlements.create":
            base = {"name": ctx.unique("E"), "unit": "u", "precision": 0}
            base |= {"rollover_enabled": False, "overage_enabled": False}
            return c.credit_entitlements.create(**{**base, **kwargs})
        case "credit_entitlements.update":
            c.credit_entitlements.update(cde, **kwargs)
            return c.credit_entitlements.retrieve(cde)
        case "credit_entitlements.list":
            return c.credit_entitlements.list(**kwargs)
        case "credit_entitlements.retrieve":
            return c.credit_entitlements.retrieve(cde, **kwargs)
        case "balances.list":
            return balances.list(cde, **kwargs)
        case "balances.create_ledger_entry":
            args = {"entry_type": "credit", "amount": "1", **kwargs}
            return balances.create_ledger_entry(cus, credit_entitlement_id=cde, **args)
        case "balances.list_ledger":
            return balances.list_ledger(cus, credit_entitlement_id=cde, **kwargs)
        case "balances.list_grants":
            return balances.list_grants(cus, credit_entitlement_id=cde, **kwargs)
    raise AssertionError(method)


def nested_call(ctx: Ctx, where: str, name: str, value, extra: dict):
    """Probe one field of a nested object: the price, its first meter, the first credit link,
    the billing address, the customer, an event."""
    c = ctx.client

    def with_field(obj: dict) -> dict:
        obj = {**obj, **extra}
        if value is not MISSING:
            obj[name] = value
        return obj

    match where:
        case "price":
            return c.products.create(**ctx.product_args(price=with_field(ctx.price())))
        case "price.meters":
            meter = with_field({"meter_id": ctx.calls.id, "price_per_unit": "1"})
            if "credit_entitlement_id" in meter or "meter_units_per_credit" in meter:
                meter.pop("price_per_unit")
                meter.setdefault("credit_entitlement_id", ctx.entitlement.id)
                meter.setdefault("meter_units_per_credit", "2")
            links = [ctx.link()] if meter.get("credit_entitlement_id") else []
            args = ctx.product_args(price=ctx.price(meters=[meter]), credit_entitlements=links)
            return c.products.create(**args)
        case "credit_entitlements":
            link = with_field(ctx.link())
            if link.get("rollover_timeframe_count") or link.get("rollover_timeframe_interval"):
                link.setdefault("rollover_timeframe_count", 1)
                link.setdefault("rollover_timeframe_interval", "Month")
            return c.products.create(**ctx.product_args(credit_entitlements=[link]))
        case "billing":
            billing = with_field({"country": "US"})
            sub = c.subscriptions.create(**ctx.subscription_args(billing=billing))
            return c.subscriptions.retrieve(sub.subscription_id)
        case "customer.new":
            customer = with_field({"email": ctx.unique("n") + "@example.com", "name": "N"})
            sub = c.subscriptions.create(**ctx.subscription_args(customer=customer))
            return c.subscriptions.retrieve(sub.subscription_id)
        case "customer.existing":
            sub = c.subscriptions.create(**ctx.subscription_args())
            return c.subscriptions.retrieve(sub.subscription_id)
        case "events":
            event = with_field(
                {"event_id": ctx.unique("ev"), "customer_id": "cus_e", "event_name": "e"}
            )
            c.usage_events.ingest(events=[event])
            return c.usage_events.retrieve(event["event_id"])
    raise AssertionError(where)


def method_table(ctx: Ctx) -> dict:
    now, stamps = ctx.now, ctx.stamps
    cus = ctx.customer.customer_id
    return {
        "usage_events.list": (
            t.UsageEventListParams,
            list_probes(
                None,
                customer_id=Applied(
                    ctx.other.customer_id, lambda r, c, **_: ids(r, "event_id") == ["t0"]
                ),
                event_name=Applied("tokens.used", lambda r, c, **_: ids(r, "event_id") == ["t0"]),
                meter_id=Applied(
                    ctx.calls.id, lambda r, c, **_: set(ids(r, "event_id")) == {"c0", "c1", "c2"}
                ),
                start=Applied(
                    stamps[1],
                    lambda r, c, **_: (
                        set(ids(r, "event_id")) >= {"c1", "c2"} and "c0" not in ids(r, "event_id")
                    ),
                ),
                end=Applied(stamps[1], lambda r, c, **_: ids(r, "event_id") == ["c0"]),
            ),
        ),
        "meters.create": (t.MeterCreateParams, meter_probes(update=False)),
        "meters.update": (t.MeterUpdateParams, meter_probes(update=True)),
        "meters.list": (
            t.MeterListParams,
            list_probes(
                None,
                archived=Applied(True, lambda r, c, **_: r.items == []),
                locale=Applied("fr", lambda r, c, **_: "Calls" in [m.name for m in r.items]),
            ),
        ),
        "meters.retrieve": (
            t.MeterRetrieveParams,
            {"locale": Applied("de", echo("name", "Calls"))},
        ),
        "customers.create": (t.CustomerCreateParams, CUSTOMER_PROBES),
        "customers.update": (t.CustomerUpdateParams, CUSTOMER_PROBES),
        "customers.list": (
            t.CustomerListParams,
            list_probes(
                None,
                email=Applied(
                    "bob@example.com", lambda r, c, **_: [x.name for x in r.items] == ["Bob"]
                ),
                name=Applied(
                    "bo", lambda r, c, **_: [x.email for x in r.items] == ["bob@example.com"]
                ),
                created_at_gte=Applied(now + timedelta(days=1), lambda r, c, **_: r.items == []),
                created_at_lte=Applied(now - timedelta(days=1), lambda r, c, **_: r.items == []),
            ),
        ),
        "customers.customer_portal.create": (
            CustomerPortalCreateParams,
            {
                "return_url": Applied(
                    "https://app.example.com/back",
                    lambda r, c, **_: (
                        PortalSession.objects.latest("created_at").return_url
                        == "https://app.example.com/back"
                    ),
                ),
                "send_email": Applied(
                    True, lambda r, c, **_: any(r.link in m.body for m in mail.outbox)
                ),
            },
        ),
        "products.create": (t.ProductCreateParams, product_probes(ctx, update=False)),
        "products.update": (t.ProductUpdateParams, product_probes(ctx, update=True)),
        "products.list": (
            t.ProductListParams,
            list_probes(
                None,
                archived=Applied(True, lambda r, c, **_: r.items == []),
                brand_id=Applied("bus_other", lambda r, c, **_: r.items == []),
                recurring=Applied(False, lambda r, c, **_: r.items == []),
                locale=Applied("fr", lambda r, c, **_: len(r.items) >= 1),
            ),
        ),
        "products.retrieve": (
            t.ProductRetrieveParams,
            {"locale": Applied("fr", echo("product_id", ctx.product.product_id))},
        ),
        "subscriptions.create": (t.SubscriptionCreateParams, subscription_create_probes()),
        "subscriptions.update": (t.SubscriptionUpdateParams, subscription_update_probes()),
        "subscriptions.change_plan": (t.SubscriptionChangePlanParams, change_plan_probes(False)),
        "subscriptions.preview_change_plan": (
            t.SubscriptionPreviewChangePlanParams,
            change_plan_probes(True),
        ),
        "subscriptions.list": (
            t.SubscriptionListParams,
            list_probes(
                None,
                customer_id=Applied(ctx.other.customer_id, lambda r, c, **_: r.items == []),
                product_id=Applied("pdt_none", lambda r, c, **_: r.items == []),
                status=Applied("cancelled", lambda r, c, **_: r.items == []),
                brand_id=Applied("bus_other", lambda r, c, **_: r.items == []),
                cancel_at_next_billing_date=Applied(
                    True, lambda r, c, **_: all(s.cancel_at_next_billing_date for s in r.items)
                ),
                created_at_gte=Applied(now + timedelta(days=1), lambda r, c, **_: r.items == []),
                created_at_lte=Applied(now - timedelta(days=1), lambda r, c, **_: r.items == []),
                locale=Applied("fr", lambda r, c, **_: len(r.items) >= 1),
            ),
        ),
        "subscriptions.retrieve": (
            t.SubscriptionRetrieveParams,
            {"locale": Applied("fr", echo("subscription_id", ctx.subscription.subscription_id))},
        ),
        "subscriptions.retrieve_usage_history": (
            t.SubscriptionRetrieveUsageHistoryParams,
            {
                "start_date": Applied(now + timedelta(days=400), lambda r, c, **_: r.items == []),
                "end_date": Applied(now - timedelta(days=1), lambda r, c, **_: r.items == []),
                "meter_id": Applied(
                    ctx.tokens.id,
                    lambda r, c, **_: all(m.id == c.tokens.id for p in r.items for m in p.meters),
                ),
                "page_size": Applied(1, lambda r, c, **_: len(r.items) == 1),
                "page_number": Applied(1, lambda r, c, **_: r.items == []),
            },
        ),
        "credit_entitlements.create": (
            t.CreditEntitlementCreateParams,
            entitlement_probes(update=False),
        ),
        "credit_entitlements.update": (
            t.CreditEntitlementUpdateParams,
            entitlement_probes(update=True),
        ),
        "credit_entitlements.list": (
            t.CreditEntitlementListParams,
            list_probes(
                None,
                deleted=Applied(True, lambda r, c, **_: r.items == []),
                locale=Applied("fr", lambda r, c, **_: len(r.items) >= 1),
            ),
        ),
        "credit_entitlements.retrieve": (
            t.CreditEntitlementRetrieveParams,
            {"locale": Applied("fr", echo("id", ctx.entitlement.id))},
        ),
        "balances.list": (
            ct.BalanceListParams,
            {
                "customer_id": Applied(ctx.other.customer_id, lambda r, c, **_: r.items == []),
                "page_size": Applied(1, lambda r, c, **_: len(r.items) == 1),
                "page_number": Applied(1, lambda r, c, **_: r.items == []),
            },
        ),
        "balances.create_ledger_entry": (
            ct.BalanceCreateLedgerEntryParams,
            {
                "amount": Applied("2", echo()),
                "entry_type": Applied("debit", lambda r, c, **_: r.is_credit is False),
                "expires_at": Applied(
                    now + timedelta(days=2),
                    lambda r, c, **_: (
                        c.client.credit_entitlements.balances.list_grants(
                            cus, credit_entitlement_id=c.entitlement.id
                        )
                        .items[0]
                        .expires_at
                        is not None
                    ),
                ),
                "idempotency_key": Applied("once", lambda r, c, **_: _refused_again(c, "once")),
                "metadata": Applied({"ticket": "T1"}, echo()),
                "reason": Applied("Goodwill", echo()),
            },
        ),
        "balances.list_ledger": (
            ct.BalanceListLedgerParams,
            {
                "start_date": Applied(now + timedelta(days=1), lambda r, c, **_: r.items == []),
                "end_date": Applied(now - timedelta(days=1), lambda r, c, **_: r.items == []),
                "transaction_type": Applied("credit_expired", lambda r, c, **_: r.items == []),
                "page_size": Applied(1, lambda r, c, **_: len(r.items) == 1),
                "page_number": Applied(5, lambda r, c, **_: r.items == []),
            },
        ),
        "balances.list_grants": (
            ct.BalanceListGrantsParams,
            {
                "status": Applied("expired", lambda r, c, **_: r.items == []),
                "page_size": Applied(1, lambda r, c, **_: len(r.items) == 1),
                "page_number": Applied(5, lambda r, c, **_: r.items == []),
            },
        ),
    }


def _refused_again(ctx: Ctx, key: str) -> bool:
    with pytest.raises(dodopayments.ConflictError):
        ctx.client.with_options(max_retries=0).credit_entitlements.balances.create_ledger_entry(
            ctx.customer.customer_id, credit_entitlement_id=ctx.entitlement.id,
            entry_type="credit", amount="1", idempotency_key=key,
        )  # fmt: skip
    return True


def nested_table(ctx: Ctx) -> dict:
    shown = lambda attr, value: Applied(value, lambda r, c, **_: getattr(r.billing, attr) == value)  # noqa: E731
    return {
        "price": (t.price_param.UsageBasedPrice, price_probes(ctx)),
        "price.meters": (t.AddMeterToPriceParam, priced_meter_probes(ctx)),
        "credit_entitlements": (t.AttachCreditEntitlementParam, link_probes()),
        "billing": (
            t.BillingAddressParam,
            {
                "country": shown("country", "GB"),
                "city": shown("city", "Leeds"),
                "state": shown("state", "Yorkshire"),
                "street": shown("street", "1 Lane"),
                "zipcode": shown("zipcode", "LS1"),
            },
        ),
        "customer.new": (
            t.NewCustomerParam,
            {
                "email": Applied(
                    "fresh@example.com", lambda r, c, **_: r.customer.email == "fresh@example.com"
                ),
                "name": Applied("Fresh", lambda r, c, **_: r.customer.name == "Fresh"),
                "phone_number": Applied(
                    "+15550199", lambda r, c, **_: r.customer.phone_number == "+15550199"
                ),
            },
        ),
        "customer.existing": (
            t.AttachExistingCustomerParam,
            {
                "customer_id": Applied(
                    MISSING, lambda r, c, **_: r.customer.customer_id == c.customer.customer_id
                ),
            },
        ),
        "events": (
            t.EventInputParam,
            {
                "event_id": Applied(MISSING, lambda r, c, **_: r.event_id.startswith("ev")),
                "customer_id": Applied("cus_probe", echo()),
                "event_name": Applied("probe.event", echo()),
                "timestamp": Applied(
                    ctx.now - timedelta(minutes=9),
                    lambda r, c, **_: (
                        abs(r.timestamp - (c.now - timedelta(minutes=9))) < timedelta(seconds=1)
                    ),
                ),
                "metadata": Applied({"a": 1, "b": "x", "c": True}, echo()),
            },
        ),
    }


PATH_PARAMETERS = {"credit_entitlement_id"}  # in the balances' TypedDicts, but sent in the path


def run_probe(ctx: Ctx, call, name: str, probe) -> None:
    if isinstance(probe, Applied):
        value, extra = probe.value, {}
        if isinstance(value, tuple):
            value, extra = value
        result = call(name, value, extra)  # MISSING: the required argument as the base sends it
        assert probe.check(result, ctx, name=name, value=value), (name, value, result)
        return
    with pytest.raises(dodopayments.UnprocessableEntityError) as refused:
        call(name, probe.value, {})
    named = [e["field"] for e in refused.value.body["errors"]]
    assert named == (probe.names or [name]) or named == [f"{call.where}.{name}"], (name, named)
    if probe.neutral is not MISSING:
        call(name, probe.neutral, {})  # accepted: it asks for nothing


@pytest.mark.django_db
def test_every_sdk_parameter_is_applied_or_refused_by_name(strict_in_process):
    ctx = Ctx(strict_in_process)
    walked = []
    for method, (params, probes) in method_table(ctx).items():
        assert keys(params) - PATH_PARAMETERS == set(probes), method
        for name, probe in probes.items():

            def call(n, v, extra, method=method):
                return call_with(ctx, method, n, v, extra)

            call.where = method
            run_probe(ctx, call, name, probe)
            walked.append((method, name))
    for where, (params, probes) in nested_table(ctx).items():
        assert keys(params) == set(probes), where
        for name, probe in probes.items():

            def call(n, v, extra, where=where):
                return nested_call(ctx, where, n, v, extra)

            call.where = where.split(".")[0] if where.startswith("customer") else where
            if where == "price.meters":
                call.where = "price.meters[0]"
            if where == "credit_entitlements":
                call.where = "credit_entitlements[0]"
            if where == "events":
                call.where = "events[0]"
            run_probe(ctx, call, name, probe)
            walked.append((where, name))
    assert len(walked) > 200
