"""Numbers, money and dates in the portal's locale (Babel's CLDR data): `{% money 123456 "EUR" %}`
is "1.234,56 €" for a German customer and "€1,234.56" for an English one. The locale is the page's
`portal_locale` (portal/views.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from django import template

from billing_site.money import currency_exponent

register = template.Library()


def _locale(context: template.Context) -> str:
    return context.get("portal_locale") or "en"


@register.simple_tag(takes_context=True)
def money(context: template.Context, amount_minor: int | None, currency: str) -> str:
    """Minor units as the locale writes that currency, exactly (no float on the way)."""
    if amount_minor is None:
        return ""
    major = Decimal(int(amount_minor)).scaleb(-currency_exponent(currency))
    return format_currency(major, currency, locale=_locale(context), currency_digits=True)


@register.simple_tag(takes_context=True)
def number(context: template.Context, value: Decimal | int | None) -> str:
    """An exact quantity with the locale's separators, every digit kept."""
    if value is None:
        return ""
    return format_decimal(Decimal(value), locale=_locale(context), decimal_quantization=False)


@register.simple_tag(takes_context=True)
def moment(context: template.Context, value: datetime | None) -> str:
    """A time in UTC (the billing clock's zone), written as the locale writes it."""
    if value is None:
        return ""
    return format_datetime(value.astimezone(UTC), "medium", tzinfo=UTC, locale=_locale(context))


@register.simple_tag(takes_context=True)
def day(context: template.Context, value: datetime | None) -> str:
    if value is None:
        return ""
    return format_date(value.astimezone(UTC).date(), "medium", locale=_locale(context))
