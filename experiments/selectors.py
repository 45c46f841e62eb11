"""Reads of A/B experiments: the look reached, the arms' counts, the decision as it stands.

Nothing here saves: :mod:`experiments.services` records what these return. The arms' counts come
from the outcomes app's :func:`outcomes.selectors.arm_counts`, one aggregate query per look.
"""

import datetime
import uuid
from dataclasses import replace

from django.conf import settings
from django.utils import timezone

from experiments.models import Experiment
from experiments.stats import ArmCounts, Decision, decide
from flywheel.errors import NotFound
from flywheel.models import Organization
from outcomes.selectors import arm_counts
from registry.models import pool_key

EMPTY_ARM = ArmCounts(messages=0, replies=0, meetings=0, deals=0, revenue=0.0, unsubscribes=0)


def experiment_look(experiment: Experiment, *, now: datetime.datetime | None = None) -> int:
    """The look the experiment has reached: whole intervals of matured messages, at most ``planned_looks``."""
    matured = (now or timezone.now()) - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)
    intervals = (matured - experiment.started_at) // datetime.timedelta(days=experiment.look_interval_days)
    return max(0, min(intervals, experiment.planned_looks))


def experiment_window(experiment: Experiment, *, look: int) -> tuple[datetime.datetime, datetime.datetime]:
    """The send times ``[start, end)`` that look ``look`` counts: its first ``look`` intervals."""
    end = experiment.started_at + datetime.timedelta(days=experiment.look_interval_days * look)
    return experiment.started_at, end


def experiment_arm_counts(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts]:
    """The control's and the variant's counts at ``look`` (by default the look reached ``now``).

    Replies, meetings, deals and unsubscribes count the messages that reached each stage,
    revenue sums the value of closed deals.
    """
    look = experiment_look(experiment, now=now) if look is None else look
    start, end = experiment_window(experiment, look=look)
    counts = arm_counts(model_ids=[experiment.control_id, experiment.variant_id], sent_from=start, sent_before=end)
    arms = {model_id: ArmCounts(**row) for model_id, row in counts.items()}
    return arms.get(experiment.control_id, EMPTY_ARM), arms.get(experiment.variant_id, EMPTY_ARM)


def experiment_decision(
    experiment: Experiment, *, look: int | None = None, now: datetime.datetime | None = None
) -> tuple[ArmCounts, ArmCounts, Decision]:
    """The arms' counts and the test's decision at ``look`` (by default the current one), without saving."""
    look = experiment_look(experiment, now=now) if look is None else look
    control, variant = experiment_arm_counts(experiment, look=look)
    decision = decide(
        control,
        variant,
        look=look,
        planned_looks=experiment.planned_looks,
        expected_variant_share=experiment.planned_variant_share,
    )
    return control, variant, _concluded(decision)


def _concluded(decision: Decision) -> Decision:
    """At the last planned look, a variant that did not win has lost: the control stays.

    :func:`~experiments.stats.decide` leaves such a look undecided, but the design has no later
    look (more data would be a look the boundary did not budget for), so the test ends there.
    """
    final = decision.look >= decision.planned_looks
    if not final or decision.promote or decision.stopped or decision.winner is not None:
        return decision
    why = f"the {decision.planned_looks} planned looks are over without a significant win: the control stays"
    return replace(decision, winner="control", reasons=[*decision.reasons, why], additional_messages_needed=None)


def running_experiment(organization: Organization | None, *, lock: bool = False) -> Experiment:
    """The experiment running in the organization's pool (the global pool for ``None``).

    With ``lock``, its row is locked until the transaction ends. Raises :class:`NotFound` when
    there is none.
    """
    experiments = Experiment.objects.select_related("control", "variant", "organization")
    if lock:
        experiments = experiments.select_for_update(of=("self",))
    pool = pool_key(organization.pk if organization else None)
    experiment = experiments.filter(pool=pool, status=Experiment.Status.RUNNING).first()
    if experiment is None:
        where = f"organization {organization.slug}" if organization else "the global pool"
        raise NotFound(f"No A/B test is running in {where}; start one by deploying a model as a variant.")
    return experiment


def experiment_running_in_pool(organization_id: uuid.UUID | str | None) -> bool:
    """Whether an experiment runs in the pool of ``organization_id`` (``None``: the global pool)."""
    return Experiment.objects.filter(pool=pool_key(organization_id), status=Experiment.Status.RUNNING).exists()
