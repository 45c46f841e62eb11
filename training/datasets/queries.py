"""The export's SQL: the deduplicated pool, the SFT examples, and rows streamed by column name.

Every statement is assembled from constants and its values travel as parameters. A query's
select list is generated from the fields of the row type it fills (:class:`SftRow`, or
:class:`~training.datasets.pairs.DpoRow`), so the code that reads a row names its columns.
"""

from __future__ import annotations

import datetime
import math
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple, TypeVar

from django.db import connection
from django.db.models import Case, CharField, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery, Value, When

from outcomes.models import OutcomeLabel, TrainingText
from outcomes.selectors import NEGATIVE_QUALITY_BELOW, example_kind, matured_before, ranked_pool, training_data_stats

Row = TypeVar("Row")

CHUNK_SIZE = 2000
POSITIVE, NEGATIVE = 1, -1
HELD_OUT = "held_out"

OUTCOME_NAME = Case(
    When(deal_closed_at__isnull=False, then=Value("deal closed")),
    When(Q(meeting_completed_at__isnull=False) | Q(meeting_booked_at__isnull=False), then=Value("meeting booked")),
    When(replied_at__isnull=False, then=Value("reply")),
    When(bounced_at__isnull=False, then=Value("bounced")),
    default=Value("no reply"),
    output_field=CharField(),
)
CLOSED_A_DEAL = Case(When(deal_closed_at__isnull=False, then=Value(1)), default=Value(0), output_field=IntegerField())
SEGMENT_COLUMNS = ("industry", "role", "company_size", "framework", "tone", "channel")
# How the user message names each segment column ("Industry=SaaS, Role=..."), in the same order.
SEGMENT_LABELS = ("Industry", "Role", "Company size", "Framework", "Tone", "Channel")
TEXT_COLUMNS = ("subject", "body", "ideal_body", "first_name", "last_name", "company")
POOL_COLUMNS = (
    "id",
    "sent_at",
    "quality_score",
    "deal_value",
    "prompt",
    *SEGMENT_COLUMNS,
    *TEXT_COLUMNS,
    "training_tokens",
)


@dataclass(frozen=True)
class Selection:
    """Which labels an export reads, fixed at the start so that every query of one export agrees."""

    organization_id: uuid.UUID | str | None = None
    min_quality_score: float = 0.6
    include_negative_examples: bool = True
    outcome_conditioned: bool = False
    limit: int | None = None
    matured_at: datetime.datetime = field(default_factory=matured_before)
    # Whether the examples may come in the table's order (see :func:`table_order_query`).
    table_order: bool = False


def select_list(fields: Sequence[str], expressions: Mapping[str, str]) -> str:
    """A row type's fields as a select list, in order: ``expression AS field``, or the bare column."""
    return ", ".join(f"{expressions[name]} AS {name}" if name in expressions else name for name in fields)


@dataclass(frozen=True)
class ExampleQuery:
    """A selection of examples as SQL: ``{prefix} SELECT {fields} FROM {source} ORDER BY {order} LIMIT``.

    ``fields`` are the row type's, computed by ``expressions`` where they are not plain columns;
    ``time_key`` and ``id_key`` order examples by send time for the validation split, which is
    computed in SQL as the ``held_out`` field, so that no timestamp is fetched and parsed per row.
    """

    prefix: str
    params: Sequence[Any]
    source: str
    fields: Sequence[str]
    expressions: Mapping[str, str]
    order: str
    time_key: str
    id_key: str
    limit: int | None
    source_params: Sequence[Any] = ()  # the source's, which follow the select list's in the statement

    @property
    def in_table_order(self) -> bool:
        """Whether rows come in the table's order (no ``ORDER BY``), so a file's bytes depend on it."""
        return not self.order

    def select(self, columns: str, extra_params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        sql = f"{self.prefix} SELECT {columns} FROM {self.source}"  # noqa: S608 - constants
        if self.order:
            sql = f"{sql} ORDER BY {self.order}"
        params = [*self.params, *extra_params, *self.source_params]
        if self.limit:
            sql, params = f"{sql} LIMIT %s", [*params, self.limit]
        return sql, params

    def stream(self, cutoff: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
        """The streaming query; rows whose send-time key is at or after ``cutoff`` have held_out = 1."""
        if cutoff is None:
            return self.select(select_list(self.fields, {**self.expressions, HELD_OUT: "0"}))
        time_key, id_key = self.time_key, self.id_key
        held_out = f"CASE WHEN {time_key} > %s OR ({time_key} = %s AND {id_key} >= %s) THEN 1 ELSE 0 END"
        columns = select_list(self.fields, {**self.expressions, HELD_OUT: held_out})
        return self.select(columns, [cutoff[0], cutoff[0], cutoff[1]])

    def cutoff(self, percent: float) -> tuple[Any, Any] | None:
        """The send-time key of the oldest held-out example: the newest ``floor(count x percent / 100)`` are held out.

        The key comes back in the database's own types and goes back as a parameter, so it
        compares exactly as the database orders (SQLite keeps timestamps as text).
        """
        sql, params = self.select(f"{self.time_key} AS time_key, {self.id_key} AS id_key")
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT COUNT(*) FROM ({sql}) selected", params)  # noqa: S608 - constants
            held_out = math.floor(cursor.fetchone()[0] * percent / 100)
            if held_out == 0:
                return None
            cursor.execute(
                f"SELECT time_key, id_key FROM ({sql}) selected ORDER BY time_key DESC, id_key DESC LIMIT 1 OFFSET %s",  # noqa: S608
                [*params, held_out - 1],
            )
            key = cursor.fetchone()
        return key[0], key[1]


def pool_sql(selection: Selection, kinds: Sequence[int], columns: Sequence[str]) -> tuple[str, list[Any]]:
    """The deduplicated pool's labels of the given kinds: ``columns`` of the pool, kind, deal flag, outcome.

    Django applies a ``filter()`` before a window function, so the kinds are selected in an outer
    query: duplicates collapse across the whole pool first, and a template that won as a positive
    never comes back as a negative.
    """
    ranked = ranked_pool(organization_id=selection.organization_id).annotate(
        kind=example_kind(selection.min_quality_score, selection.matured_at),
        deal=CLOSED_A_DEAL,
        outcome=OUTCOME_NAME if selection.outcome_conditioned else Value("", output_field=CharField()),
    )
    sql, params = ranked.values(*columns, "text_rank", "kind").query.sql_with_params()
    wanted = ", ".join(str(int(kind)) for kind in kinds)
    return f"SELECT * FROM ({sql}) ranked WHERE text_rank = 1 AND kind IN ({wanted})", list(params)  # noqa: S608


class SftRow(NamedTuple):
    """One SFT example as :func:`sft_query` reads it from the pool.

    ``target`` is the training text (the reviewer's ideal body, else the body), chosen in SQL;
    ``training_tokens`` the count its label stored when it was written (None if it has none).
    """

    prompt: str
    industry: str
    role: str
    company_size: str
    framework: str
    tone: str
    channel: str
    subject: str
    target: str
    first_name: str
    last_name: str
    company: str
    kind: int
    deal: int
    outcome: str
    held_out: int
    training_tokens: int | None = None

    @property
    def segment(self) -> tuple[str, ...]:
        """The segment's attributes, in :data:`SEGMENT_COLUMNS` order."""
        return (self.industry, self.role, self.company_size, self.framework, self.tone, self.channel)


class SftMetadata(NamedTuple):
    """The seed's ``metadata`` columns, which follow an :class:`SftRow`'s when an export asks for them.

    Every column costs parsing on every row, so an export without metadata never selects them.
    """

    quality_score: float
    outcome_id: Any
    deal_value: Decimal | None

    @classmethod
    def split(cls, values: Sequence[Any]) -> tuple[SftRow, SftMetadata]:
        """A row of :func:`sft_query` with metadata: the SftRow fields, then these."""
        end = len(SftRow._fields)
        return SftRow._make(values[:end]), cls._make(values[end:])


# The pool's labels are ranked on the narrow pool index; their texts are read by id afterwards.
LABELS_BY_ID = "best JOIN outcome_labels l ON l.id = best.id"
BEST_FIRST = "best.quality_score DESC, best.sent_at DESC, best.id DESC"
BEST_OF_POOL = "quality_score DESC, sent_at DESC, id DESC"
SFT_EXPRESSIONS = {
    "target": "COALESCE(NULLIF(l.ideal_body, ''), l.body)",
    "outcome_id": "best.id",
    "quality_score": "best.quality_score",
    "deal_value": "l.deal_value",
}
RANK_COLUMNS = ("id", "sent_at", "quality_score", "deal", "outcome")


def best_first_query(selection: Selection, kinds: Sequence[int], fields: Sequence[str]) -> ExampleQuery:
    """The pool's labels of ``kinds``, best first, each row's ``fields`` read from its label.

    The duplicate collapse and the classes need only the pool index's columns, so PostgreSQL
    ranks the pool on that index alone and sorts the narrow ranked rows; each winner's texts
    are then read by id, in that order, so no sort ever carries the texts. A selection that may
    come in the table's order, with no limit to choose the best, is :func:`table_order_query`'s.
    """
    if selection.table_order and selection.limit is None and selection.organization_id is not None:
        return table_order_query(selection, kinds, fields)
    pool, params = pool_sql(selection, kinds, RANK_COLUMNS)
    return ExampleQuery(
        prefix=f"WITH best AS (SELECT * FROM ({pool}) pool ORDER BY {BEST_OF_POOL})",  # noqa: S608 - constants
        params=params,
        source=LABELS_BY_ID,
        fields=fields,
        expressions=SFT_EXPRESSIONS,
        order=BEST_FIRST,
        time_key="best.sent_at",
        id_key="best.id",
        limit=selection.limit,
    )


# What a row of :func:`table_order_query` reads of its label, beside its class, deal flag and outcome.
LABEL_COLUMNS = (*POOL_COLUMNS, "texts_ready", "training_text_hash")
TABLE_ORDER_SOURCE = (
    "({labels}) l CROSS JOIN LATERAL (SELECT l.id, l.sent_at, l.quality_score, l.example_kind AS kind, "
    "l.example_deal AS deal, l.example_outcome AS outcome) best"
)


def pool_winners(organization_id: uuid.UUID | str | None) -> QuerySet[OutcomeLabel]:
    """The pool's labels that count, unranked: alone with their text, or the best of a marked text."""
    same_text = {"organization_id": OuterRef("organization_id"), "training_text_hash": OuterRef("training_text_hash")}
    best_of_text = (
        OutcomeLabel.objects.filter(**same_text)
        .eligible_for_training()
        .order_by(F("quality_score").desc(), F("sent_at").desc(), F("id").desc())
        .values("id")[:1]
    )
    marked = TrainingText.objects.filter(**same_text, duplicated=True)
    labels = OutcomeLabel.objects.for_pool(organization_id).eligible_for_training().order_by()
    return labels.filter(~Exists(marked) | Q(id=Subquery(best_of_text)))


def table_order_query(selection: Selection, kinds: Sequence[int], fields: Sequence[str]) -> ExampleQuery:
    """An organization's pool of ``kinds`` in the table's order: one pass over its rows, no sort.

    A label whose text no other label of the organization has carried (the database marks the
    others, :class:`~outcomes.models.TrainingText`) is its text's best; a label of a marked text
    is kept when it is the best of its text (one probe of the pool index). The rows' order is the
    table's, which updates change, so a file written from it is described by an order-free digest.
    The row's columns are the label's (``l``) and its pool columns (``best``), as in
    :func:`best_first_query`.
    """
    labels = pool_winners(selection.organization_id).annotate(
        example_kind=example_kind(selection.min_quality_score, selection.matured_at),
        example_deal=CLOSED_A_DEAL,
        example_outcome=OUTCOME_NAME if selection.outcome_conditioned else Value("", output_field=CharField()),
    )
    columns = (*LABEL_COLUMNS, "example_kind", "example_deal", "example_outcome")
    sql, params = labels.filter(example_kind__in=list(kinds)).values(*columns).query.sql_with_params()
    return ExampleQuery(
        prefix="",
        params=[],
        source=TABLE_ORDER_SOURCE.format(labels=sql),
        source_params=list(params),
        fields=fields,
        expressions=SFT_EXPRESSIONS,
        order="",
        time_key="best.sent_at",
        id_key="best.id",
        limit=None,
    )


def sft_query(selection: Selection, *, include_metadata: bool = False) -> ExampleQuery:
    """Positives, plus matured negatives when outcome-conditioned; best first."""
    kinds = [POSITIVE]
    if selection.outcome_conditioned and selection.include_negative_examples:
        kinds.append(NEGATIVE)
    fields = (*SftRow._fields, *SftMetadata._fields) if include_metadata else SftRow._fields
    return best_first_query(selection, kinds, fields)


def stream_rows(sql: str, params: Sequence[Any], *, make: Callable[[Sequence[Any]], Row]) -> Iterator[Row]:
    """Rows made by ``make`` (a row type's ``_make``), through a server-side cursor on PostgreSQL.

    SQLite's cursor is lazy anyway. Call inside ``transaction.atomic()``: outside a transaction
    Django declares the cursor WITH HOLD, and PostgreSQL materializes the whole result first.
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK_SIZE):
            yield from map(make, rows)


def dataset_counts(organization_id: uuid.UUID | str | None, min_quality_score: float) -> dict[str, int]:
    """How many examples an export of the pool would write, by method (for "are there enough?").

    ``sft``: positives; ``sft_outcome_conditioned``: positives and matured negatives; ``dpo``: one
    pair per matured negative, as long as the pool has at least one positive to pair it with.
    A KTO export writes as many rows as ``sft_outcome_conditioned`` examples.
    """
    stats = training_data_stats(organization_id=organization_id, min_quality_score=min_quality_score)
    positives, negatives = stats["positive_examples"], stats["negative_examples"]
    return {
        "total": stats["total_examples"],
        "positive": positives,
        "negative": negatives,
        "neutral": stats["neutral_examples"],
        "sft": positives,
        "sft_outcome_conditioned": positives + negatives,
        "dpo": negatives if positives else 0,
    }


def export_size_bound(
    organization_id: uuid.UUID | str | None, min_quality_score: float, *, positives: bool, negatives: bool
) -> int:
    """At most how many examples an export writes: a cheap bound for a progress line, not a count.

    Counts the pool's labels scored as positives (at or above the threshold) and as negatives
    (below 0.2) through the ``(organization, quality_score)`` index, without the duplicate
    collapse, the bounced, excluded and maturity rules or a DPO pair's partner: each of those
    only lowers the true number. The exact numbers are :func:`dataset_counts`, a full pass.
    """
    labels = OutcomeLabel.objects.for_pool(organization_id).order_by()
    bound = labels.filter(quality_score__gte=min_quality_score).count() if positives else 0
    if negatives:
        bound += labels.filter(quality_score__lt=min(NEGATIVE_QUALITY_BELOW, min_quality_score)).count()
    return bound
