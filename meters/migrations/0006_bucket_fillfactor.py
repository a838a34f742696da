# Every rollup updates the bucket rows its batch touched. At the default fillfactor (100) no page
# has room for the new row version, so no update is HOT: each one writes new index entries in
# every index and leaves a dead version behind, and with autovacuum off (or behind) the tables
# grew to 13 times their live rows in bench.soak and the rollup fell behind. Half-empty pages let
# PostgreSQL put the new version beside the old one (54-77% of updates HOT in the same soak) and
# prune the old one on the next visit, without vacuum.
#
# The setting applies to pages written from now on; an existing table takes it on rewrite
# (VACUUM FULL, or pg_repack without the lock). See docs/operations.md.

from django.db import migrations

BUCKET_TABLES = (
    "meters_hourlyusage",
    "meters_dailyusage",
    "meters_weeklyusage",
    "meters_meterdailytotal",
)


class Migration(migrations.Migration):
    dependencies = [("meters", "0005_weekly_buckets")]

    operations = [
        migrations.RunSQL(
            [f"ALTER TABLE {table} SET (fillfactor = 50)" for table in BUCKET_TABLES],
            reverse_sql=[f"ALTER TABLE {table} RESET (fillfactor)" for table in BUCKET_TABLES],
        )
    ]
