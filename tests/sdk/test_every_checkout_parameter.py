"""Every parameter `checkout_sessions.create` and `.preview` can send, read from the SDK's own
TypedDicts (and the nested cart item, customization, feature flags, subscription data and
billing address), is applied (stored on the session, or shown in the quote) or refused with a
422 naming it; a refused field's neutral value is accepted. What the page does with the stored
values is tests/payments/test_checkout_page.py's."""

from __future__ import annotations

import pytest
from dodopayments import types as t

from products.models import CheckoutSession
from tests.sdk.test_every_parameter import MISSING, Applied, Refused, keys, run_probe

URL = "https://shop.example.com/done"


class Ctx:
    def __init__(self, client):
        self.client = client
        self.entitlement = client.credit_entitlements.create(
            name="Credits", unit="credits", precision=0, rollover_enabled=False,
            overage_enabled=False,
        )  # fmt: skip
        meter = client.meters.create(
            name="Calls",
            event_name="api.call",
            measurement_unit="calls",
            aggregation={"type": "count"},
        )
        self.product = client.products.create(
            name="Plan",
            tax_category="saas",
            price={
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 100,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "subscription_period_count": 1,
                "subscription_period_interval": "Year",
                "meters": [{"meter_id": meter.id, "price_per_unit": "1"}],
            },
        )
        self.customer = client.customers.create(email="ada@example.com", name="Ada")

    def cart(self, **extra) -> list:
        return [{"product_id": self.product.product_id, "quantity": 1, **extra}]


def stored(check):
    """Checked on the stored session."""
    return lambda r, c, **_: check(CheckoutSession.objects.get(pk=r.session_id))


def answered(r, c, **_) -> bool:
    """Accepted: the quote is answered (the field does not change a quote)."""
    return r.total_price == 100


def create_probes(ctx: Ctx) -> dict:
    return {
        "product_cart": Applied(MISSING, stored(lambda s: s.product_id == ctx.product.product_id)),
        "allowed_payment_method_types": Applied(
            ["credit", "debit"],
            stored(lambda s: s.allowed_payment_method_types == ["credit", "debit"]),
        ),
        "billing_address": Applied(
            {"country": "GB", "city": "Leeds"},
            stored(lambda s: s.billing_address == {"country": "GB", "city": "Leeds"}),
        ),
        # The product's currency only (Dodo's adaptive currency is not offered).
        "billing_currency": Applied("USD", lambda r, c, **_: r.session_id.startswith("cks_")),
        "cancel_url": Applied(URL, stored(lambda s: s.cancel_url == URL)),
        "confirm": Refused(True, neutral=False),
        "custom_fields": Refused([{"field_type": "text", "key": "k", "label": "K"}], neutral=[]),
        "customer": Applied(
            {"email": "new@example.com", "name": "New"},
            stored(lambda s: s.new_customer["email"] == "new@example.com"),
        ),
        "customer_business_name": Applied(
            "Ada Labs", stored(lambda s: s.customer_business_name == "Ada Labs")
        ),
        "customization": Applied(
            {"theme": "dark"}, stored(lambda s: s.customization == {"theme": "dark"})
        ),
        "discount_code": Refused("SAVE10", neutral=None),
        "discount_codes": Refused(["SAVE10"], neutral=[]),
        "feature_flags": Applied(
            {"redirect_immediately": True},
            stored(lambda s: s.flag("redirect_immediately")),
        ),
        "force_3ds": Refused(True, neutral=None),
        "mandate_min_amount_inr_paise": Refused(100, neutral=None),
        "metadata": Applied({"k": 1}, stored(lambda s: s.metadata == {"k": 1})),
        "minimal_address": Applied(True, stored(lambda s: s.minimal_address)),
        "payment_method_id": Refused("pm_1", neutral=None),
        "product_collection_id": Refused("pdc_1", neutral=None),
        "return_url": Applied(URL, stored(lambda s: s.return_url == URL)),
        # checkout_url is short either way.
        "short_link": Applied(
            True, lambda r, c, **_: r.checkout_url.endswith(f"/checkout/{r.session_id}")
        ),
        "show_saved_payment_methods": Refused(True, neutral=False),
        "subscription_data": Applied(
            {"trial_period_days": 7}, stored(lambda s: s.trial_period_days == 7)
        ),
        "tax_id": Refused("GB123", neutral=None),
    }


def preview_probes(ctx: Ctx) -> dict:
    """The same body: what changes a quote is checked in it, the rest is accepted as checked
    for create, and refused alike."""
    probes: dict = {}
    for name, probe in create_probes(ctx).items():
        probes[name] = probe if isinstance(probe, Refused) else Applied(probe.value, answered)
    probes["product_cart"] = Applied(
        MISSING, lambda r, c, **_: r.product_cart[0].product_id == ctx.product.product_id
    )
    probes["billing_address"] = Applied(
        {"country": "GB"}, lambda r, c, **_: r.billing_country == "GB"
    )
    probes["subscription_data"] = Applied(
        {"trial_period_days": 7}, lambda r, c, **_: r.trial_period_days == 7
    )
    probes["locale"] = Applied("fr", answered)  # no translations: the base text
    return probes


def flag_probes() -> dict:
    honoured = (
        "allow_phone_number_collection",
        "require_phone_number",
        "always_create_new_customer",
        "redirect_immediately",
        "require_cardholder_name",
        "allow_customer_editing_email",
        "allow_customer_editing_name",
        "allow_customer_editing_country",
        "allow_customer_editing_state",
        "allow_customer_editing_city",
        "allow_customer_editing_street",
        "allow_customer_editing_zipcode",
        "allow_currency_selection",
        "single_page",
    )
    not_offered = (
        "allow_discount_code",
        "allow_tax_id",
        "require_tax_id",
        "allow_customer_editing_tax_id",
        "allow_customer_editing_business_name",
        "allow_editing_addons",
    )
    probes: dict = {
        name: Applied(True, stored(lambda s, name=name: s.flag(name))) for name in honoured
    }
    probes |= {name: Refused(True, neutral=False) for name in not_offered}
    return probes


def nested_table(ctx: Ctx) -> dict:
    """(TypedDict, the 422's path prefix, how a body carries the nested object, probes)."""
    cde = ctx.entitlement.id
    return {
        "product_cart": (
            t.ProductItemReqParam,
            "product_cart[0]",
            lambda nested: {"product_cart": [nested]},
            {"product_id": ctx.product.product_id, "quantity": 1},
            {
                "product_id": Applied(
                    MISSING, stored(lambda s: s.product_id == ctx.product.product_id)
                ),
                "quantity": Applied(1, stored(lambda s: s.quantity == 1)),
                "addons": Refused([{"addon_id": "adn_1", "quantity": 1}], neutral=[]),
                "amount": Refused(500, neutral=None),
                "credit_entitlements": Refused(
                    [{"credit_entitlement_id": cde, "credits_amount": "5"}], neutral=[]
                ),
            },
        ),
        "customization": (
            t.CheckoutSessionCustomizationParam,
            "customization",
            lambda nested: {"customization": nested},
            {},
            {
                "force_language": Applied(
                    "en", stored(lambda s: s.customization["force_language"] == "en")
                ),
                "show_on_demand_tag": Applied(
                    False, stored(lambda s: s.customization["show_on_demand_tag"] is False)
                ),
                "show_order_details": Applied(
                    False, stored(lambda s: s.customization["show_order_details"] is False)
                ),
                "theme": Applied("light", stored(lambda s: s.customization["theme"] == "light")),
                "theme_config": Refused({"light": {"bg_primary": "#fff"}}, neutral=None),
            },
        ),
        "feature_flags": (
            t.CheckoutSessionFlagsParam,
            "feature_flags",
            lambda nested: {"feature_flags": nested},
            {},
            flag_probes(),
        ),
        "subscription_data": (
            t.SubscriptionDataParam,
            "subscription_data",
            lambda nested: {"subscription_data": nested},
            {},
            {
                "trial_period_days": Applied(3, stored(lambda s: s.trial_period_days == 3)),
                "on_demand": Refused({"mandate_only": True}, neutral=None),
            },
        ),
        "billing_address": (
            t.CheckoutSessionBillingAddressParam,
            "billing_address",
            lambda nested: {"billing_address": nested},
            {"country": "US"},
            {
                name: Applied(
                    value,
                    stored(lambda s, name=name, value=value: s.billing_address[name] == value),
                )
                for name, value in (
                    ("country", "GB"),
                    ("city", "Leeds"),
                    ("state", "Yorkshire"),
                    ("street", "1 Lane"),
                    ("zipcode", "LS1"),
                )
            },
        ),
    }


@pytest.mark.django_db
def test_every_checkout_parameter_is_applied_or_refused_by_name(strict_in_process):
    ctx = Ctx(strict_in_process)
    sessions = strict_in_process.checkout_sessions
    walked = []

    def create(name, value, extra):
        body = {"product_cart": ctx.cart(), **extra}
        if value is not MISSING:
            body[name] = value
        return sessions.create(**body)

    def preview(name, value, extra):
        body = {"product_cart": ctx.cart(), "billing_address": {"country": "US"}, **extra}
        if value is not MISSING:
            body[name] = value
        return sessions.preview(**body)

    for method, params, call, probes in (
        ("create", t.CheckoutSessionCreateParams, create, create_probes(ctx)),
        ("preview", t.CheckoutSessionPreviewParams, preview, preview_probes(ctx)),
    ):
        assert keys(params) == set(probes), method
        call.where = method  # type: ignore[attr-defined]
        for name, probe in probes.items():
            run_probe(ctx, call, name, probe)
            walked.append((method, name))

    for where, (params, path, carry, base, probes) in nested_table(ctx).items():
        assert keys(params) == set(probes), where

        def nested(name, value, extra, carry=carry, base=base):
            obj = {**base, **extra}
            if value is not MISSING:
                obj[name] = value
            body = carry(obj)
            body.setdefault("product_cart", ctx.cart())
            return sessions.create(**body)

        nested.where = path  # type: ignore[attr-defined]
        for name, probe in probes.items():
            run_probe(ctx, nested, name, probe)
            walked.append((where, name))
    assert CheckoutSession.objects.count() > 40
    assert len(walked) > 80
