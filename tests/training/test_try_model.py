""" "Try this model": a prompt on a model's admin page answered by the model's provider, over real clients."""

from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from registry.admin.model_page import SYSTEM_PROMPT_MAX_CHARS, USER_PROMPT_MAX_CHARS
from registry.models import RegisteredModel
from tests.registry.factories import RegisteredModelFactory, UserFactory
from tests.training.fake_openai import FakeOpenAI
from tests.training.test_provider_local import EXAMPLES, prompt, start_job, write_jsonl
from training.providers import get_provider

pytestmark = pytest.mark.django_db
SYSTEM = "You are an expert B2B sales copywriter."


def staff(client: Client, *codenames: str) -> Client:
    user = UserFactory.create(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="registry", codename__in=codenames))
    client.force_login(user)
    return client


@pytest.fixture
def ops(client: Client) -> Client:
    return staff(client, "view_registeredmodel", "deploy_model")


@pytest.fixture
def local_model(tmp_path: Path) -> RegisteredModel:
    """A model the local provider trained offline from a small file, registered as the runs register them."""
    provider = get_provider("local")
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES))  # type: ignore[arg-type]
    model_id = [provider.get_job(job_id) for _ in range(3)][-1].fine_tuned_model
    assert model_id is not None
    return RegisteredModelFactory.create(provider="local", model_id=model_id)


def ask(client: Client, model: RegisteredModel, user_prompt: str, system_prompt: str = SYSTEM) -> Any:
    url = reverse("admin:registry_registeredmodel_try", args=[model.pk])
    return client.post(url, {"system_prompt": system_prompt, "user_prompt": user_prompt})


def errors(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


def test_the_models_page_shows_the_local_providers_answer(ops: Client, local_model: RegisteredModel) -> None:
    page = ops.get(reverse("admin:registry_registeredmodel_change", args=[local_model.pk]))
    assert page.status_code == 200 and 'id="try-model"' in page.content.decode()

    answered = ask(ops, local_model, prompt("SaaS", "VP Sales"))

    assert answered.status_code == 200
    assert answered.context["try_answer"] == "SaaS VP PAS best"
    assert '<pre class="try-answer">SaaS VP PAS best</pre>' in answered.content.decode()
    assert answered.templates[0].name == "admin/registry/registeredmodel/change_form.html"
    assert errors(answered) == []


def test_the_openai_providers_answer_comes_over_http(ops: Client, fake_openai: FakeOpenAI) -> None:
    fake_openai.add_model("ft:gpt-4o-mini:acme:try:1")
    model = RegisteredModelFactory.create(provider="openai", model_id="ft:gpt-4o-mini:acme:try:1")

    answered = ask(ops, model, "Write to a CTO.")

    assert (
        answered.context["try_answer"]
        == "[ft:gpt-4o-mini:acme:try:1] Subject: Quick idea\n\nA reply to: Write to a CTO."
    )
    [sent] = fake_openai.requests_to("chat.completions")
    assert [m["content"] for m in sent.body["messages"]] == [SYSTEM, "Write to a CTO."]


def test_a_provider_error_is_shown_as_a_message_and_the_prompt_is_kept(ops: Client) -> None:
    model = RegisteredModelFactory.create(provider="local", model_id="ft:gpt-4o:local:never-trained:1")

    answered = ask(ops, model, "Hello there")

    assert answered.status_code == 200
    assert answered.context["try_answer"] is None
    assert errors(answered) == [
        f"{model.model_version} could not answer: The local provider has no model 'ft:gpt-4o:local:never-trained:1'."
    ]
    assert answered.context["try_form"]["user_prompt"].value() == "Hello there"


def test_an_upstream_failure_of_openai_is_a_message_not_a_500(ops: Client, fake_openai: FakeOpenAI) -> None:
    model = RegisteredModelFactory.create(provider="openai", model_id="ft:gpt-4o-mini:acme:gone:1")

    answered = ask(ops, model, "Hello")

    assert answered.status_code == 200
    [message] = errors(answered)
    assert message.startswith(f"{model.model_version} could not answer:") and "does not exist" in message


def test_a_prompt_over_the_limit_is_refused_with_a_form_error_before_the_provider_is_asked(
    ops: Client, fake_openai: FakeOpenAI
) -> None:
    model = RegisteredModelFactory.create(provider="openai", model_id="ft:gpt-4o-mini:acme:try:1")

    too_long = ask(ops, model, "x" * (USER_PROMPT_MAX_CHARS + 1))
    long_system = ask(ops, model, "Hi", system_prompt="s" * (SYSTEM_PROMPT_MAX_CHARS + 1))

    assert too_long.status_code == long_system.status_code == 200
    assert too_long.context["try_form"].errors["user_prompt"] == [
        f"Ensure this value has at most {USER_PROMPT_MAX_CHARS} characters (it has {USER_PROMPT_MAX_CHARS + 1})."
    ]
    assert "system_prompt" in long_system.context["try_form"].errors
    assert too_long.context["try_answer"] is None
    assert fake_openai.requests_to("chat.completions") == []


def test_staff_without_the_deploy_permission_cannot_try_a_model(client: Client, local_model: RegisteredModel) -> None:
    viewer = staff(client, "view_registeredmodel", "change_registeredmodel")

    page = viewer.get(reverse("admin:registry_registeredmodel_change", args=[local_model.pk]))
    refused = ask(viewer, local_model, prompt("SaaS", "VP Sales"))

    assert page.status_code == 200 and 'id="try-model"' not in page.content.decode()
    assert refused.status_code == 403


def test_trying_never_saves_the_model_nor_logs_the_prompt(
    ops: Client, local_model: RegisteredModel, caplog: pytest.LogCaptureFixture
) -> None:
    before = RegisteredModel.objects.values().get(pk=local_model.pk)

    with caplog.at_level("DEBUG"):
        ask(ops, local_model, prompt("SaaS", "VP Sales") + " secret-campaign-name")

    assert RegisteredModel.objects.values().get(pk=local_model.pk) == before
    assert "secret-campaign-name" not in caplog.text and "SaaS VP PAS best" not in caplog.text
    assert f"Model {local_model.pk} tried" in caplog.text
