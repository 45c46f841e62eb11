"""Moving experiments out of the registry keeps an existing database's rows, grants and schedules."""

from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django_q.models import Schedule

from experiments.models import Experiment
from tests.factories import UserFactory

BEFORE = [("registry", "0003_one_model_per_training_run"), ("experiments", None)]


def migrate(targets: list[tuple[str, str | None]]) -> Any:
    """Migrate the test database to ``targets`` and return the apps of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    nodes = [(app, name) for app, name in targets if name is not None]
    return executor.loader.project_state(nodes).apps


def latest() -> list[tuple[str, str | None]]:
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_an_experiment_made_before_the_move_is_read_through_the_new_model() -> None:
    old = migrate(BEFORE)
    models = old.get_model("registry", "RegisteredModel").objects
    control = models.create(model_id="ft:a", model_version="v1.0.0", base_model="gpt-4o")
    variant = models.create(model_id="ft:b", model_version="v1.1.0", base_model="gpt-4o")
    old_row = old.get_model("registry", "Experiment").objects.create(
        pool="global", control=control, variant=variant, planned_variant_share=0.2, looks=[{"look": 2, "z": 1.5}]
    )

    migrate(latest())

    experiment = Experiment.objects.select_related("control", "variant").get(pk=old_row.pk)
    assert (experiment.control.model_version, experiment.variant.model_version) == ("v1.0.0", "v1.1.0")
    assert (experiment.status, experiment.planned_variant_share, experiment.looks) == (
        "running",
        0.2,
        [{"look": 2, "z": 1.5}],
    )
    assert Experiment._meta.db_table == "registry_experiment"


@pytest.mark.django_db(transaction=True)
def test_the_content_type_moves_with_its_permissions_and_their_grants() -> None:
    migrate(BEFORE)
    ContentType.objects.filter(app_label="experiments", model="experiment").update(app_label="registry")
    ContentType.objects.clear_cache()
    user = UserFactory.create(is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="registry", codename="view_experiment"))

    migrate(latest())

    ContentType.objects.clear_cache()
    content_type = ContentType.objects.get_for_model(Experiment)
    assert content_type.app_label == "experiments"
    assert not ContentType.objects.filter(app_label="registry", model="experiment").exists()
    user = type(user).objects.get(pk=user.pk)
    assert user.has_perm("experiments.view_experiment")


@pytest.mark.django_db(transaction=True)
def test_the_auto_promotion_schedule_follows_its_task_to_the_experiments_app() -> None:
    migrate(BEFORE)
    Schedule.objects.create(name="auto-promote", func="registry.tasks.auto_promote_experiments")

    migrate(latest())

    assert Schedule.objects.get(name="auto-promote").func == "experiments.tasks.auto_promote_experiments"
