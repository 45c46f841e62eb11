"""Authentication, roles, rate limits and the verified-key cache."""

import datetime
import time
from typing import Any

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from flywheel import auth, keycache
from flywheel.models import OrganizationAPIKey
from tests.api_clients import Tenant, assert_error, key_client
from tests.factories import UserFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

# Every endpoint and its method; ids in the paths need not exist, the refusal comes first.
ENDPOINTS = [
    ("post", "/api/outcomes"),
    ("post", "/api/outcomes/events"),
    ("get", "/api/route"),
    ("get", "/training/models"),
    ("get", "/training/leaderboard"),
    ("get", "/training/stats"),
    ("post", "/training/deploy/7b0c7a5e-0000-4000-8000-000000000000"),
    ("post", "/training/promote-winner"),
]
OPS_ENDPOINTS = [
    ("post", "/training/deploy/7b0c7a5e-0000-4000-8000-000000000000"),
    ("post", "/training/promote-winner"),
]


def stored_key(tenant: Tenant) -> OrganizationAPIKey:
    prefix = tenant.agent_key.partition(".")[0]
    return OrganizationAPIKey.objects.get(prefix=prefix)


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_anonymous_requests_are_refused_with_401(method: str, path: str) -> None:
    response = getattr(APIClient(), method)(path, {}, format="json")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Api-Key"


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_unknown_keys_are_refused_with_401(method: str, path: str) -> None:
    response = getattr(key_client("AbCdEfGh.not-the-secret"), method)(path, {}, format="json")
    assert_error(response, 401, "authentication_failed")


@pytest.mark.parametrize(("method", "path"), OPS_ENDPOINTS)
def test_agent_keys_are_refused_on_ops_endpoints_with_403(tenant: Tenant, method: str, path: str) -> None:
    assert_error(getattr(tenant.agent, method)(path, {}, format="json"), 403, "permission_denied")


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_session_of_a_user_who_is_not_staff_is_refused_with_403(method: str, path: str) -> None:
    client = APIClient()
    client.force_login(UserFactory.create(is_staff=False))
    assert_error(getattr(client, method)(path, {}, format="json"), 403, "permission_denied")


def test_a_key_with_a_wrong_secret_is_refused(tenant: Tenant) -> None:
    prefix = tenant.agent_key.partition(".")[0]
    assert_error(key_client(f"{prefix}.wrong-secret").get("/training/models"), 401)


def test_a_revoked_key_is_refused_at_once_even_when_remembered(tenant: Tenant) -> None:
    assert tenant.agent.get("/training/models").status_code == 200  # verified and remembered
    key = stored_key(tenant)
    key.revoked = True
    key.save()
    assert_error(tenant.agent.get("/training/models"), 401, "authentication_failed")


def test_an_expired_key_is_refused_at_once_even_when_remembered(tenant: Tenant) -> None:
    assert tenant.agent.get("/training/models").status_code == 200
    OrganizationAPIKey.objects.filter(pk=stored_key(tenant).pk).update(
        expiry_date=timezone.now() - datetime.timedelta(seconds=1)
    )
    assert_error(tenant.agent.get("/training/models"), 401)


def test_a_deleted_key_is_refused_at_once_even_when_remembered(tenant: Tenant) -> None:
    assert tenant.agent.get("/training/models").status_code == 200
    stored_key(tenant).delete()
    assert_error(tenant.agent.get("/training/models"), 401)


def test_a_key_moved_to_another_organization_is_refused_at_once(tenant: Tenant, other: Tenant) -> None:
    assert tenant.agent.get("/training/models").status_code == 200
    OrganizationAPIKey.objects.filter(pk=stored_key(tenant).pk).update(organization=other.organization)
    assert_error(tenant.agent.get("/training/models"), 401)
    forget = tenant.agent.get("/training/models")  # verified afresh: now a key of the other organization
    assert forget.status_code == 200


def test_a_role_change_applies_at_once_even_when_remembered(tenant: Tenant) -> None:
    model = RegisteredModelFactory.create(organization=tenant.organization)
    assert tenant.agent.get("/training/models").status_code == 200
    OrganizationAPIKey.objects.filter(pk=stored_key(tenant).pk).update(role=OrganizationAPIKey.Role.OPS)
    assert tenant.agent.post(f"/training/deploy/{model.pk}", {}, format="json").status_code == 200


def test_a_remembered_key_costs_one_query(tenant: Tenant, django_assert_num_queries: Any) -> None:
    tenant.agent.get("/training/leaderboard")
    with django_assert_num_queries(2):  # the key's row, then the leaderboard
        tenant.agent.get("/training/leaderboard")


def test_a_remembered_key_is_verified_again_after_its_time(tenant: Tenant, monkeypatch: Any) -> None:
    tenant.agent.get("/training/models")
    monkeypatch.setattr(keycache, "KEY_CACHE_SECONDS", -1.0)
    keycache.forget_verified_keys()
    tenant.agent.get("/training/models")
    (entry,) = keycache._verified.values()
    assert entry.key_id == stored_key(tenant).pk


def test_the_cache_never_holds_the_secret(tenant: Tenant) -> None:
    tenant.agent.get("/training/models")
    (digest,) = keycache._verified
    assert tenant.agent_key not in digest and tenant.agent_key.partition(".")[2] not in repr(keycache._verified)


def test_staff_sessions_are_accepted(staff: APIClient) -> None:
    assert staff.get("/training/models").status_code == 200


def test_requests_over_the_keys_rate_are_refused_with_429(tenant: Tenant, other: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(auth.APIKeyRateThrottle, "THROTTLE_RATES", {"api_key": "3/min"})
    for _ in range(3):
        assert tenant.agent.get("/training/models").status_code == 200
    response = tenant.agent.get("/training/models")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) > 0
    assert other.agent.get("/training/models").status_code == 200  # the limit is per key


def test_the_rate_limit_keeps_one_counter_per_key_whatever_the_traffic(tenant: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(auth.APIKeyRateThrottle, "THROTTLE_RATES", {"api_key": "1000/min"})
    monkeypatch.setattr(auth.APIKeyRateThrottle, "timer", staticmethod(lambda: 1_800_000_030.0))  # inside one window
    for _ in range(50):
        assert tenant.agent.get("/training/models").status_code == 200
    counters = [key for key in cache._cache if ":throttle_api_key_key:" in key]  # type: ignore[attr-defined]
    assert len(counters) == 1
    assert cache.get(counters[0].split(":", 2)[2]) == 50


def test_a_refused_key_is_served_again_in_the_next_window(tenant: Tenant, monkeypatch: Any) -> None:
    monkeypatch.setattr(auth.APIKeyRateThrottle, "THROTTLE_RATES", {"api_key": "2/s"})
    while True:  # start at the beginning of a one-second window, so the test is not racing its end
        start = time.time()
        if start % 1 < 0.5:
            break
        time.sleep(1 - start % 1)
    assert [tenant.agent.get("/training/models").status_code for _ in range(3)] == [200, 200, 429]
    time.sleep(1.05 - time.time() % 1)
    assert tenant.agent.get("/training/models").status_code == 200
