"""Meters and their usage rollups (hourly and daily buckets per meter and customer)."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.utils import timezone

from billing_site.fields import BitVaryingField, NumericField
from billing_site.ids import new_meter_id
from billing_site.jsonutil import ExactJSONDecoder, ExactJSONEncoder


class Aggregation(models.TextChoices):
    COUNT = "count"
    SUM = "sum"
    MAX = "max"
    LAST = "last"
    # Extensions beyond Dodo's four (its SDK's enum has only those): see `wire_aggregation`.
    UNIQUE_COUNT = "unique_count"
    MIN = "min"


# What the Dodo wire says for an extension, so the SDK's strict client still parses the meter.
DODO_FALLBACK = {Aggregation.UNIQUE_COUNT: Aggregation.COUNT, Aggregation.MIN: Aggregation.MAX}


class MeterQuerySet(models.QuerySet):
    def active(self) -> MeterQuerySet:
        return self.filter(archived_at__isnull=True)

    def archived(self) -> MeterQuerySet:
        return self.filter(archived_at__isnull=False)


class Meter(models.Model):
    id = models.CharField(primary_key=True, max_length=64, default=new_meter_id, editable=False)
    name = models.CharField(max_length=255)
    description = models.TextField(null=True, blank=True)
    event_name = models.CharField(max_length=255, db_index=True)
    measurement_unit = models.CharField(max_length=100)
    aggregation_type = models.CharField(max_length=16, choices=Aggregation.choices)
    aggregation_key = models.CharField(max_length=100, null=True, blank=True)
    filter = models.JSONField(
        null=True, blank=True, encoder=ExactJSONEncoder, decoder=ExactJSONDecoder
    )
    archived_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    # Rollup state. `definition_version` changes whenever what the meter counts changes; buckets
    # are trusted only once a backfill of that version has finished (`backfilled_version`).
    definition_version = models.PositiveIntegerField(default=1)
    backfilled_version = models.PositiveIntegerField(default=0)
    backfill_days_total = models.PositiveIntegerField(default=0)
    backfill_days_done = models.PositiveIntegerField(default=0)
    backfill_next_day = models.DateTimeField(null=True, blank=True)

    objects = MeterQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None

    @property
    def rollups_ready(self) -> bool:
        return self.backfilled_version == self.definition_version

    @property
    def keeps_daily_totals(self) -> bool:
        """Whether `MeterDailyTotal` rows are kept: for every aggregation but unique_count,
        whose day across customers would be a union of bit strings (its series read the
        per-customer daily buckets instead)."""
        return self.aggregation_type != Aggregation.UNIQUE_COUNT

    @property
    def keeps_weekly_buckets(self) -> bool:
        """Whether `WeeklyUsage` rows are kept: for the same aggregations as the daily totals
        (a week of unique_count is a union of the days' sets, which a rebuild cannot merge from
        stored buckets in one statement; its per-customer queries read the daily buckets)."""
        return self.keeps_daily_totals

    @property
    def backfill_progress(self) -> float:
        """Share of history backfilled for the current definition, for staff to watch."""
        if self.rollups_ready:
            return 1.0
        if not self.backfill_days_total:
            return 0.0
        return min(self.backfill_days_done / self.backfill_days_total, 1.0)


class DistinctValue(models.Model):
    """A unique_count meter's dictionary: each distinct value of its key gets a position 1..n.

    Buckets store their values as positions (`_Bucket`). Positions are dense per meter and
    assigned once: rows are inserted under a per-meter transaction advisory lock, numbered from
    the meter's largest position, in the same transaction as the buckets that use them, so a
    rolled-back rollup leaves no gap and a position is visible exactly when a bucket holding it
    is. `value` is the typed text of `meters.usage.distinct_value_sql`. A backfill (new or
    edited meter) empties the dictionary with the buckets and numbers values anew.
    """

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, db_index=False)
    value = models.TextField(db_collation="C")
    position = models.IntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "value"], name="distinct_value_unique"),
            models.UniqueConstraint(fields=["meter", "position"], name="distinct_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.position} {self.value}"


class _Bucket(models.Model):
    """Aggregates of one meter's matching events for one customer over one UTC hour or day.

    `event_count` counts contributing events, `skipped_count` matching events whose key was missing
    or not a number; `last_*` identify the contributing event with the latest (timestamp, id).

    unique_count meters keep the bucket's set of distinct values as positions in the meter's
    dictionary (`DistinctValue`), in one of two exact forms, chosen per bucket when it is written:
    - dense, `distinct_bits`: a bit string, bit i-1 set when the value at position i was seen,
      as long as the dictionary was then (shorter strings are read as padded with zeros);
    - sparse, `distinct_positions`: the sorted positions.
    A bucket is dense when it holds at least one value per `meters.usage.DENSE_FACTOR` values of
    the dictionary, so a bit string takes at most a few times the bytes of the positions, and a
    meter of a million user ids does not store 125 KB per hourly bucket of a few users. Buckets
    merge by set union (`bit_or` of strings padded to the longer; a merged sparse set that grows
    dense becomes a bit string), so the distinct count of any window is exact, however its
    buckets overlap in values; queries OR the dense buckets into one string and count the
    sparse and raw values not in it (`meters.usage`).
    """

    meter = models.ForeignKey(Meter, on_delete=models.CASCADE, db_index=False)
    customer_id = models.CharField(max_length=255)
    event_count = models.BigIntegerField(default=0)
    skipped_count = models.BigIntegerField(default=0)
    value_sum = NumericField(null=True)
    value_max = NumericField(null=True)
    last_value = NumericField(null=True)
    last_timestamp = models.DateTimeField(null=True)
    last_event_pk = models.BigIntegerField(null=True)
    value_min = NumericField(null=True)
    distinct_bits = BitVaryingField(null=True)
    distinct_positions = ArrayField(models.IntegerField(), null=True)

    class Meta:
        abstract = True


class HourlyUsage(_Bucket):
    hour = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "customer_id", "hour"], name="hourly_usage_unique"
            )
        ]
        indexes = [models.Index(fields=["meter", "hour"], name="hourly_usage_meter_hour")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.hour:%Y-%m-%d %H}h"


class DailyUsage(_Bucket):
    day = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "customer_id", "day"], name="daily_usage_unique"
            )
        ]
        indexes = [models.Index(fields=["meter", "day"], name="daily_usage_meter_day")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} {self.day:%Y-%m-%d}"


class WeeklyUsage(_Bucket):
    """One customer's usage of one UTC week (Monday 00:00 to Monday 00:00): the merge of that
    week's `DailyUsage` rows, written in the transactions that write them (`meters.rollups`).

    A 30-day window holds at least three whole weeks, so a per-customer query reads about a
    third of the rows it would read from daily buckets alone. Not kept for unique_count meters
    (`Meter.keeps_weekly_buckets`). Archiving keeps these rows, as it keeps the daily ones.
    """

    week = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["meter", "customer_id", "week"], name="weekly_usage_unique"
            )
        ]
        indexes = [models.Index(fields=["meter", "week"], name="weekly_usage_meter_week")]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.customer_id} week of {self.week:%Y-%m-%d}"


class MeterDailyTotal(_Bucket):
    """One meter's usage of one UTC day across all its customers: the merge of that day's
    `DailyUsage` rows, kept by `meters.preaggregates` in the transactions that write them.

    A series over all customers reads one row a day here instead of one per customer and day.
    Not kept for unique_count meters (their series read the daily buckets, see
    `meters.preaggregates.keeps_totals`). Archiving keeps these rows, as it keeps the buckets.
    """

    customer_id = None  # type: ignore[assignment]
    day = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["meter", "day"], name="meter_daily_total_unique")
        ]

    def __str__(self) -> str:
        return f"{self.meter_id} {self.day:%Y-%m-%d} (all customers)"
