"""The promotion policies a simulation compares, each acting on Mondays through the real services.

* ``frozen`` never retrains: the base model writes every message.
* ``seed-rule`` is the specification's rule: train, A/B test the new model at 10 %, and after one
  week promote it when its performance score (0.5 close + 0.3 meeting + 0.2 reply rate of the
  week's messages of each arm, as reported so far) is more than 5 % above the control's, archive
  it otherwise.
* ``flywheel`` is the product: train, A/B test at 10 %, and let the sequential test decide
  (:func:`experiments.services.promote_ab_test_winner`, as the daily schedule does).
* ``oracle`` is an upper bound: train, then deploy whichever available model the hidden truth
  rates best.

Training goes through :func:`training.services.training_run_start` and the django-q2 task
functions the cluster would run, with tasks executed in this process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from experiments.models import Experiment
from experiments.selectors import experiment_arm_counts, running_experiment
from experiments.services import promote_ab_test_winner
from experiments.stats import improvement_percentage, naive_rule
from flywheel.errors import NotFound
from flywheel.models import Organization
from registry.models import RegisteredModel
from registry.services import model_archive, model_deploy, model_promote
from simulator.truth import Judge
from training.models import TrainingRun
from training.services import training_run_start
from training.tasks import advance_run, poll_run

AB_TEST_PERCENTAGE = 10.0
SEED_RULE_THRESHOLD = 5.0
MAX_STEPS = 50


@dataclass
class Monday:
    """What a policy did on a Monday: notes for the table, and its promotions judged by the truth."""

    notes: list[str] = field(default_factory=list)
    promotions: int = 0
    harmful: int = 0


@dataclass
class Desk:
    """What a policy works with: the simulation's organization, the truth, the week."""

    organization: Organization
    judge: Judge
    week: int

    def value(self, model: RegisteredModel) -> float:
        return self.judge.value(model_pk=str(model.pk), tuned=is_tuned(model), week=self.week)

    def judge_promotion(self, monday: Monday, winner: RegisteredModel, loser: RegisteredModel, how: str) -> None:
        """Count a promotion, harmful when the truth rates the winner below the model it replaced."""
        won, lost = self.value(winner), self.value(loser)
        monday.promotions += 1
        monday.harmful += int(won < lost)
        verdict = "harmful" if won < lost else "good" if won > lost else "neutral"
        monday.notes.append(
            f"{how} {winner.model_version} over {loser.model_version} ({verdict}: {won:.4f} vs {lost:.4f})"
        )


def is_tuned(model: RegisteredModel) -> bool:
    """Whether a training run made the model (else it is the base model the simulation started with)."""
    return model.training_run_id is not None


def training_cycle(*, organization: Organization, deploy: bool) -> TrainingRun:
    """Start a run and drive it to its end as the workers would; return it ended."""
    run = training_run_start(
        organization=organization,
        deploy_immediately=deploy,
        ab_test_percentage=AB_TEST_PERCENTAGE,
        triggered_by=TrainingRun.Trigger.COMMAND,
        actor=None,
    )
    for _ in range(MAX_STEPS):
        run.refresh_from_db()
        if not run.is_active:
            break
        # The task the cluster would run next: the enqueued step (run inline already when the
        # start committed) or the run's poll schedule while the provider trains.
        task = poll_run if run.status == TrainingRun.Status.TRAINING else advance_run
        task(str(run.pk))
    run.refresh_from_db()
    return run


def _train(desk: Desk, monday: Monday, *, deploy: bool) -> TrainingRun:
    run = training_cycle(organization=desk.organization, deploy=deploy)
    model = run.registered_model
    if run.status != TrainingRun.Status.SUCCEEDED or model is None:
        monday.notes.append(f"training {run.status}: {run.error}")
    elif deploy and run.deployed:
        monday.notes.append(f"{model.model_version} trained, A/B test at {AB_TEST_PERCENTAGE:g} %")
    else:
        monday.notes.append(f"{model.model_version} trained" + (" (test running)" if deploy else ""))
    return run


class Policy(Protocol):
    name: str

    def monday(self, desk: Desk) -> Monday: ...


class Frozen:
    name = "frozen"

    def monday(self, desk: Desk) -> Monday:
        return Monday()


class Flywheel:
    name = "flywheel"

    def monday(self, desk: Desk) -> Monday:
        monday = Monday()
        experiment = _running(desk.organization)
        if experiment is not None:
            answer = promote_ab_test_winner(organization=desk.organization)
            look = answer.get("look")
            if answer["action"] == "promoted":
                desk.judge_promotion(monday, experiment.variant, experiment.control, f"look {look}: promoted")
            elif answer["action"] != "none":
                monday.notes.append(f"look {look}: {answer['action']} {experiment.variant.model_version}")
            else:
                monday.notes.append(f"look {look}: {experiment.variant.model_version} undecided")
        _train(desk, monday, deploy=True)
        return monday


class SeedRule:
    name = "seed-rule"

    def monday(self, desk: Desk) -> Monday:
        monday = Monday()
        experiment = _running(desk.organization)
        if experiment is not None:
            control, variant = experiment.control, experiment.variant
            # The week's two arms, as reported so far: the rule looks once, after one week.
            arms = experiment_arm_counts(experiment, look=1)
            gain = improvement_percentage(arms[0].weighted_score, arms[1].weighted_score)
            if naive_rule(*arms, threshold_pct=SEED_RULE_THRESHOLD):
                model_promote(model=variant, reason=f"seed rule: score {gain:+.1f} % after one week")
                desk.judge_promotion(monday, variant, control, f"score {gain:+.1f} %: promoted")
            else:
                model_archive(model=variant, reason="seed rule: not 5 % better after one week")
                monday.notes.append(f"score {_percent(gain)}: archived {variant.model_version}")
            promote_ab_test_winner(organization=desk.organization)  # closes the experiment the rule ended
        _train(desk, monday, deploy=True)
        return monday


class Oracle:
    name = "oracle"

    def monday(self, desk: Desk) -> Monday:
        monday = Monday()
        _train(desk, monday, deploy=False)
        pool = RegisteredModel.objects.in_pool(desk.organization.pk)
        candidates = list(pool.filter(status__in=[RegisteredModel.Status.READY, RegisteredModel.Status.DEPLOYED]))
        best = max(candidates, key=desk.value)
        current = next((m for m in candidates if m.status == RegisteredModel.Status.DEPLOYED), None)
        if current is not None and best.pk != current.pk and desk.value(best) > desk.value(current):
            model_deploy(model=best, traffic_percentage=100.0, reason="oracle: best by the hidden truth")
            desk.judge_promotion(monday, best, current, "deployed")
        return monday


def _running(organization: Organization) -> Experiment | None:
    try:
        return running_experiment(organization)
    except NotFound:
        return None


def _percent(gain: float | None) -> str:
    return "n/a" if gain is None else f"{gain:+.1f} %"


POLICIES: dict[str, type[Policy]] = {p.name: p for p in (Frozen, SeedRule, Flywheel, Oracle)}
