"""model_register, model_mark_ready: validation, lineage, idempotence and the audit row."""

import uuid

import pytest
from django.core.exceptions import ValidationError

from flywheel.auth import KeyPrincipal
from flywheel.errors import Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services import model_mark_ready, model_register
from tests.registry.factories import OrganizationFactory, RegisteredModelFactory, UserFactory

pytestmark = pytest.mark.django_db


def register(**overrides: object) -> RegisteredModel:
    values: dict = {"model_id": "ft:gpt-4o:acme:v2-1-0:xyz", "model_version": "v2.1.0", "base_model": "gpt-4o"}
    return model_register(**{**values, **overrides})


def test_it_registers_a_ready_model_with_its_lineage_and_training_stats(organization: Organization) -> None:
    run_id = uuid.uuid4()
    model = register(
        organization=organization,
        provider="openai",
        fine_tuning_job_id="ftjob-abc123",
        training_run_id=run_id,
        dataset_sha256="a" * 64,
        training_stats={"training_examples_count": 500, "positive_examples": 350, "deals_in_training": 50},
    )

    model.refresh_from_db()
    assert model.status == RegisteredModel.Status.READY
    assert (model.organization, model.provider, model.fine_tuning_job_id) == (organization, "openai", "ftjob-abc123")
    assert (model.training_run_id, model.dataset_sha256) == (run_id, "a" * 64)
    assert (model.training_examples_count, model.positive_examples, model.deals_in_training) == (500, 350, 50)
    assert model.traffic_percentage == 0.0


def test_it_writes_one_registered_event_by_the_system_when_no_actor_is_given() -> None:
    model = register()

    [event] = model.events.all()
    assert (event.action, event.status_before, event.status_after) == ("registered", "", "ready")
    assert (event.actor_user, event.actor_label) == (None, "system")


def test_it_records_a_staff_user_and_an_api_key_as_actors(organization: Organization) -> None:
    user = UserFactory.create()
    principal = KeyPrincipal(key_id="k1", key_prefix="AbCd1234", organization=organization, role="ops")

    by_user = register(actor=user)
    by_key = register(model_version="v2.2.0", actor=principal)

    assert (by_user.events.get().actor_user, by_user.events.get().actor_label) == (user, user.username)
    assert (by_key.events.get().actor_user, by_key.events.get().actor_label) == (None, "api-key:AbCd1234")


def test_a_resumed_training_run_registers_exactly_once() -> None:
    run_id = uuid.uuid4()

    first = register(training_run_id=run_id)
    again = register(training_run_id=run_id, model_version="v9.9.9")

    assert again.pk == first.pk
    assert RegisteredModel.objects.count() == 1
    assert ModelEvent.objects.count() == 1


@pytest.mark.parametrize("version", ["2.1.0", "v2.1", "v2.1.0-rc1", "version 2", ""])
def test_it_refuses_a_version_that_is_not_vx_y_z(version: str) -> None:
    with pytest.raises(ValidationError) as error:
        register(model_version=version)

    assert "model_version" in error.value.message_dict
    assert not RegisteredModel.objects.exists()


def test_it_refuses_unknown_or_negative_training_stats() -> None:
    with pytest.raises(ValidationError):
        register(training_stats={"training_examples": 5})
    with pytest.raises(ValidationError):
        register(training_stats={"positive_examples": -1})


def test_it_refuses_registering_a_model_as_deployed() -> None:
    with pytest.raises(ValidationError):
        register(status=RegisteredModel.Status.DEPLOYED)


def test_a_version_is_unique_within_a_pool_but_not_across_pools() -> None:
    acme, globex = OrganizationFactory.create(), OrganizationFactory.create()
    register(organization=acme)
    register(organization=globex)
    register()

    with pytest.raises(ValidationError):
        register(organization=acme)
    with pytest.raises(ValidationError):
        register()


def test_a_model_registered_while_training_is_marked_ready_once() -> None:
    model = register(status=RegisteredModel.Status.TRAINING)

    model_mark_ready(model=model)

    assert model.status == RegisteredModel.Status.READY
    assert model.events.order_by("id").last().status_after == "ready"  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        model_mark_ready(model=RegisteredModelFactory.create())
