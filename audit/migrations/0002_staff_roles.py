"""The staff roles: the Viewer and Billing admin groups with their permissions (audit/roles.py).

Permissions are normally created after all migrations have run, so this creates those of the
apps it depends on first. Later migrations keep the groups current through the post_migrate
receiver in audit/apps.py.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations


def create_roles(apps, schema_editor):
    from audit.roles import sync_roles

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0, using=schema_editor.connection.alias)
        app_config.models_module = None
    sync_roles(apps, using=schema_editor.connection.alias)


def remove_roles(apps, schema_editor):
    from audit.roles import ROLES

    apps.get_model("auth", "Group").objects.filter(name__in=ROLES.values()).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("events", "0002_alter_event_metadata"),
        ("meters", "0001_initial"),
        ("products", "0004_productmeter_credit_entitlement_and_more"),
        ("credits", "0002_creditentitlement_credit_entitlement_live_name_unique"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
