"""Billing benchmark: one full billing run, 10,000 subscriptions with 3 metered prices each.

    python -m bench.billing                     # 10M events for 10,000 customers (+ a 1M check)
    python -m bench.billing --skip-load         # reuse both loaded databases
    python -m bench.billing --help

For each event volume (`--small-events` with `--small-subscriptions`, then `--events`) it uses its
own database, created, migrated and loaded like the usage benchmark's (`bench.usage`: COPY, 30
days, 10 meters over 10 event names, backfilled so usage comes from rollups), then:

- creates `--customers` customers, 10 products of 3 metered prices each (a fixed fee, a price per
  unit and a free threshold per meter) through `products.services.create_product`, and
  `--subscriptions` monthly subscriptions through `products.services.create_subscription`, all
  anchored 42m17s before the first event so their first period covers the 30 loaded days;
- times one `products.billing.run_billing_cycle(now=...)` an hour after those periods end, counting
  its database queries with `connection.execute_wrapper` (and the time spent in usage queries);
  then, on the main volume, the same run by two worker processes at once (`--workers`), as two
  Celery workers would run it (SKIP LOCKED splits the subscriptions between them);
- checks that every subscription got exactly one invoice of 4 lines, and that the usage billed for
  a sample of subscriptions equals the same usage computed from raw events.

Queries per subscription are printed for both volumes: they must be equal (constant, whatever the
number of events), while the run time shows what more events cost.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from tqdm import tqdm

from bench.common import DEFAULT_SERVER_URL, BenchmarkFailed, database_url, run_benchmark
from bench.usage import (
    backfill_all,
    billing_anchor,
    customer_id,
    data_start_for,
    ensure_meters,
    load_events,
    loaded_data_start,
    machine,
    prepare_database,
    raw_copy,
    setup_django,
)

GOAL_SECONDS = 60.0
PRODUCTS = 10
METERS_PER_PRODUCT = 3
SAMPLE = 50  # subscriptions whose billed usage is recomputed from raw events


@dataclass
class QueryCounter:
    """An `execute_wrapper`: counts every query, and the time spent in usage queries."""

    queries: int = 0
    usage_queries: int = 0
    usage_seconds: float = 0.0
    statements: dict[str, int] = field(default_factory=dict)

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries += 1
            words = sql.split()
            if "UNION ALL" in sql and "meters_dailyusage" in sql:
                self.usage_queries += 1
                self.usage_seconds += time.perf_counter() - started
                kind = "usage (usage_by_customer)"
            else:
                kind = " ".join(words[:2]) if words else "?"
                kind = kind if len(kind) < 40 else kind[:40]
            self.statements[kind] = self.statements.get(kind, 0) + 1


def use_database(db_url: str) -> None:
    """Point Django's (only) connection at another database on the same server."""
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = urlsplit(db_url).path.lstrip("/")


def reset_billing() -> None:
    """Remove what an earlier run created: customers, products, subscriptions, invoices."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE products_invoiceline, products_invoice, products_subscription,"
            " products_productmeter, products_product, products_customer CASCADE"
        )


def create_catalogue(meters: list, *, customers: int, subscriptions: int, anchor: datetime) -> None:
    """Customers, products and subscriptions, through the services the API uses."""
    from django.db import transaction

    from products import services
    from products.models import Customer

    Customer.objects.bulk_create(
        Customer(customer_id=customer_id(n), email=f"{customer_id(n)}@example.com", name=f"C{n}")
        for n in range(customers)
    )
    products = []
    for k in range(PRODUCTS):
        chosen = [meters[(k + j) % len(meters)] for j in range(METERS_PER_PRODUCT)]
        products.append(
            services.create_product(
                name=f"Plan {k}",
                now=anchor,
                price={
                    "type": "usage_based_price",
                    "currency": "USD",
                    "fixed_price": 1000 + 100 * k,
                    "payment_frequency_count": 1,
                    "payment_frequency_interval": "Month",
                    "subscription_period_count": 1,
                    "subscription_period_interval": "Year",
                    "meters": [
                        {
                            "meter_id": meter.id,
                            "price_per_unit": f"0.{j + 1}5",
                            "free_threshold": 10 * (j + 1),
                        }
                        for j, meter in enumerate(chosen)
                    ],
                },
            )
        )
    customer_rows = {c.customer_id: c for c in Customer.objects.all()}
    with tqdm(total=subscriptions, desc="subscriptions", unit="sub") as bar:
        for offset in range(0, subscriptions, 1000):
            with transaction.atomic():
                for n in range(offset, min(offset + 1000, subscriptions)):
                    services.create_subscription(
                        customer=customer_rows[customer_id(n % customers)],
                        product=products[n % PRODUCTS],
                        now=anchor,
                    )
                    bar.update(1)


def check_invoices(subscriptions: int, rng: random.Random) -> None:
    """One invoice of 4 lines per subscription; sampled usage lines equal raw-event usage."""
    from django.db.models import Count

    from meters.usage import meter_usage
    from products.models import Invoice, InvoiceLine, LineKind

    invoices = Invoice.objects.count()
    if invoices != subscriptions:
        raise BenchmarkFailed(f"{invoices} invoices for {subscriptions} subscriptions")
    wrong = (
        Invoice.objects.annotate(n=Count("lines"))
        .exclude(n=1 + METERS_PER_PRODUCT)
        .values_list("invoice_id", flat=True)[:3]
    )
    if wrong:
        raise BenchmarkFailed(f"invoices without {1 + METERS_PER_PRODUCT} lines: {list(wrong)}")
    sample = rng.sample(list(Invoice.objects.values_list("invoice_id", flat=True)), SAMPLE)
    lines = InvoiceLine.objects.filter(invoice_id__in=sample, kind=LineKind.USAGE).select_related(
        "invoice", "meter"
    )
    for line in lines:
        invoice = line.invoice
        raw = meter_usage(
            raw_copy(line.meter), invoice.customer_id, invoice.period_start, invoice.period_end
        )
        if raw.quantity != line.consumed_units:
            raise BenchmarkFailed(
                f"{invoice.invoice_id} {line.meter.name}: billed {line.consumed_units}, "
                f"raw events give {raw.quantity}"
            )


def _bill_in_child(now: datetime, results) -> None:
    """One billing worker process (forked, so Django is already set up): its own connection."""
    from django.db import connection

    from products.billing import run_billing_cycle

    counter = QueryCounter()
    with connection.execute_wrapper(counter):
        invoices = run_billing_cycle(now=now)
    connection.close()
    results.put((len(invoices), counter))


def bill(now: datetime, workers: int) -> tuple[float, int, QueryCounter]:
    """Time `run_billing_cycle(now=...)`: in this process, or in `workers` processes at once
    (as Celery workers would; SKIP LOCKED splits the subscriptions between them)."""
    from django.db import connection

    from products.billing import run_billing_cycle

    if workers == 1:
        counter = QueryCounter()
        started = time.perf_counter()
        with connection.execute_wrapper(counter):
            invoices = len(run_billing_cycle(now=now))
        return time.perf_counter() - started, invoices, counter
    connection.close()  # never share a socket with the children
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    processes = [
        context.Process(target=_bill_in_child, args=(now, results)) for _ in range(workers)
    ]
    started = time.perf_counter()
    for process in processes:
        process.start()
    outcomes = [results.get() for _ in processes]
    seconds = time.perf_counter() - started
    for process in processes:
        process.join()
        if process.exitcode != 0:
            raise BenchmarkFailed(f"a billing worker exited {process.exitcode}")
    total = QueryCounter()
    for _, counter in outcomes:
        total.queries += counter.queries
        total.usage_queries += counter.usage_queries
        total.usage_seconds += counter.usage_seconds
        for kind, count in counter.statements.items():
            total.statements[kind] = total.statements.get(kind, 0) + count
    return seconds, sum(invoices for invoices, _ in outcomes), total


def load_volume(args: argparse.Namespace, events: int, db_name: str) -> tuple[list, datetime, int]:
    """Load (or reuse) one database and point Django at it; (meters, data start, events)."""
    from django.core.management import call_command

    from meters.models import Meter

    if args.skip_load:
        db_url = database_url(args.server_url, db_name)
        start, events = loaded_data_start(db_url)
        print(f"reusing {db_name}: {events:,} events from {start.isoformat()}")
        use_database(db_url)
        call_command("migrate", verbosity=0)  # the code may have moved on since the load
    else:
        start = data_start_for(datetime.now(UTC).date())
        print(f"creating {db_name}: {events:,} events for {args.customers:,} customers")
        db_url, _ = prepare_database(args.server_url, db_name)
        load_events(db_url, events=events, customers=args.customers, start=start, seed=args.seed)
        use_database(db_url)
    meters = ensure_meters(now=start)
    if not all(meter.rollups_ready for meter in meters):
        seconds = backfill_all(meters)
        print(f"backfilled the 10 meters in {seconds:.0f} s")
        meters = [Meter.objects.get(pk=meter.pk) for meter in meters]
    return meters, start, events


def run_billing(
    args: argparse.Namespace,
    meters: list,
    start: datetime,
    events: int,
    *,
    subscriptions: int,
    workers: int,
) -> dict:
    """Fresh customers, products and subscriptions; then one timed billing run."""
    from django.db import connection

    from products.models import Subscription

    reset_billing()
    anchor = billing_anchor(start)
    create_catalogue(meters, customers=args.customers, subscriptions=subscriptions, anchor=anchor)
    period_end = Subscription.objects.values_list("current_period_end", flat=True).first()
    now = period_end + timedelta(hours=1)
    with connection.cursor() as cursor:
        # Fresh statistics, as autovacuum would have by now, for the tables that hold rows. Not
        # for the emptied invoice tables: autovacuum never analyzes a table nobody wrote to, and
        # statistics saying "empty" make every foreign-key check of a new invoice line scan the
        # invoice table in a plan the connection keeps (quadratic: 48 s instead of 30).
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE n_live_tup > 0 ORDER BY relname"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(f'VACUUM ANALYZE "{table}"')

    print(f"billing {subscriptions:,} subscriptions, {workers} worker(s), as of {now} ...")
    seconds, invoices, counter = bill(now, workers)
    if invoices != subscriptions:
        raise BenchmarkFailed(f"{invoices} invoices for {subscriptions} subscriptions")
    check_invoices(subscriptions, random.Random(args.seed))
    return {
        "events": events,
        "subscriptions": subscriptions,
        "workers": workers,
        "period": [anchor.isoformat(), period_end.isoformat()],
        "seconds": round(seconds, 1),
        "ms_per_subscription": round(seconds * 1000 / subscriptions, 2),
        "usage_seconds": round(counter.usage_seconds, 1),
        "queries": counter.queries,
        "queries_per_subscription": round(counter.queries / subscriptions, 2),
        "usage_queries_per_subscription": round(counter.usage_queries / subscriptions, 2),
        "statements": dict(sorted(counter.statements.items(), key=lambda kv: -kv[1])),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.billing",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=10_000_000, help="events, main volume")
    parser.add_argument(
        "--small-events",
        type=int,
        default=1_000_000,
        help="events of the second volume (queries per subscription must not change); 0: skip",
    )
    parser.add_argument("--customers", type=int, default=10_000, help="customers in the events")
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument(
        "--small-subscriptions", type=int, default=2000, help="subscriptions of the second volume"
    )
    parser.add_argument(
        "--workers",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[1, 2],
        help="billing runs of the main volume, each with this many concurrent worker processes",
    )
    parser.add_argument("--skip-load", action="store_true", help="reuse the loaded databases")
    parser.add_argument(
        "--server-url",
        default=os.environ.get("BENCH_SERVER_URL", DEFAULT_SERVER_URL),
        help="PostgreSQL server (any database path is replaced)",
    )
    parser.add_argument(
        "--db-name",
        default="billing_bench_billing",
        help="main database (the small volume uses NAME_small); dropped and recreated",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results: dict = {
        "parameters": vars(args) | {"json": str(args.json) if args.json else None},
        "machine": machine(args.server_url),
        "runs": [],
    }
    volumes = [(args.small_events, f"{args.db_name}_small")] if args.small_events else []
    volumes.append((args.events, args.db_name))
    setup_django(database_url(args.server_url, volumes[0][1]))
    for events, db_name in volumes:
        meters, start, events = load_volume(args, events, db_name)
        main_volume = db_name == args.db_name
        # The second volume only checks that queries per subscription do not change.
        for workers in args.workers if main_volume else [1]:
            subscriptions = args.subscriptions if main_volume else args.small_subscriptions
            results["runs"].append(
                run_billing(
                    args, meters, start, events, subscriptions=subscriptions, workers=workers
                )
            )
    results["load_average_after"] = os.getloadavg()
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    per_subscription = {
        run["queries_per_subscription"] for run in results["runs"] if run["workers"] == 1
    }
    if len(per_subscription) > 1:
        print("FAILED: queries per subscription depend on the event volume", file=sys.stderr)
        return 1
    return 0


def report(results: dict) -> None:
    print()
    before, after = results["machine"]["load_average_before"][0], results["load_average_after"][0]
    print(
        f"{results['machine']['cpus']} CPUs, PostgreSQL {results['machine']['postgresql']}, "
        f"load average {before:.1f} before, {after:.1f} after"
    )
    print(
        f"{'events':>11} {'subscriptions':>13} {'workers':>7} {'run':>8} {'per sub':>9} "
        f"{'in usage*':>9} {'queries/sub':>11}"
    )
    for run in results["runs"]:
        verdict = "meets" if run["seconds"] < GOAL_SECONDS else "MISSES"
        print(
            f"{run['events']:>11,} {run['subscriptions']:>13,} {run['workers']:>7} "
            f"{run['seconds']:>7.1f}s {run['ms_per_subscription']:>7.2f}ms "
            f"{run['usage_seconds']:>8.1f}s {run['queries_per_subscription']:>11}  "
            f"({verdict} the {GOAL_SECONDS:.0f} s goal)"
        )
    print("* time inside usage queries, summed over the workers")
    last = [run for run in results["runs"] if run["workers"] == 1][-1]
    print(f"statements of the {last['events']:,}-event run with 1 worker:")
    for kind, count in last["statements"].items():
        print(f"  {count:>8,}  {kind}")


if __name__ == "__main__":
    run_benchmark(main)
