"""Collecting issued invoices through the payment provider: charges, dunning, refunds, and the
provider's webhooks. products/stripe_provider.py is the provider; this module holds the rules.

Money moves exactly once. The billing transaction that issues an invoice writes a *scheduled*
Payment (products/payment_outbox.py); after commit a worker claims it under a row lock, pushing
`due_at` (the lease) past the longest the provider calls can take and giving it a new
`claim_token`, commits, and only then calls the provider, with an idempotency key derived from
the invoice and the attempt number. The outcome is recorded only while the claim is still the
worker's. A claim whose lease ran out (a worker killed mid-call, an answer lost) is taken over
by the next worker, which first asks the provider whether that key already charged
(`find_charge`) and charges only if not. Webhooks from the provider apply the same outcomes, once
per provider event id, and never undo a finished payment.

Lock order, as the period close and products/invoices.py: subscription, invoice, payment.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, DomainError, InvalidInput, NotFound
from products import billing, invoices, payment_outbox, stripe_provider, webhook_events
from products.billing import LineDraft
from products.invoices import InvoiceStateConflict
from products.models import (
    Customer,
    Dunning,
    DunningStatus,
    Invoice,
    InvoiceKind,
    InvoiceStatus,
    LineKind,
    Payment,
    PaymentStatus,
    ProviderCustomer,
    ProviderEvent,
    Refund,
    RefundStatus,
    Subscription,
    SubscriptionStatus,
)
from products.payment_wire import dunning_event_data, payment_event_data, refund_event_data
from products.stripe_provider import ChargeOutcome, ProviderUnavailable
from products.wire import subscription_data
from webhooks.emit import emit
from webhooks.models import EventType

logger = logging.getLogger(__name__)

# The lease beyond the provider calls one attempt makes (a look-up, the payment method, the
# charge), each cut off at PAYMENT_PROVIDER_TIMEOUT_SECONDS.
LEASE_MARGIN = timedelta(seconds=60)
CALLS_PER_ATTEMPT = 4
MAX_REASON_LENGTH = 500


class PaymentProviderNotConfigured(Conflict):
    code = "PAYMENT_PROVIDER_NOT_CONFIGURED"


class PaymentProviderUnavailable(DomainError):
    status = 502
    code = "PAYMENT_PROVIDER_UNAVAILABLE"


class PaymentStateConflict(Conflict):
    code = "PAYMENT_STATE_CONFLICT"


def provider_enabled() -> bool:
    return settings.PAYMENT_PROVIDER == stripe_provider.NAME


def _require_provider() -> None:
    if not provider_enabled():
        raise PaymentProviderNotConfigured(
            "No payment provider is configured (PAYMENT_PROVIDER=none): invoices are marked "
            "paid through POST /api/invoices/{id}/mark-paid."
        )


def lease() -> timedelta:
    return CALLS_PER_ATTEMPT * timedelta(seconds=settings.PAYMENT_PROVIDER_TIMEOUT_SECONDS) + (
        LEASE_MARGIN
    )


# --- customers and payment methods ----------------------------------------------------------------


def provider_customer(customer: Customer) -> ProviderCustomer:
    """The customer's counterpart at the provider, created on first need (outside any
    transaction: it is a provider call)."""
    existing = ProviderCustomer.objects.filter(customer=customer).first()
    if existing is not None:
        return existing
    reference = stripe_provider.ensure_customer(
        customer_id=customer.customer_id, email=customer.email, name=customer.name
    )
    try:
        with transaction.atomic():
            return ProviderCustomer.objects.create(
                customer=customer,
                provider=settings.PAYMENT_PROVIDER,
                provider_customer_id=reference,
            )
    except IntegrityError:  # another request created it meanwhile
        return ProviderCustomer.objects.get(customer=customer)


def payment_method_session(customer_id: str, *, now: datetime) -> dict:
    """A SetupIntent for saving the customer's card (Stripe.js confirms it with the client
    secret); its method becomes the customer's once it succeeds."""
    _require_provider()
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(f"No customer {customer_id}.")
    try:
        profile = provider_customer(customer)
        setup_intent_id, client_secret = stripe_provider.create_setup_intent(
            provider_customer_id=profile.provider_customer_id, customer_id=customer_id
        )
    except (ProviderUnavailable, stripe_provider.ProviderRefused) as error:
        raise PaymentProviderUnavailable(f"The payment provider did not answer: {error}") from None
    ProviderCustomer.objects.filter(pk=customer_id).update(setup_intent_id=setup_intent_id)
    return {
        "customer_id": customer_id,
        "payment_provider": profile.provider,
        "provider_customer_id": profile.provider_customer_id,
        "setup_intent_id": setup_intent_id,
        "client_secret": client_secret,
    }


def _adopt(profile: ProviderCustomer, payment_method_id: str, *, now: datetime) -> bool:
    """Make this the customer's payment method; True if it is a new one."""
    if profile.payment_method_id == payment_method_id:
        return False
    card = stripe_provider.card(payment_method_id)
    profile.payment_method_id = payment_method_id
    profile.card_network = card.network
    profile.card_type = card.type
    profile.card_last_four = card.last_four
    profile.card_exp_month = card.exp_month
    profile.card_exp_year = card.exp_year
    profile.payment_method_updated_at = now
    profile.save(
        update_fields=[
            "payment_method_id",
            "card_network",
            "card_type",
            "card_last_four",
            "card_exp_month",
            "card_exp_year",
            "payment_method_updated_at",
        ]
    )
    return True


def sync_payment_method(profile: ProviderCustomer, *, now: datetime) -> ProviderCustomer:
    """Adopt the method of the customer's last session if it has succeeded since (for when
    the provider's setup_intent.succeeded webhook has not arrived, or is not sent)."""
    if profile.setup_intent_id:
        method = stripe_provider.setup_intent_method(profile.setup_intent_id)
        if method is not None:
            _adopt(profile, method, now=now)
    return profile


def payment_method_saved(
    *, provider_customer_id: str, payment_method_id: str, now: datetime
) -> bool:
    """A session succeeded (the provider's webhook): adopt its method and, if it is new, try
    the customer's unpaid invoices again now. False for a customer we do not know."""
    profile = ProviderCustomer.objects.filter(provider_customer_id=provider_customer_id).first()
    if profile is None:
        return False
    if _adopt(profile, payment_method_id, now=now):
        for invoice_id in _unpaid_in_dunning(profile.customer_id):
            retry_now(invoice_id, now=now, reason="new payment method")
    return True


def save_payment_method(
    customer: Customer, payment_method_id: str, *, now: datetime
) -> ProviderCustomer:
    """A card the customer saved on the checkout page (a SetupIntent with no Stripe customer):
    attached to their Stripe customer (created on first need) and made their payment method,
    as a payment-method session's card is. Provider calls: outside any transaction."""
    _require_provider()
    profile = provider_customer(customer)
    stripe_provider.attach_payment_method(
        payment_method_id=payment_method_id,
        provider_customer_id=profile.provider_customer_id,
    )
    if _adopt(profile, payment_method_id, now=now):
        for invoice_id in _unpaid_in_dunning(profile.customer_id):
            retry_now(invoice_id, now=now, reason="new payment method")
    return profile


def _unpaid_in_dunning(customer_id: str) -> list[str]:
    return list(
        Dunning.objects.filter(
            customer_id=customer_id,
            status__in=[DunningStatus.RECOVERING, DunningStatus.EXHAUSTED],
            invoice__status=InvoiceStatus.ISSUED,
        ).values_list("invoice_id", flat=True)
    )


# --- charging -------------------------------------------------------------------------------------


@dataclass
class _Claim:
    payment: Payment
    token: uuid.UUID
    # A provider call for this attempt may already have been made by an earlier claim.
    may_have_charged: bool


def _claim(*, now: datetime, payment_id: str | None = None) -> _Claim | None:
    """Take the oldest due payment (or the given one, if due) for this worker alone."""
    with transaction.atomic():
        due = Payment.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status__in=[PaymentStatus.SCHEDULED, PaymentStatus.PROCESSING], due_at__lte=now
        )
        if payment_id is not None:
            due = due.filter(pk=payment_id)
        payment = due.order_by("due_at", "payment_id").first()
        if payment is None:
            return None
        claim = _Claim(payment, uuid.uuid4(), payment.requested_at is not None)
        payment.status = PaymentStatus.PROCESSING
        payment.due_at = now + lease()
        payment.claim_token = claim.token
        if payment.requested_at is None and payment.amount_minor > 0:
            # The provider's clock, not the billing clock (`now` may be a test clock or an
            # operator's --as-of): find_charge compares it with the provider's timestamps.
            payment.requested_at = timezone.now()
        payment.updated_at = now
        payment.save(
            update_fields=["status", "due_at", "claim_token", "requested_at", "updated_at"]
        )
    return claim


def collect(payment_id: str, *, now: datetime) -> Payment | None:
    """Make one payment's attempt if it is due and nobody else is making it (the task queued
    when it was written). None when there was nothing to do."""
    claim = _claim(now=now, payment_id=payment_id)
    return None if claim is None else _attempt(claim, now=now)


def collect_due(*, now: datetime, limit: int = 100) -> int:
    """Attempt due payments one at a time, oldest first: dunning retries, first attempts whose
    task was lost and attempts whose worker died. Returns how many were attempted."""
    attempted = 0
    while attempted < limit:
        claim = _claim(now=now)
        if claim is None:
            break
        _attempt(claim, now=now)
        attempted += 1
    return attempted


def _attempt(claim: _Claim, *, now: datetime) -> Payment:
    payment = claim.payment
    invoice_status = Invoice.objects.filter(pk=payment.invoice_id).values_list("status", flat=True)
    if invoice_status.first() != InvoiceStatus.ISSUED:
        return _record(claim, None, now=now)
    if payment.amount_minor == 0:
        return _record(claim, ChargeOutcome("succeeded", None), now=now)
    try:
        outcome, profile = _charge(claim, now=now)
    except (ProviderUnavailable, stripe_provider.ProviderRefused) as error:
        # Unknown whether money moved: the lease runs out and the next claim looks it up.
        logger.warning("payment %s: %s; tried again after its lease", payment.payment_id, error)
        Payment.objects.filter(pk=payment.pk, claim_token=claim.token).update(
            error_message=str(error)[:500], updated_at=now
        )
        return payment
    return _record(claim, outcome, now=now, profile=profile)


def _charge(claim: _Claim, *, now: datetime) -> tuple[ChargeOutcome, ProviderCustomer]:
    payment = claim.payment
    profile = provider_customer(payment.customer)
    if payment.provider_payment_id:  # still processing at the provider when last looked at
        return stripe_provider.payment_outcome(payment.provider_payment_id), profile
    if claim.may_have_charged and payment.requested_at is not None:
        found = stripe_provider.find_charge(
            provider_customer_id=profile.provider_customer_id,
            idempotency_key=payment.idempotency_key,
            since=payment.requested_at,
        )
        if found is not None:
            return found, profile
    profile = sync_payment_method(profile, now=now)
    if not profile.payment_method_id:
        return ChargeOutcome(
            "failed", None, "no_payment_method", "The customer has no saved payment method."
        ), profile
    return stripe_provider.charge(
        provider_customer_id=profile.provider_customer_id,
        payment_method_id=profile.payment_method_id,
        amount_minor=payment.amount_minor,
        currency=payment.currency,
        idempotency_key=payment.idempotency_key,
        metadata={
            "payment_id": payment.payment_id,
            "invoice_id": payment.invoice_id,
            "subscription_id": payment.subscription_id,
            "customer_id": payment.customer_id,
        },
    ), profile


@dataclass
class _Locked:
    subscription: Subscription
    invoice: Invoice
    payment: Payment


def _lock(payment_id: str) -> _Locked:
    """The payment with its subscription and invoice, locked in the lock order."""
    ids = Payment.objects.filter(pk=payment_id).values("subscription_id", "invoice_id").get()
    subscription = (
        Subscription.objects.select_for_update(of=("self",), no_key=True)
        .select_related("product", "customer")
        .get(pk=ids["subscription_id"])
    )
    invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=ids["invoice_id"])
    invoice.subscription = subscription
    payment = (
        Payment.objects.select_for_update(of=("self",))
        .select_related("customer")
        .get(pk=payment_id)
    )
    payment.subscription, payment.invoice = subscription, invoice
    return _Locked(subscription, invoice, payment)


def _record(
    claim: _Claim,
    outcome: ChargeOutcome | None,
    *,
    now: datetime,
    profile: ProviderCustomer | None = None,
) -> Payment:
    """Record the attempt's outcome (None: its invoice is no longer issued, so it is cancelled),
    unless the claim was lost meanwhile: then another worker or a webhook has recorded it."""
    with transaction.atomic():
        locked = _lock(claim.payment.pk)
        payment = locked.payment
        if payment.claim_token != claim.token or payment.status != PaymentStatus.PROCESSING:
            logger.warning(
                "payment %s: the attempt outlived its claim; its outcome is not recorded",
                payment.payment_id,
            )
            return payment
        if profile is not None and profile.payment_method_id:
            payment.payment_method_id = profile.payment_method_id
            payment.card_network = profile.card_network
            payment.card_last_four = profile.card_last_four
        if outcome is None:
            _finish(payment, PaymentStatus.CANCELLED, now=now)
        elif outcome.status == "processing":
            # Asked again after a short while (and a webhook may settle it before).
            payment.provider_payment_id = outcome.provider_payment_id
            payment.claim_token = None
            payment.due_at = now + LEASE_MARGIN
            payment.updated_at = now
            payment.save()
        else:
            _apply(locked, outcome, now=now)
    return payment


def _finish(payment: Payment, status: str, *, now: datetime) -> None:
    payment.status = status
    payment.claim_token = None
    payment.due_at = None
    payment.finished_at = now
    payment.updated_at = now
    payment.save()


def _apply(locked: _Locked, outcome: ChargeOutcome, *, now: datetime) -> None:
    """A finished attempt's consequences, in the caller's transaction, the payment locked."""
    payment = locked.payment
    if outcome.provider_payment_id:
        payment.provider_payment_id = outcome.provider_payment_id
    payment.error_code = outcome.error_code and outcome.error_code[:100]
    payment.error_message = outcome.error_message and outcome.error_message[:500]
    if outcome.status == "succeeded":
        _finish(payment, PaymentStatus.SUCCEEDED, now=now)
        _succeeded(locked, now=now)
    else:
        _finish(payment, PaymentStatus.FAILED, now=now)
        _failed(locked, now=now)


def _succeeded(locked: _Locked, *, now: datetime) -> None:
    payment, invoice, subscription = locked.payment, locked.invoice, locked.subscription
    Payment.objects.filter(invoice=invoice, status=PaymentStatus.SCHEDULED).update(
        status=PaymentStatus.CANCELLED, due_at=None, finished_at=now, updated_at=now
    )
    if invoice.status == InvoiceStatus.ISSUED:
        paid = invoices.mark_paid(
            invoice.invoice_id,
            payment_reference=payment.provider_payment_id or payment.payment_id,
            now=now,
        )
        invoice.status, invoice.paid_at = paid.status, paid.paid_at
        invoice.payment_reference = paid.payment_reference
    else:
        logger.warning(
            "payment %s succeeded for invoice %s, which is %s: refund it from the admin",
            payment.payment_id,
            invoice.invoice_id,
            invoice.status,
        )
    _emit(EventType.PAYMENT_SUCCEEDED, payment_event_data(payment))
    dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
    if dunning is not None and dunning.status != DunningStatus.RECOVERED:
        dunning.status, dunning.updated_at = DunningStatus.RECOVERED, now
        dunning.save(update_fields=["status", "updated_at"])
        _emit(EventType.DUNNING_RECOVERED, dunning_event_data(dunning, payment))
    still_exhausted = Dunning.objects.filter(
        subscription=subscription, status=DunningStatus.EXHAUSTED
    ).exists()
    if subscription.status == SubscriptionStatus.ON_HOLD and not still_exhausted:
        _set_subscription_status(
            subscription, SubscriptionStatus.ACTIVE, Action.REACTIVATED, payment, now=now
        )


def _failed(locked: _Locked, *, now: datetime) -> None:
    """Dunning: the first failure starts it; retries on DUNNING_RETRY_DAYS after it; after the
    last one the subscription goes on_hold."""
    payment, invoice, subscription = locked.payment, locked.invoice, locked.subscription
    _emit(EventType.PAYMENT_FAILED, payment_event_data(payment))
    if invoice.kind == InvoiceKind.CHARGE:
        return  # an on-demand charge is not retried: its caller decides what next
    dunning = Dunning.objects.select_for_update().filter(invoice=invoice).first()
    if dunning is None:
        dunning = Dunning.objects.create(
            invoice=invoice,
            subscription=subscription,
            customer_id=invoice.customer_id,
            status=DunningStatus.RECOVERING,
            created_at=now,
            updated_at=now,
        )
        _emit(EventType.DUNNING_STARTED, dunning_event_data(dunning, payment))
    schedule = settings.DUNNING_RETRY_DAYS
    pending = Payment.objects.filter(
        invoice=invoice, status__in=[PaymentStatus.SCHEDULED, PaymentStatus.PROCESSING]
    ).exists()
    if pending or invoice.status != InvoiceStatus.ISSUED:
        return
    if dunning.status == DunningStatus.RECOVERING and payment.retry_attempt < len(schedule):
        due = max(dunning.created_at + timedelta(days=schedule[payment.retry_attempt]), now)
        _schedule_attempt(invoice, payment.retry_attempt + 1, due=due, now=now)
        return
    if dunning.status == DunningStatus.RECOVERING:
        dunning.status, dunning.updated_at = DunningStatus.EXHAUSTED, now
        dunning.save(update_fields=["status", "updated_at"])
    if subscription.status == SubscriptionStatus.ACTIVE:
        _set_subscription_status(
            subscription, SubscriptionStatus.ON_HOLD, Action.PUT_ON_HOLD, payment, now=now
        )


def _schedule_attempt(invoice: Invoice, retry_attempt: int, *, due: datetime, now: datetime):
    payment = Payment.objects.create(
        invoice=invoice,
        subscription_id=invoice.subscription_id,
        customer_id=invoice.customer_id,
        retry_attempt=retry_attempt,
        amount_minor=invoice.total_minor,
        currency=invoice.currency,
        due_at=due,
        provider=settings.PAYMENT_PROVIDER,
        idempotency_key=payment_outbox.idempotency_key(invoice.invoice_id, retry_attempt),
        created_at=now,
        updated_at=now,
    )
    if due <= now:
        payment_outbox.queue_after_commit([payment.payment_id])
    return payment


def _set_subscription_status(
    subscription: Subscription, status: str, action: str, payment: Payment, *, now: datetime
) -> None:
    before = {"status": subscription.status}
    subscription.status = status
    subscription.save(update_fields=["status"])
    audit_log.record(
        object_type="products.subscription",
        object_id=subscription.subscription_id,
        action=action,
        before=before,
        after={"status": status},
        details={"payment_id": payment.payment_id, "invoice_id": payment.invoice_id},
    )
    event_type = (
        EventType.SUBSCRIPTION_ON_HOLD
        if status == SubscriptionStatus.ON_HOLD
        else EventType.SUBSCRIPTION_ACTIVE
    )
    _emit(
        event_type,
        {
            **subscription_data(subscription),
            "past_due_ends_at": None,
            "payment_id": None,
            "invoice": payment_event_data(payment)["invoice"],
            "payment": payment_event_data(payment),
        },
    )


def _emit(event_type: str, payload: dict) -> None:
    emit(event_type, [payload])


# --- on-demand charges ---------------------------------------------------------------------------

CHARGE_FIELDS = {
    "product_price",
    "product_currency",
    "product_description",
    "metadata",
    "adaptive_currency_fees_inclusive",
    "customer_balance_config",
}
MAX_METADATA_KEYS = 50


def charge_now(subscription_id: str, *, body: dict, now: datetime) -> Payment:
    """Dodo's `subscriptions.charge`: charge an amount now, recorded as its own issued invoice
    (kind `charge`) with one line, collected like any invoice but never retried by dunning.
    Adaptive currency and customer balances are Dodo's own services: refused unless off."""
    _require_provider()
    price, currency, description, metadata = _charge_input(body)
    with transaction.atomic():
        subscription = (
            Subscription.objects.select_for_update(of=("self",), no_key=True)
            .select_related("product", "customer")
            .filter(pk=subscription_id)
            .first()
        )
        if subscription is None:
            raise NotFound(f"No subscription {subscription_id}.")
        if subscription.status == SubscriptionStatus.CANCELLED:
            raise PaymentStateConflict(f"Subscription {subscription_id} is cancelled.")
        product = subscription.product
        if currency is not None and currency != product.currency:
            raise InvalidInput.from_errors(
                [
                    {
                        "field": "product_currency",
                        "message": f"Must be the product's currency, {product.currency} "
                        "(adaptive currency is not supported).",
                    }
                ]
            )
        (number,) = billing.take_invoice_numbers(1, year=now.year)
        period = subscription.period(subscription.period_index)
        invoice = Invoice.objects.create(
            subscription=subscription,
            customer_id=subscription.customer_id,
            period_index=period.index,
            period_start=period.start,
            period_end=period.end,
            status=InvoiceStatus.ISSUED,
            kind=InvoiceKind.CHARGE,
            number=number,
            currency=product.currency,
            total_minor=price,
            created_at=now,
            issued_at=now,
        )
        line = LineDraft(
            kind=LineKind.CHARGE,
            description=description or product.description or f"{product.name}: charge",
            amount_minor=price,
        )
        billing.write_lines([(invoice, [line])])
        invoice.subscription = subscription
        webhook_events.invoices_created([invoice])
        webhook_events.invoices_finalized([invoice])
        payment = _schedule_attempt(invoice, 0, due=now, now=now)
        payment.metadata = subscription.metadata if metadata is None else metadata
        payment.save(update_fields=["metadata"])
    return payment


def _charge_input(body: dict) -> tuple[int, str | None, str | None, dict | None]:
    errors = [
        {"field": name, "message": "Is not a field of this request."}
        for name in sorted(set(body) - CHARGE_FIELDS)
    ]
    price = body.get("product_price")
    if isinstance(price, bool) or not isinstance(price, int) or not 0 < price < 10**12:
        errors.append(
            {"field": "product_price", "message": "Is required: a positive whole minor unit."}
        )
    currency = body.get("product_currency")
    if currency is not None and not (isinstance(currency, str) and len(currency) == 3):
        errors.append({"field": "product_currency", "message": "Must be an ISO 4217 code."})
    description = body.get("product_description")
    if description is not None and not (isinstance(description, str) and len(description) <= 500):
        errors.append(
            {"field": "product_description", "message": "Must be at most 500 characters."}
        )
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= MAX_METADATA_KEYS
        and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        errors.append({"field": "metadata", "message": "Must map strings to strings."})
    if body.get("adaptive_currency_fees_inclusive") not in (None, False):
        errors.append(
            {
                "field": "adaptive_currency_fees_inclusive",
                "message": "Adaptive currency is not supported here: leave it null or false.",
            }
        )
    balance = body.get("customer_balance_config")
    if balance not in (None, {}) and not (isinstance(balance, dict) and not any(balance.values())):
        errors.append(
            {
                "field": "customer_balance_config",
                "message": "Customer credit balances are not supported here: leave it off.",
            }
        )
    if errors or not isinstance(price, int):
        raise InvalidInput.from_errors(errors)
    return price, (currency.upper() if currency else None), description, metadata


# --- staff actions --------------------------------------------------------------------------------


def retry_now(invoice_id: str, *, now: datetime, reason: str = "retry payment now") -> Payment:
    """Try an unpaid issued invoice again now: its scheduled retry moves to now, or (dunning
    exhausted, or no attempt yet) a new attempt is made. Audit-logged."""
    _require_provider()
    with transaction.atomic():
        invoice = invoices.locked_invoice(invoice_id)
        if invoice.status != InvoiceStatus.ISSUED:
            raise InvoiceStateConflict(
                f"Invoice {invoice_id} is {invoice.status}; only an issued invoice is collected."
            )
        attempts = Payment.objects.select_for_update().filter(invoice=invoice)
        if attempts.filter(status=PaymentStatus.PROCESSING).exists():
            raise PaymentStateConflict(f"A payment of invoice {invoice_id} is under way.")
        scheduled = attempts.filter(status=PaymentStatus.SCHEDULED).first()
        if scheduled is not None:
            scheduled.due_at, scheduled.updated_at = now, now
            scheduled.save(update_fields=["due_at", "updated_at"])
            payment_outbox.queue_after_commit([scheduled.payment_id])
            payment = scheduled
        else:
            last = attempts.aggregate(last=Max("retry_attempt"))["last"]
            payment = _schedule_attempt(invoice, 0 if last is None else last + 1, due=now, now=now)
        audit_log.record(
            object_type="products.invoice",
            object_id=invoice_id,
            action=Action.PAYMENT_RETRIED,
            before=None,
            after={"payment_id": payment.payment_id, "retry_attempt": payment.retry_attempt},
            details={"reason": reason},
        )
    return payment


def refund(
    invoice_id: str, *, amount_minor: int | None = None, reason: object, now: datetime
) -> Refund:
    """Give back a paid invoice's successful payment (all that is left of it without an
    amount) through the provider, then record it; audit-logged, announced as refund.succeeded.

    The refund row is written before the provider call (with the idempotency key it is sent
    with), so a crash leaves a pending refund that `settle_pending_refunds` looks up."""
    _require_provider()
    if not isinstance(reason, str) or not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidInput.from_errors(
            [
                {
                    "field": "reason",
                    "message": f"Is required, at most {MAX_REASON_LENGTH} characters.",
                }
            ]
        )
    with transaction.atomic():
        invoice = invoices.locked_invoice(invoice_id)
        payment = (
            Payment.objects.select_for_update()
            .filter(invoice=invoice, status=PaymentStatus.SUCCEEDED)
            .exclude(provider_payment_id=None)
            .first()
        )
        if payment is None:
            raise PaymentStateConflict(f"Invoice {invoice_id} has no payment to refund.")
        given_back = sum(
            payment.refunds.exclude(status=RefundStatus.FAILED).values_list(
                "amount_minor", flat=True
            )
        )
        left = payment.amount_minor - given_back
        amount = left if amount_minor is None else amount_minor
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= left:
            raise InvalidInput.from_errors(
                [{"field": "amount", "message": f"Must be 1 to {left} minor units."}]
            )
        pending = Refund.objects.create(
            payment=payment,
            amount_minor=amount,
            currency=payment.currency,
            status=RefundStatus.PENDING,
            reason=reason.strip(),
            created_at=now,
            updated_at=now,
        )
    return _send_refund(pending, now=now)


def _send_refund(pending: Refund, *, now: datetime) -> Refund:
    payment = pending.payment
    key = f"{pending.refund_id}-refund"
    try:
        outcome = stripe_provider.find_refund(
            provider_payment_id=payment.provider_payment_id or "", idempotency_key=key
        ) or stripe_provider.refund(
            provider_payment_id=payment.provider_payment_id or "",
            amount_minor=pending.amount_minor,
            idempotency_key=key,
            metadata={"refund_id": pending.refund_id, "invoice_id": payment.invoice_id},
        )
    except ProviderUnavailable as error:
        raise PaymentProviderUnavailable(
            f"The payment provider did not answer; refund {pending.refund_id} stays pending "
            f"and is looked up again: {error}"
        ) from None
    with transaction.atomic():
        refund_row = Refund.objects.select_for_update().select_related("payment").get(pk=pending.pk)
        if refund_row.status != RefundStatus.PENDING:
            return refund_row
        refund_row.provider_refund_id = outcome.provider_refund_id
        refund_row.error_message = outcome.error_message
        refund_row.updated_at = now
        if outcome.status != "pending":
            refund_row.status = outcome.status
        refund_row.save()
        if refund_row.status == RefundStatus.SUCCEEDED:
            _refunded(refund_row)
    return refund_row


def _refunded(refund_row: Refund) -> None:
    audit_log.record(
        object_type="products.invoice",
        object_id=refund_row.payment.invoice_id,
        action=Action.REFUNDED,
        before=None,
        after={
            "refund_id": refund_row.refund_id,
            "amount_minor": refund_row.amount_minor,
            "payment_id": refund_row.payment_id,
        },
        details={"reason": refund_row.reason},
    )
    _emit(EventType.REFUND_SUCCEEDED, refund_event_data(refund_row))


def settle_pending_refunds(*, now: datetime, older_than: timedelta | None = None) -> int:
    """Look up refunds whose provider answer was lost, and record what the provider did."""
    cutoff = now - (older_than or lease())
    pending = list(
        Refund.objects.select_related("payment").filter(
            status=RefundStatus.PENDING, updated_at__lte=cutoff
        )
    )
    for row in pending:
        try:
            _send_refund(row, now=now)
        except PaymentProviderUnavailable as error:
            logger.warning("refund %s: %s", row.refund_id, error)
    return len(pending)


# --- the provider's webhooks ----------------------------------------------------------------------


def apply_provider_event(event: dict, *, now: datetime) -> str:
    """Apply a verified provider event once (its id is stored in the same transaction); a
    repeat, or an event about something already settled, changes nothing. Returns what was
    done, for the log and the answer."""
    event_id, event_type = event["id"], str(event.get("type", ""))
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        obj = {}
    with transaction.atomic():
        stored, created = ProviderEvent.objects.get_or_create(
            event_id=event_id,
            defaults={
                "provider": stripe_provider.NAME,
                "event_type": event_type[:100],
                "object_id": str(obj.get("id", ""))[:255] or None,
                "outcome": "received",
                "received_at": now,
            },
        )
        if not created:
            return "already applied"
        handler = _HANDLERS.get(event_type)
        outcome = handler(obj, now=now) if handler else "ignored: not a type this server uses"
        stored.outcome = outcome[:200]
        stored.save(update_fields=["outcome"])
    return outcome


def _payment_of_intent(intent: dict) -> Payment | None:
    given = intent.get("metadata")
    metadata: dict = given if isinstance(given, dict) else {}
    query = Q(provider_payment_id=intent.get("id"))
    if metadata.get("payment_id") and metadata.get("idempotency_key"):
        query |= Q(pk=metadata["payment_id"], idempotency_key=metadata["idempotency_key"])
    return Payment.objects.filter(query).first()


def _intent_event(succeeded: bool):
    def handle(intent: dict, *, now: datetime) -> str:
        found = _payment_of_intent(intent)
        if found is None:
            return "ignored: no payment of ours"
        locked = _lock(found.pk)
        payment = locked.payment
        if payment.status != PaymentStatus.PROCESSING:
            return f"ignored: payment {payment.payment_id} is already {payment.status}"
        error = intent.get("last_payment_error") or {}
        outcome = (
            ChargeOutcome("succeeded", intent.get("id"))
            if succeeded
            else ChargeOutcome(
                "failed",
                intent.get("id"),
                error.get("decline_code") or error.get("code") or "payment_failed",
                error.get("message") or "The payment failed.",
            )
        )
        _apply(locked, outcome, now=now)
        return f"payment {payment.payment_id} {payment.status}"

    return handle


def _charge_refunded(charge: dict, *, now: datetime) -> str:
    """Refunds made at the provider (its dashboard, or ours whose answer was lost): recorded
    once each, by the provider's refund id."""
    intent_id = charge.get("payment_intent")
    payment = Payment.objects.filter(provider_payment_id=intent_id).first() if intent_id else None
    if payment is None:
        return "ignored: no payment of ours"
    refunds = (charge.get("refunds") or {}).get("data") or []
    recorded = 0
    for given in refunds:
        if not isinstance(given, dict) or given.get("status") not in ("succeeded", None):
            continue
        known = Refund.objects.select_for_update().filter(
            Q(provider_refund_id=given.get("id"))
            | Q(pk=(given.get("metadata") or {}).get("refund_id") or "")
        )
        row = known.first()
        if row is not None:
            if row.status == RefundStatus.PENDING:
                row.status, row.provider_refund_id, row.updated_at = (
                    RefundStatus.SUCCEEDED,
                    given.get("id"),
                    now,
                )
                row.save()
                _refunded(row)
                recorded += 1
            continue
        row = Refund.objects.create(
            payment=payment,
            amount_minor=int(given.get("amount") or 0),
            currency=payment.currency,
            status=RefundStatus.SUCCEEDED,
            reason="Refunded at the payment provider",
            provider_refund_id=given.get("id"),
            created_at=now,
            updated_at=now,
        )
        _refunded(row)
        recorded += 1
    return f"{recorded} refunds recorded for payment {payment.payment_id}"


def _setup_succeeded(intent: dict, *, now: datetime) -> str:
    customer, method = intent.get("customer"), intent.get("payment_method")
    if not isinstance(customer, str) or not isinstance(method, str):
        return "ignored: no customer or payment method"
    if payment_method_saved(provider_customer_id=customer, payment_method_id=method, now=now):
        return f"payment method {method} saved"
    return "ignored: no customer of ours"


_HANDLERS = {
    "payment_intent.succeeded": _intent_event(True),
    "payment_intent.payment_failed": _intent_event(False),
    "charge.refunded": _charge_refunded,
    "setup_intent.succeeded": _setup_succeeded,
}
