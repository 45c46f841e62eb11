"""What every app's admin shares: the acting user, an error as text, a confirmation page, the log, the pool filter.

Admin actions call services with the signed-in user as the actor, turn domain errors into
messages, ask for confirmation before they change anything that matters, and, once a change
is made, write it to the admin's log (its "Recent actions" and each object's history).
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Model
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


def log_admin_action(request: HttpRequest, obj: Model, message: str, *, flag: int = CHANGE) -> LogEntry:
    """Write what an admin action did to ``obj`` in the admin's log, as the signed-in user.

    The entry (``flag``: ``ADDITION``, ``CHANGE`` or ``DELETION``) appears under the index's
    "Recent actions" and in the object's history. Call it once the change is made, never for a
    refused or previewed one.
    """
    user = acting_user(request)
    entry = LogEntry.objects.log_actions(
        user_id=user.pk, queryset=[obj], action_flag=flag, change_message=message, single_object=True
    )
    return entry
