"""Staff logins are throttled: after 5 wrong passwords for one user name within 15 minutes, or
20 from one address, every attempt is refused (429, with a message), the right password too,
until the window has passed. Other users and other addresses are unaffected. The failures are
database rows, shared by every web worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.test import Client, override_settings
from django.utils import timezone

from billing_site.models import LoginFailure

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def staff(db, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast
    users = get_user_model().objects
    for name in ("alice", "bob", "carol"):
        users.create_user(name, password=PASSWORD, is_staff=True)


def attempt(username: str, password: str, ip: str = "10.0.0.1") -> tuple[int, str, bool]:
    """(status, page text, logged in?) of one login through the admin's form, a new browser."""
    client = Client(REMOTE_ADDR=ip)
    response = client.post(LOGIN, {"username": username, "password": password})
    return response.status_code, response.content.decode(), SESSION_KEY in client.session


def test_after_five_wrong_passwords_even_the_right_one_is_refused(staff):
    for _ in range(5):
        status, page, logged_in = attempt("alice", "wrong")
        assert (status, logged_in) == (200, False)
        assert "Please enter the correct username and password" in page
    status, page, logged_in = attempt("alice", PASSWORD)
    assert (status, logged_in) == (429, False)
    assert "Too many failed logins" in page
    assert attempt("Alice", PASSWORD)[0] == 429  # the same name in other letters: same count
    # Refused attempts are not counted: the lock ends 15 minutes after the failures.
    assert LoginFailure.objects.count() == 5


def test_another_user_is_unaffected(staff):
    for _ in range(5):
        attempt("alice", "wrong")
    status, _, logged_in = attempt("bob", PASSWORD)
    assert (status, logged_in) == (302, True)


def test_after_the_window_the_right_password_works_again(staff):
    for _ in range(5):
        attempt("alice", "wrong")
    assert attempt("alice", PASSWORD)[0] == 429
    LoginFailure.objects.update(at=timezone.now() - timedelta(minutes=16))
    status, _, logged_in = attempt("alice", PASSWORD)
    assert (status, logged_in) == (302, True)
    assert not LoginFailure.objects.filter(username="alice").exists()  # a success clears them


def test_a_success_before_the_limit_starts_the_count_again(staff):
    for _ in range(4):
        attempt("alice", "wrong")
    assert attempt("alice", PASSWORD)[0] == 302
    for _ in range(4):
        attempt("alice", "wrong")
    assert attempt("alice", PASSWORD)[0] == 302


@override_settings(LOGIN_THROTTLE_IP_FAILURES=8)
def test_one_address_trying_many_names_is_throttled_too(staff):
    for index in range(8):
        attempt(f"nobody{index}", "wrong", ip="10.9.9.9")
    assert attempt("carol", PASSWORD, ip="10.9.9.9")[0] == 429
    status, _, logged_in = attempt("carol", PASSWORD, ip="10.1.1.1")
    assert (status, logged_in) == (302, True)


@override_settings(LOGIN_THROTTLE_FAILURES=2, LOGIN_THROTTLE_WINDOW_SECONDS=60)
def test_the_limits_come_from_settings(staff):
    attempt("alice", "wrong")
    attempt("alice", "wrong")
    status, page, _ = attempt("alice", PASSWORD)
    assert status == 429
    assert "for 1 more minute" in page
