"""Admin for A/B experiments: the evidence page, the action that applies it, deploys that start tests.

A running experiment is shown as it stands now (read, not saved), with its live progress
(:mod:`experiments.progress`), a finished one at the look that decided it; the chart of the
statistic against the alpha-spending boundary is an inline SVG computed here.
Experiments start with their A/B test and end through "Evaluate now and apply the decision",
which needs ``registry.deploy_model`` and confirms first (:func:`registry.services.dry_run`). The
registry's model admin is registered again here, with deploy actions that can start a test.
"""

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from experiments.models import Experiment
from experiments.progress import DAILY_RATES, progress_and_evidence
from experiments.services import (
    experiment_stop,
    model_deploy_or_start_test,
    promote_ab_test_winner,
    promotion_preview,
    traffic_change,
)
from experiments.stats import FIRST_DECISION_LOOK, ArmCounts, look_boundary
from flywheel import formatting
from flywheel.admin_helpers import PoolFilter, acting_user, confirmation_page, error_text, log_admin_action
from flywheel.errors import ApplicationError
from registry import admin as registry_admin
from registry.admin.audit import log_model_events, recorded_call
from registry.models import RegisteredModel
from registry.services import dry_run, recorded

CONFIRM_TEMPLATE = "admin/experiments/experiment/confirm_promote.html"
STOP_TEMPLATE = "admin/experiments/experiment/confirm_stop.html"
DEPLOY_PERMISSION = "registry.deploy_model"
FIELDS: list[str] = [
    "pool_display",
    "control",
    "variant",
    "status",
    "variant_share",
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


def planned_boundaries(planned_looks: int, fractions: list[float]) -> dict[int, float]:
    """The boundary at every look: spent on the fractions of the looks taken, equally spaced after them."""
    spread = list(fractions)
    for k in range(len(spread) + 1, planned_looks + 1):
        last = spread[-1] if spread else 0.0
        spread.append(last + (1.0 - last) / (planned_looks - k + 1))
    return {k: look_boundary(k, planned_looks, spread[:k]) or 0.0 for k in range(1, planned_looks + 1)}


def chart_data(progress: dict[str, Any], planned_looks: int, *, fractions: list[float]) -> dict[str, Any]:
    """What the page's two charts draw (Chart.js, from JSON): the statistic per look against the
    boundary, and each arm's cumulative reply, meeting and close rates per day of sending.

    The boundary starts at the first look that can decide; looks not taken yet carry no statistic
    (null), and days whose outcomes are still maturing are marked provisional.
    """
    bounds = planned_boundaries(planned_looks, fractions)
    first = min(FIRST_DECISION_LOOK, planned_looks)
    taken = {int(row["look"]): row["z"] for row in progress["series"]["looks"]}
    looks = range(1, planned_looks + 1)
    days = sorted({str(row["day"]) for row in progress["series"]["daily"]})
    by_arm: dict[str, dict[str, dict[str, Any]]] = {"control": {}, "variant": {}}
    for row in progress["series"]["daily"]:
        by_arm[row["arm"]][str(row["day"])] = row
    return {
        "looks": list(looks),
        "upper": [round(bounds[k], 4) if k >= first else None for k in looks],
        "statistic": [taken.get(k) for k in looks],
        "days": days,
        "provisional": [any(by_arm[arm].get(day, {}).get("provisional") for arm in by_arm) for day in days],
        "rates": {
            arm: {rate: [rows[day][rate] if day in rows else None for day in days] for rate in DAILY_RATES}
            for arm, rows in by_arm.items()
        },
    }


# --- The report ---------------------------------------------------------------------------------


def _arm_row(name: str, model: RegisteredModel, counts: ArmCounts) -> dict[str, Any]:
    rates = (counts.reply_rate, counts.meeting_rate, counts.close_rate, counts.unsubscribe_rate)
    return {
        "name": name,
        "model": model,
        "counts": counts,
        "rates": [formatting.percent(rate) for rate in rates],
        "score": counts.weighted_score,
    }


def _live_row(arm: dict[str, Any], part: str) -> dict[str, Any]:
    numbers = arm[part]
    rates = [formatting.percent_interval(numbers[name]) for name in ("reply_rate", "meeting_rate", "close_rate")]
    label = "all so far (provisional)" if numbers["provisional"] else "matured"
    return {"arm": arm["arm"], "version": arm["model_version"], "part": label, "numbers": numbers, "rates": rates}


def experiment_report(experiment: Experiment) -> dict[str, Any]:
    """What the change page shows: the live progress, the arms at the deciding look, the decision and the chart.

    A running experiment is evaluated as it stands (nothing is saved); a finished one is shown
    at the look of its recorded decision, with that decision.
    """
    running = experiment.status == Experiment.Status.RUNNING
    progress, evidence = progress_and_evidence(experiment)
    lift = progress["lift"]
    return {
        "running": running,
        "progress": progress,
        "live": [_live_row(arm, part) for part in ("all", "matured") for arm in progress["arms"]],
        "lift": {name: formatting.percent_interval(value) for name, value in lift.items()},
        "arms": [
            _arm_row("Control", experiment.control, evidence.control),
            _arm_row("Variant", experiment.variant, evidence.variant),
        ],
        "decision": progress["decision"],
        "srm_broken": progress["decision"].get("stopped", False),
        "charts": chart_data(progress, experiment.planned_looks, fractions=evidence.fractions),
    }


# --- The admin ----------------------------------------------------------------------------------


class ExperimentAdmin(admin.ModelAdmin[Experiment]):
    list_display = ["test", "pool_display", "status", "variant_share", "started_at", "look_display", "verdict"]
    list_filter = ["status", ("organization", PoolFilter)]
    list_select_related = ["control", "variant", "organization"]
    search_fields = ["control__model_version", "variant__model_version", "organization__slug"]
    date_hierarchy = "started_at"
    change_form_template = "admin/experiments/experiment/change_form.html"
    actions = ["promote_winner", "stop_test"]
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

    @admin.display(description="test", ordering="started_at")
    def test(self, experiment: Experiment) -> str:
        return f"{experiment.variant.model_version} vs {experiment.control.model_version}"

    @admin.display(description="pool", ordering="organization__name")
    def pool_display(self, experiment: Experiment) -> str:
        return formatting.pool_name(experiment.organization)

    @admin.display(description="variant share", ordering="planned_variant_share")
    def variant_share(self, experiment: Experiment) -> str:
        return formatting.percent(experiment.planned_variant_share)

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
                promote = functools.partial(
                    promote_ab_test_winner, organization=experiment.organization, actor=acting_user(request)
                )
                answer, events = recorded_call(promote)
            except ApplicationError as error:
                self.message_user(request, f"{experiment}: {error_text(error)}", messages.ERROR)
                continue
            log_model_events(request, events)
            log_admin_action(request, experiment, f"Evaluated now and applied the decision: {DONE[answer['action']]}")
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

    @admin.action(
        description="Stop the A/B test (the variant leaves; the control gets its traffic back)", permissions=["deploy"]
    )
    def stop_test(self, request: HttpRequest, queryset: QuerySet[Experiment]) -> HttpResponse | None:
        """Confirm first, with a required reason and the audit rows stopping would write; then stop."""
        experiments = list(queryset.filter(status=Experiment.Status.RUNNING).select_related("organization"))
        if not experiments:
            self.message_user(request, "None of the selected experiments is running.", messages.WARNING)
            return None
        form = StopForm(request.POST if "apply" in request.POST else None)
        actor = acting_user(request)
        if not form.is_valid():
            previews = [
                {"experiment": experiment, "events": dry_run(functools.partial(_stop, experiment, actor, "preview"))}
                for experiment in experiments
            ]
            return confirmation_page(
                self, request, template=STOP_TEMPLATE, title="Stop the A/B test: confirm", previews=previews, form=form
            )
        stopped = 0
        for experiment in experiments:
            reason = form.cleaned_data["reason"]
            try:
                events = recorded(functools.partial(_stop, experiment, actor, reason))
            except ApplicationError as error:
                self.message_user(request, f"{experiment}: {error_text(error)}", messages.ERROR)
                continue
            log_model_events(request, events)
            log_admin_action(request, experiment, f"Stopped the A/B test (reason: {reason})")
            stopped += 1
        if stopped:
            self.message_user(request, f"{stopped} experiment(s) stopped", messages.SUCCESS)
        return None


class StopForm(forms.Form):
    """What stopping a test asks: why, for the audit trail and the experiment's record."""

    reason = forms.CharField(max_length=1000, widget=forms.TextInput(attrs={"size": 60}))


def _stop(experiment: Experiment, actor: AbstractBaseUser, reason: str) -> None:
    experiment_stop(experiment=experiment, actor=actor, reason=reason)


admin.site.register(Experiment, ExperimentAdmin)


# --- The registry's models, deployed through the experiments --------------------------------------


def _deploy_full(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    model_deploy_or_start_test(
        model=models[0], traffic_percentage=100.0, actor=actor, reason=reason, override_experiment=override
    )


def _start_ab_test(
    models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
) -> None:
    model_deploy_or_start_test(
        model=models[0], traffic_percentage=share or 10.0, actor=actor, reason=reason, require_test=True
    )


def _guarded(name: str) -> Callable[..., None]:
    """The registry's action ``name``, refused when it touches a running A/B test unless overridden."""
    registry_call = registry_admin.ACTIONS[name].call

    def call(
        models: list[RegisteredModel], share: float | None, actor: AbstractBaseUser, reason: str, override: bool = False
    ) -> None:
        traffic_change(
            change=lambda: registry_call(models, share, actor, reason, False),
            actor=actor,
            override=override,
            reason=reason,
        )

    return call


TrafficAction = registry_admin.TrafficAction
TRAFFIC_ACTIONS = {
    **{name: replace(action, call=_guarded(name)) for name, action in registry_admin.ACTIONS.items()},
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
    page_actions = ("deploy_at_full_traffic", "start_ab_test", "rollback")

    @admin.action(description="Start an A/B test of the selected model", permissions=["deploy"])
    def start_ab_test(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        running = Experiment.objects.filter(variant__in=queryset, status=Experiment.Status.RUNNING)
        before = set(running.values_list("pk", flat=True))
        response = self.run_traffic_action(request, queryset, self.traffic_actions["start_ab_test"])
        for experiment in running.exclude(pk__in=before).select_related("control", "variant"):
            variant, control = experiment.variant.model_version, experiment.control.model_version
            message = f"Started: {variant} at {experiment.planned_variant_share * 100:g} % against {control}"
            log_admin_action(request, experiment, message, flag=ADDITION)
        return response


admin.site.unregister(RegisteredModel)
admin.site.register(RegisteredModel, RegisteredModelAdmin)
