"""The set-based engine behind funnel events: a few statements per batch, whatever its size.

The batch's labels are locked first, in id order, so that concurrent batches wait for each other
instead of deadlocking. Then per event type one conditional ``UPDATE ... RETURNING`` sets the
stage's time where it is still empty (only the rows it returns move counters) and one moves a set
time earlier; then one score update for the touched labels and the counters through
``model_counters_add``. Events a full counter cannot take are named by :class:`EventsRefused`.
"""

import datetime
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from outcomes.models import STAGES, OutcomeLabel
from outcomes.scoring import quality_score_expression
from registry.services import Counts, model_counters_add
from registry.services.performance import CounterOverflow

SQLITE_ROWS_PER_STATEMENT = 2000  # 4 parameters a row stays well under SQLite's 32,766 limit
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


def lock_labels(organization_id: uuid.UUID, external_ids: set[str]) -> dict[str, str]:
    """Lock the organization's labels of these external ids in id order; their ids by external id.

    Every writer of labels takes its locks in this order before it updates them, so two batches
    that share labels wait for each other rather than deadlock.
    """
    labels = OutcomeLabel.objects.filter(organization_id=organization_id, external_id__in=external_ids)
    locked = labels.select_for_update(no_key=True).order_by("pk").values_list("external_id", "pk")
    return {external_id: str(pk) for external_id, pk in locked}


def apply_event_batch(
    connection: BaseDatabaseWrapper, *, organization_id: uuid.UUID, batch: EventBatch
) -> BatchOutcome:
    """Apply ``batch`` to one organization's labels; call inside a transaction."""
    found = lock_labels(organization_id, batch.external_ids)
    changed: set[tuple[str, str]] = set()
    touched: set[str] = set()
    counted: dict[uuid.UUID, dict[tuple[str, str], Counts]] = defaultdict(dict)
    for kind, rows in batch.by_kind.items():
        rows = {external_id: values for external_id, values in rows.items() if external_id in found}
        if not rows:
            continue
        for label_id, external_id, model_id, deal_value in _run(
            connection, _set_first_sql, kind, organization_id, rows
        ):
            changed.add((external_id, kind))
            touched.add(label_id)
            if model_id is not None and kind in COUNTED:
                _count(counted[_as_uuid(model_id)].setdefault((external_id, kind), Counts()), kind, deal_value)
        for label_id, external_id, *_ in _run(connection, _move_earlier_sql, kind, organization_id, rows):
            changed.add((external_id, kind))
            touched.add(label_id)
    if touched:
        OutcomeLabel.objects.filter(pk__in=list(touched)).update(quality_score=quality_score_expression())
    _add_counters(batch, counted)
    return BatchOutcome(found=found, changed=changed, models_touched=set(counted))


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


def _count(counter: Counts, kind: str, deal_value: Any) -> None:
    setattr(counter, COUNTED[kind], getattr(counter, COUNTED[kind]) + 1)
    if kind == "deal_closed" and deal_value is not None:
        counter.revenue += Decimal(str(deal_value))


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _set_first_sql(kind: str) -> tuple[str, str]:
    column = STAGES[kind]
    extra = ""
    if kind == "replied":
        extra = ", reply_sentiment = COALESCE(v.sentiment, o.reply_sentiment)"
    elif kind == "deal_closed":
        extra = ", deal_value = COALESCE(v.value, o.deal_value)"
    sets = f"{column} = v.ts{extra}, updated_at = CURRENT_TIMESTAMP"
    return sets, f"o.{column} IS NULL"


def _move_earlier_sql(kind: str) -> tuple[str, str]:
    column = STAGES[kind]
    return f"{column} = v.ts", f"o.{column} > v.ts"


def _run(
    connection: BaseDatabaseWrapper,
    builder: Any,
    kind: str,
    organization_id: uuid.UUID,
    rows: dict[str, EventValues],
) -> list[tuple[str, str, Any, Any]]:
    sets, condition = builder(kind)
    returning = "RETURNING id, external_id, model_id, deal_value"
    org = OutcomeLabel._meta.get_field("organization").target_field.get_db_prep_value(organization_id, connection)
    out: list[tuple[str, str, Any, Any]] = []
    if connection.vendor == "postgresql":
        sql = (
            f"UPDATE outcome_labels AS o SET {sets} "  # noqa: S608 - column names come from STAGES
            "FROM unnest(%s::text[], %s::timestamptz[], %s::float8[], %s::numeric[]) AS v(ext, ts, sentiment, value) "
            f"WHERE o.organization_id = %s AND o.external_id = v.ext AND {condition} {returning}"
        )
        columns = list(zip(*[(ext, *values) for ext, values in rows.items()], strict=True))
        with connection.cursor() as cursor:
            cursor.execute(sql, [list(column) for column in columns] + [org])
            out.extend((str(r[0]), r[1], r[2], r[3]) for r in cursor.fetchall())
        return out
    items = list(rows.items())
    for start in range(0, len(items), SQLITE_ROWS_PER_STATEMENT):
        out.extend(
            _run_sqlite(connection, sets, condition, returning, org, items[start : start + SQLITE_ROWS_PER_STATEMENT])
        )
    return out


def _run_sqlite(
    connection: BaseDatabaseWrapper,
    sets: str,
    condition: str,
    returning: str,
    org: Any,
    items: list[tuple[str, EventValues]],
) -> list[tuple[str, str, Any, Any]]:
    ops = connection.ops
    params: list[Any] = []
    for ext, (ts, sentiment, value) in items:
        params += [ext, ops.adapt_datetimefield_value(ts), sentiment, ops.adapt_decimalfield_value(value, 14, 2)]
    values = ", ".join(["(?, ?, ?, ?)"] * len(items)).replace("?", "%s")
    sql = (
        f"WITH v(ext, ts, sentiment, value) AS (VALUES {values}) "  # noqa: S608 - names from STAGES
        f"UPDATE outcome_labels AS o SET {sets} FROM v "
        f"WHERE o.organization_id = %s AND o.external_id = v.ext AND {condition} {returning}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, org])
        return [(str(r[0]), r[1], r[2], r[3]) for r in cursor.fetchall()]
