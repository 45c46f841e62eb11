"""The registry admin's traffic actions: what each asks, the service it calls, how it counts."""

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib.auth.base_user import AbstractBaseUser

from registry.models import RegisteredModel
from registry.services import model_archive, model_deploy, model_rollback, model_set_traffic

# The code of the refusal of a change that touches a running A/B test (the experiments app's).
TEST_RUNNING = "experiment_running"


class TrafficForm(forms.Form):
    """What a traffic action asks for on its confirmation page."""

    traffic_percentage = forms.FloatField(min_value=0.0001, max_value=100.0, required=False)
    reason = forms.CharField(required=False, max_length=1000, widget=forms.TextInput(attrs={"size": 60}))
    override_experiment = forms.BooleanField(
        required=False, label="Stop the running A/B test and apply this change (override; the reason is required)"
    )
    # The percentage and the override the page previewed: a confirmation applies only what was shown.
    previewed = forms.FloatField(required=False, widget=forms.HiddenInput)
    previewed_override = forms.BooleanField(required=False, widget=forms.HiddenInput)


@dataclass(frozen=True)
class TrafficAction:
    """One traffic-moving admin action: its wording and the services it calls."""

    name: str
    title: str
    done: str
    # (models, percentage, actor, reason, override): override is whether to stop a running A/B
    # test the change touches (only the experiments app knows of tests; the registry ignores it).
    call: Callable[[list[RegisteredModel], float | None, AbstractBaseUser, str, bool], object]
    single: bool = True
    percentage: Callable[[RegisteredModel], float] | None = None

    def count(self, models: list[RegisteredModel]) -> str:
        if self.name == "rollback":
            return f"{len({model.organization_id for model in models})} pool(s) rolled back"
        return f"{len(models)} model(s) {self.done}"


def _deploy_full(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    model_deploy(model=models[0], traffic_percentage=100.0, ab_test_group="control", actor=actor, reason=reason)


def _set_traffic(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    model_set_traffic(model=models[0], traffic_percentage=share or 0.0, actor=actor, reason=reason)


def _archive(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    for model in models:
        model_archive(model=model, actor=actor, reason=reason)


def _rollback(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    pools = {model.organization_id: model.organization for model in models}
    for organization in pools.values():
        model_rollback(organization=organization, actor=actor, reason=reason)


# The actions every registry admin has; the experiments app adds the one that starts an A/B test.
ACTIONS: dict[str, TrafficAction] = {
    "deploy_at_full_traffic": TrafficAction(
        "deploy_at_full_traffic", "Deploy at 100 %", "deployed at 100 %", _deploy_full
    ),
    "set_traffic": TrafficAction(
        "set_traffic", "Set traffic", "given new traffic", _set_traffic, percentage=lambda m: m.traffic_percentage
    ),
    "archive": TrafficAction("archive", "Archive", "archived", _archive, single=False),
    "rollback": TrafficAction("rollback", "Roll back the pool", "rolled back", _rollback, single=False),
}
