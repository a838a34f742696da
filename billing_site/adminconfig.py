"""django.contrib.admin, with this project's admin site (billing_site/staff.py) as `admin.site`.

Its own module: INSTALLED_APPS imports it before any model exists, so it may import nothing
heavier than the admin's AppConfig."""

from django.contrib.admin.apps import AdminConfig


class StaffAdminConfig(AdminConfig):
    default_site = "billing_site.staff.StaffAdminSite"
