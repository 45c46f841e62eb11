"""Every write to the model registry: registration, deployment and traffic, rollback, counters.

Each service is atomic and writes :class:`~registry.models.ModelEvent` rows (one per model it
changed, grouped by a ``batch`` id); the actor is a staff user, an API key principal or ``None``
for the system.

**Traffic invariant.** After any service, the deployed models of a pool (an organization, or the
global pool) have traffic summing to exactly 100, or nothing is deployed. Services that move
traffic lock the pool first (:func:`_lock_pool`), compute the new configuration with
:mod:`registry.traffic`, write every changed row and bump ``Organization.routing_version`` in the
same transaction, so cached routing tables (:mod:`registry.routing`) see the change once it
commits.

**Rollback** (:func:`model_rollback`) undoes the pool's latest traffic-moving step by restoring
``ModelEvent.pool_before`` of that step's batch. A rollback is itself such a step, so a second
rollback undoes the first (it toggles; it does not walk further back in history). A rollback
that would redeploy a model which has failed since is refused.

**Baseline comparisons.** The ``*_vs_baseline`` columns are refreshed by :func:`baseline_refresh`,
which :func:`model_performance_update` and :func:`model_set_baseline` call in their transaction.
Code that moves the counters any other way must call ``baseline_refresh(organization_id=...)``
after the change (in its transaction, or right after it commits: the refresh reads committed
counters and is one statement). A comparison is NULL when the pool has no baseline,
the baseline has sent nothing or its rate is 0, or the model itself has sent nothing.

Performance counter updates are not audited: they are numbers, not decisions, and arrive on the
hot path of outcome ingestion.
"""

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeAlias

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from flywheel.auth import KeyPrincipal
from flywheel.errors import ApplicationError, Conflict, NotFound
from flywheel.models import Organization
from registry import traffic
from registry.models import ModelEvent, RegisteredModel

Actor: TypeAlias = AbstractBaseUser | KeyPrincipal | None
Status = RegisteredModel.Status
Action = ModelEvent.Action
Group = RegisteredModel.ABTestGroup

VERSION_PATTERN = re.compile(r"^v\d+\.\d+\.\d+$")
TRAINING_STATS = ("training_examples_count", "positive_examples", "deals_in_training")
UNDEPLOYABLE: dict[str, str] = {
    Status.TRAINING: "is still training",
    Status.FAILED: "has failed",
    Status.ARCHIVED: "is archived",
}

# The events that moved traffic: what model_rollback undoes.
TRAFFIC_MOVES = Q(action__in=[Action.DEPLOYED, Action.TRAFFIC_CHANGED, Action.PROMOTED, Action.ROLLED_BACK]) | Q(
    action__in=[Action.ARCHIVED, Action.FAILED], status_before=Status.DEPLOYED
)


# Set by recorded() (and so by dry_run()) to collect the audit rows the services write.
_collected_events: ContextVar[list[ModelEvent] | None] = ContextVar("registry_collected_events", default=None)


# --- Actors, pools and audit batches -----------------------------------------------------------


def _collect(events: list[ModelEvent]) -> None:
    sink = _collected_events.get()
    if sink is not None:
        sink.extend(events)


def recorded(call: Callable[[], object]) -> list[ModelEvent]:
    """Run ``call`` (one or more services) and return the audit rows it wrote, in order."""
    events: list[ModelEvent] = []
    token = _collected_events.set(events)
    try:
        call()
    finally:
        _collected_events.reset(token)
    return events


def dry_run(call: Callable[[], object]) -> list[ModelEvent]:
    """Run ``call`` (one or more services), undo it, and return the audit rows it wrote.

    The admin's confirmation pages and the commands' ``--dry-run`` show these: the same code
    and the same refusals as the real change, so a preview cannot drift from what happens.
    Domain errors propagate.
    """
    with transaction.atomic():
        events = recorded(call)
        transaction.set_rollback(True)
    return events


def actor_fields(actor: Actor) -> dict[str, Any]:
    """The ``actor_user``/``actor_label`` columns of an audit row for ``actor``."""
    if actor is None:
        return {"actor_user_id": None, "actor_label": "system"}
    if isinstance(actor, KeyPrincipal):
        return {"actor_user_id": None, "actor_label": str(actor)}
    # The username stays beside the foreign key, which is cleared if the user is deleted.
    return {"actor_user_id": actor.pk, "actor_label": actor.get_username()}


def _lock_pool(organization_id: uuid.UUID | None) -> list[RegisteredModel]:
    """Lock a pool against other traffic changes and return its deployed rows, ordered by id.

    Race: two deploys into a pool with nothing deployed yet would each lock an empty set of
    deployed rows, each see an empty pool and each take 100 %. So something that exists even
    then is locked first: the organization row, or, for the global pool (which has no row of its
    own), every global model, a set that includes the target of any other global write. Rows are
    locked in id order so two writers cannot deadlock; ``no_key`` keeps inserts that merely
    reference these rows (outcome labels) from waiting.
    """
    rows = RegisteredModel.objects.in_pool(organization_id).select_for_update(no_key=True).order_by("id")
    if organization_id is None:
        return [row for row in rows if row.status == Status.DEPLOYED]
    list(Organization.objects.select_for_update(no_key=True).filter(pk=organization_id).values_list("pk"))
    return list(rows.filter(status=Status.DEPLOYED))


def _lock_target(model: RegisteredModel, deployed: list[RegisteredModel]) -> list[RegisteredModel]:
    """Re-read ``model`` under a row lock, and put that instance in place of its row in ``deployed``.

    The caller's organization object stays attached (a refresh would drop it) so that the
    service can hand it the bumped routing version.
    """
    organization = _cached_organization(model)
    try:
        model.refresh_from_db(from_queryset=RegisteredModel.objects.select_for_update(no_key=True))
    except RegisteredModel.DoesNotExist:
        raise NotFound(f"Model {model.pk} does not exist.") from None
    if organization is not None:
        model.organization = organization
    return [model if row.pk == model.pk else row for row in deployed]


def bump_routing_version(organization_id: uuid.UUID | None) -> None:
    """Mark cached routing tables of the pool stale (every organization's, for the global pool).

    Every organization falls back to the global pool, so a change there concerns them all: one
    UPDATE bumps them together.
    """
    organizations = Organization.objects.all()
    if organization_id is not None:
        organizations = organizations.filter(pk=organization_id)
    organizations.update(routing_version=F("routing_version") + 1)


def _cached_organization(model: RegisteredModel) -> Organization | None:
    """The organization object the caller already loaded on ``model``, if any."""
    return model.organization if RegisteredModel.organization.is_cached(model) else None


def _refresh_routing_version(organization: Organization | None) -> None:
    """Give the caller's organization object the bumped version, so its next route is fresh."""
    if organization is not None:
        organization.refresh_from_db(fields=["routing_version"])


def configuration(deployed: list[RegisteredModel]) -> dict[str, list[Any]]:
    """A pool's deployed configuration as stored in ``ModelEvent.pool_before``."""
    return {str(row.pk): [row.traffic_percentage, row.ab_test_group] for row in deployed}


@dataclass
class _Step:
    """The changes one service call makes to a pool, audited as one batch."""

    deployed: list[RegisteredModel]
    actor: Actor
    reason: str
    batch: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[ModelEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pool_before = configuration(self.deployed)

    def change(self, model: RegisteredModel, *, action: str, status: str, traffic: float, **values: Any) -> None:
        """Save ``model`` with its new status, traffic and other ``values``; record the event."""
        reason = values.pop("reason", self.reason)
        event = ModelEvent(
            model=model,
            organization_id=model.organization_id,
            action=action,
            status_before=model.status,
            status_after=status,
            traffic_before=model.traffic_percentage,
            traffic_after=traffic,
            pool_before=self.pool_before,
            batch=self.batch,
            reason=reason,
            **actor_fields(self.actor),
        )
        if status == Status.DEPLOYED and model.status != Status.DEPLOYED:
            values["deployed_at"] = timezone.now()
        values.update(status=status, traffic_percentage=traffic)
        for name, value in values.items():
            setattr(model, name, value)
        model.save(update_fields=[*values, "updated_at"])
        self.events.append(event)

    def commit(self, *, moved_traffic: bool) -> list[ModelEvent]:
        """Write the audit rows; tell routing when traffic moved."""
        events = ModelEvent.objects.bulk_create(self.events)
        _collect(events)
        if moved_traffic:
            organization_ids = {event.organization_id for event in events}
            for organization_id in organization_ids:
                bump_routing_version(organization_id)
        return events


# --- Registration --------------------------------------------------------------------------------


def _training_stats(stats: dict[str, int] | None) -> dict[str, int]:
    """The seed's three training statistics, refusing unknown keys and negative counts."""
    stats = dict(stats or {})
    unknown = sorted(set(stats) - set(TRAINING_STATS))
    if unknown:
        raise ValidationError({"training_stats": f"Unknown training statistics: {', '.join(unknown)}."})
    if any(int(value) < 0 for value in stats.values()):
        raise ValidationError({"training_stats": "Training statistics cannot be negative."})
    return {name: int(value) for name, value in stats.items()}


@transaction.atomic
def model_register(
    *,
    model_id: str,
    model_version: str,
    base_model: str,
    organization: Organization | None = None,
    provider: str = "",
    fine_tuning_job_id: str = "",
    training_run_id: uuid.UUID | None = None,
    dataset_sha256: str = "",
    training_stats: dict[str, int] | None = None,
    actor: Actor = None,
    status: str = Status.READY,
) -> RegisteredModel:
    """Register a trained model (``ready``, or ``training`` while its job runs).

    Idempotent for a training run: a resumed run that registers again gets the model it
    registered the first time, whatever else it passes.
    """
    if training_run_id is not None:
        existing = RegisteredModel.objects.filter(training_run_id=training_run_id).first()
        if existing is not None:
            return existing
    if not VERSION_PATTERN.match(model_version):
        raise ValidationError({"model_version": f"{model_version!r} is not a version like v2.1.0."})
    if status not in (Status.READY, Status.TRAINING):
        raise ValidationError({"status": "A model is registered as ready or training; deploy it afterwards."})
    model = RegisteredModel(
        model_id=model_id,
        model_version=model_version,
        base_model=base_model,
        organization=organization,
        status=status,
        provider=provider,
        fine_tuning_job_id=fine_tuning_job_id,
        training_run_id=training_run_id,
        dataset_sha256=dataset_sha256,
        **_training_stats(training_stats),
    )
    model.full_clean()
    return _insert_registered(model, actor=actor)


def _insert_registered(model: RegisteredModel, *, actor: Actor) -> RegisteredModel:
    """Insert a validated model and its ``registered`` event.

    A concurrent registration of the same training run can win between validation and insert;
    the unique constraint catches it and the winner's row is returned.
    """
    try:
        with transaction.atomic():
            model.save(force_insert=True)
    except IntegrityError:
        existing = RegisteredModel.objects.filter(training_run_id=model.training_run_id).first()
        if model.training_run_id is None or existing is None:
            raise
        return existing
    event = ModelEvent.objects.create(
        model=model,
        organization_id=model.organization_id,
        action=Action.REGISTERED,
        status_after=model.status,
        traffic_after=model.traffic_percentage,
        reason=f"{model.model_id} from {model.base_model}",
        **actor_fields(actor),
    )
    _collect([event])
    return model


@transaction.atomic
def model_mark_ready(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Mark a model registered while training as ready to deploy."""
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    if model.status != Status.TRAINING:
        raise Conflict(f"{model.model_version} is {model.status}, not training.")
    step = _Step(deployed, actor, reason)
    step.change(model, action=Action.REGISTERED, status=Status.READY, traffic=0.0, reason=reason or "training done")
    step.commit(moved_traffic=False)
    return model


# --- Deployment and traffic ----------------------------------------------------------------------


def _deploy(
    step: _Step,
    model: RegisteredModel,
    plan: dict[Any, float],
    *,
    action: str,
    group: str | None,
    others_group: str | None = None,
) -> None:
    """Apply ``plan`` to the pool: ``model`` joins or changes, the others rescale or leave.

    Models that are deployed but absent from the plan are archived (replaced at 100 %).
    """
    if step.pool_before.get(str(model.pk)) == [plan[model.pk], model.ab_test_group if group is None else group]:
        raise Conflict(f"{model.model_version} already has {plan[model.pk]} % of the traffic.")
    for row in step.deployed:
        if row.pk == model.pk:
            continue
        if row.pk not in plan:
            why = f"replaced by {model.model_version} at 100 %"
            step.change(row, action=Action.ARCHIVED, status=Status.ARCHIVED, traffic=0.0, reason=why)
        elif plan[row.pk] != row.traffic_percentage or others_group not in (None, row.ab_test_group):
            group_value = {"ab_test_group": others_group} if others_group is not None else {}
            step.change(row, action=Action.TRAFFIC_CHANGED, status=Status.DEPLOYED, traffic=plan[row.pk], **group_value)
    group_value = {"ab_test_group": group} if group is not None else {}
    step.change(model, action=action, status=Status.DEPLOYED, traffic=plan[model.pk], **group_value)
    step.commit(moved_traffic=True)


def _deployable(model: RegisteredModel) -> None:
    if model.status in UNDEPLOYABLE:
        raise Conflict(f"{model.model_version} {UNDEPLOYABLE[model.status]} and cannot be deployed.")


def _check_group(group: str) -> str:
    if group and group not in Group.values:
        raise ApplicationError(f"Unknown A/B test group {group!r}; use one of {', '.join(Group.values)}.")
    return group


@transaction.atomic
def model_deploy(
    *,
    model: RegisteredModel,
    traffic_percentage: float = 100.0,
    ab_test_group: str = Group.CONTROL,
    actor: Actor = None,
    reason: str = "",
) -> RegisteredModel:
    """Deploy ``model`` at ``traffic_percentage`` % of its pool's traffic.

    At 100 % the previously deployed models are archived; below, they keep their proportions of
    the remaining traffic. Failed, archived and still-training models are refused, and so is a
    share below 100 % in a pool where nothing else is deployed. A new model deployed as a variant
    beside a single control starts an A/B test with its experiment (``experiment_start_on_deploy``).
    """
    _check_group(ab_test_group)
    # Imported here: registry.experiments builds on this module.
    from registry.experiments import experiment_start_on_deploy

    test = experiment_start_on_deploy(
        model=model, traffic_percentage=traffic_percentage, ab_test_group=ab_test_group, actor=actor, reason=reason
    )
    if test is not None:
        return model
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    _deployable(model)
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic_percentage)
    action = Action.TRAFFIC_CHANGED if model.status == Status.DEPLOYED else Action.DEPLOYED
    _deploy(_Step(deployed, actor, reason), model, plan, action=action, group=ab_test_group)
    _refresh_routing_version(_cached_organization(model))
    return model


@transaction.atomic
def model_promote(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Give ``model`` 100 % of its pool as the new control (an A/B test's winner); archive the rest."""
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    _deployable(model)
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic.FULL)
    _deploy(_Step(deployed, actor, reason), model, plan, action=Action.PROMOTED, group=Group.CONTROL)
    _refresh_routing_version(_cached_organization(model))
    return model


@transaction.atomic
def model_start_ab_test(
    *, variant: RegisteredModel, variant_traffic: float = 10.0, actor: Actor = None, reason: str = ""
) -> RegisteredModel:
    """Start an A/B test: ``variant`` takes ``variant_traffic`` % as variant A, the deployed become control.

    The pool must already serve traffic (the control) and the variant must not be deployed yet.
    """
    share = traffic.clean_percentage(variant_traffic, allow_full=False)
    deployed = _lock_target(variant, _lock_pool(variant.organization_id))
    _deployable(variant)
    if variant.status == Status.DEPLOYED:
        raise Conflict(f"{variant.model_version} is already deployed; set its traffic instead.")
    if not deployed:
        raise Conflict("Nothing is deployed in this pool, so there is no control to test against.")
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, variant.pk, share)
    step = _Step(deployed, actor, reason or f"A/B test at {share} %")
    _deploy(step, variant, plan, action=Action.DEPLOYED, group=Group.VARIANT_A, others_group=Group.CONTROL)
    _refresh_routing_version(_cached_organization(variant))
    return variant


@transaction.atomic
def model_set_traffic(
    *, model: RegisteredModel, traffic_percentage: float, actor: Actor = None, reason: str = ""
) -> RegisteredModel:
    """Give a deployed model ``traffic_percentage`` %; the others rescale to the rest.

    The only deployed model cannot go below 100 %, and 100 % archives the others.
    """
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    if model.status != Status.DEPLOYED:
        raise Conflict(f"{model.model_version} is {model.status}; deploy it first.")
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic_percentage)
    _deploy(_Step(deployed, actor, reason), model, plan, action=Action.TRAFFIC_CHANGED, group=None)
    _refresh_routing_version(_cached_organization(model))
    return model


# --- Leaving the pool ----------------------------------------------------------------------------


def _retire(model: RegisteredModel, *, status: str, action: str, actor: Actor, reason: str, **values: Any) -> None:
    """Take ``model`` out of service with ``status``; if it served traffic, the others share it."""
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    if model.status == status:
        raise Conflict(f"{model.model_version} is already {status}.")
    step = _Step(deployed, actor, reason)
    was_deployed = model.status == Status.DEPLOYED
    if was_deployed:
        plan = traffic.plan_remove({row.pk: row.traffic_percentage for row in deployed}, model.pk)
        for row in deployed:
            if row.pk != model.pk and plan[row.pk] != row.traffic_percentage:
                why = f"took over the traffic of {model.model_version}"
                step.change(
                    row, action=Action.TRAFFIC_CHANGED, status=Status.DEPLOYED, traffic=plan[row.pk], reason=why
                )
        if not plan:
            reason = f"{reason}; the pool has no deployed model now".lstrip("; ")
    step.change(model, action=action, status=status, traffic=0.0, reason=reason, **values)
    step.commit(moved_traffic=was_deployed)
    if was_deployed:
        _refresh_routing_version(_cached_organization(model))


@transaction.atomic
def model_archive(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Archive a model. A deployed one gives its traffic to the others in proportion to theirs.

    Archiving the last deployed model is allowed and leaves its pool with nothing deployed
    (routing falls back to the global pool); the audit reason says so.
    """
    _retire(model, status=Status.ARCHIVED, action=Action.ARCHIVED, actor=actor, reason=reason)
    return model


@transaction.atomic
def model_mark_failed(*, model: RegisteredModel, error: str, actor: Actor = None) -> RegisteredModel:
    """Mark a model failed (its training, or the model itself); a deployed one leaves the pool."""
    _retire(model, status=Status.FAILED, action=Action.FAILED, actor=actor, reason=error, error=error)
    return model


# --- Rollback ------------------------------------------------------------------------------------


def last_traffic_step(organization_id: uuid.UUID | None) -> list[ModelEvent]:
    """The audit rows of the pool's latest traffic-moving batch (empty when there is none)."""
    events = ModelEvent.objects.filter(TRAFFIC_MOVES)
    events = (
        events.filter(organization__isnull=True)
        if organization_id is None
        else events.filter(organization_id=organization_id)
    )
    latest = events.order_by("-id").first()
    if latest is None:
        return []
    return list(ModelEvent.objects.filter(batch=latest.batch).select_related("model").order_by("id"))


def _restorable(step: list[ModelEvent]) -> dict[uuid.UUID, RegisteredModel]:
    """Lock the models the step's ``pool_before`` deployed; refuse any that cannot serve again."""
    ids = [uuid.UUID(pk) for pk in step[0].pool_before]
    rows = {
        row.pk: row for row in RegisteredModel.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("id")
    }
    missing = [str(pk) for pk in ids if pk not in rows]
    if missing:
        raise Conflict(f"Cannot roll back: model(s) {', '.join(missing)} no longer exist.")
    for row in rows.values():
        if row.status in (Status.FAILED, Status.TRAINING):
            raise Conflict(f"Cannot roll back: {row.model_version} {UNDEPLOYABLE[row.status]} since.")
    return rows


@transaction.atomic
def model_rollback(*, organization: Organization | None, actor: Actor = None, reason: str = "") -> list[ModelEvent]:
    """Restore the pool's deployed configuration from before its latest traffic-moving step.

    ``organization`` ``None`` is the global pool. Models the step brought in go back to the
    status they had before it; models it took out come back with their traffic and group. A
    second rollback undoes the first. Returns the ``rolled_back`` audit rows.
    """
    organization_id = organization.pk if organization is not None else None
    deployed = _lock_pool(organization_id)
    step_events = last_traffic_step(organization_id)
    if not step_events:
        raise Conflict("There is no traffic change to roll back in this pool.")
    restore = _restorable(step_events)
    undone = step_events[-1]
    why = f"undoes {undone.get_action_display().lower()} of {undone.model.model_version} ({undone.batch})"
    step = _Step(deployed, actor, f"{reason}; {why}".lstrip("; "))
    _restore(step, restore, step_events)
    if not step.events:
        raise Conflict("The pool already has the configuration a rollback would restore.")
    events = step.commit(moved_traffic=True)
    _refresh_routing_version(organization)
    return events


def _restore(step: _Step, restore: dict[uuid.UUID, RegisteredModel], step_events: list[ModelEvent]) -> None:
    """Write the rollback: leaving models take their status from before the undone step."""
    before = step_events[0].pool_before
    status_before = {event.model_id: event.status_before for event in step_events}
    for row in step.deployed:
        if row.pk not in restore:
            status = status_before.get(row.pk) or Status.READY
            status = Status.READY if status == Status.DEPLOYED else status
            step.change(row, action=Action.ROLLED_BACK, status=status, traffic=0.0)
    for pk, row in restore.items():
        share, group = before[str(pk)]
        if (row.status, row.traffic_percentage, row.ab_test_group) != (Status.DEPLOYED, share, group):
            step.change(row, action=Action.ROLLED_BACK, status=Status.DEPLOYED, traffic=share, ab_test_group=group)


# --- Performance counters and the baseline -------------------------------------------------------


def _revenue(value: Decimal | float | int | str) -> Decimal:
    try:
        revenue = Decimal(str(value))
    except InvalidOperation:
        raise ApplicationError(f"Revenue {value!r} is not a number.") from None
    if not revenue.is_finite() or revenue < 0:
        raise ApplicationError(f"Revenue must be a finite amount of at least 0, not {value}.")
    return revenue


@transaction.atomic
def model_performance_update(
    *,
    model: RegisteredModel,
    messages_sent: int = 0,
    replies: int = 0,
    meetings_booked: int = 0,
    deals_closed: int = 0,
    revenue: Decimal | float | int | str = 0,
) -> RegisteredModel:
    """Add performance deltas to a model's counters atomically (the seed's ``update_model_performance``).

    Deltas cannot be negative, and no counter may end up above the messages sent; both are
    refused with an :class:`ApplicationError` before the database would refuse them. The rates
    follow from the counters; the pool's baseline comparisons are refreshed.
    """
    deltas = {"messages_sent": messages_sent, "replies": replies, "meetings_booked": meetings_booked}
    deltas["deals_closed"] = deals_closed
    negative = sorted(name for name, value in deltas.items() if value < 0)
    if negative:
        raise ApplicationError(f"Performance deltas cannot be negative: {', '.join(negative)}.")
    amount = _revenue(revenue)
    # The guard and the increment are one statement, so concurrent updates cannot both pass it.
    updated = (
        RegisteredModel.objects.filter(pk=model.pk)
        .filter(total_replies__lte=F("total_messages_sent") + (messages_sent - replies))
        .filter(total_meetings_booked__lte=F("total_messages_sent") + (messages_sent - meetings_booked))
        .filter(total_deals_closed__lte=F("total_messages_sent") + (messages_sent - deals_closed))
        .update(
            total_messages_sent=F("total_messages_sent") + messages_sent,
            total_replies=F("total_replies") + replies,
            total_meetings_booked=F("total_meetings_booked") + meetings_booked,
            total_deals_closed=F("total_deals_closed") + deals_closed,
            total_revenue=F("total_revenue") + amount,
            updated_at=timezone.now(),
        )
    )
    if updated != 1:
        _explain_refused_update(model)
    baseline_refresh(organization_id=model.organization_id)
    model.refresh_from_db()
    return model


def _explain_refused_update(model: RegisteredModel) -> None:
    if not RegisteredModel.objects.filter(pk=model.pk).exists():
        raise NotFound(f"Model {model.pk} does not exist.")
    raise ApplicationError(
        "Replies, meetings and deals cannot outnumber the messages sent.", code="counters_exceed_messages"
    )


@transaction.atomic
def model_set_baseline(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Make ``model`` its pool's baseline (replacing the previous one) and refresh the comparisons."""
    deployed = _lock_target(model, _lock_pool(model.organization_id))
    if model.is_baseline:
        raise Conflict(f"{model.model_version} is already the baseline.")
    previous = RegisteredModel.objects.in_pool(model.organization_id).filter(is_baseline=True)
    replaced = ", ".join(previous.values_list("model_version", flat=True))
    previous.update(is_baseline=False, updated_at=timezone.now())
    step = _Step(deployed, actor, reason or (f"replaces {replaced}" if replaced else "first baseline"))
    step.change(
        model,
        action=Action.BASELINE_SET,
        status=model.status,
        traffic=model.traffic_percentage,
        is_baseline=True,
    )
    step.commit(moved_traffic=False)
    baseline_refresh(organization_id=model.organization_id)
    model.refresh_from_db()
    return model


def _vs_baseline_sql(rate: str, pool: str) -> str:
    """A correlated subquery: the row's ``rate`` as a percentage difference from the baseline's.

    Correlated on the row being updated (rather than joined) so that PostgreSQL re-evaluates it
    on the row's latest version when a concurrent counter update made it wait.
    """
    return (
        f"(SELECT CASE WHEN model_registry.total_messages_sent > 0 AND b.{rate} > 0 "  # noqa: S608
        f"THEN (model_registry.{rate} - b.{rate}) / b.{rate} * 100 END "
        f"FROM model_registry AS b WHERE b.is_baseline AND b.total_messages_sent > 0 AND {pool.format(table='b')})"
    )


def baseline_refresh(*, organization_id: uuid.UUID | str | None) -> int:
    """Recompute the ``*_vs_baseline`` columns of every model in a pool; return how many changed.

    One set-based UPDATE. It only writes rows whose comparison changes, so a counter update on
    one model locks no other row unless the baseline itself moved: concurrent updates of
    different models in a pool do not deadlock.
    """
    pool = "{table}.organization_id IS NULL"
    params: list[Any] = []
    if organization_id is not None:
        pool = "{table}.organization_id = %s"
        field = RegisteredModel._meta.get_field("organization")
        params = [field.get_db_prep_value(organization_id, connection)]
    rates = ("reply_rate", "meeting_rate", "close_rate")
    assignments = ", ".join(f"{rate}_vs_baseline = {_vs_baseline_sql(rate, pool)}" for rate in rates)
    changed = " OR ".join(f"{rate}_vs_baseline IS DISTINCT FROM {_vs_baseline_sql(rate, pool)}" for rate in rates)
    # Only constant column names are formatted in; the organization id is a parameter.
    sql = f"UPDATE model_registry SET {assignments} WHERE {pool.format(table='model_registry')} AND ({changed})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params * 3 + params + params * 3)
        return cursor.rowcount
