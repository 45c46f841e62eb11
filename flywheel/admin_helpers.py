"""What every app's admin shares: the acting user, a domain error as text, a confirmation page, the pool filter.

Admin actions call services with the signed-in user as the actor, turn domain errors into
messages, and ask for confirmation before they change anything that matters.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import escape

from flywheel import formatting
from flywheel.errors import ApplicationError


def acting_user(request: HttpRequest) -> AbstractBaseUser:
    """The signed-in user acting in the admin (the admin site lets no anonymous user this far)."""
    if not isinstance(request.user, AbstractBaseUser):
        raise PermissionDenied
    return request.user


def error_text(error: ApplicationError | ValidationError) -> str:
    """The message of a domain error, or the messages of a Django ``ValidationError`` joined by "; "."""
    return error.message if isinstance(error, ApplicationError) else "; ".join(error.messages)


def confirmation_page(
    model_admin: "admin.ModelAdmin[Any]", request: HttpRequest, *, template: str, title: str, **context: Any
) -> TemplateResponse:
    """A page of ``model_admin`` that asks before acting: the admin's context, the title and ``context``.

    It carries the name of the action checkbox, so a form on the page can send the selected
    objects back with the confirmation.
    """
    page = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "opts": model_admin.opts,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        **context,
    }
    return TemplateResponse(request, template, page)


class PoolFilter(admin.RelatedFieldListFilter):
    """The list filter on ``organization``, titled "pool", whose empty choice is the global pool by name."""

    def __init__(self, field: Any, request: HttpRequest, params: Any, model: Any, model_admin: Any, field_path: str):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.title = "pool"
        self.empty_value_display = escape(formatting.GLOBAL_POOL)
