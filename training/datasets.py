"""Training datasets: outcome labels to fine-tuning JSONL (SFT or DPO), scrubbed, validated and priced.

The rules every export follows:

- **Pool.** :func:`outcomes.selectors.ranked_pool`: the organization's labels (all of them for
  the global model), never one a reviewer excluded, and one label per distinct training text
  (the best-scoring of exact duplicates, collapsed by the database).
- **Classes.** Positive: quality >= ``min_quality_score`` and not bounced. Negative: quality < 0.2
  and sent at least ``OUTCOME_MATURATION_DAYS`` ago (a younger message may still get its reply).
- **Messages.** System: ``settings.TRAINING_SYSTEM_PROMPT``. User: the label's stored prompt, else
  "Write a message for: Industry=SaaS, Role=VP Sales, Company size=51-200, Framework=PAS,
  Tone=professional, Channel=email" built from its segment (empty attributes left out; the local
  provider parses this ``Key=Value, `` form). Assistant: "Subject: ...\\n\\n" + the reviewer's
  ``ideal_body`` or the body (no subject line when there is no subject).
- **Outcomes never reach the assistant text** (the seed's "**Outcome:** Deal closed" line would be
  learnt and written into emails). SFT trains on positives only. With ``outcome_conditioned``,
  matured negatives join them and every user message ends with "Target outcome: deal closed"
  (meeting booked, reply, bounced, no reply), so the model learns what leads where and is asked
  for "deal closed" at inference. DPO uses negatives as they should be used: see below.
- **DPO pairs.** Each matured negative is the non-preferred output of one pair; the preferred
  output is a positive of the same segment (industry, role, framework, tone), backing off to
  industry + role, then industry, then any positive of the pool. Within a segment the
  negatives, newest first, take the positives best first, round robin: a positive is reused
  only when its segment has more negatives than positives, and then evenly. The pair's prompt is
  the negative's own request on an exact match; on a coarser match it names only the attributes
  both messages share, so the preferred message is a fair answer to it. Pairs are computed by
  the database (window functions, equality joins), so memory stays flat.
- **Personal data.** Labels written through ``outcome_upsert`` are stored scrubbed, but rows can
  reach the table another way (factories, the admin, raw SQL), so every text that leaves (prompt,
  subject, body) is scrubbed again here, cheaply: :func:`scrubbed` calls
  :func:`outcomes.scrubbing.scrub` only when a row's texts hold "@", "/", "ww.", seven digits or
  the first word of the prospect's first name, last name or company. Each test is a superset of
  what ``scrub`` could replace, so skipping is always safe; ``bench/export.py`` measures the cost.
- **Order, limit, split.** Examples are written best first (quality, then the most recent);
  ``limit`` keeps the best. With ``validation_percent`` the most recent N % of the selected
  examples by send time (for a pair, the later of its two messages) go to a separate validation
  file, so nothing from the future trains the model.
- **Metadata.** :meth:`OutcomeDataFormatter.export_training_data` returns SFT examples with the
  seed's ``metadata`` (outcome_id, quality_score, deal_value). OpenAI refuses unknown top-level
  keys, so :meth:`OutcomeDataFormatter.export_to_jsonl` leaves it out unless
  ``include_metadata=True`` (for the ``local`` provider, which ranks exemplars by it; without it
  the local provider falls back to file order, which is best first anyway).
- **Streaming.** Rows come through a server-side cursor (``connection.chunked_cursor()``, what
  ``QuerySet.iterator()`` uses), 2,000 at a time, inside ``transaction.atomic()``: outside a
  transaction Django declares the cursor WITH HOLD, which PostgreSQL materializes in full before
  the first row. The SQL is Django's own for the pool, wrapped so that the class filter applies
  after the duplicate collapse (a ``filter()`` would apply before the window function). Each line
  is serialized with orjson and written once to a buffered temporary file beside the target,
  hashed on the way, validated with :mod:`training.validation` and only then renamed into place.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import math
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, CharField, IntegerField, Q, Value, When

from outcomes.models import OutcomeLabel
from outcomes.scrubbing import may_hold_personal_data, scrub
from outcomes.selectors import example_kind, matured_before, ranked_pool, training_data_stats
from training.tokens import CostEstimate, Epochs, TokenTally
from training.validation import ValidationReport, ensure_valid, validate_jsonl

Method = Literal["sft", "dpo"]
Line = tuple[dict[str, Any], bool, bool, bool]  # example, held out for validation, positive, closed a deal
Progress = Callable[[int], None]

CHUNK_SIZE = 2000
PROGRESS_EVERY = 10_000
WRITE_BUFFER = 1 << 20
FILE_MODE = 0o644  # mkstemp creates 0600; the web and worker processes must read datasets too
POSITIVE, NEGATIVE = 1, -1

SEGMENT_LABELS = ("Industry", "Role", "Company size", "Framework", "Tone", "Channel")
# The attributes a DPO pair's prompt names at each backoff level, as positions in SEGMENT_LABELS.
LEVEL_ATTRIBUTES: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3, 4, 5), (0, 1), (0,), ())

# Characters that would split a value in the "Key=Value, Key=Value" user message.
_SEPARATORS = str.maketrans({",": "/", ";": "/", "=": ":", "\n": " ", "\r": " "})

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
TEXT_COLUMNS = ("subject", "body", "ideal_body", "first_name", "last_name", "company")
POOL_COLUMNS = ("id", "sent_at", "quality_score", "deal_value", "prompt", *SEGMENT_COLUMNS, *TEXT_COLUMNS)


@dataclass(frozen=True)
class ExportResult:
    """What :meth:`OutcomeDataFormatter.export_to_jsonl` wrote, and what training on it costs."""

    method: str
    path: str
    count: int
    sha256: str
    positive_examples: int
    negative_examples: int
    deals_in_training: int
    total_tokens: int
    billed_tokens: int
    estimated_cost: Decimal
    cost: CostEstimate
    report: ValidationReport
    validation_path: str = ""
    validation_count: int = 0
    validation_sha256: str = ""

    def as_dict(self) -> dict[str, Any]:
        """Plain values for JSON and for a training run's record (Decimals as strings)."""
        return {
            "method": self.method,
            "path": self.path,
            "count": self.count,
            "sha256": self.sha256,
            "validation_path": self.validation_path,
            "validation_count": self.validation_count,
            "validation_sha256": self.validation_sha256,
            "positive_examples": self.positive_examples,
            "negative_examples": self.negative_examples,
            "deals_in_training": self.deals_in_training,
            "total_tokens": self.total_tokens,
            "billed_tokens": self.billed_tokens,
            "estimated_cost": str(self.estimated_cost),
            "cost": self.cost.as_dict(),
        }


@dataclass(frozen=True)
class Selection:
    """Which labels an export reads, fixed at the start so that every query of one export agrees."""

    organization_id: uuid.UUID | str | None = None
    min_quality_score: float = 0.6
    include_negative_examples: bool = True
    outcome_conditioned: bool = False
    limit: int | None = None
    matured_at: datetime.datetime = field(default_factory=matured_before)


# --- Personal data -------------------------------------------------------------------------------


def scrubbed(first_name: str, last_name: str, company: str, *texts: str) -> Sequence[str]:
    """The texts with the prospect's personal data replaced by placeholders.

    ``scrub`` runs only when :func:`~outcomes.scrubbing.may_hold_personal_data` says it could change something; one
    test covers all the texts of a row, joined, so a clean row costs a few substring searches.
    """
    if not may_hold_personal_data("\n".join(texts), first_name, last_name, company):
        return texts
    return [scrub(text, first_name=first_name, last_name=last_name, company=company) for text in texts]


# --- Messages ------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def segment_request(values: tuple[str, ...], positions: tuple[int, ...] = LEVEL_ATTRIBUTES[0]) -> str:
    """The user message built from segment attributes: "Write a message for: Industry=SaaS, Role=...".

    Only the attributes at ``positions`` (indexes into :data:`SEGMENT_LABELS`) that have a value
    are named; separators inside a value are replaced so the ``Key=Value, `` form stays parseable.
    Segments repeat, so the answers are cached (a bounded cache: memory stays flat).
    """
    parts = []
    for position in positions:
        value = " ".join(values[position].translate(_SEPARATORS).split())
        if value:
            parts.append(f"{SEGMENT_LABELS[position]}={value}")
    return "Write a message for: " + ", ".join(parts) if parts else "Write a message."


def assistant_text(subject: str, body: str) -> str:
    """The training target: "Subject: ...\\n\\n" + body, or the body alone when there is no subject."""
    return f"Subject: {subject}\n\n{body}" if subject.strip() else body


def uuid_text(value: Any) -> str:
    """A label id as text with dashes, whether the driver gave a UUID (PostgreSQL) or hex (SQLite)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


# --- Queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleQuery:
    """A selection of examples as SQL: ``{prefix} SELECT ... FROM {source} ORDER BY {order} LIMIT``.

    ``columns`` is what the stream reads; ``time_key`` and ``id_key`` order examples by send time
    for the validation split, which is computed in SQL as a final ``held_out`` column so that no
    timestamp has to be fetched and parsed per row.
    """

    prefix: str
    params: Sequence[Any]
    source: str
    columns: str
    order: str
    time_key: str
    id_key: str
    limit: int | None

    def select(self, columns: str, extra_params: Sequence[Any] = ()) -> tuple[str, list[Any]]:
        sql = f"{self.prefix} SELECT {columns} FROM {self.source} ORDER BY {self.order}"  # noqa: S608 - constants
        params = [*self.params, *extra_params]
        if self.limit:
            sql, params = f"{sql} LIMIT %s", [*params, self.limit]
        return sql, params

    def stream(self, cutoff: tuple[Any, Any] | None) -> tuple[str, list[Any]]:
        """The streaming query; rows whose send-time key is at or after ``cutoff`` have held_out = 1."""
        if cutoff is None:
            return self.select(f"{self.columns}, 0 AS held_out")
        time_key, id_key = self.time_key, self.id_key
        held_out = f"CASE WHEN {time_key} > %s OR ({time_key} = %s AND {id_key} >= %s) THEN 1 ELSE 0 END"
        return self.select(f"{self.columns}, {held_out} AS held_out", [cutoff[0], cutoff[0], cutoff[1]])

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


# The row read by OutcomeDataFormatter.sft_line: 0 prompt, 1-6 segment, 7 subject, 8 training
# text, 9-11 names, 12 kind, 13 deal, 14 outcome, [15-17 metadata], then held_out. Every column
# costs parsing on every row, so the text is chosen in SQL and the metadata only read when asked.
SFT_COLUMNS = ", ".join(
    (
        "prompt",
        *SEGMENT_COLUMNS,
        "subject",
        "COALESCE(NULLIF(ideal_body, ''), body) AS target",
        "first_name, last_name, company, kind, deal, outcome",
    )
)
METADATA_COLUMNS = "quality_score, id, deal_value"


def sft_query(selection: Selection, *, include_metadata: bool = False) -> ExampleQuery:
    """Positives, plus matured negatives when outcome-conditioned; best first."""
    kinds = [POSITIVE]
    if selection.outcome_conditioned and selection.include_negative_examples:
        kinds.append(NEGATIVE)
    pool, params = pool_sql(selection, kinds, (*POOL_COLUMNS, "deal", "outcome"))
    return ExampleQuery(
        prefix=f"WITH pool AS ({pool})",
        params=params,
        source="pool",
        columns=f"{SFT_COLUMNS}, {METADATA_COLUMNS}" if include_metadata else SFT_COLUMNS,
        order="quality_score DESC, sent_at DESC, id DESC",
        time_key="sent_at",
        id_key="id",
        limit=selection.limit,
    )


def dpo_query(selection: Selection) -> ExampleQuery:
    """One pair per matured negative (see :data:`DPO_PAIRS_SQL`), best preferred output first."""
    pool, params = pool_sql(selection, [POSITIVE, NEGATIVE], PAIRING_COLUMNS)
    table = connection.ops.quote_name(OutcomeLabel._meta.db_table)
    return ExampleQuery(
        prefix=DPO_PAIRS_SQL.replace("{pool}", pool).replace("{table}", table),
        params=params,
        source="pairs",
        columns=DPO_COLUMNS,
        order="p_quality DESC, pair_time DESC, n_id DESC",
        time_key="pair_time",
        id_key="n_id",
        limit=selection.limit,
    )


PAIRING_COLUMNS = ("id", "sent_at", "quality_score", "industry", "role", "framework", "tone")
_BEST_FIRST = "quality_score DESC, sent_at DESC, id DESC"
_IS_POSITIVE = f"CASE WHEN kind = {POSITIVE} THEN 1 ELSE 0 END"
# One copy of every positive per backoff level, keyed by that level's segment and its rank in it.
# A level's copies are left out when no negative needs that level.
_POSITIVE_SLOTS = " UNION ALL ".join(
    f"SELECT {level} AS lvl, {keys}, rank{level} AS slot, kind, id, sent_at, quality_score FROM keys "  # noqa: S608
    f"WHERE kind = {POSITIVE}{f' AND EXISTS (SELECT 1 FROM leveled WHERE lvl = {level})' if level else ''}"  # noqa: S608
    for level, keys in enumerate(
        (
            "industry AS k1, role AS k2, framework AS k3, tone AS k4",
            "industry, role, NULL, NULL",
            "industry, NULL, NULL, NULL",
            "NULL, NULL, NULL, NULL",
        )
    )
)
_PAIR_COLUMNS = ", ".join(
    [
        *(f"n.{column} AS n_{column}" for column in ("prompt", *SEGMENT_COLUMNS, *TEXT_COLUMNS)),
        "m.lvl AS lvl",
        *(f"p.{column} AS p_{column}" for column in TEXT_COLUMNS),
        "CASE WHEN p.deal_closed_at IS NULL THEN 0 ELSE 1 END AS p_deal",
    ]
)
# The row read by OutcomeDataFormatter.dpo_line: 0 prompt, 1-6 segment, 7-12 texts and names,
# 13 level, 14-19 the positive's texts and names, 20 deal, then held_out.
DPO_COLUMNS = (
    ", ".join(
        ("n_prompt", *(f"n_{c}" for c in (*SEGMENT_COLUMNS, *TEXT_COLUMNS)), "lvl", *(f"p_{c}" for c in TEXT_COLUMNS))
    )
    + ", p_deal"
)
# Pairing with window functions only, so no plan depends on the planner guessing the pool's size
# (it cannot: the pool is the output of a window function, and a misjudged join over it became
# a nested loop of 40,000 x 136,000 rows on PostgreSQL):
#
# - keys: per label, how many positives its segment has at each level (n0..n3) and its rank
#   among the labels of its kind in each level's segment, best first;
# - leveled / keyed: a negative takes the finest level whose segment has positives, their count
#   pn, and that level's segment key (k1..k4, NULL beyond the level);
# - slots: within its (level, segment) group, the k-th newest negative takes slot
#   (k - 1) mod pn + 1 ("%%" is a literal "%" once the parameters are bound);
# - slots / matched: negatives and positive copies sorted by (level, segment, slot), positive
#   first, so FIRST_VALUE hands every negative the positive of its slot;
# - pairs: both labels' texts, fetched by primary key.
DPO_PAIRS_SQL = f"""
WITH pool AS ({{pool}}),
keys AS (
    SELECT id, sent_at, quality_score, kind, industry, role, framework, tone,
        SUM({_IS_POSITIVE}) OVER (PARTITION BY industry, role, framework, tone) AS n0,
        SUM({_IS_POSITIVE}) OVER (PARTITION BY industry, role) AS n1,
        SUM({_IS_POSITIVE}) OVER (PARTITION BY industry) AS n2,
        SUM({_IS_POSITIVE}) OVER () AS n3,
        ROW_NUMBER() OVER (PARTITION BY kind, industry, role, framework, tone ORDER BY {_BEST_FIRST}) AS rank0,
        ROW_NUMBER() OVER (PARTITION BY kind, industry, role ORDER BY {_BEST_FIRST}) AS rank1,
        ROW_NUMBER() OVER (PARTITION BY kind, industry ORDER BY {_BEST_FIRST}) AS rank2,
        ROW_NUMBER() OVER (PARTITION BY kind ORDER BY {_BEST_FIRST}) AS rank3
    FROM pool
),
leveled AS (
    SELECT id, sent_at, quality_score, industry, role, framework, tone,
        CASE WHEN n0 > 0 THEN 0 WHEN n1 > 0 THEN 1 WHEN n2 > 0 THEN 2 ELSE 3 END AS lvl,
        CASE WHEN n0 > 0 THEN n0 WHEN n1 > 0 THEN n1 WHEN n2 > 0 THEN n2 ELSE n3 END AS pn
    FROM keys
    WHERE kind = {NEGATIVE} AND n3 > 0
),
keyed AS (
    SELECT leveled.*,
        CASE WHEN lvl <= 2 THEN industry END AS k1, CASE WHEN lvl <= 1 THEN role END AS k2,
        CASE WHEN lvl = 0 THEN framework END AS k3, CASE WHEN lvl = 0 THEN tone END AS k4
    FROM leveled
),
slots AS (
    {_POSITIVE_SLOTS}
    UNION ALL
    SELECT lvl, k1, k2, k3, k4,
        (ROW_NUMBER() OVER (PARTITION BY lvl, k1, k2, k3, k4 ORDER BY sent_at DESC, id DESC) - 1) %% pn + 1,
        {NEGATIVE}, id, sent_at, quality_score
    FROM keyed
),
matched AS (
    SELECT kind, lvl, id AS n_id, sent_at AS n_sent,
        FIRST_VALUE(id) OVER slot AS p_id,
        FIRST_VALUE(sent_at) OVER slot AS p_sent,
        FIRST_VALUE(quality_score) OVER slot AS p_quality
    FROM slots
    WINDOW slot AS (PARTITION BY lvl, k1, k2, k3, k4, slot ORDER BY kind DESC)
),
pairs AS (
    SELECT {_PAIR_COLUMNS}, m.p_quality AS p_quality, m.n_id AS n_id,
        CASE WHEN m.n_sent >= m.p_sent THEN m.n_sent ELSE m.p_sent END AS pair_time
    FROM matched m
    JOIN {{table}} n ON n.id = m.n_id
    JOIN {{table}} p ON p.id = m.p_id
    WHERE m.kind = {NEGATIVE}
)
"""  # noqa: S608 - assembled from constants only; values travel as parameters


def stream_rows(sql: str, params: Sequence[Any]) -> Iterator[Sequence[Any]]:
    """Rows through a server-side cursor on PostgreSQL (SQLite's cursor is lazy anyway).

    Call inside ``transaction.atomic()``: outside a transaction Django declares the cursor WITH
    HOLD, and PostgreSQL materializes the whole result before sending the first row.
    """
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(CHUNK_SIZE):
            yield from rows


# --- Files ---------------------------------------------------------------------------------------


class JsonlWriter:
    """One JSONL file being written: a temporary file beside the target, its sha256 and line count.

    Nothing appears at the target path until :meth:`commit` renames the finished file over it, so
    a crash or a failed validation never leaves a half-written or invalid dataset behind.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        self.temporary = Path(temporary)
        self.file = os.fdopen(fd, "wb", buffering=WRITE_BUFFER)
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, example: dict[str, Any]) -> None:
        line = orjson.dumps(example, option=orjson.OPT_APPEND_NEWLINE)
        self.file.write(line)
        self.digest.update(line)
        self.count += 1

    def close(self) -> None:
        """Flush the file to disk, so the rename can never expose an empty file after a crash."""
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()

    def commit(self) -> str:
        """Rename the finished file over the target and return its sha256."""
        self.close()
        os.replace(self.temporary, self.path)
        return self.digest.hexdigest()

    def discard(self) -> None:
        self.file.close()
        self.temporary.unlink(missing_ok=True)


def default_validation_path(path: Path) -> Path:
    """``training.jsonl`` → ``training.validation.jsonl``."""
    return path.with_name(f"{path.stem}.validation{path.suffix or '.jsonl'}")


# --- Formatter -----------------------------------------------------------------------------------


class OutcomeDataFormatter:
    """Turns outcome labels into fine-tuning examples (the seed's ``OutcomeDataFormatter``).

    ``model`` is the base model the dataset is validated, counted and priced for (default
    ``settings.TRAINING_BASE_MODEL``); ``system_prompt`` defaults to ``settings.TRAINING_SYSTEM_PROMPT``.
    """

    def __init__(self, *, model: str | None = None, system_prompt: str | None = None) -> None:
        self.model = model or settings.TRAINING_BASE_MODEL
        self.system = {"role": "system", "content": system_prompt or settings.TRAINING_SYSTEM_PROMPT}

    def export_training_data(
        self,
        organization_id: uuid.UUID | str | None = None,
        min_quality_score: float = 0.6,
        include_negative_examples: bool = True,
        limit: int | None = 10000,
        method: Method = "sft",
        outcome_conditioned: bool = False,
    ) -> list[dict[str, Any]]:
        """The examples as a list, best first; SFT examples carry the seed's ``metadata``.

        ``organization_id=None`` means the global model (every organization). Meant for small
        exports and inspection; :meth:`export_to_jsonl` streams any size in constant memory.
        """
        selection = Selection(organization_id, min_quality_score, include_negative_examples, outcome_conditioned, limit)
        with transaction.atomic():
            return [line[0] for line in self.lines(selection, method, include_metadata=True)]

    def export_to_jsonl(
        self,
        output_path: str | Path,
        organization_id: uuid.UUID | str | None = None,
        min_quality_score: float = 0.6,
        include_negative_examples: bool = True,
        limit: int | None = None,
        method: Method = "sft",
        outcome_conditioned: bool = False,
        validation_percent: float = 0,
        *,
        validation_path: str | Path | None = None,
        include_metadata: bool = False,
        n_epochs: Epochs = 3,
        progress: Progress | None = None,
    ) -> ExportResult:
        """Stream the dataset to ``output_path``, validate it, count its tokens and price it.

        With ``validation_percent`` the most recent examples go to ``validation_path`` (default
        ``<name>.validation.jsonl`` beside the output). Raises :class:`training.validation.DatasetInvalid`
        listing the errors by line when a file fails validation; nothing is left at the target then.
        """
        selection = Selection(organization_id, min_quality_score, include_negative_examples, outcome_conditioned, limit)
        written = self.write_jsonl(
            Path(output_path),
            selection,
            method,
            validation_percent=validation_percent,
            validation_path=Path(validation_path) if validation_path else None,
            include_metadata=include_metadata,
            progress=progress,
        )
        try:
            return written.finish(self.model, n_epochs=n_epochs, include_metadata=include_metadata)
        except BaseException:
            written.discard()
            raise

    def write_jsonl(
        self,
        path: Path,
        selection: Selection,
        method: Method,
        *,
        validation_percent: float = 0,
        validation_path: Path | None = None,
        include_metadata: bool = False,
        progress: Progress | None = None,
    ) -> WrittenDataset:
        """Stream the examples into temporary files: the export's fast phase, before validation.

        The returned :class:`WrittenDataset` is validated, priced and renamed into place by
        :meth:`WrittenDataset.finish`, or thrown away by :meth:`WrittenDataset.discard`.
        """
        if not 0 <= validation_percent < 100:
            raise ValueError(f"validation_percent must be at least 0 and below 100, not {validation_percent}.")
        with transaction.atomic():
            query = self.query(selection, method, include_metadata=include_metadata)
            cutoff = query.cutoff(validation_percent) if validation_percent else None
            training = JsonlWriter(path)
            validation = JsonlWriter(validation_path or default_validation_path(path)) if cutoff else None
            written = WrittenDataset(method, training, validation)
            try:
                written.consume(self.lines(selection, method, include_metadata, query.stream(cutoff)), progress)
            except BaseException:
                written.discard()
                raise
        return written

    @staticmethod
    def query(selection: Selection, method: Method, *, include_metadata: bool = False) -> ExampleQuery:
        if method == "sft":
            return sft_query(selection, include_metadata=include_metadata)
        if method == "dpo":
            return dpo_query(selection)
        raise ValueError(f"method must be 'sft' or 'dpo', not {method!r}.")

    def lines(
        self,
        selection: Selection,
        method: Method,
        include_metadata: bool = False,
        statement: tuple[str, list[Any]] | None = None,
    ) -> Iterator[Line]:
        """Every example of the selection, best first, with its held-out and class flags.

        Must run inside a transaction (see :func:`stream_rows`).
        """
        sql, params = statement or self.query(selection, method, include_metadata=include_metadata).stream(None)
        rows = stream_rows(sql, params)
        if method == "dpo":
            return (self.dpo_line(row) for row in rows)
        return (self.sft_line(row, include_metadata) for row in rows)

    def sft_line(self, row: Sequence[Any], include_metadata: bool) -> Line:
        """One SFT example from a row of :data:`SFT_COLUMNS` (+ :data:`METADATA_COLUMNS`) + held_out."""
        subject, text, first_name, last_name, company, kind, deal, outcome = row[7:15]
        subject, text, prompt = scrubbed(first_name, last_name, company, subject, text, row[0])
        request = prompt or segment_request(row[1:7])
        if outcome:
            request = f"{request}\n\nTarget outcome: {outcome}"
        example: dict[str, Any] = {
            "messages": [
                self.system,
                {"role": "user", "content": request},
                {"role": "assistant", "content": assistant_text(subject, text)},
            ]
        }
        if include_metadata:
            quality, outcome_id, deal_value = row[15:18]
            value = float(deal_value) if deal_value is not None else None
            example["metadata"] = {"outcome_id": uuid_text(outcome_id), "quality_score": quality, "deal_value": value}
        return example, row[-1] == 1, kind == POSITIVE, deal == 1

    def dpo_line(self, row: Sequence[Any]) -> Line:
        """One DPO pair from a row of :data:`DPO_COLUMNS` + held_out: the negative's side, then the positive's."""
        level, subject, body, ideal_body, first_name, last_name, company = row[13], *row[7:13]
        subject, text, prompt = scrubbed(first_name, last_name, company, subject, ideal_body or body, row[0])
        # An exact segment match keeps the negative's own request; a coarser one names only the
        # attributes both messages share, so the preferred message answers the prompt too.
        exact = level == 0 and prompt
        request = prompt if exact else segment_request(tuple(row[1:7]), LEVEL_ATTRIBUTES[level])
        p_subject, p_body, p_ideal, p_first, p_last, p_company = row[14:20]
        p_subject, p_text = scrubbed(p_first, p_last, p_company, p_subject, p_ideal or p_body)
        example = {
            "input": {"messages": [self.system, {"role": "user", "content": request}]},
            "preferred_output": [{"role": "assistant", "content": assistant_text(p_subject, p_text)}],
            "non_preferred_output": [{"role": "assistant", "content": assistant_text(subject, text)}],
        }
        return example, row[-1] == 1, True, row[20] == 1


# --- The written files ---------------------------------------------------------------------------


@dataclass
class WrittenDataset:
    """Temporary training (and validation) files that have been streamed but not yet accepted."""

    method: Method
    training: JsonlWriter
    validation: JsonlWriter | None
    positive_examples: int = 0
    negative_examples: int = 0
    deals_in_training: int = 0

    def consume(self, lines: Iterator[Line], progress: Progress | None) -> None:
        """Write each line to its file, counting the training file's classes and deals."""
        training, validation = self.training, self.validation
        written = 0
        for example, held_out, positive, deal in lines:
            if held_out and validation is not None:
                validation.write(example)
            else:
                training.write(example)
                self.positive_examples += positive
                self.negative_examples += not positive
                self.deals_in_training += deal
            written += 1
            if progress is not None and written % PROGRESS_EVERY == 0:
                progress(written)
        if progress is not None:
            progress(written)

    def finish(self, model: str, *, n_epochs: Epochs = 3, include_metadata: bool = False) -> ExportResult:
        """Validate both files, rename them into place and return counts, tokens and cost."""
        self.training.close()
        report = ensure_valid(
            validate_jsonl(self.training.temporary, method=self.method, model=model, allow_metadata=include_metadata)
        )
        validation = self.validation
        if validation is not None:
            validation.close()
            ensure_valid_holdout(
                validate_jsonl(validation.temporary, method=self.method, model=model, allow_metadata=include_metadata)
            )
        cost = cost_of(report, model, n_epochs)
        return ExportResult(
            method=self.method,
            path=str(self.training.path),
            count=self.training.count,
            sha256=self.training.commit(),
            positive_examples=self.positive_examples,
            negative_examples=self.negative_examples,
            deals_in_training=self.deals_in_training,
            total_tokens=report.total_tokens,
            billed_tokens=cost.billed_tokens,
            estimated_cost=cost.estimated_cost,
            cost=cost,
            report=report,
            validation_path=str(validation.path) if validation is not None else "",
            validation_count=validation.count if validation is not None else 0,
            validation_sha256=validation.commit() if validation is not None else "",
        )

    def discard(self) -> None:
        self.training.discard()
        if self.validation is not None:
            self.validation.discard()


def ensure_valid_holdout(report: ValidationReport) -> None:
    """Like :func:`ensure_valid`, except that a validation file may hold fewer than 10 examples.

    The minimum is a rule for training files; a small pool's held-out share is legitimately small.
    """
    if set(report.error_counts) - {"too_few_examples"}:
        ensure_valid(report)


def cost_of(report: ValidationReport, model: str, n_epochs: Epochs) -> CostEstimate:
    """The cost estimate of a validated file from the validator's token totals (no second count)."""
    tally = TokenTally(model)
    tally.n_examples = report.n_examples
    tally.total_tokens = report.total_tokens
    tally.billed_tokens_per_epoch = report.billed_tokens_per_epoch
    return tally.estimate(n_epochs)


def dataset_counts(organization_id: uuid.UUID | str | None, min_quality_score: float) -> dict[str, int]:
    """How many examples an export of the pool would write, by method (for "are there enough?").

    ``sft``: positives; ``sft_outcome_conditioned``: positives and matured negatives; ``dpo``: one
    pair per matured negative, as long as the pool has at least one positive to pair it with.
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
