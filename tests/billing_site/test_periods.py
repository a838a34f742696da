"""Tests for billing_site.periods: anchor-based billing periods (pure Python, no Django needed)."""

from __future__ import annotations

import bisect
import calendar
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from billing_site import periods
from billing_site.periods import (
    INTERVAL_UNITS,
    BillingInterval,
    Period,
    add_interval,
    period_at,
    period_start,
    periods_between,
)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def expected_start(anchor: datetime, unit: str, count: int, k: int) -> datetime:
    """Independent oracle for period k's start (deliberately not using the module's code)."""
    if unit == "Day":
        return anchor + timedelta(hours=24 * count * k)
    if unit == "Week":
        return anchor + timedelta(hours=7 * 24 * count * k)
    months_ahead = count * k * (12 if unit == "Year" else 1)
    zero_based = anchor.month - 1 + months_ahead
    year = anchor.year + zero_based // 12
    month = zero_based % 12 + 1
    days_in_month = calendar.monthrange(year, month)[1]
    return datetime(
        year,
        month,
        min(anchor.day, days_in_month),
        anchor.hour,
        anchor.minute,
        anchor.second,
        anchor.microsecond,
        tzinfo=UTC,
    )


def starts(anchor: datetime, interval: BillingInterval, n: int) -> list[datetime]:
    return [period_start(anchor, interval, k) for k in range(n)]


# --- BillingInterval validation ---------------------------------------------------------------


def test_interval_units_match_dodo_enum() -> None:
    assert INTERVAL_UNITS == ("Day", "Week", "Month", "Year")


@pytest.mark.parametrize("unit", ["day", "Days", "month", "Quarter", ""])
def test_interval_rejects_unknown_unit(unit: str) -> None:
    with pytest.raises(ValueError):
        BillingInterval(unit, 1)


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "1", None])
def test_interval_rejects_bad_count(count: object) -> None:
    with pytest.raises(ValueError):
        BillingInterval("Month", count)  # type: ignore[arg-type]


# --- each unit, count 1 and > 1 -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "count", "expected"),
    [
        (
            "Day",
            1,
            [utc(2024, 2, 27, 9), utc(2024, 2, 28, 9), utc(2024, 2, 29, 9), utc(2024, 3, 1, 9)],
        ),
        ("Day", 10, [utc(2024, 2, 27, 9), utc(2024, 3, 8, 9), utc(2024, 3, 18, 9)]),
        ("Week", 1, [utc(2024, 2, 27, 9), utc(2024, 3, 5, 9), utc(2024, 3, 12, 9)]),
        ("Week", 2, [utc(2024, 2, 27, 9), utc(2024, 3, 12, 9), utc(2024, 3, 26, 9)]),
        ("Month", 1, [utc(2024, 2, 27, 9), utc(2024, 3, 27, 9), utc(2024, 4, 27, 9)]),
        ("Month", 5, [utc(2024, 2, 27, 9), utc(2024, 7, 27, 9), utc(2024, 12, 27, 9)]),
        ("Year", 1, [utc(2024, 2, 27, 9), utc(2025, 2, 27, 9), utc(2026, 2, 27, 9)]),
        ("Year", 3, [utc(2024, 2, 27, 9), utc(2027, 2, 27, 9), utc(2030, 2, 27, 9)]),
    ],
)
def test_each_unit_and_count(unit: str, count: int, expected: list[datetime]) -> None:
    assert starts(utc(2024, 2, 27, 9), BillingInterval(unit, count), len(expected)) == expected


def test_day_is_24h_in_utc_across_a_dst_change() -> None:
    # 2024-03-10 is a US DST switch; in UTC nothing happens, every day is exactly 24h.
    anchor = utc(2024, 3, 9, 7, 30)
    result = starts(anchor, BillingInterval("Day", 1), 3)
    assert result == [utc(2024, 3, 9, 7, 30), utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 7, 30)]


# --- month-end clamping, no drift ---------------------------------------------------------------


def test_jan_31_2024_monthly_exact_sequence() -> None:
    result = starts(utc(2024, 1, 31), BillingInterval("Month", 1), 6)
    assert result == [
        utc(2024, 1, 31),
        utc(2024, 2, 29),
        utc(2024, 3, 31),  # not Mar 29: computed from the anchor, not the previous end
        utc(2024, 4, 30),
        utc(2024, 5, 31),
        utc(2024, 6, 30),
    ]


@pytest.mark.parametrize(
    ("anchor", "count", "expected"),
    [
        # 31st, non-leap year
        (utc(2023, 1, 31), 1, [utc(2023, 2, 28), utc(2023, 3, 31), utc(2023, 4, 30)]),
        # 30th
        (utc(2024, 1, 30), 1, [utc(2024, 2, 29), utc(2024, 3, 30), utc(2024, 4, 30)]),
        (utc(2023, 1, 30), 1, [utc(2023, 2, 28), utc(2023, 3, 30), utc(2023, 4, 30)]),
        # 29th
        (utc(2024, 1, 29), 1, [utc(2024, 2, 29), utc(2024, 3, 29)]),
        (utc(2023, 1, 29), 1, [utc(2023, 2, 28), utc(2023, 3, 29)]),
        # century rules: 1900 is not a leap year, 2000 is
        (utc(1900, 1, 31), 1, [utc(1900, 2, 28), utc(1900, 3, 31)]),
        (utc(2000, 1, 31), 1, [utc(2000, 2, 29), utc(2000, 3, 31)]),
        (utc(2028, 1, 31), 1, [utc(2028, 2, 29), utc(2028, 3, 31)]),
        # count > 1 across a year end and a February
        (utc(2024, 8, 31), 3, [utc(2024, 11, 30), utc(2025, 2, 28), utc(2025, 5, 31)]),
        (utc(2023, 12, 31), 2, [utc(2024, 2, 29), utc(2024, 4, 30), utc(2024, 6, 30)]),
    ],
)
def test_month_end_anchors_clamp(anchor: datetime, count: int, expected: list[datetime]) -> None:
    interval = BillingInterval("Month", count)
    assert starts(anchor, interval, len(expected) + 1)[1:] == expected


@pytest.mark.parametrize(
    ("anchor", "count", "expected"),
    [
        (
            utc(2024, 2, 29),
            1,
            [utc(2025, 2, 28), utc(2026, 2, 28), utc(2027, 2, 28), utc(2028, 2, 29)],
        ),
        (utc(2024, 2, 29), 2, [utc(2026, 2, 28), utc(2028, 2, 29), utc(2030, 2, 28)]),
        (utc(1896, 2, 29), 4, [utc(1900, 2, 28), utc(1904, 2, 29)]),
        (utc(1996, 2, 29), 4, [utc(2000, 2, 29), utc(2004, 2, 29)]),
        (utc(2023, 3, 31), 1, [utc(2024, 3, 31), utc(2025, 3, 31)]),
    ],
)
def test_year_leap_days(anchor: datetime, count: int, expected: list[datetime]) -> None:
    interval = BillingInterval("Year", count)
    assert starts(anchor, interval, len(expected) + 1)[1:] == expected


def test_time_of_day_is_kept_through_clamping() -> None:
    anchor = datetime(2024, 1, 31, 23, 59, 58, 123456, tzinfo=UTC)
    assert period_start(anchor, BillingInterval("Month", 1), 1) == datetime(
        2024, 2, 29, 23, 59, 58, 123456, tzinfo=UTC
    )
    assert period_start(anchor, BillingInterval("Year", 1), 1) == datetime(
        2025, 1, 31, 23, 59, 58, 123456, tzinfo=UTC
    )


def test_add_interval_times() -> None:
    monthly = BillingInterval("Month", 1)
    assert add_interval(utc(2024, 1, 31), monthly) == utc(2024, 2, 29)
    assert add_interval(utc(2024, 1, 31), monthly, times=2) == utc(2024, 3, 31)
    assert add_interval(utc(2024, 1, 31), BillingInterval("Week", 2), times=3) == utc(2024, 3, 13)


# --- period_at ----------------------------------------------------------------------------------


def test_period_at_exact_boundary_returns_period_starting_there() -> None:
    anchor = utc(2024, 1, 31, 12)
    monthly = BillingInterval("Month", 1)
    boundary = utc(2024, 2, 29, 12)

    at = period_at(anchor, monthly, boundary)
    assert at == Period(1, utc(2024, 2, 29, 12), utc(2024, 3, 31, 12))
    assert at.contains(boundary)

    before = period_at(anchor, monthly, boundary - timedelta(microseconds=1))
    assert before == Period(0, anchor, boundary)
    assert not before.contains(boundary)


def test_period_at_anchor_is_period_zero() -> None:
    anchor = utc(2024, 5, 1)
    assert period_at(anchor, BillingInterval("Week", 1), anchor).index == 0


def test_period_at_inside_clamped_month() -> None:
    # Jan 31 anchor: the Feb period is [Feb 29, Mar 31), so Mar 30 is still period 1.
    result = period_at(utc(2024, 1, 31), BillingInterval("Month", 1), utc(2024, 3, 30, 23))
    assert result == Period(1, utc(2024, 2, 29), utc(2024, 3, 31))


def test_period_at_before_anchor_raises() -> None:
    with pytest.raises(ValueError):
        period_at(utc(2024, 1, 1), BillingInterval("Day", 1), utc(2023, 12, 31, 23, 59))


@pytest.mark.parametrize("unit", INTERVAL_UNITS)
def test_period_at_is_constant_time_for_long_histories(
    unit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_add_interval = periods.add_interval

    def counting(*args: object, **kwargs: object) -> datetime:
        nonlocal calls
        calls += 1
        return real_add_interval(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(periods, "add_interval", counting)
    interval = BillingInterval(unit, 1)
    anchor = datetime(1, 1, 31, 6, tzinfo=UTC)
    moment = datetime(9998, 3, 15, tzinfo=UTC)  # ~3.65 million daily periods
    result = period_at(anchor, interval, moment)
    assert result.contains(moment)
    assert result.start == expected_start(anchor, unit, 1, result.index)
    assert calls <= 6


def test_period_at_ten_years_of_days() -> None:
    anchor = utc(2015, 6, 30, 18, 45)
    moment = utc(2025, 6, 30, 18, 44, 59)
    result = period_at(anchor, BillingInterval("Day", 1), moment)
    assert result.index == (moment - anchor).days
    assert result.start == utc(2025, 6, 29, 18, 45)


# --- periods_between ----------------------------------------------------------------------------


def test_periods_between_spanning_three_periods() -> None:
    anchor = utc(2024, 1, 31)
    result = periods_between(
        anchor, BillingInterval("Month", 1), utc(2024, 2, 15), utc(2024, 4, 10)
    )
    assert result == [
        Period(0, utc(2024, 1, 31), utc(2024, 2, 29)),
        Period(1, utc(2024, 2, 29), utc(2024, 3, 31)),
        Period(2, utc(2024, 3, 31), utc(2024, 4, 30)),
    ]


def test_periods_between_is_half_open() -> None:
    anchor = utc(2024, 1, 1)
    weekly = BillingInterval("Week", 1)
    # [Jan 8, Jan 22) is exactly periods 1 and 2; period 3 starts at the excluded end.
    result = periods_between(anchor, weekly, utc(2024, 1, 8), utc(2024, 1, 22))
    assert [p.index for p in result] == [1, 2]


def test_periods_between_clips_to_anchor_and_handles_empty_ranges() -> None:
    anchor = utc(2024, 1, 1)
    daily = BillingInterval("Day", 2)
    result = periods_between(anchor, daily, utc(2023, 12, 1), utc(2024, 1, 4))
    assert [p.index for p in result] == [0, 1]
    assert periods_between(anchor, daily, utc(2023, 1, 1), utc(2024, 1, 1)) == []
    assert periods_between(anchor, daily, utc(2024, 2, 1), utc(2024, 2, 1)) == []
    assert periods_between(anchor, daily, utc(2024, 2, 2), utc(2024, 2, 1)) == []


# --- timezone handling --------------------------------------------------------------------------


def test_naive_datetimes_are_rejected() -> None:
    naive = datetime(2024, 1, 1)
    aware = utc(2024, 1, 1)
    monthly = BillingInterval("Month", 1)
    with pytest.raises(ValueError):
        period_start(naive, monthly, 1)
    with pytest.raises(ValueError):
        add_interval(naive, monthly)
    with pytest.raises(ValueError):
        period_at(naive, monthly, aware)
    with pytest.raises(ValueError):
        period_at(aware, monthly, naive)
    with pytest.raises(ValueError):
        periods_between(aware, monthly, naive, aware)
    with pytest.raises(ValueError):
        Period(0, aware, aware + timedelta(days=1)).contains(naive)


def test_other_offsets_are_converted_to_utc() -> None:
    # 2024-01-31 23:00 at -05:00 is Feb 1 04:00 UTC, so the UTC anchor day is the 1st.
    anchor = datetime(2024, 1, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    result = period_start(anchor, BillingInterval("Month", 1), 1)
    assert result == utc(2024, 3, 1, 4)
    assert result.tzinfo is UTC


def test_negative_index_rejected() -> None:
    with pytest.raises(ValueError):
        period_start(utc(2024, 1, 1), BillingInterval("Day", 1), -1)


# --- property test ------------------------------------------------------------------------------

_days = st.one_of(st.sampled_from([28, 29, 30, 31]), st.integers(1, 31))


@st.composite
def anchors(draw: st.DrawFn) -> datetime:
    year = draw(st.integers(1896, 2104))
    month = draw(st.integers(1, 12))
    day = draw(_days)
    assume(day <= calendar.monthrange(year, month)[1])
    return datetime(
        year,
        month,
        day,
        draw(st.integers(0, 23)),
        draw(st.integers(0, 59)),
        draw(st.integers(0, 59)),
        draw(st.sampled_from([0, 999_999]) | st.integers(0, 999_999)),
        tzinfo=UTC,
    )


intervals = st.builds(BillingInterval, st.sampled_from(INTERVAL_UNITS), st.integers(1, 13))
_MIN_DAYS = {"Day": 1, "Week": 7, "Month": 28, "Year": 365}


@settings(max_examples=300, deadline=None)
@given(anchor=anchors(), interval=intervals, data=st.data())
def test_property_period_at_matches_independent_oracle(
    anchor: datetime, interval: BillingInterval, data: st.DataObject
) -> None:
    unit, count = interval.unit, interval.count
    if data.draw(st.booleans(), label="on_boundary"):
        k = data.draw(st.integers(0, 60), label="k")
        moment = expected_start(anchor, unit, count, k)
        moment += data.draw(st.sampled_from([timedelta(0), timedelta(microseconds=-1)]))
        assume(moment >= anchor)
    else:
        offset = data.draw(st.integers(0, 8 * 366 * 86_400 * 10**6), label="offset_us")
        moment = anchor + timedelta(microseconds=offset)

    period = period_at(anchor, interval, moment)
    assert period.contains(moment)
    assert period.start.tzinfo is UTC and period.end.tzinfo is UTC

    # Oracle index: last k whose independently computed start is <= moment.
    upper = (moment - anchor).days // (_MIN_DAYS[unit] * count) + 3
    ks = range(upper)
    want = bisect.bisect_right(ks, moment, key=lambda k: expected_start(anchor, unit, count, k)) - 1
    assert period.index == want

    first = max(0, period.index - 3)
    for k in range(first, period.index + 3):
        start_k = period_start(anchor, interval, k)
        assert start_k == expected_start(anchor, unit, count, k)
        assert period_at(anchor, interval, start_k).index == k

    # Tiling: period k ends exactly where period k+1 starts (no gap, no overlap).
    window_start = period_start(anchor, interval, first) + timedelta(microseconds=1)
    window = periods_between(anchor, interval, window_start, period.end + timedelta(microseconds=1))
    assert [p.index for p in window] == list(range(first, period.index + 2))
    assert period in window
    for left, right in zip(window, window[1:], strict=False):
        assert left.end == right.start
        assert left.start < left.end
