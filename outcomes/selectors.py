"""Reads over outcome labels: the training pool, its example classes and the seed's statistics.

The pool that trains a model is every label of the organization (all organizations for the
global model) that a reviewer has not excluded, with exact-duplicate training texts collapsed
to one label. The classes below are shared by ``GET /training/stats`` and the dataset export,
so the statistics always describe what an export would write.
"""

import datetime
import uuid
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import Case, Count, Exists, F, IntegerField, OuterRef, Q, Sum, UUIDField, Value, When, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from outcomes.models import POOL_STAGE_COLUMNS, OutcomeLabel, OutcomeLabelQuerySet, TrainingText

# Below this score a matured message counts as a failure: the rubric gives 0.2 to a message that
# was delivered and opened but never answered, so a negative never got past an unanswered open.
NEGATIVE_QUALITY_BELOW = 0.2


def ranked_pool(*, organization_id: uuid.UUID | str | None = None) -> OutcomeLabelQuerySet:
    """Labels that may train the pool's model, each with ``text_rank``: 1 for the one that counts.

    Excluded labels never count. When several labels carry exactly the same training text (a
    template sent to many prospects, stored with placeholders), only the best-scoring one has
    rank 1: highest quality, then the most recent, then the highest id, so the choice is
    deterministic. Texts are compared by their MD5 (``training_text_hash``, kept by the database
    beside the text), which the pool index holds in this order: on PostgreSQL the rank is a walk
    of that index, never a sort of the texts. The rank is a window function computed in the same
    pass as the rows, so a caller can stream the pool in constant memory on SQLite and PostgreSQL.
    """
    best_first = [F("quality_score").desc(), F("sent_at").desc(), F("id").desc()]
    return (
        OutcomeLabel.objects.for_pool(organization_id)
        .eligible_for_training()
        .order_by()
        .annotate(text_rank=Window(RowNumber(), partition_by=[F("training_text_hash")], order_by=best_first))
    )


def training_pool(*, organization_id: uuid.UUID | str | None = None) -> OutcomeLabelQuerySet:
    """The pool itself: one label per distinct training text (see :func:`ranked_pool`).

    Filter it only through aggregates (as :func:`training_data_stats` does): Django applies a
    plain ``filter()`` before the window, which would collapse duplicates within the filtered
    rows only.
    """
    return ranked_pool(organization_id=organization_id).filter(Q(text_rank=1))  # Q: the stubs do not see annotations


STATS_COLUMNS = ("id", "quality_score", "sent_at", *POOL_STAGE_COLUMNS)
STATS_NAMES = ("total_examples", "positive_examples", "negative_examples", "deals_closed", "meetings_booked", "replies")
# The classes of positive_q and negative_q and the stages reached (a column's COUNT counts the rows where it
# is set), over a part's rows, each count times its sign.
STATS_SQL = """SELECT {sign} * COUNT(*) AS total_examples,
    {sign} * COUNT(*) FILTER (WHERE quality_score >= %s AND bounced_at IS NULL) AS positive_examples,
    {sign} * COUNT(*) FILTER (WHERE quality_score < %s AND sent_at <= %s) AS negative_examples,
    {sign} * COUNT(deal_closed_at) AS deals_closed,
    {sign} * COUNT(COALESCE(meeting_booked_at, meeting_completed_at)) AS meetings_booked,
    {sign} * COUNT(replied_at) AS replies
FROM ({rows}) rows"""
# The text hashes are split into this many ranges, walked apart and summed: PostgreSQL's parallel
# workers walk one range each (a Parallel Append), and without workers nothing is lost.
STATS_RANGES = 3
# The pool index's order: ``DISTINCT ON`` the text hash keeps each text's best label.
BEST_OF_EACH_TEXT = ("training_text_hash", "-quality_score", "-sent_at", "-id")


def _summed_counts(groups: list[list[tuple[int, OutcomeLabelQuerySet]]], min_quality_score: float) -> dict[str, int]:
    """The statistics' counts over parts of the pool, each added (sign 1) or taken away (-1), in one query.

    Each group's parts are summed in a subquery of its own, so that PostgreSQL plans the groups
    apart: a group of parallel-safe parts runs as one Parallel Append, whatever the others hold.
    The classes are :func:`positive_q` and :func:`negative_q` written in SQL; a test holds them equal.
    """
    matured_at = connection.ops.adapt_datetimefield_value(matured_before())
    classes = [min_quality_score, min(NEGATIVE_QUALITY_BELOW, min_quality_score), matured_at]
    sums = ", ".join(f"CAST(SUM({name}) AS BIGINT) AS {name}" for name in STATS_NAMES)
    subqueries, params = [], []
    for index, parts in enumerate(groups):
        statements = []
        for sign, rows in parts:
            sql, rows_params = rows.values(*STATS_COLUMNS).query.sql_with_params()
            statements.append(STATS_SQL.format(sign=int(sign), rows=sql))
            params += [*classes, *rows_params]
        subqueries.append(f"(SELECT {sums} FROM ({' UNION ALL '.join(statements)}) parts) group{index}")  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {' CROSS JOIN '.join(subqueries)}", params)  # noqa: S608 - constants
        row = cursor.fetchone()
    width = len(STATS_NAMES)
    return {
        name: sum(int(row[group * width + index] or 0) for group in range(len(groups)))
        for index, name in enumerate(STATS_NAMES)
    }


def _in_hash_ranges(labels: OutcomeLabelQuerySet) -> list[OutcomeLabelQuerySet]:
    """``labels`` split by ranges of their text's hash: every label of a text falls in one range."""
    parts = []
    for low, high in hash_ranges(STATS_RANGES):
        part = labels.filter(training_text_hash__gte=low) if low else labels
        parts.append(part.filter(training_text_hash__lt=high) if high else part)
    return parts


def _counts_beside_marked_texts(organization_id: uuid.UUID | str, min_quality_score: float) -> dict[str, int]:
    """An organization's counts: every label, less the labels of marked texts, plus each marked text's best.

    The database marks every text that more than one label of the organization has carried
    (:class:`~outcomes.models.TrainingText`), so a label whose text is not marked is its text's
    only label and needs no ranking. The pool's counts are then the plain counts of all its labels
    (walked off the pool index in ranges of hashes, by parallel workers on PostgreSQL), less the
    counts of the few labels of marked texts, plus the counts of the best label of each marked
    text. A test holds them equal to the ranked pool's counts.
    """
    labels = OutcomeLabel.objects.for_pool(organization_id).eligible_for_training().order_by()
    marked = TrainingText.objects.filter(
        organization_id=organization_id, training_text_hash=OuterRef("training_text_hash"), duplicated=True
    )
    of_marked = labels.filter(Exists(marked))
    if connection.features.can_distinct_on_fields:  # in the pool index's order: no sort, no rank per label
        best_of_marked = of_marked.order_by(*BEST_OF_EACH_TEXT).distinct("training_text_hash")
    else:
        best_of_marked = ranked_pool(organization_id=organization_id).filter(Exists(marked)).filter(Q(text_rank=1))
    everyone = [(1, part) for part in _in_hash_ranges(labels)]
    corrections = [(-1, of_marked), (1, best_of_marked)]
    return _summed_counts([everyone, corrections], min_quality_score)


def _counts_by_index_walk(organization_id: uuid.UUID | str | None, min_quality_score: float) -> dict[str, int]:
    """The statistics' counts on PostgreSQL: ``DISTINCT ON`` the text hash in the pool index's order.

    For the global pool, whose texts the marks do not cover across organizations. The label kept
    per text is the window's rank 1, without a rank per label; every label of a text lies in the
    same range of hashes, so the ranges' counts add up to the pool's.
    """
    labels = OutcomeLabel.objects.for_pool(organization_id).eligible_for_training()
    ranges = [part.order_by(*BEST_OF_EACH_TEXT).distinct("training_text_hash") for part in _in_hash_ranges(labels)]
    return _summed_counts([[(1, part) for part in ranges]], min_quality_score)


def hash_ranges(count: int) -> list[tuple[uuid.UUID | None, uuid.UUID | None]]:
    """``count`` ranges of UUIDs that cover them all, in order: (None, b1), (b1, b2), ..., (b, None)."""
    bounds = [uuid.UUID(int=index * (1 << 128) // count) for index in range(1, count)]
    return list(zip([None, *bounds], [*bounds, None], strict=True))


def matured_before(now: datetime.datetime | None = None) -> datetime.datetime:
    """Send times before this have had ``OUTCOME_MATURATION_DAYS`` for their outcome to arrive."""
    return (now or timezone.now()) - datetime.timedelta(days=settings.OUTCOME_MATURATION_DAYS)


def positive_q(min_quality_score: float) -> Q:
    """Positive examples: quality at or above the threshold, and never a bounced message."""
    return Q(quality_score__gte=min_quality_score, bounced_at__isnull=True)


def negative_q(min_quality_score: float, matured_at: datetime.datetime) -> Q:
    """Negative examples: quality below 0.2 (and below the threshold) once the outcome has matured.

    A younger message with a low score may still get its reply, so it is never a negative.
    """
    below = min(NEGATIVE_QUALITY_BELOW, min_quality_score)
    return Q(quality_score__lt=below, sent_at__lte=matured_at)


def example_kind(min_quality_score: float, matured_at: datetime.datetime) -> Case:
    """An expression classifying a label: 1 positive, -1 negative, 0 neutral."""
    return Case(
        When(positive_q(min_quality_score), then=Value(1)),
        When(negative_q(min_quality_score, matured_at), then=Value(-1)),
        default=Value(0),
        output_field=IntegerField(),
    )


def training_data_stats(
    *, organization_id: uuid.UUID | str | None = None, min_quality_score: float = 0.6
) -> dict[str, Any]:
    """The seed's ``GET /training/stats`` numbers for a pool.

    Definitions, all over :func:`training_pool` (not excluded, duplicate texts collapsed):

    - ``total_examples``: every label in the pool;
    - ``positive_examples``: quality >= ``min_quality_score`` and not bounced;
    - ``negative_examples``: quality < 0.2 (and < the threshold) and sent at least
      ``OUTCOME_MATURATION_DAYS`` ago;
    - ``neutral_examples``: the rest (middling scores, bounced high scorers, young low scorers);
    - ``deals_closed``, ``meetings_booked`` (booked or completed) and ``replies``: labels of the
      pool that reached that stage, whatever their class.
    """
    if organization_id is not None:
        counts = _counts_beside_marked_texts(organization_id, min_quality_score)
    elif connection.features.can_distinct_on_fields:
        counts = _counts_by_index_walk(organization_id, min_quality_score)
    else:
        counts = _class_counts(training_pool(organization_id=organization_id), min_quality_score)
    neutral = counts["total_examples"] - counts["positive_examples"] - counts["negative_examples"]
    return {
        "total_examples": counts["total_examples"],
        "positive_examples": counts["positive_examples"],
        "negative_examples": counts["negative_examples"],
        "neutral_examples": neutral,
        "deals_closed": counts["deals_closed"],
        "meetings_booked": counts["meetings_booked"],
        "replies": counts["replies"],
    }


def _class_counts(labels: OutcomeLabelQuerySet, min_quality_score: float) -> dict[str, int]:
    """The statistics' counts over ``labels``, in one aggregate."""
    return labels.aggregate(
        total_examples=Count("id"),
        positive_examples=Count("id", filter=positive_q(min_quality_score)),
        negative_examples=Count("id", filter=negative_q(min_quality_score, matured_before())),
        deals_closed=Count("id", filter=Q(deal_closed_at__isnull=False)),
        meetings_booked=Count("id", filter=Q(meeting_booked_at__isnull=False) | Q(meeting_completed_at__isnull=False)),
        replies=Count("id", filter=Q(replied_at__isnull=False)),
    )


def arm_counts(
    *, model_ids: list[uuid.UUID], sent_from: datetime.datetime, sent_before: datetime.datetime
) -> dict[uuid.UUID, dict[str, Any]]:
    """Each model's messages sent in ``[sent_from, sent_before)`` and how many reached each stage.

    One aggregate query over every organization's labels (an A/B test's arms): ``messages``,
    ``replies``, ``meetings`` (booked), ``deals``, ``unsubscribes`` as integers and ``revenue``
    (the value of the closed deals) as a float. Models with no such message are absent.
    """
    reached = {
        "replies": "replied_at",
        "meetings": "meeting_booked_at",
        "deals": "deal_closed_at",
        "unsubscribes": "unsubscribed_at",
    }
    rows = (
        OutcomeLabel.objects.filter(model_id__in=model_ids, sent_at__gte=sent_from, sent_at__lt=sent_before)
        .order_by()
        .values("model_id")
        .annotate(
            messages=Count("id"),
            **{name: Count("id", filter=Q(**{f"{column}__isnull": False})) for name, column in reached.items()},
            revenue=Sum("deal_value", filter=Q(deal_closed_at__isnull=False)),
        )
    )
    return {row.pop("model_id"): {**row, "revenue": float(row["revenue"] or 0)} for row in rows}


# Per lead: messages, and how many reached each stage (the experiments' counts).
_LEAD_COUNTS = {"replies": "replied_at", "meetings": "meeting_booked_at", "deals": "deal_closed_at"}
_LEAD_COUNTS["unsubscribes"] = "unsubscribed_at"
# The per-message value of experiments.stats (0.2 reply + 0.3 meeting + 0.5 deal), per lead.
_LEAD_VALUE = "(0.2 * per_lead.replies + 0.3 * per_lead.meetings + 0.5 * per_lead.deals)"


def _per_lead_sql(
    model_ids: list[uuid.UUID], sent_from: datetime.datetime, sent_before: datetime.datetime
) -> tuple[str, list[Any]]:
    """The inner query: one row per (model, lead), a label without a lead being a lead of its own."""
    single = Case(When(lead_hash="", then=F("id")), default=Value(None), output_field=UUIDField())
    rows = (
        OutcomeLabel.objects.filter(model_id__in=model_ids, sent_at__gte=sent_from, sent_at__lt=sent_before)
        .order_by()
        .annotate(single=single)
        .values("model_id", "lead_hash", "single")
        .annotate(
            messages=Count("id"),
            **{name: Count("id", filter=Q(**{f"{column}__isnull": False})) for name, column in _LEAD_COUNTS.items()},
            revenue=Sum("deal_value", filter=Q(deal_closed_at__isnull=False)),
        )
    )
    sql, params = rows.query.sql_with_params()
    return sql, list(params)


def _outer_columns() -> str:
    """The per-arm sums over the leads: n, n^2, and for each count and the value y, y^2 and n y."""
    columns = ["COUNT(*)", "SUM(CASE WHEN per_lead.lead_hash = '' THEN 1 ELSE 0 END)", "SUM(per_lead.messages)"]
    columns += ["SUM(per_lead.messages * per_lead.messages)", "SUM(per_lead.revenue)"]
    for name in [*(f"per_lead.{name}" for name in _LEAD_COUNTS), _LEAD_VALUE]:
        columns += [f"SUM({name})", f"SUM({name} * {name})", f"SUM(per_lead.messages * {name})"]
    return ", ".join(columns)


def arm_lead_sums(
    *, model_ids: list[uuid.UUID], sent_from: datetime.datetime, sent_before: datetime.datetime
) -> dict[uuid.UUID, dict[str, Any]]:
    """Each model's messages sent in ``[sent_from, sent_before)``, summed per lead, in one query.

    The labels are grouped by model and lead hash (a label without one is a lead of one message),
    then summed per model: ``leads``, ``unkeyed_leads``, ``messages``, ``messages_squared``,
    ``revenue``, the stage counts (``replies``, ``meetings``, ``deals``, ``unsubscribes``) and
    ``sums``: for each of them and ``value``, ``(sum y, sum y^2, sum n y)`` over the leads.
    Models with no such message are absent. The work is one GROUP BY in the database, whatever
    the number of labels; two rows come back.
    """
    inner, params = _per_lead_sql(model_ids, sent_from, sent_before)
    sql = f"SELECT per_lead.model_id, {_outer_columns()} FROM ({inner}) per_lead GROUP BY per_lead.model_id"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    return {_model_id(row[0]): _arm_row(row[1:]) for row in rows}


def _model_id(raw: Any) -> uuid.UUID:
    """A model id as the database returns it (a UUID on PostgreSQL, hex text on SQLite)."""
    return raw if isinstance(raw, uuid.UUID) else uuid.UUID(str(raw))


def _arm_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """One model's row of sums as named numbers."""
    leads, unkeyed, messages, squared, revenue, *rest = values
    row: dict[str, Any] = {"leads": int(leads), "unkeyed_leads": int(unkeyed or 0), "messages": int(messages)}
    row.update(messages_squared=int(squared), revenue=float(revenue or 0))
    sums: dict[str, tuple[float, float, float]] = {}
    for index, name in enumerate([*_LEAD_COUNTS, "value"]):
        total, squares, cross = (float(value or 0) for value in rest[3 * index : 3 * index + 3])
        sums[name] = (total, squares, cross)
        if name != "value":
            row[name] = int(total)
    row["sums"] = sums
    return row
