"""The helpers every app's admin shares: the acting user, error text, the confirmation page."""

import pytest
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.test import RequestFactory

from flywheel.admin_helpers import acting_user, confirmation_page, error_text
from flywheel.errors import Conflict
from flywheel.models import Organization
from tests.factories import UserFactory


@pytest.mark.django_db
def test_the_acting_user_is_the_signed_in_user() -> None:
    request = RequestFactory().post("/admin/")
    request.user = user = UserFactory.create()
    assert acting_user(request) == user


def test_an_anonymous_request_has_no_acting_user() -> None:
    request = RequestFactory().post("/admin/")
    request.user = AnonymousUser()
    with pytest.raises(PermissionDenied):
        acting_user(request)


def test_the_error_text_of_a_domain_error_is_its_message() -> None:
    assert error_text(Conflict("The model is archived.", details={"status": "archived"})) == "The model is archived."


def test_the_error_text_of_a_validation_error_joins_its_messages() -> None:
    error = ValidationError({"traffic_percentage": ["Too high."], "status": ["Not deployable."]})
    assert error_text(error) == "Too high.; Not deployable."


@pytest.mark.django_db
def test_a_confirmation_page_carries_the_admin_context_and_the_selected_objects_name() -> None:
    request = RequestFactory().post("/admin/")
    request.user = UserFactory.create(is_superuser=True)
    model_admin = admin.site._registry[Organization]
    page = confirmation_page(model_admin, request, template="admin/base_site.html", title="Confirm", rows=[1, 2])
    assert page.template_name == "admin/base_site.html"
    assert page.context_data is not None
    assert page.context_data["title"] == "Confirm"
    assert page.context_data["opts"] is Organization._meta
    assert page.context_data["action_checkbox_name"] == helpers.ACTION_CHECKBOX_NAME
    assert page.context_data["rows"] == [1, 2]
    assert page.context_data["site_header"] == admin.site.site_header
