"""Usage alerts: set, list and remove them, and the check the rollup task runs every few seconds.

An alert fires `usage.threshold_reached` once per billing period: the crossing row (unique on
alert and period start) is inserted with ON CONFLICT DO NOTHING in the transaction that writes the
webhook to the outbox. A second worker running the same check waits on that row's index entry and
then inserts nothing; a restart finds the row; the next period has another start, so it fires
again there.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef

from audit import log as audit_log
from audit.models import Action
from billing_site.errors import Conflict, InvalidInput, NotFound
from billing_site.wire import decimal_text, timestamp_text
from portal.models import ThresholdKind, UsageAlert, UsageAlertCrossing
from portal.usage import MeterStanding, meter_standings
from products.models import ProductMeter, Subscription, SubscriptionStatus
from webhooks.emit import emit
from webhooks.models import EventType

MAX_THRESHOLD = Decimal("1e15")


class AlertExists(Conflict):
    code = "USAGE_ALERT_EXISTS"


def _threshold(value: object, kind: str) -> Decimal:
    """A positive decimal (units) or a positive whole number of minor units (amount)."""
    try:
        threshold = Decimal(str(value)) if isinstance(value, (str, int)) else None
    except InvalidOperation:
        threshold = None
    if isinstance(value, bool):
        threshold = None
    if threshold is None or not threshold.is_finite() or not 0 < threshold < MAX_THRESHOLD:
        raise InvalidInput.from_errors(
            [{"field": "threshold", "message": "Must be a decimal string or integer above 0."}]
        )
    if kind == ThresholdKind.AMOUNT and threshold != threshold.to_integral_value():
        raise InvalidInput.from_errors(
            [{"field": "threshold", "message": "An amount is a whole number of minor units."}]
        )
    return threshold


def validated_alert(
    subscription_id: str, *, meter_id: object, threshold_kind: object, threshold: object
) -> UsageAlert:
    """An unsaved alert on a meter of the subscription's product, every rule checked."""
    subscription = Subscription.objects.filter(pk=subscription_id).first()
    if subscription is None:
        raise NotFound(f"No subscription {subscription_id}.")
    errors = []
    if threshold_kind not in ThresholdKind.values:
        errors.append({"field": "threshold_kind", "message": "Must be 'units' or 'amount'."})
    attachment = (
        ProductMeter.objects.filter(product_id=subscription.product_id, meter_id=meter_id).first()
        if isinstance(meter_id, str)
        else None
    )
    if attachment is None:
        errors.append(
            {"field": "meter_id", "message": "Is not a meter of the subscription's product."}
        )
    elif threshold_kind == ThresholdKind.AMOUNT and attachment.credit_entitlement_id:
        errors.append(
            {"field": "threshold_kind", "message": "This meter is billed in credits, not money."}
        )
    if errors:
        raise InvalidInput.from_errors(errors)
    assert isinstance(threshold_kind, str) and isinstance(meter_id, str)
    value = _threshold(threshold, threshold_kind)
    if UsageAlert.objects.filter(
        subscription=subscription, meter_id=meter_id, threshold_kind=threshold_kind, threshold=value
    ).exists():
        raise AlertExists("This subscription already has this alert.")
    return UsageAlert(
        subscription=subscription, meter_id=meter_id, threshold_kind=threshold_kind, threshold=value
    )


def create_alert(
    subscription_id: str,
    *,
    meter_id: object,
    threshold_kind: object,
    threshold: object,
    now: datetime,
) -> UsageAlert:
    """A new alert (the one way to add one, from the API or the admin), audit-logged."""
    alert = validated_alert(
        subscription_id, meter_id=meter_id, threshold_kind=threshold_kind, threshold=threshold
    )
    alert.created_at = now
    try:
        with transaction.atomic():
            alert.save(force_insert=True)
            audit_log.record_change(alert, Action.CREATED, before=None, after=_state(alert))
    except IntegrityError:  # the same alert added at the same moment by another request
        raise AlertExists("This subscription already has this alert.") from None
    return alert


def _state(alert: UsageAlert) -> dict:
    return audit_log.snapshot(alert, ["subscription_id", "meter_id", "threshold_kind", "threshold"])


def delete_alert(alert: UsageAlert) -> None:
    """Remove an alert and its crossings (the one way to remove one)."""
    with transaction.atomic():
        before, alert_id = _state(alert), str(alert.pk)
        alert.delete()
        audit_log.record(
            object_type=UsageAlert._meta.label_lower,
            object_id=alert_id,
            action=Action.DELETED,
            before=before,
            after=None,
        )


def alert_data(alert: UsageAlert, *, fired_in: UsageAlertCrossing | None = None) -> dict:
    """An alert as the API shows it (an extension of Dodo's API)."""
    return {
        "id": alert.id,
        "subscription_id": alert.subscription_id,
        "meter_id": alert.meter_id,
        "threshold_kind": alert.threshold_kind,
        "threshold": decimal_text(alert.threshold),
        "created_at": timestamp_text(alert.created_at),
        "reached_at": timestamp_text(fired_in.reached_at) if fired_in else None,
    }


def crossings_in_current_period(alerts: list[UsageAlert]) -> dict[str, UsageAlertCrossing]:
    """{alert id: its crossing} for the alerts that fired in their subscription's open period."""
    found = UsageAlertCrossing.objects.filter(alert__in=alerts).select_related(
        "alert__subscription"
    )
    return {
        c.alert_id: c
        for c in found
        if c.period_start == c.alert.subscription.period(c.alert.subscription.period_index).start
    }


def _reached(alert: UsageAlert, standing: MeterStanding) -> bool:
    if alert.threshold_kind == ThresholdKind.UNITS:
        return standing.usage.quantity >= alert.threshold
    return Decimal(standing.line.amount_minor) >= alert.threshold


_INSERT_CROSSING = f"""
    INSERT INTO {UsageAlertCrossing._meta.db_table}
        (alert_id, period_start, period_end, consumed_units, amount_minor, reached_at)
    VALUES (%s, %s, %s, %s, %s, %s)
    ON CONFLICT (alert_id, period_start) DO NOTHING
    RETURNING id
"""


def _fire(alert: UsageAlert, standing: MeterStanding, *, now: datetime) -> bool:
    """Record the crossing and write the webhook in one transaction; False if it had fired."""
    period = standing.period
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _INSERT_CROSSING,
            [
                alert.pk,
                period.start,
                period.end,
                standing.usage.quantity,
                standing.line.amount_minor,
                now,
            ],
        )
        if cursor.fetchone() is None:
            return False
        subscription = standing.subscription
        emit(
            EventType.USAGE_THRESHOLD_REACHED,
            [
                {
                    "payload_type": "UsageAlert",
                    **alert_data(alert),
                    "customer_id": subscription.customer_id,
                    "period_start": timestamp_text(period.start),
                    "period_end": timestamp_text(period.end),
                    "consumed_units": decimal_text(standing.usage.quantity),
                    "amount": standing.line.amount_minor,
                    "currency": subscription.product.currency,
                    "reached_at": timestamp_text(now),
                }
            ],
        )
        return True


def check_usage_alerts(*, now: datetime) -> int:
    """Fire every alert reached in its subscription's open period that has not fired there yet;
    returns how many fired. Alerts that fired this period are skipped without reading usage."""
    pending = (
        UsageAlert.objects.filter(subscription__status=SubscriptionStatus.ACTIVE)
        .exclude(
            Exists(
                UsageAlertCrossing.objects.filter(
                    alert=OuterRef("pk"),
                    period_start=OuterRef("subscription__current_period_start"),
                )
            )
        )
        .select_related("subscription__product")
    )
    by_subscription: dict[str, list[UsageAlert]] = {}
    for alert in pending:
        by_subscription.setdefault(alert.subscription_id, []).append(alert)
    if not by_subscription:
        return 0
    subscriptions = [alerts[0].subscription for alerts in by_subscription.values()]
    fired = 0
    for standing in meter_standings(subscriptions):
        for alert in by_subscription.get(standing.subscription.pk, []):
            if alert.meter_id == standing.product_meter.meter_id and _reached(alert, standing):
                fired += _fire(alert, standing, now=now)
    return fired
