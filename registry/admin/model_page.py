"""The registered model's admin page: the traffic actions it offers as buttons, and "Try this model".

Each button opens the very confirmation page the list's action shows, through the very action
(one model selected), so what a button does and who may press it cannot drift from the list. A
button shows only when the services would take the change now: each is dry-run
(:func:`registry.services.dry_run`) for this model, and a refusal is listed with the service's
words instead. "Try this model" puts one prompt to the model's provider through the serving
hook an app above fills in (:func:`registry.serving.serving_complete`).
"""

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django import forms
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.urls import reverse

from flywheel.admin_helpers import error_text
from flywheel.errors import ApplicationError
from registry.admin.traffic import TEST_RUNNING, TrafficAction
from registry.models import RegisteredModel
from registry.services import dry_run
from registry.serving import serving_complete

if TYPE_CHECKING:
    from django.contrib.auth.models import AnonymousUser

logger = logging.getLogger(__name__)

SYSTEM_PROMPT_MAX_CHARS = 4_000
USER_PROMPT_MAX_CHARS = 8_000


@dataclass(frozen=True)
class PageAction:
    """A traffic action as the model's page offers it: its button, or why the services refuse it now."""

    name: str
    title: str
    url: str
    refusal: str = ""


def page_actions(model: RegisteredModel, actions: list[TrafficAction], *, actor: AbstractBaseUser) -> list[PageAction]:
    """``actions`` for ``model``, each with the refusal its service gives now ("" when it would go ahead).

    A change refused only because it touches a running A/B test is offered: its confirmation
    page explains the refusal and offers the override, as the list's action does.
    """
    offered = []
    for action in actions:
        url = reverse("admin:registry_registeredmodel_page_action", args=[model.pk, action.name])
        offered.append(PageAction(action.name, action.title, url, _refusal(model, action, actor)))
    return offered


def _refusal(model: RegisteredModel, action: TrafficAction, actor: AbstractBaseUser) -> str:
    # A fresh row per preview: a service changes the instance it is given, and the page shows this one.
    fresh = RegisteredModel.objects.select_related("organization").get(pk=model.pk)
    share = action.percentage(fresh) if action.percentage else None
    try:
        dry_run(lambda: action.call([fresh], share, actor, "", False))
    except (ApplicationError, ValidationError) as error:
        return "" if getattr(error, "code", "") == TEST_RUNNING else error_text(error)
    return ""


class TryForm(forms.Form):
    """One prompt for the model: a system prompt and a user prompt, each of bounded size."""

    system_prompt = forms.CharField(
        max_length=SYSTEM_PROMPT_MAX_CHARS,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text=f"At most {SYSTEM_PROMPT_MAX_CHARS:,} characters.",
    )
    user_prompt = forms.CharField(
        max_length=USER_PROMPT_MAX_CHARS,
        widget=forms.Textarea(attrs={"rows": 5, "cols": 80}),
        help_text=f"At most {USER_PROMPT_MAX_CHARS:,} characters.",
    )

    @classmethod
    def blank(cls) -> "TryForm":
        return cls(initial={"system_prompt": settings.TRAINING_SYSTEM_PROMPT})


def try_model(
    *, model: RegisteredModel, form: TryForm, user: "AbstractBaseUser | AnonymousUser"
) -> tuple[str | None, str]:
    """The model's answer to the form's prompt, or ``None`` and the provider's words when it failed.

    Logs who asked which model, the prompts' sizes and the outcome; never the prompts, the
    answer or anything the provider was configured with.
    """
    data = form.cleaned_data
    sizes = (len(data["system_prompt"]), len(data["user_prompt"]))
    try:
        answer = serving_complete(
            provider=model.provider,
            model_id=model.model_id,
            system_prompt=data["system_prompt"],
            user_prompt=data["user_prompt"],
        )
    except ApplicationError as error:
        logger.warning("Trying model %s (user %s, %s chars) failed: %s", model.pk, user.pk, sizes, error.code)
        return None, f"{model.model_version} could not answer: {error.message}"
    logger.info("Model %s tried by user %s (%s chars): %s chars answered", model.pk, user.pk, sizes, len(answer))
    return answer, ""
