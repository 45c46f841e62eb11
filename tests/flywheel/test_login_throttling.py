"""The admin login locks a username out, per client address, after repeated wrong passwords."""

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

pytestmark = pytest.mark.django_db
PASSWORD = "the-right-password-42"


@pytest.fixture
def staff() -> Any:
    return get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True, is_superuser=True)


def log_in(client: Client, password: str) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": "ops", "password": password})


def test_the_right_password_is_refused_once_too_many_wrong_ones_were_tried(staff: Any, settings: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert log_in(client, "wrong").status_code == 200  # the form again, with its error
    assert log_in(client, "wrong").status_code == 429
    answer = log_in(client, PASSWORD)
    assert answer.status_code == 429
    assert "_auth_user_id" not in client.session


def test_a_few_wrong_passwords_do_not_lock_the_user_out(staff: Any, settings: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    answer = log_in(client, PASSWORD)
    assert answer.status_code == 302
    assert client.session["_auth_user_id"] == str(staff.pk)


def test_a_lockout_on_one_client_address_leaves_others_free(staff: Any, settings: Any) -> None:
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(attacker, "wrong")
    assert log_in(Client(REMOTE_ADDR="198.51.100.7"), PASSWORD).status_code == 302


def test_behind_a_trusted_proxy_logins_are_counted_per_forwarded_address(staff: Any, settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    attacker = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(attacker, "wrong")
    neighbour = Client(REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7")
    assert log_in(neighbour, PASSWORD).status_code == 302
