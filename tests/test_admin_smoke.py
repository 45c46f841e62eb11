"""Every admin list, add and change page opens for a superuser."""

from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.test import Client
from django.urls import reverse

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry.items(), key=lambda pair: pair[0]._meta.label)


@pytest.fixture
def superuser_client(client: Client) -> Client:
    client.force_login(UserFactory.create(is_superuser=True))
    return client


@pytest.fixture
def demo_data() -> None:
    from django.core.management import call_command

    call_command("seed_demo_data", "--labels", "20", "--seed", "3")


@pytest.mark.parametrize(("model", "model_admin"), REGISTERED, ids=[m._meta.label for m, _ in REGISTERED])
def test_every_admin_page_opens(
    superuser_client: Client, demo_data: None, model: type[models.Model], model_admin: Any
) -> None:
    info = (model._meta.app_label, model._meta.model_name)
    assert superuser_client.get(reverse("admin:{}_{}_changelist".format(*info))).status_code == 200
    if model_admin.has_add_permission(_request(superuser_client)):
        assert superuser_client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 200
    obj = model._default_manager.first()
    if obj is not None:
        url = reverse("admin:{}_{}_change".format(*info), args=[obj.pk])
        assert superuser_client.get(url).status_code == 200


def _request(client: Client) -> Any:
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = UserFactory.create(is_superuser=True)
    return request
