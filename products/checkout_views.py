"""The checkout page a session's `checkout_url` points at: `/checkout/{session_id}`, a plain
server-rendered form. With PAYMENT_PROVIDER=stripe the card is typed into Stripe.js's card
element and confirmed as a SetupIntent before the form is sent (static/checkout/checkout.js);
with no provider the form confirms directly. Completing it is products/checkout.py's rule; an
unknown, expired or completed session answers a plain page."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from billing_site.errors import DomainError, InvalidInput
from billing_site.money import format_minor
from billing_site.security import policy_allowing
from products import checkout, payments
from products.models import CheckoutSession, CheckoutStatus

STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _policy(session: CheckoutSession | None) -> str:
    """The site's policy, plus Stripe.js and the Stripe API when a card is collected, and the
    return URL's host for the redirect after the form (Chrome applies form-action to it)."""
    sources: dict[str, list[str]] = {}
    if payments.provider_enabled():
        js = _origin(settings.STRIPE_JS_URL)
        sources["script-src"] = [js]
        sources["connect-src"] = [_origin(settings.STRIPE_API_BASE)]
        sources["frame-src"] = [js, *STRIPE_FRAMES] if js == STRIPE_FRAMES[0] else [js]
    if session is not None and session.return_url:
        sources["form-action"] = [_origin(session.return_url)]
    return policy_allowing(sources)


def _render(
    request: HttpRequest,
    template: str,
    context: dict,
    *,
    status: int = 200,
    session: CheckoutSession | None = None,
) -> HttpResponse:
    response = render(request, template, context, status=status)
    response["Content-Security-Policy"] = _policy(session)
    response["Cache-Control"] = "no-store"
    return response


def _closed(request: HttpRequest, message: str, status: int) -> HttpResponse:
    return _render(request, "checkout/closed.html", {"message": message}, status=status)


def _form(
    request: HttpRequest,
    session: CheckoutSession,
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    config: dict = {"publishable_key": None}
    if payments.provider_enabled():
        try:
            secret = checkout.card_form(session)
        except DomainError as error:
            return _closed(request, f"{error.message} Try again in a moment.", 502)
        config = {"publishable_key": settings.STRIPE_PUBLISHABLE_KEY, "client_secret": secret}
    product = session.product
    context = {
        "session": session,
        "product": product,
        "meters": product.product_meters.select_related("meter").all(),
        "fee": format_minor(product.fixed_price_minor * session.quantity, product.currency),
        "nothing": format_minor(0, product.currency),
        "inputs": [
            {
                "name": shown.name,
                "label": shown.label,
                "value": request.POST.get(shown.name, shown.value)
                if shown.editable and request.method == "POST"
                else shown.value,
                "editable": shown.editable,
                "required": shown.required,
                "error": (errors or {}).get(shown.name),
            }
            for shown in checkout.page_fields(session)
        ],
        "errors": errors or {},
        # A rule's refusal that is about no input (the product was archived meanwhile).
        "general_errors": [
            message
            for name, message in (errors or {}).items()
            if name not in {shown.name for shown in checkout.page_fields(session)}
            and name not in ("card", "cardholder_name")
        ],
        "collect_card": payments.provider_enabled(),
        "stripe_js_url": settings.STRIPE_JS_URL,
        "config": config,
        "cardholder_required": session.flag("require_cardholder_name"),
        "show_order_details": session.customization.get("show_order_details", True),
        "theme": session.customization.get("theme") or "system",
        "first_billing": checkout.first_period_end(
            product, session.trial_period_days or 0, timezone.now()
        ),
    }
    return _render(request, "checkout/page.html", context, status=status, session=session)


def _completed(request: HttpRequest, session: CheckoutSession) -> HttpResponse:
    checkout.save_card(session, now=timezone.now())  # if the provider failed at completion
    destination = checkout.return_address(session)
    if destination and session.flag("redirect_immediately"):
        return redirect(destination)
    return _render(
        request,
        "checkout/completed.html",
        {"session": session, "return_to": destination},
        session=session,
    )


@require_http_methods(["GET", "POST"])
def checkout_page(request: HttpRequest, session_id: str) -> HttpResponse:
    session = (
        CheckoutSession.objects.select_related("product", "customer", "subscription")
        .filter(pk=session_id)
        .first()
    )
    if session is None:
        return _closed(request, "There is no such checkout.", 404)
    if session.status == CheckoutStatus.COMPLETED:
        # A second submit is answered as the first was.
        return _completed(request, session) if request.method == "GET" else _to_page(session)
    now = timezone.now()
    if session.is_expired(now):
        return _closed(request, "This checkout has expired.", 410)
    if request.method == "GET":
        return _form(request, session)
    try:
        done = checkout.complete(session_id, form=request.POST, now=now)
    except InvalidInput as error:
        messages = {e["field"]: e["message"] for e in error.errors}
        return _form(request, session, errors=messages, status=422)
    except checkout.CheckoutClosed as error:
        return _closed(request, error.message, 410)
    except payments.PaymentProviderUnavailable as error:
        return _closed(request, f"{error.message} Try again in a moment.", 502)
    return _to_page(done)


def _to_page(session: CheckoutSession) -> HttpResponse:
    """Post/redirect/get: a reload of what follows never sends the form again."""
    response = redirect("checkout-page", session.session_id)
    response.status_code = 303
    return response
