"""The set-based engine behind funnel events: three statements per batch, whatever its size.

The batch's labels are locked and read first, in id order, so that concurrent batches wait for
each other instead of deadlocking. Each label's new funnel (a stage set where it was empty, or
moved earlier) and score are worked out in memory; one ``UPDATE ... FROM`` writes them, touching
each label once; the models' counters move through ``model_counters_add``. Events a full counter
cannot take are named by :class:`EventsRefused`.
"""

import datetime
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from outcomes.models import STAGES, OutcomeLabel
from outcomes.scoring import quality_score_of
from registry.services import Counts, model_counters_add
from registry.services.performance import CounterOverflow

SQLITE_ROWS_PER_STATEMENT = 1000  # 13 parameters a row at most stays well under SQLite's 32,766 limit
COUNTED = {"replied": "replies", "meeting_booked": "meetings_booked", "deal_closed": "deals_closed"}

EventValues = tuple[datetime.datetime, float | None, Decimal | None]


@dataclass
class EventBatch:
    """Valid events of one call, deduplicated: per (external id, type) the earliest wins."""

    items: dict[int, tuple[str, str]] = field(default_factory=dict)
    by_kind: dict[str, dict[str, EventValues]] = field(default_factory=lambda: defaultdict(dict))

    def add(
        self,
        index: int,
        external_id: str,
        kind: str,
        occurred_at: datetime.datetime,
        sentiment: float | None,
        value: Decimal | None,
    ) -> None:
        self.items[index] = (external_id, kind)
        current = self.by_kind[kind].get(external_id)
        if current is None or occurred_at < current[0]:
            self.by_kind[kind][external_id] = (
                occurred_at,
                sentiment if sentiment is not None else (current[1] if current else None),
                value if value is not None else (current[2] if current else None),
            )

    @property
    def external_ids(self) -> set[str]:
        return {external_id for external_id, _ in self.items.values()}


@dataclass
class BatchOutcome:
    found: dict[str, str]
    changed: set[tuple[str, str]]
    models_touched: set[uuid.UUID]


class EventsRefused(Exception):
    """Counted events a model's counters have no room for: ``refused`` holds their (external id, type).

    Raised before any counter moved; the caller rolls the batch back and applies it without them.
    The events that still fit, in the batch's order, are kept.
    """

    def __init__(self, refused: set[tuple[str, str]], overflow: CounterOverflow) -> None:
        super().__init__(overflow.message)
        self.refused = refused
        self.overflow = overflow


LOCKED_COLUMNS = ("id", "external_id", "model_id", *STAGES.values(), "reply_sentiment", "deal_value", "icp_match_score")


def lock_labels(organization_id: uuid.UUID, external_ids: set[str]) -> dict[str, dict[str, Any]]:
    """Lock the organization's labels of these external ids in id order; their funnels by external id.

    Every writer of labels takes its locks in this order before it updates them, so two batches
    that share labels wait for each other rather than deadlock. The rows read here are the rows
    the batch then writes: nobody else can change them until it commits.
    """
    labels = OutcomeLabel.objects.filter(organization_id=organization_id, external_id__in=external_ids)
    locked = labels.select_for_update(no_key=True).order_by("pk").values(*LOCKED_COLUMNS)
    return {row["external_id"]: row for row in locked}


def apply_event_batch(
    connection: BaseDatabaseWrapper, *, organization_id: uuid.UUID, batch: EventBatch
) -> BatchOutcome:
    """Apply ``batch`` to one organization's labels; call inside a transaction.

    The new funnel of every label is worked out from its locked row; then one statement writes
    the stages, the sentiment and value and the new score of every changed label, touching each once.
    """
    rows = lock_labels(organization_id, batch.external_ids)
    changed: set[tuple[str, str]] = set()
    counted: dict[uuid.UUID, dict[tuple[str, str], Counts]] = defaultdict(dict)
    touched: dict[str, dict[str, Any]] = {}
    for kind, events in batch.by_kind.items():
        for external_id, values in events.items():
            row = rows.get(external_id)
            if row is None or not _apply(row, kind, values):
                continue
            changed.add((external_id, kind))
            touched[external_id] = row
            if row["_first"] and row["model_id"] is not None and kind in COUNTED:
                _count(counted[_as_uuid(row["model_id"])].setdefault((external_id, kind), Counts()), kind, row)
    if touched:
        _write(connection, [STAGES[kind] for kind in batch.by_kind], list(touched.values()))
    _add_counters(batch, counted)
    found = {external_id: str(row["id"]) for external_id, row in rows.items()}
    return BatchOutcome(found=found, changed=changed, models_touched=set(counted))


def _apply(row: dict[str, Any], kind: str, values: EventValues) -> bool:
    """Apply one event to a locked row in memory: whether it changed (``row["_first"]``: first time)."""
    column, (occurred_at, sentiment, value) = STAGES[kind], values
    current = row[column]
    row["_first"] = current is None
    if current is not None and current <= occurred_at:
        return False
    row[column] = occurred_at
    if row["_first"] and kind == "replied" and sentiment is not None:
        row["reply_sentiment"] = sentiment
    if row["_first"] and kind == "deal_closed" and value is not None:
        row["deal_value"] = value
    return True


def _add_counters(batch: EventBatch, counted: dict[uuid.UUID, dict[tuple[str, str], Counts]]) -> None:
    """Move the models' counters: each model gains the sum of its counted events.

    When a counter has no room for the sum, the events that still fit, in the batch's order, are
    kept and the others refused (:class:`EventsRefused`).
    """
    increments: dict[uuid.UUID, Counts] = defaultdict(Counts)
    for model_id, events in counted.items():
        for counts in events.values():
            increments[model_id].add(counts)
    try:
        model_counters_add(increments=increments)
    except CounterOverflow as exc:
        first = {event: index for index, event in sorted(batch.items.items(), reverse=True)}
        refused: set[tuple[str, str]] = set()
        for model_id, room in exc.room.items():
            for event in sorted(counted[model_id], key=first.__getitem__):
                if not room.take(counted[model_id][event]):
                    refused.add(event)
        raise EventsRefused(refused, exc) from exc


def _count(counter: Counts, kind: str, row: dict[str, Any]) -> None:
    setattr(counter, COUNTED[kind], getattr(counter, COUNTED[kind]) + 1)
    if kind == "deal_closed" and row["deal_value"] is not None:
        counter.revenue += Decimal(str(row["deal_value"]))


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _write(connection: BaseDatabaseWrapper, stages: list[str], rows: list[dict[str, Any]]) -> None:
    """One ``UPDATE ... FROM`` of the batch's stage columns, sentiment, value and score, by id."""
    columns = [*stages, "reply_sentiment", "deal_value", "quality_score"]
    for row in rows:
        row["quality_score"] = quality_score_of(row)
    sets = ", ".join(f"{column} = v.{column}" for column in columns) + ", updated_at = CURRENT_TIMESTAMP"
    if connection.vendor == "postgresql":
        types = [*(["timestamptz[]"] * len(stages)), "float8[]", "numeric[]", "float8[]"]
        arrays = ", ".join(f"%s::{kind}" for kind in ["uuid[]", *types])
        sql = (
            f"UPDATE outcome_labels AS o SET {sets} "  # noqa: S608 - column names come from STAGES
            f"FROM unnest({arrays}) AS v(id, {', '.join(columns)}) WHERE o.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [[row[column] for row in rows] for column in ["id", *columns]])
        return
    for start in range(0, len(rows), SQLITE_ROWS_PER_STATEMENT):
        _write_sqlite(connection, sets, columns, rows[start : start + SQLITE_ROWS_PER_STATEMENT])


def _write_sqlite(connection: BaseDatabaseWrapper, sets: str, columns: list[str], rows: list[dict[str, Any]]) -> None:
    ops = connection.ops
    adapt = {"reply_sentiment": float, "quality_score": float}
    params: list[Any] = []
    for row in rows:
        params.append(row["id"].hex)
        for column in columns:
            value = row[column]
            if value is None or column in adapt:
                params.append(value)
            elif column == "deal_value":
                params.append(ops.adapt_decimalfield_value(value, 14, 2))
            else:
                params.append(ops.adapt_datetimefield_value(value))
    marks = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
    sql = (
        f"WITH v(id, {', '.join(columns)}) AS (VALUES {', '.join([marks] * len(rows))}) "  # noqa: S608
        f"UPDATE outcome_labels AS o SET {sets} FROM v WHERE o.id = v.id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
