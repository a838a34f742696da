"""The dashboard's staff fixtures, for admin changes."""

from tests.dashboard.conftest import staff_client, staff_user  # noqa: F401
