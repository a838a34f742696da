"""Range-partition events_event by month of timestamp, with the event_id key table.

The conversion itself is events.partitions.convert_to_partitioned (tested on a table with rows
in tests/events/test_partitions.py); its cost per million rows is in docs/operations.md.
"""

from django.db import migrations, models
from django.utils import timezone


def convert(apps, schema_editor):
    from events.partitions import convert_to_partitioned

    with schema_editor.connection.cursor() as cursor:
        convert_to_partitioned(cursor, now=timezone.now())
        # Batches still waiting for a rollup get their timestamp range too.
        cursor.execute(
            """
            UPDATE events_ingestbatch b SET first_timestamp = r.first, last_timestamp = r.last
            FROM (SELECT b2.id, min(e.timestamp) AS first, max(e.timestamp) AS last
                  FROM events_ingestbatch b2 JOIN events_event e ON e.id = ANY(b2.event_ids)
                  GROUP BY b2.id) r
            WHERE r.id = b.id
            """
        )


class Migration(migrations.Migration):

    dependencies = [
        ('events', '0004_refused_events'),
    ]

    operations = [
        migrations.CreateModel(
            name='ArchivedMonth',
            fields=[
                ('month', models.DateField(help_text='First day of the month (UTC).', primary_key=True, serialize=False)),
                ('rows', models.BigIntegerField()),
                ('dump_path', models.CharField(blank=True, max_length=500, null=True)),
                ('archived_at', models.DateTimeField()),
            ],
            options={
                'ordering': ['month'],
            },
        ),
        migrations.AddField(
            model_name='ingestbatch',
            name='first_timestamp',
            field=models.DateTimeField(null=True),
        ),
        migrations.AddField(
            model_name='ingestbatch',
            name='last_timestamp',
            field=models.DateTimeField(null=True),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='EventKey',
                    fields=[
                        ('event_id', models.CharField(max_length=255, primary_key=True, serialize=False)),
                    ],
                ),
                migrations.RemoveConstraint(
                    model_name='event',
                    name='event_event_id_unique',
                ),
                migrations.AddIndex(
                    model_name='event',
                    index=models.Index(fields=['event_id'], name='event_event_id'),
                ),
            ],
            database_operations=[
                migrations.RunPython(convert, migrations.RunPython.noop, elidable=False),
            ],
        ),
    ]
