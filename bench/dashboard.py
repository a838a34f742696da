"""Dashboard benchmark: server time of the meter analytics page and the meter-builder live preview
over 10 million events.

    python -m bench.dashboard                   # reuse bench.usage's database (load it if empty)
    python -m bench.dashboard --runs 30         # more timed requests per page
    python -m bench.dashboard --help

It reuses the database of the usage benchmark (`billing_bench_usage`: 10M events, 1,000 customers,
10 meters, 30 days; loaded with `bench.usage`'s COPY loader only when it holds no events), makes
sure every meter's rollups are ready (`meters.rollups.run_rollups`), then runs Django in-process
against it and times the staff views through Django's test `Client`, logged in as a superuser:

- the analytics page (`admin:meters_meter_analytics`) of a few meters, once per tab (overview,
  events, customers), for the "30d" range at `day` granularity;
- the live preview (`admin:meters_meter_preview`): draft meters POSTed as JSON, as the meter form
  does on every edit, each with a filter.

Server time is the whole request in-process (middleware, session, views, queries, template),
without network or browser. The clock the views read (`django.utils.timezone.now`) is frozen a few
minutes before the last loaded event, so the 30-day range covers the loaded month and the preview's
7-day window its last week, whatever the day the data was loaded. For the customers tab to show
names and charges, the run adds (and removes afterwards) 1,000 customers, one product pricing the
measured meters and a subscription per customer. Each figure is the median and p95 of `--runs`
warm requests after 2 warm-up requests; one more request per page counts its SQL queries and their
time (`CaptureQueriesContext`), and names the slowest one.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from unittest import mock

import psycopg

from bench.common import DEFAULT_SERVER_URL, BenchmarkFailed, database_url, run_benchmark
from bench.usage import (
    DAYS,
    Latency,
    billing_anchor,
    customer_id,
    ensure_meters,
    load_fresh_database,
    loaded_data_start,
    machine,
    setup_django,
)

PAGE_GOAL_MS = 300.0
PREVIEW_GOAL_MS = 500.0
TABS = ("overview", "events", "customers")
RANGE = {"range": "30d", "granularity": "day"}
# A sum meter, the costliest merge (last) and a filtered sum: bench.usage's meter names.
DEFAULT_METERS = "LLM tokens,Seats,EU storage"
# The frozen clock: this long before the end of the loaded 30 days (an unaligned instant, so the
# range has raw-event edges at both ends, as any real "now" does).
CLOCK_BEFORE_END = timedelta(minutes=17, seconds=42, microseconds=500_000)

# Drafts as the meter form POSTs them (static/dashboard/meter_form.js), each with a filter.
PREVIEW_DRAFTS = {
    "sum, 2-clause filter": {
        "event_name": "llm.tokens",
        "aggregation": {"type": "sum", "key": "value"},
        "filter": {
            "conjunction": "and",
            "clauses": [
                {"key": "region", "operator": "equals", "value": "eu"},
                {"key": "value", "operator": "greater_than", "value": 10},
            ],
        },
    },
    "count, nested filter": {
        "event_name": "api.call",
        "aggregation": {"type": "count", "key": None},
        "filter": {
            "conjunction": "or",
            "clauses": [
                {"key": "region", "operator": "not_equals", "value": "eu"},
                {
                    "conjunction": "and",
                    "clauses": [
                        {"key": "value", "operator": "greater_than_or_equals", "value": 500},
                        {"key": "value", "operator": "less_than", "value": 900},
                    ],
                },
            ],
        },
    },
}

STAFF_USERNAME = "bench-dashboard"
FIXTURE_MARK = {"bench": "dashboard"}  # on the customers and the product this run adds
PRODUCT_NAME = "Dashboard bench plan"


# --- database and fixtures ---------------------------------------------------------------------


def event_count(db_url: str) -> int | None:
    """Events in the benchmark database; None if the database or its tables do not exist."""
    try:
        with psycopg.connect(db_url) as conn:
            return conn.execute("SELECT count(*) FROM events_event").fetchone()[0]
    except (psycopg.OperationalError, psycopg.errors.UndefinedTable):
        return None


def other_sessions() -> list[str]:
    """Other client sessions on the benchmark database (Django's connection excluded)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, state, application_name, left(regexp_replace(query, '\\s+', ' ', 'g'), 80)"
            " FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return [f"pid {pid} {state} {app!r}: {query}" for pid, state, app, query in cursor]


def ensure_rollups() -> float | None:
    """Roll up pending batches and backfill meters that need it; seconds taken, None if nothing
    was to do. Refuses while another session uses the database: pending batches may then be
    another benchmark's experiment (bench.usage rewinds history into pending work)."""
    from events.queries import pending_batch_stats
    from meters.models import Meter
    from meters.rollups import run_rollups

    if pending_batch_stats() == (0, 0) and all(m.rollups_ready for m in Meter.objects.all()):
        return None
    if others := [s for s in other_sessions() if " idle " not in s]:
        raise BenchmarkFailed(
            "rollups are not current but another session is busy on the database, perhaps a "
            f"benchmark mid-experiment; run again when it is done: {others}"
        )
    started = time.perf_counter()
    run_rollups()
    if pending_batch_stats() != (0, 0) or not all(m.rollups_ready for m in Meter.objects.all()):
        raise BenchmarkFailed("rollups are still not ready after run_rollups()")
    return time.perf_counter() - started


def remove_fixtures() -> None:
    """What this benchmark adds to the shared database, gone (also what an interrupted run left)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from products.models import Customer, Product, Subscription

    with transaction.atomic():
        Subscription.objects.filter(
            product__name=PRODUCT_NAME, product__metadata=FIXTURE_MARK
        ).delete()
        Product.objects.filter(name=PRODUCT_NAME, metadata=FIXTURE_MARK).delete()
        Customer.objects.filter(metadata=FIXTURE_MARK).delete()
        get_user_model().objects.filter(username=STAFF_USERNAME).delete()


def add_fixtures(meters: list, customers: int, anchor: datetime) -> None:
    """Customers named like the events' ids, one product pricing `meters`, a subscription each."""
    from django.db import transaction

    from products import services
    from products.models import Customer

    ids = [customer_id(n) for n in range(customers)]
    existing = set(
        Customer.objects.filter(customer_id__in=ids).values_list("customer_id", flat=True)
    )
    with transaction.atomic():
        Customer.objects.bulk_create(
            Customer(
                customer_id=cid,
                email=f"{cid}@example.com",
                name=f"Customer {n}",
                metadata=FIXTURE_MARK,
            )
            for n, cid in enumerate(ids)
            if cid not in existing
        )
        product = services.create_product(
            name=PRODUCT_NAME,
            now=anchor,
            metadata=FIXTURE_MARK,
            price={
                "type": "usage_based_price",
                "currency": "USD",
                "fixed_price": 4900,
                "payment_frequency_count": 1,
                "payment_frequency_interval": "Month",
                "subscription_period_count": 1,
                "subscription_period_interval": "Year",
                "meters": [
                    {"meter_id": meter.id, "price_per_unit": "0.0025", "free_threshold": 1000}
                    for meter in meters
                ],
            },
        )
        for customer in Customer.objects.filter(customer_id__in=ids):
            services.create_subscription(customer=customer, product=product, now=anchor)


def staff_client():
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_superuser(
        STAFF_USERNAME, f"{STAFF_USERNAME}@example.com", None
    )
    client = Client()
    client.force_login(user)
    return client


# --- timing ------------------------------------------------------------------------------------


@dataclass
class Timing:
    page: str
    meter: str
    goal_ms: float
    samples_ms: list[float]
    queries: int
    sql_ms: float
    slowest_sql_ms: float
    slowest_sql: str
    response_bytes: int

    def row(self) -> dict:
        p95 = Latency.p95(self.samples_ms)
        return {
            "page": self.page,
            "meter": self.meter,
            "median_ms": round(statistics.median(self.samples_ms), 1),
            "p95_ms": round(p95, 1),
            "goal_ms": self.goal_ms,
            "goal_met": p95 < self.goal_ms,
            "queries": self.queries,
            "sql_ms": round(self.sql_ms, 1),
            "slowest_sql_ms": round(self.slowest_sql_ms, 1),
            "slowest_sql": self.slowest_sql,
            "response_bytes": self.response_bytes,
        }


def measure(
    page: str, meter: str, goal_ms: float, request: Callable[[], object], runs: int, warmup: int
) -> Timing:
    """`runs` timed requests after `warmup` ones, then one more that counts its queries."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for _ in range(warmup):
        request()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        request()
        samples.append((time.perf_counter() - started) * 1000)
    with CaptureQueriesContext(connection) as captured:
        response = request()
    times = [(float(q["time"]) * 1000, q["sql"]) for q in captured.captured_queries]
    slowest_ms, slowest_sql = max(times, default=(0.0, ""))
    return Timing(
        page,
        meter,
        goal_ms,
        samples,
        len(times),
        sum(ms for ms, _ in times),
        slowest_ms,
        " ".join(slowest_sql.split())[:160],
        len(response.content),
    )


def checked(response, content_type: str):
    if response.status_code != 200 or not response["Content-Type"].startswith(content_type):
        raise BenchmarkFailed(
            f"{response.request['PATH_INFO']} answered {response.status_code} "
            f"({response['Content-Type']}): {response.content[:300]!r}"
        )
    return response


@contextlib.contextmanager
def frozen_clock(now: datetime) -> Iterator[None]:
    with mock.patch("django.utils.timezone.now", return_value=now):
        yield


def time_pages(meter_names: list[str], runs: int, now: datetime, customers: int) -> list[Timing]:
    from django.urls import reverse
    from django.utils.http import urlencode

    from meters.models import Meter

    meters = [Meter.objects.get(name=name) for name in meter_names]
    client = staff_client()
    timings = []
    with contextlib.ExitStack() as stack:
        stack.callback(client.logout)  # deletes its session row
        stack.enter_context(frozen_clock(now))
        for meter in meters:
            url = reverse("admin:meters_meter_analytics", args=[meter.pk])
            for tab in TABS:
                query = urlencode(RANGE | {"tab": tab})

                def get(url: str = f"{url}?{query}"):
                    return checked(client.get(url), "text/html")

                body = get().content.decode()
                rows, named = body.count("<tr data-customer="), body.count("<td>Customer ")
                if not 0 < rows == named <= customers:
                    raise BenchmarkFailed(
                        f"{meter.name}: {rows} customer rows, {named} with a name ({tab} tab)"
                    )
                timings.append(
                    measure(f"analytics: {tab}", meter.name, PAGE_GOAL_MS, get, runs, warmup=2)
                )
        url = reverse("admin:meters_meter_preview")
        for label, draft in PREVIEW_DRAFTS.items():
            body = json.dumps(draft)

            def post(body: str = body):
                return checked(client.post(url, body, content_type="application/json"), "app")

            result = post().json()
            if result["errors"] or not result["examined"] or not result["sample"]:
                raise BenchmarkFailed(f"preview of {label}: {result}")
            timings.append(
                measure(
                    f"preview: {label}", draft["event_name"], PREVIEW_GOAL_MS, post, runs, warmup=2
                )
            )
    return timings


# --- main --------------------------------------------------------------------------------------


def other_benchmarks(database: str | None = None) -> list[str]:
    """Command lines of other `bench.*` processes, or of any naming `database`: figures taken
    beside them are not quiet."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = " ".join(part.decode(errors="replace") for part in argv if part)
        if text.startswith("postgres:"):  # server backends: other_sessions() reports those
            continue
        if "-m bench." in text or "bench/" in text or (database and database in text):
            found.append(text)
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--meters", default=DEFAULT_METERS, help="comma-separated meter names (bench.usage's)"
    )
    parser.add_argument("--runs", type=int, default=15, help="timed requests per page")
    parser.add_argument(
        "--events", type=int, default=10_000_000, help="events to load if the database is empty"
    )
    parser.add_argument("--customers", type=int, default=1000, help="customers in the events")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (any database path is replaced)",
    )
    parser.add_argument(
        "--db-name",
        default="billing_bench_usage",
        help="reused if it holds events; else dropped, recreated and loaded as bench.usage does",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
        "other_benchmarks_before": other_benchmarks(args.db_name),
    }
    db_url = database_url(args.server_url, args.db_name)
    fixtures = False
    try:
        if event_count(db_url):
            start, loaded = loaded_data_start(db_url)
            print(f"reusing {args.db_name}: {loaded:,} events from {start.isoformat()}")
        else:
            db_url, start, _ = load_fresh_database(args)
            loaded = args.events
        results["events"] = loaded
        setup_django(db_url)
        ensure_meters(now=start)
        results["other_sessions_before"] = other_sessions()
        rollup_s = ensure_rollups()
        if rollup_s is not None:
            print(f"rolled up / backfilled in {rollup_s:.0f} s")
        now = start + timedelta(days=DAYS) - CLOCK_BEFORE_END
        results["clock"] = now.isoformat()

        from meters.models import Meter

        meter_names = [name.strip() for name in args.meters.split(",") if name.strip()]
        remove_fixtures()
        fixtures = True
        add_fixtures(
            list(Meter.objects.filter(name__in=meter_names)), args.customers, billing_anchor(start)
        )
        timings = time_pages(meter_names, args.runs, now, args.customers)
        results["timings"] = [timing.row() for timing in timings]
        results["other_sessions_after"] = other_sessions()
    finally:
        if fixtures:
            remove_fixtures()

    results["load_average_after"] = os.getloadavg()
    results["other_benchmarks_after"] = other_benchmarks(args.db_name)
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def report(results: dict) -> None:
    print()
    before, after = results["machine"]["load_average_before"][0], results["load_average_after"][0]
    others = sorted(set(results["other_benchmarks_before"] + results["other_benchmarks_after"]))
    print(
        f"{results['machine']['cpus']} CPUs, PostgreSQL {results['machine']['postgresql']}, "
        f"load average {before:.1f} before, {after:.1f} after, "
        f"{'other benchmarks running: ' + '; '.join(others) if others else 'no other benchmark'}"
    )
    sessions = results["other_sessions_before"] + results["other_sessions_after"]
    busy = [s for s in sessions if " idle " not in s]
    print(
        f"other sessions on the database: {len(sessions)} seen before/after, "
        f"{len(busy)} busy{': ' + '; '.join(busy) if busy else ''}"
    )
    print(f"{results['events']:,} events, clock frozen at {results['clock']}")
    print(f"server time, ms (median / p95 of {results['parameters']['runs']} warm requests):")
    header = (
        f"{'page':<30} {'meter':<16} {'median / p95':>15} {'goal':>6} {'queries':>7} "
        f"{'SQL ms':>7} {'slowest':>7}"
    )
    print(header)
    for row in results["timings"]:
        flag = "" if row["goal_met"] else "  > goal"
        figures = f"{row['median_ms']:.0f} / {row['p95_ms']:.0f}"
        print(
            f"{row['page']:<30} {row['meter']:<16} {figures:>15} {row['goal_ms']:>6.0f} "
            f"{row['queries']:>7} {row['sql_ms']:>7.0f} {row['slowest_sql_ms']:>7.0f}{flag}"
        )


if __name__ == "__main__":
    run_benchmark(main)
