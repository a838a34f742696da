"""Prefixed public IDs (`cus_…`, `mtr_…`) in Dodo's format: prefix + 21 alphanumerics."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 21


def new_id(prefix: str) -> str:
    """A random, unguessable ID; 21 characters of 62 give about 125 bits."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH))


def new_customer_id() -> str:
    return new_id("cus")


def new_meter_id() -> str:
    return new_id("mtr")


def new_product_id() -> str:
    return new_id("pdt")


def new_subscription_id() -> str:
    return new_id("sub")


def new_scheduled_change_id() -> str:
    return new_id("spc")


def new_invoice_id() -> str:
    return new_id("inv")


def new_credit_entitlement_id() -> str:
    return new_id("cde")


def new_payment_id() -> str:
    return new_id("pay")


def new_refund_id() -> str:
    return new_id("ref")


def new_checkout_session_id() -> str:
    return new_id("cks")
