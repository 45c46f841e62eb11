"""Performance counters and the pool's baseline comparisons.

Counter updates are not audited: they are numbers, not decisions, and arrive on the hot path of
outcome ingestion. The ``*_vs_baseline`` columns are refreshed in the same transaction. A sum that
would pass a counter's column is refused with :class:`CounterOverflow` before anything is written.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import connection, transaction
from django.db import models as db_models
from django.db.models import F, QuerySet
from django.utils import timezone

from flywheel.errors import ApplicationError, Conflict, NotFound
from registry.models import RegisteredModel
from registry.services.pool import Action, Actor, PoolStep, lock_pool, lock_target


def _revenue(value: Decimal | float | int | str) -> Decimal:
    try:
        revenue = Decimal(str(value))
    except InvalidOperation:
        raise ApplicationError(f"Revenue {value!r} is not a number.") from None
    if not revenue.is_finite() or revenue < 0:
        raise ApplicationError(f"Revenue must be a finite amount of at least 0, not {value}.")
    return revenue


# Each field of :class:`Counts` adds to one column of ``model_registry``.
COUNTER_COLUMNS = {
    "messages_sent": "total_messages_sent",
    "replies": "total_replies",
    "meetings_booked": "total_meetings_booked",
    "deals_closed": "total_deals_closed",
    "revenue": "total_revenue",
}


@dataclass
class Counts:
    """What to add to one model's performance counters."""

    messages_sent: int = 0
    replies: int = 0
    meetings_booked: int = 0
    deals_closed: int = 0
    revenue: Decimal = Decimal(0)

    def add(self, other: "Counts") -> None:
        """Add ``other`` to these counts."""
        for name in COUNTER_COLUMNS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def take(self, other: "Counts") -> bool:
        """Take ``other`` out of these counts (room left on counters) if all of it fits; whether it did."""
        if any(getattr(other, name) > getattr(self, name) for name in COUNTER_COLUMNS):
            return False
        for name in COUNTER_COLUMNS:
            setattr(self, name, getattr(self, name) - getattr(other, name))
        return True


class CounterOverflow(ApplicationError):
    """An increment that would take a counter past what its column holds; nothing was written.

    ``counters`` names, per model, the :class:`Counts` fields that cannot take their increment;
    ``room`` is what each of those models can still take (see :meth:`Counts.take`).
    """

    code = "counter_overflow"

    def __init__(self, counters: dict[uuid.UUID, set[str]], room: dict[uuid.UUID, Counts]) -> None:
        details = {str(pk): sorted(COUNTER_COLUMNS[name] for name in names) for pk, names in counters.items()}
        super().__init__("A model's performance counter is at its maximum.", details=details)
        self.counters = counters
        self.room = room


def counter_ceiling(column: str) -> Decimal | int:
    """The largest value the counter ``column`` of ``model_registry`` holds."""
    field = RegisteredModel._meta.get_field(column)
    assert isinstance(field, db_models.Field)
    if isinstance(field, db_models.DecimalField):
        assert field.max_digits is not None and field.decimal_places is not None
        return Decimal(10) ** (field.max_digits - field.decimal_places) - Decimal(10) ** -field.decimal_places
    return connection.ops.integer_field_range(field.get_internal_type())[1]


def _check_ceilings(current: Mapping[str, Mapping[str, Any]], increments: Mapping[uuid.UUID, Counts]) -> None:
    """Raise :class:`CounterOverflow` when a locked row's counter plus its increment passes the column."""
    over: dict[uuid.UUID, set[str]] = {}
    room: dict[uuid.UUID, Counts] = {}
    for model_id, counts in increments.items():
        row = current.get(str(model_id))
        if row is None:
            continue
        left: dict[str, Any] = {
            name: max(counter_ceiling(column) - row[column], 0) for name, column in COUNTER_COLUMNS.items()
        }
        names = {name for name in COUNTER_COLUMNS if getattr(counts, name) > left[name]}
        if names:
            over[model_id], room[model_id] = names, Counts(**left)
    if over:
        raise CounterOverflow(over, room)


def _locked_counters(ids: list[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """Lock the models' rows in id order; their pool and current counters, by id as text."""
    locked = RegisteredModel.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("id")
    return {str(row["id"]): row for row in locked.values("id", "organization_id", *COUNTER_COLUMNS.values())}


def _increment(models: QuerySet[RegisteredModel], counts: Counts) -> int:
    return models.update(
        total_messages_sent=F("total_messages_sent") + counts.messages_sent,
        total_replies=F("total_replies") + counts.replies,
        total_meetings_booked=F("total_meetings_booked") + counts.meetings_booked,
        total_deals_closed=F("total_deals_closed") + counts.deals_closed,
        total_revenue=F("total_revenue") + counts.revenue,
        updated_at=timezone.now(),
    )


@transaction.atomic(savepoint=False)  # on the ingestion hot path: no savepoint round trips
def model_counters_add(*, increments: Mapping[uuid.UUID, Counts]) -> None:
    """Add outcome counts to models' counters, then refresh each touched pool's baseline comparisons.

    The callers count each outcome once (their conditional writes say what changed); this is the
    only place the counters move. Rows are locked in id order, so concurrent batches that touch
    the same models cannot deadlock on them; a sum that would pass a column raises
    :class:`CounterOverflow` before any counter moves.
    """
    ids = sorted(increments, key=str)
    if not ids:
        return
    current = _locked_counters(ids)
    _check_ceilings(current, increments)
    for model_id in ids:
        _increment(RegisteredModel.objects.filter(pk=model_id), increments[model_id])
    for organization_id in sorted({row["organization_id"] for row in current.values()}, key=str):
        baseline_refresh(organization_id=organization_id)


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

    Deltas cannot be negative, no counter may end up above the messages sent nor past its column;
    all are refused with an :class:`ApplicationError` before the database would refuse them. The rates
    follow from the counters; the pool's baseline comparisons are refreshed.
    """
    deltas = {"messages_sent": messages_sent, "replies": replies, "meetings_booked": meetings_booked}
    deltas["deals_closed"] = deals_closed
    negative = sorted(name for name, value in deltas.items() if value < 0)
    if negative:
        raise ApplicationError(f"Performance deltas cannot be negative: {', '.join(negative)}.")
    amount = _revenue(revenue)
    counts = Counts(messages_sent, replies, meetings_booked, deals_closed, amount)
    _check_ceilings(_locked_counters([model.pk]), {model.pk: counts})
    # The guard and the increment are one statement, so concurrent updates cannot both pass it.
    guarded = (
        RegisteredModel.objects.filter(pk=model.pk)
        .filter(total_replies__lte=F("total_messages_sent") + (messages_sent - replies))
        .filter(total_meetings_booked__lte=F("total_messages_sent") + (messages_sent - meetings_booked))
        .filter(total_deals_closed__lte=F("total_messages_sent") + (messages_sent - deals_closed))
    )
    updated = _increment(guarded, counts)
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
    deployed = lock_target(model, lock_pool(model.organization_id))
    if model.is_baseline:
        raise Conflict(f"{model.model_version} is already the baseline.")
    previous = RegisteredModel.objects.in_pool(model.organization_id).filter(is_baseline=True)
    replaced = ", ".join(previous.values_list("model_version", flat=True))
    previous.update(is_baseline=False, updated_at=timezone.now())
    step = PoolStep(deployed, actor, reason or (f"replaces {replaced}" if replaced else "first baseline"))
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
