"""Test-wide fixtures: background tasks run synchronously; caches start empty; API tenants and staff; a pool's
control and candidate models (of the ``organization`` fixture each test module or folder defines)."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django_q.conf import Conf
from rest_framework.test import APIClient

from flywheel.keycache import forget_verified_keys
from flywheel.models import Organization
from registry import routing
from registry.models import RegisteredModel
from registry.services import model_deploy
from tests.api_clients import ML_OPS_PERMISSIONS, Tenant, make_tenant, staff_client
from tests.registry.factories import RegisteredModelFactory


@pytest.fixture(autouse=True)
def _isolated(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # django-q2 reads its configuration once at import, so sync mode is switched on its Conf.
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAINING_DATA_DIR = str(tmp_path / "media" / "training_data")
    cache.clear()
    yield
    cache.clear()


@pytest.fixture(autouse=True)
def _cold_caches() -> Iterator[None]:
    """Each test starts with no remembered keys and no routing tables, and leaves none."""
    forget_verified_keys()
    routing.clear_cache()
    yield
    forget_verified_keys()
    routing.clear_cache()


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant()


@pytest.fixture
def other() -> Tenant:
    """Another organization: nothing of it may ever be seen or changed by ``tenant``."""
    return make_tenant()


@pytest.fixture
def staff() -> APIClient:
    """ML ops staff, in any organization or the global pool: read and deploy models, read and run training,
    read and report outcomes (the permissions the admin asks for the same)."""
    return staff_client(*ML_OPS_PERMISSIONS)


@pytest.fixture
def control(organization: Organization) -> RegisteredModel:
    """v1.0.0, deployed at 100 %."""
    model = RegisteredModelFactory.create(organization=organization, model_version="v1.0.0")
    return model_deploy(model=model, traffic_percentage=100)


@pytest.fixture
def candidate(organization: Organization) -> RegisteredModel:
    """v2.0.0, ready."""
    return RegisteredModelFactory.create(organization=organization, model_version="v2.0.0")
