"""Rollback: undo a pool's latest traffic-moving step by restoring the configuration before it.

A rollback is itself such a step, so a second rollback undoes the first: it toggles, it does not
walk further back in history.
"""

import uuid

from django.db import transaction

from flywheel.errors import Conflict
from flywheel.models import Organization
from registry.models import ModelEvent, RegisteredModel
from registry.services.pool import (
    TRAFFIC_MOVES,
    UNDEPLOYABLE,
    Action,
    Actor,
    PoolStep,
    Status,
    lock_pool,
    refresh_routing_version,
)


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
    deployed = lock_pool(organization_id)
    step_events = last_traffic_step(organization_id)
    if not step_events:
        raise Conflict("There is no traffic change to roll back in this pool.")
    restore = _restorable(step_events)
    undone = step_events[-1]
    why = f"undoes {undone.get_action_display().lower()} of {undone.model.model_version} ({undone.batch})"
    step = PoolStep(deployed, actor, f"{reason}; {why}".lstrip("; "))
    _restore(step, restore, step_events)
    if not step.events:
        raise Conflict("The pool already has the configuration a rollback would restore.")
    events = step.commit(moved_traffic=True)
    refresh_routing_version(organization)
    return events


def _restore(step: PoolStep, restore: dict[uuid.UUID, RegisteredModel], step_events: list[ModelEvent]) -> None:
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
