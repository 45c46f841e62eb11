"""Admin for A/B experiments: the evidence page, the action that applies it, deploys that start tests.

A running experiment is shown as it stands now (read, not saved), with its live progress
(:mod:`experiments.progress`), a finished one at the look that decided it; the chart of the
statistic against the alpha-spending boundary is an inline SVG computed here.
Experiments start with their A/B test and end through "Evaluate now and apply the decision",
which needs ``registry.deploy_model`` and confirms first (:func:`registry.services.dry_run`). The
registry's model admin is registered again here, with deploy actions that can start a test.
"""

import math
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from experiments.models import Experiment
from experiments.progress import progress_and_evidence
from experiments.services import model_deploy_or_start_test, promote_ab_test_winner, promotion_preview
from experiments.stats import FIRST_DECISION_LOOK, ArmCounts, look_boundary
from flywheel.admin_helpers import acting_user, confirmation_page, error_text
from flywheel.errors import ApplicationError
from registry import admin as registry_admin
from registry.models import RegisteredModel

CONFIRM_TEMPLATE = "admin/experiments/experiment/confirm_promote.html"
DEPLOY_PERMISSION = "registry.deploy_model"
FIELDS: list[str] = [
    "organization",
    "control",
    "variant",
    "status",
    "planned_variant_share",
    "planned_looks",
    "look_interval_days",
    "started_at",
    "ended_at",
    "winner",
]
OUTCOMES = {
    "promoted": "The variant {variant} would be promoted to 100 %; the control would be archived.",
    "rolled_back": "The variant {variant} lost: it would be archived and the control would get 100 % back.",
    "stopped": "The test is stopped (see the reasons): {variant} ends; the rows below are all that moves.",
    "none": "Undecided: no traffic moves; this look's statistic is recorded.",
}
DONE = {"promoted": "promoted", "rolled_back": "rolled back", "stopped": "stopped", "none": "still undecided"}


# --- The chart ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """SVG geometry of the statistic per look against the boundary, in the viewBox's units."""

    width: int
    height: int
    left: int
    right: int
    upper: str  # polyline points of the promotion boundary
    lower: str  # and of its mirror, below which the variant loses
    statistic: str  # polyline points of z per look
    markers: list[dict[str, Any]]
    y_ticks: list[dict[str, Any]]
    x_ticks: list[dict[str, Any]]

    @property
    def center_x(self) -> float:
        return (self.left + self.right) / 2

    @property
    def center_y(self) -> float:
        return self.height / 2


def planned_boundaries(planned_looks: int, fractions: list[float]) -> dict[int, float]:
    """The boundary at every look: spent on the fractions of the looks taken, equally spaced after them."""
    spread = list(fractions)
    for k in range(len(spread) + 1, planned_looks + 1):
        last = spread[-1] if spread else 0.0
        spread.append(last + (1.0 - last) / (planned_looks - k + 1))
    return {k: look_boundary(k, planned_looks, spread[:k]) or 0.0 for k in range(1, planned_looks + 1)}


def chart(
    points: dict[int, float],
    planned_looks: int,
    *,
    fractions: list[float] | None = None,
    width: int = 640,
    height: int = 260,
) -> Chart:
    """The chart of ``points`` (look -> z) against the alpha-spending boundary of ``planned_looks``.

    The boundary (:func:`planned_boundaries`) is drawn from the first look that can decide; the y
    range covers it and every point, so a statistic far beyond the boundary stays on the chart.
    """
    left, right, top, bottom = 44, width - 16, 14, height - 30
    every = planned_boundaries(planned_looks, fractions or []).items()
    bounds = {k: min(b, 8.0) for k, b in every if k >= min(FIRST_DECISION_LOOK, planned_looks)}
    reach = math.ceil(max([*bounds.values(), *(abs(z) for z in points.values()), 1.0]) + 0.5)

    def x(look: int) -> float:
        return left + (look - 1) * (right - left) / max(planned_looks - 1, 1)

    def y(z: float) -> float:
        return top + (reach - z) * (bottom - top) / (2 * reach)

    def line(values: dict[int, float]) -> str:
        return " ".join(f"{x(k):.1f},{y(z):.1f}" for k, z in sorted(values.items()))

    step = max(1, math.ceil(reach / 4))
    return Chart(
        width=width,
        height=height,
        left=left,
        right=right,
        upper=line(bounds),
        lower=line({k: -b for k, b in bounds.items()}),
        statistic=line(points),
        markers=[{"x": x(k), "y": y(z), "look": k, "z": z} for k, z in sorted(points.items())],
        y_ticks=[{"y": y(v), "label": v} for v in range(-(reach // step) * step, reach + 1, step)],
        x_ticks=[{"x": x(k), "label": k} for k in range(1, planned_looks + 1)],
    )


# --- The report ---------------------------------------------------------------------------------


def _arm_row(name: str, model: RegisteredModel, counts: ArmCounts) -> dict[str, Any]:
    rates = (counts.reply_rate, counts.meeting_rate, counts.close_rate, counts.unsubscribe_rate)
    return {
        "name": name,
        "model": model,
        "counts": counts,
        "rates": [f"{rate:.2%}" for rate in rates],
        "score": counts.weighted_score,
    }


def percent_interval(number: dict[str, float] | None) -> str:
    """A rate with its 95 % interval, in percent: ``12.50 % (9.10 to 15.90 %)``; a dash when unknown."""
    if number is None:
        return "-"
    return f"{number['value']:.2%} ({number['low'] * 100:.2f} to {number['high'] * 100:.2f} %)"


def _live_row(arm: dict[str, Any], part: str) -> dict[str, Any]:
    numbers = arm[part]
    rates = [percent_interval(numbers[name]) for name in ("reply_rate", "meeting_rate", "close_rate")]
    label = "all so far (provisional)" if numbers["provisional"] else "matured"
    return {"arm": arm["arm"], "version": arm["model_version"], "part": label, "numbers": numbers, "rates": rates}


def experiment_report(experiment: Experiment) -> dict[str, Any]:
    """What the change page shows: the live progress, the arms at the deciding look, the decision and the chart.

    A running experiment is evaluated as it stands (nothing is saved); a finished one is shown
    at the look of its recorded decision, with that decision.
    """
    running = experiment.status == Experiment.Status.RUNNING
    progress, evidence = progress_and_evidence(experiment)
    points = {int(row["look"]): row["z"] for row in progress["series"]["looks"] if row["z"] is not None}
    lift = progress["lift"]
    return {
        "running": running,
        "progress": progress,
        "live": [_live_row(arm, part) for part in ("all", "matured") for arm in progress["arms"]],
        "lift": {name: percent_interval(value) for name, value in lift.items()},
        "arms": [
            _arm_row("Control", experiment.control, evidence.control),
            _arm_row("Variant", experiment.variant, evidence.variant),
        ],
        "decision": progress["decision"],
        "srm_broken": progress["decision"].get("stopped", False),
        "chart": chart(points, experiment.planned_looks, fractions=evidence.fractions),
    }


# --- The admin ----------------------------------------------------------------------------------


class ExperimentAdmin(admin.ModelAdmin[Experiment]):
    list_display = ["__str__", "pool_display", "status", "started_at", "look_display", "verdict", "winner"]
    list_filter = ["status", "organization"]
    list_select_related = ["control", "variant", "winner", "organization"]
    search_fields = ["control__model_version", "variant__model_version", "organization__slug"]
    date_hierarchy = "started_at"
    change_form_template = "admin/experiments/experiment/change_form.html"
    actions = ["promote_winner"]
    fields = tuple(FIELDS)
    readonly_fields = FIELDS

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # an experiment starts with its A/B test (experiments.services.experiment_start)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the record of a test: it changes only through its evaluation

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        """The ``registry.deploy_model`` permission: ML ops staff who may move traffic."""
        return request.user.has_perm(DEPLOY_PERMISSION)

    @admin.display(description="pool")
    def pool_display(self, experiment: Experiment) -> str:
        return str(experiment.organization or "global")

    @admin.display(description="look")
    def look_display(self, experiment: Experiment) -> str:
        look = experiment.decision.get("look")
        return "-" if look is None else f"{look} of {experiment.planned_looks}"

    @admin.display(description="last decision")
    def verdict(self, experiment: Experiment) -> str:
        decision = experiment.decision
        if not decision:
            return "not evaluated yet"
        if decision.get("stopped"):
            return "stopped: broken split"
        return {"variant": "promote the variant", "control": "keep the control"}.get(
            decision.get("winner"), "undecided"
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        experiment = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if experiment is not None:
            context["report"] = experiment_report(experiment)
            context["can_deploy"] = self.has_deploy_permission(request)
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description="Evaluate now and apply the decision (promote the winner)", permissions=["deploy"])
    def promote_winner(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        """Confirm first with a preview of each answer; then apply, and count what happened."""
        experiments = list(queryset.filter(status=Experiment.Status.RUNNING).select_related("organization", "variant"))
        if not experiments:
            self.message_user(request, "None of the selected experiments is running.", messages.WARNING)
            return None
        if "apply" not in request.POST:
            return self.confirmation(request, experiments)
        done: dict[str, int] = {}
        for experiment in experiments:
            try:
                answer = promote_ab_test_winner(organization=experiment.organization, actor=acting_user(request))
            except ApplicationError as error:
                self.message_user(request, f"{experiment}: {error_text(error)}", messages.ERROR)
                continue
            done[answer["action"]] = done.get(answer["action"], 0) + 1
        if done:
            summary = ", ".join(f"{count} {DONE[action]}" for action, count in sorted(done.items()))
            self.message_user(request, f"{sum(done.values())} experiment(s) evaluated: {summary}", messages.SUCCESS)
        return None

    def confirmation(self, request: HttpRequest, experiments: list[Experiment]) -> TemplateResponse | None:
        """The page previewing each experiment's answer and the audit rows applying it would write."""
        previews = []
        for experiment in experiments:
            try:
                answer, events = promotion_preview(organization=experiment.organization, actor=acting_user(request))
            except ApplicationError as error:
                self.message_user(request, f"{experiment}: {error_text(error)}", messages.ERROR)
                continue
            outcome = OUTCOMES[answer["action"]].format(variant=experiment.variant.model_version)
            previews.append({"experiment": experiment, "answer": answer, "events": events, "outcome": outcome})
        if not previews:
            return None
        return confirmation_page(
            self,
            request,
            template=CONFIRM_TEMPLATE,
            title="Evaluate now and apply the decision: confirm",
            previews=previews,
        )


admin.site.register(Experiment, ExperimentAdmin)


# --- The registry's models, deployed through the experiments --------------------------------------


def _deploy_full(models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str) -> None:
    model_deploy_or_start_test(model=models[0], traffic_percentage=100.0, actor=actor, reason=reason)


def _start_ab_test(models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str) -> None:
    model_deploy_or_start_test(
        model=models[0], traffic_percentage=share or 10.0, actor=actor, reason=reason, require_test=True
    )


TrafficAction = registry_admin.TrafficAction
TRAFFIC_ACTIONS = {
    **registry_admin.ACTIONS,
    "deploy_at_full_traffic": TrafficAction(
        "deploy_at_full_traffic", "Deploy at 100 %", "deployed at 100 %", _deploy_full
    ),
    "start_ab_test": TrafficAction(
        "start_ab_test", "Start an A/B test", "started as A/B test variant", _start_ab_test, percentage=lambda m: 10.0
    ),
}


class RegisteredModelAdmin(registry_admin.RegisteredModelAdmin):
    """The registry's model admin, whose deploys go through :func:`model_deploy_or_start_test`.

    It replaces the registry's own registration: the registry knows nothing of experiments, so
    the action that starts an A/B test (with its experiment) is added here.
    """

    actions = ["deploy_at_full_traffic", "start_ab_test", "set_traffic", "archive", "rollback", "set_baseline"]
    traffic_actions = TRAFFIC_ACTIONS

    @admin.action(description="Start an A/B test of the selected model", permissions=["deploy"])
    def start_ab_test(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        return self.run_traffic_action(request, queryset, self.traffic_actions["start_ab_test"])


admin.site.unregister(RegisteredModel)
admin.site.register(RegisteredModel, RegisteredModelAdmin)
