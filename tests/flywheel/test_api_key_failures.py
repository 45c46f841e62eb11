"""Refused API keys are limited per client address: past the limit, keys from there answer 429 for the window."""

import time
from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api_clients import Tenant, assert_error

pytestmark = pytest.mark.django_db

LIMIT = 5
WINDOW = 300
START = 1_000_000.0  # 100 s into a window of 300 s
ATTACKER = "203.0.113.9"
NEIGHBOUR = "198.51.100.7"


@pytest.fixture
def clock(settings: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A wall clock the test moves; the cache's expiry reads the same clock."""
    settings.API_KEY_FAILURE_LIMIT = LIMIT
    settings.API_KEY_FAILURE_WINDOW = WINDOW
    now = [START]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


def client_at(address: str, key: str, **headers: str) -> APIClient:
    client = APIClient()
    client.defaults.update(REMOTE_ADDR=address, **headers)
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def wrong_key(tenant: Tenant) -> str:
    return f"{tenant.agent_key.partition('.')[0]}.not-the-secret"


def refuse(tenant: Tenant, address: str, times: int = LIMIT, **headers: str) -> None:
    for _ in range(times):
        assert_error(client_at(address, wrong_key(tenant), **headers).get("/training/models"), 401)


def test_after_the_limit_even_the_right_key_is_refused_with_429_until_the_window_ends(
    tenant: Tenant, clock: list[float]
) -> None:
    refuse(tenant, ATTACKER)
    response = client_at(ATTACKER, tenant.agent_key).get("/training/models")
    error = assert_error(response, 429, "throttled")
    assert "refused API keys" in error["message"]
    assert response["Retry-After"] == str(WINDOW - 100)
    clock[0] += WINDOW - 100 - 1
    assert_error(client_at(ATTACKER, tenant.agent_key).get("/training/models"), 429)
    clock[0] += 1
    assert client_at(ATTACKER, tenant.agent_key).get("/training/models").status_code == 200


def test_a_blocked_address_is_refused_before_its_key_is_looked_at(
    tenant: Tenant, clock: list[float], django_assert_num_queries: Any
) -> None:
    refuse(tenant, ATTACKER)
    with django_assert_num_queries(0):
        assert_error(client_at(ATTACKER, tenant.agent_key).get("/training/models"), 429)


def test_a_remembered_key_is_refused_too_once_its_address_is_blocked(tenant: Tenant, clock: list[float]) -> None:
    assert client_at(ATTACKER, tenant.agent_key).get("/training/models").status_code == 200
    refuse(tenant, ATTACKER)
    assert_error(client_at(ATTACKER, tenant.agent_key).get("/training/models"), 429)


def test_another_address_is_unaffected(tenant: Tenant, clock: list[float]) -> None:
    refuse(tenant, ATTACKER)
    assert client_at(NEIGHBOUR, tenant.agent_key).get("/training/models").status_code == 200


def test_fewer_refusals_than_the_limit_leave_the_address_free(tenant: Tenant, clock: list[float]) -> None:
    refuse(tenant, ATTACKER, LIMIT - 1)
    assert client_at(ATTACKER, tenant.agent_key).get("/training/models").status_code == 200


def test_refusals_of_an_earlier_window_do_not_count(tenant: Tenant, clock: list[float]) -> None:
    refuse(tenant, ATTACKER, LIMIT - 1)
    clock[0] += WINDOW
    refuse(tenant, ATTACKER, LIMIT - 1)
    assert client_at(ATTACKER, tenant.agent_key).get("/training/models").status_code == 200


def test_a_limit_of_0_turns_the_limit_off(tenant: Tenant, clock: list[float], settings: Any) -> None:
    settings.API_KEY_FAILURE_LIMIT = 0
    refuse(tenant, ATTACKER, LIMIT * 2)
    assert client_at(ATTACKER, tenant.agent_key).get("/training/models").status_code == 200


def test_without_trusted_proxies_a_forged_forwarded_for_changes_nothing(tenant: Tenant, clock: list[float]) -> None:
    for n in range(LIMIT):
        refuse(tenant, ATTACKER, 1, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert_error(client_at(ATTACKER, tenant.agent_key, HTTP_X_FORWARDED_FOR="192.0.2.99").get("/training/models"), 429)


def test_behind_a_trusted_proxy_the_address_is_the_one_the_proxy_saw(
    tenant: Tenant, clock: list[float], settings: Any
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = "10.0.0.2"
    for n in range(LIMIT):  # the client's own claims come first; the proxy appends what it saw
        refuse(tenant, proxy, 1, HTTP_X_FORWARDED_FOR=f"192.0.2.{n}, {ATTACKER}")
    blocked = client_at(proxy, tenant.agent_key, HTTP_X_FORWARDED_FOR=ATTACKER)
    assert_error(blocked.get("/training/models"), 429)
    other_client = client_at(proxy, tenant.agent_key, HTTP_X_FORWARDED_FOR=NEIGHBOUR)
    assert other_client.get("/training/models").status_code == 200


def test_ipv6_addresses_count_per_64_block(tenant: Tenant, clock: list[float]) -> None:
    for n in range(LIMIT):
        refuse(tenant, f"2001:db8:1:2::{n + 1:x}", 1)
    assert_error(client_at("2001:db8:1:2:ffff::1", tenant.agent_key).get("/training/models"), 429)
    assert client_at("2001:db8:1:3::1", tenant.agent_key).get("/training/models").status_code == 200
