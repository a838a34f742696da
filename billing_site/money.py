"""Money: integer minor units, exact decimals, and one rounding rule (half-up, once per line)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# The ISO 4217 codes the Dodo API accepts (its `Currency` enum).
CURRENCIES = frozenset(
    [
        "AED",
        "ALL",
        "AMD",
        "ANG",
        "AOA",
        "ARS",
        "AUD",
        "AWG",
        "AZN",
        "BAM",
        "BBD",
        "BDT",
        "BGN",
        "BHD",
        "BIF",
        "BMD",
        "BND",
        "BOB",
        "BRL",
        "BSD",
        "BWP",
        "BYN",
        "BZD",
        "CAD",
        "CHF",
        "CLP",
        "CNY",
        "COP",
        "CRC",
        "CUP",
        "CVE",
        "CZK",
        "DJF",
        "DKK",
        "DOP",
        "DZD",
        "EGP",
        "ETB",
        "EUR",
        "FJD",
        "FKP",
        "GBP",
        "GEL",
        "GHS",
        "GIP",
        "GMD",
        "GNF",
        "GTQ",
        "GYD",
        "HKD",
        "HNL",
        "HRK",
        "HTG",
        "HUF",
        "IDR",
        "ILS",
        "INR",
        "IQD",
        "JMD",
        "JOD",
        "JPY",
        "KES",
        "KGS",
        "KHR",
        "KMF",
        "KRW",
        "KWD",
        "KYD",
        "KZT",
        "LAK",
        "LBP",
        "LKR",
        "LRD",
        "LSL",
        "LYD",
        "MAD",
        "MDL",
        "MGA",
        "MKD",
        "MMK",
        "MNT",
        "MOP",
        "MRU",
        "MUR",
        "MVR",
        "MWK",
        "MXN",
        "MYR",
        "MZN",
        "NAD",
        "NGN",
        "NIO",
        "NOK",
        "NPR",
        "NZD",
        "OMR",
        "PAB",
        "PEN",
        "PGK",
        "PHP",
        "PKR",
        "PLN",
        "PYG",
        "QAR",
        "RON",
        "RSD",
        "RUB",
        "RWF",
        "SAR",
        "SBD",
        "SCR",
        "SEK",
        "SGD",
        "SHP",
        "SLE",
        "SLL",
        "SOS",
        "SRD",
        "SSP",
        "STN",
        "SVC",
        "SZL",
        "THB",
        "TND",
        "TOP",
        "TRY",
        "TTD",
        "TWD",
        "TZS",
        "UAH",
        "UGX",
        "USD",
        "UYU",
        "UZS",
        "VES",
        "VND",
        "VUV",
        "WST",
        "XAF",
        "XCD",
        "XOF",
        "XPF",
        "YER",
        "ZAR",
        "ZMW",
    ]
)

# Digits after the decimal point, for display only; amounts are always stored in minor units.
_EXPONENTS = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def round_minor(amount: Decimal) -> int:
    """Round an exact amount of minor units to a whole one, half-up: 100.5 -> 101, never 100."""
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_minor(amount_minor: int, currency: str) -> str:
    """`1500, "USD"` -> `"15.00 USD"`, for pages staff read."""
    exponent = currency_exponent(currency)
    major = Decimal(amount_minor).scaleb(-exponent)
    return f"{major:,.{exponent}f} {currency}"


def decimal_digits(value: Decimal) -> tuple[int, int]:
    """(integer digits, fraction digits) of a finite decimal, trailing zeros of the fraction not
    counted: `1.50` -> (1, 1), `0.001` -> (0, 3), `1E+3` -> (4, 0). Exact at any size, where
    `normalize()` rounds to 28 digits (passing `1.000…0001`) and overflows on `1e999999999`."""
    _, digits, exponent = value.as_tuple()
    if not any(digits):
        return 0, 0
    assert isinstance(exponent, int), "decimal_digits needs a finite decimal"
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    dropped = min(trailing_zeros, max(-exponent, 0))
    exponent += dropped
    return max(len(digits) - dropped + exponent, 0), max(-exponent, 0)
