"""Subscription billing periods: half-open [start, end) UTC intervals counted from an anchor.
Each start is computed from the anchor, never from the previous end, so month-end anchors
don't drift (Jan 31 -> Feb 29 -> Mar 31). Pure Python, no Django, so it runs anywhere.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

INTERVAL_UNITS = ("Day", "Week", "Month", "Year")

_MONTHS_PER_UNIT = {"Month": 1, "Year": 12}
_DAYS_PER_UNIT = {"Day": 1, "Week": 7}


def _utc(moment: datetime, name: str = "moment") -> datetime:
    """Reject naive datetimes (their instant is ambiguous) and normalise to UTC."""
    if not isinstance(moment, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {moment!r}")
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class BillingInterval:
    """A billing interval such as 1 Month or 2 Week (units mirror Dodo's TimeInterval)."""

    unit: str
    count: int

    def __post_init__(self) -> None:
        if self.unit not in INTERVAL_UNITS:
            raise ValueError(f"unit must be one of {INTERVAL_UNITS}, got {self.unit!r}")
        # bool is an int subclass; True as a count is almost certainly a bug upstream.
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise ValueError(f"count must be an int >= 1, got {self.count!r}")


@dataclass(frozen=True)
class Period:
    """Billing period number `index`, covering [start, end) in UTC."""

    index: int
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.index < 0:
            raise ValueError(f"index must be >= 0, got {self.index}")
        _utc(self.start, "start")
        _utc(self.end, "end")
        if not self.start < self.end:
            raise ValueError(f"start {self.start} must be before end {self.end}")

    def contains(self, t: datetime) -> bool:
        """Half-open membership: a boundary instant belongs to the period that starts there."""
        return self.start <= _utc(t, "t") < self.end


def _add_months(moment: datetime, months: int) -> datetime:
    """Shift by whole months keeping the day, clamped to the target month's last day."""
    year, month0 = divmod(moment.year * 12 + moment.month - 1 + months, 12)
    month = month0 + 1
    if not 1 <= year <= 9999:
        raise ValueError(f"shifting {moment} by {months} months leaves the datetime range")
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def add_interval(moment: datetime, interval: BillingInterval, times: int = 1) -> datetime:
    """Shift `moment` by `times` intervals in one step, so month clamping never compounds.

    Day and Week are exact 24h / 7*24h steps in UTC; Month and Year keep the day of month
    and time of day, clamping to the month end (Jan 31 + 1 Month = Feb 28/29).
    """
    moment = _utc(moment)
    steps = interval.count * times
    if interval.unit in _DAYS_PER_UNIT:
        return moment + timedelta(days=_DAYS_PER_UNIT[interval.unit] * steps)
    return _add_months(moment, _MONTHS_PER_UNIT[interval.unit] * steps)


def period_start(anchor: datetime, interval: BillingInterval, index: int) -> datetime:
    """Start of period `index`, computed from the anchor so no drift can accumulate."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return add_interval(_utc(anchor, "anchor"), interval, index)


def _period(anchor: datetime, interval: BillingInterval, index: int) -> Period:
    return Period(
        index=index,
        start=add_interval(anchor, interval, index),
        end=add_interval(anchor, interval, index + 1),
    )


def period_at(anchor: datetime, interval: BillingInterval, moment: datetime) -> Period:
    """The period containing `moment`; O(1) so decade-long daily histories stay cheap.

    The index is estimated arithmetically (exact for Day/Week, off by at most one for
    Month/Year because of day clamping) and then corrected against the real boundaries.
    """
    anchor = _utc(anchor, "anchor")
    moment = _utc(moment)
    if moment < anchor:
        raise ValueError(f"moment {moment} is before the subscription anchor {anchor}")
    if interval.unit in _DAYS_PER_UNIT:
        step = timedelta(days=_DAYS_PER_UNIT[interval.unit] * interval.count)
        index = (moment - anchor) // step
    else:
        months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
        index = months // (_MONTHS_PER_UNIT[interval.unit] * interval.count)
    # Boundaries are strictly increasing in the index, so these loops run at most a few times.
    while index > 0 and add_interval(anchor, interval, index) > moment:
        index -= 1
    while add_interval(anchor, interval, index + 1) <= moment:
        index += 1
    return _period(anchor, interval, index)


def periods_between(
    anchor: datetime, interval: BillingInterval, start: datetime, end: datetime
) -> list[Period]:
    """Every period overlapping [start, end), in order; nothing exists before the anchor."""
    anchor = _utc(anchor, "anchor")
    start = _utc(start, "start")
    end = _utc(end, "end")
    if end <= start or end <= anchor:
        return []
    first = period_at(anchor, interval, max(start, anchor))
    result = [first]
    while result[-1].end < end:
        result.append(_period(anchor, interval, result[-1].index + 1))
    return result
