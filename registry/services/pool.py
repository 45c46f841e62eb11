"""Locking a traffic pool and writing one audited step of changes to it.

Every registry service that changes a model runs in a transaction, locks its pool here, and
writes its changes through a :class:`PoolStep`, which saves the rows, records one
:class:`~registry.models.ModelEvent` per changed model (grouped by a ``batch`` id) and tells
routing when traffic moved.
"""

import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from flywheel.auth import KeyPrincipal
from flywheel.errors import Conflict, NotFound
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services.serving import adapter_load, adapter_unload_after_commit

Actor: TypeAlias = AbstractBaseUser | KeyPrincipal | None
Status = RegisteredModel.Status
Action = ModelEvent.Action
Group = RegisteredModel.ABTestGroup

UNDEPLOYABLE: dict[str, str] = {
    Status.TRAINING: "is still training",
    Status.FAILED: "has failed",
    Status.ARCHIVED: "is archived",
}

NO_GROUP = ""
VARIANTS = (Group.VARIANT_A, Group.VARIANT_B)

# The events that moved traffic: what model_rollback undoes.
TRAFFIC_MOVES = Q(action__in=[Action.DEPLOYED, Action.TRAFFIC_CHANGED, Action.PROMOTED, Action.ROLLED_BACK]) | Q(
    action__in=[Action.ARCHIVED, Action.FAILED], status_before=Status.DEPLOYED
)


# Set by recorded() (and so by dry_run()) to collect the audit rows the services write.
_collected_events: ContextVar[list[ModelEvent] | None] = ContextVar("registry_collected_events", default=None)
# Set by dry_run(): a preview touches no serving server.
_previewing: ContextVar[bool] = ContextVar("registry_previewing", default=False)


# --- Actors, pools and audit batches -----------------------------------------------------------


def collect_events(events: list[ModelEvent]) -> None:
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
    previewing = _previewing.set(True)
    try:
        with transaction.atomic():
            events = recorded(call)
            transaction.set_rollback(True)
    finally:
        _previewing.reset(previewing)
    return events


def actor_fields(actor: Actor) -> dict[str, Any]:
    """The ``actor_user``/``actor_label`` columns of an audit row for ``actor``."""
    if actor is None:
        return {"actor_user_id": None, "actor_label": "system"}
    if isinstance(actor, KeyPrincipal):
        return {"actor_user_id": None, "actor_label": str(actor)}
    # The username stays beside the foreign key, which is cleared if the user is deleted.
    return {"actor_user_id": actor.pk, "actor_label": actor.get_username()}


def lock_pool(organization_id: uuid.UUID | None) -> list[RegisteredModel]:
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


def lock_target(model: RegisteredModel, deployed: list[RegisteredModel]) -> list[RegisteredModel]:
    """Re-read ``model`` under a row lock, and put that instance in place of its row in ``deployed``.

    The caller's organization object stays attached (a refresh would drop it) so that the
    service can hand it the bumped routing version.
    """
    organization = cached_organization(model)
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


def cached_organization(model: RegisteredModel) -> Organization | None:
    """The organization object the caller already loaded on ``model``, if any."""
    return model.organization if RegisteredModel.organization.is_cached(model) else None


def refresh_routing_version(organization: Organization | None) -> None:
    """Give the caller's organization object the bumped version, so its next route is fresh."""
    if organization is not None:
        organization.refresh_from_db(fields=["routing_version"])


def configuration(deployed: list[RegisteredModel]) -> dict[str, list[Any]]:
    """A pool's deployed configuration as stored in ``ModelEvent.pool_before``."""
    return {str(row.pk): [row.traffic_percentage, row.ab_test_group] for row in deployed}


@dataclass
class PoolStep:
    """The changes one service call makes to a pool, audited as one batch."""

    deployed: list[RegisteredModel]
    actor: Actor
    reason: str
    batch: uuid.UUID = field(default_factory=uuid.uuid4)
    events: list[ModelEvent] = field(default_factory=list)
    # The models changed so far, by id, with the fields to save.
    changed: dict[Any, tuple[RegisteredModel, set[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool_before = configuration(self.deployed)

    def change(self, model: RegisteredModel, *, action: str, status: str, traffic: float, **values: Any) -> None:
        """Give ``model`` its new status, traffic and other ``values``; record the event.

        The row is saved by :meth:`commit`. A model that leaves the pool leaves its A/B test
        group too: only deployed models carry one.
        """
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
            # The adapter goes into its server before the model gets traffic; a failed load
            # raises and the whole change rolls back.
            values.update(adapter_load(model) if not _previewing.get() else {}, deployed_at=timezone.now())
        elif status != Status.DEPLOYED and model.status == Status.DEPLOYED:
            adapter_unload_after_commit(model)  # after the commit: once no route can pick it
        if status != Status.DEPLOYED:
            values["ab_test_group"] = NO_GROUP
        values.update(status=status, traffic_percentage=traffic)
        for name, value in values.items():
            setattr(model, name, value)
        self.changed.setdefault(model.pk, (model, set()))[1].update([*values, "updated_at"])
        self.events.append(event)

    def settle_groups(self, *, keep_variants: bool = False) -> None:
        """Leave the pool with exactly one control, and variants only where ``keep_variants``.

        The control stays the model that is control now, the one with the most traffic among
        several (the earlier control on a tie); with none, the model with the most traffic.
        Variant groups are kept only by the start of an A/B test: every other traffic change
        in a pool ends its test (or is refused by the experiments app), so its variant goes.
        """
        pool = {row.pk: row for row in self.deployed}
        pool.update({pk: model for pk, (model, _) in self.changed.items()})
        deployed = [row for row in pool.values() if row.status == Status.DEPLOYED]
        if not deployed:
            return
        was_control = {pk for pk, (_, group) in self.pool_before.items() if group == Group.CONTROL}
        candidates = [row for row in deployed if row.ab_test_group == Group.CONTROL] or deployed
        control = max(candidates, key=lambda row: (row.traffic_percentage, str(row.pk) in was_control))
        for row in deployed:
            variant = keep_variants and row.ab_test_group in VARIANTS
            group = Group.CONTROL if row.pk == control.pk else row.ab_test_group if variant else NO_GROUP
            if row.ab_test_group == group:
                continue
            if row.pk in self.changed:
                row.ab_test_group = group
                self.changed[row.pk][1].add("ab_test_group")
            else:
                why = "the pool's control" if group == Group.CONTROL else "no longer in an A/B test"
                step_values = {"ab_test_group": group, "reason": f"{self.reason}; {why}".lstrip("; ")}
                self.change(
                    row,
                    action=Action.TRAFFIC_CHANGED,
                    status=Status.DEPLOYED,
                    **step_values,
                    traffic=row.traffic_percentage,
                )

    def commit(self, *, moved_traffic: bool, keep_variants: bool = False) -> list[ModelEvent]:
        """Save the changed rows and write the audit rows; when traffic moved, settle the groups and tell routing.

        Rows that are not the control are saved first, so that the database's one-control-per-pool
        index never sees two controls between two saves.
        """
        if moved_traffic:
            self.settle_groups(keep_variants=keep_variants)
        rows = sorted(self.changed.values(), key=lambda item: item[0].ab_test_group == Group.CONTROL)
        for model, fields in rows:
            model.save(update_fields=sorted(fields))
        events = ModelEvent.objects.bulk_create(self.events)
        collect_events(events)
        if moved_traffic:
            organization_ids = {event.organization_id for event in events}
            for organization_id in organization_ids:
                bump_routing_version(organization_id)
        return events


def model_record_test_end(*, models: list[RegisteredModel], actor: Actor, reason: str) -> list[ModelEvent]:
    """Audit the end of an A/B test on each of its arms, as they stand; nothing else changes.

    The experiments app calls it in the transaction that ends the test. These rows move no
    traffic, so a rollback passes over them.
    """
    batch = uuid.uuid4()
    events = [
        ModelEvent(
            model=model,
            organization_id=model.organization_id,
            action=Action.TEST_ENDED,
            status_before=model.status,
            status_after=model.status,
            traffic_before=model.traffic_percentage,
            traffic_after=model.traffic_percentage,
            batch=batch,
            reason=reason,
            **actor_fields(actor),
        )
        for model in models
    ]
    created = ModelEvent.objects.bulk_create(events)
    collect_events(created)
    return created


def check_deployable(model: RegisteredModel) -> None:
    if model.status in UNDEPLOYABLE:
        raise Conflict(f"{model.model_version} {UNDEPLOYABLE[model.status]} and cannot be deployed.")
