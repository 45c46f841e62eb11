"""The DPO pairs: each matured negative of the pool beside a positive of the nearest segment, in SQL.

The pairing runs in the database with window functions and equality joins, so memory stays flat
whatever the pool's size; :class:`DpoRow` is one pair with both labels' texts.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db import connection

from outcomes.models import OutcomeLabel
from training.datasets.queries import (
    NEGATIVE,
    POSITIVE,
    SEGMENT_COLUMNS,
    TEXT_COLUMNS,
    ExampleQuery,
    Selection,
    pool_sql,
)


class DpoRow(NamedTuple):
    """One DPO pair as :func:`dpo_query` reads it: ``n_`` the negative's columns, ``p_`` the positive's.

    ``level`` is how far the pairing backed off from the negative's segment (0: an exact match,
    then industry + role, industry, any positive); ``p_deal`` is 1 when the positive closed a deal;
    ``n_training_tokens`` and ``p_training_tokens`` are the labels' stored training-text counts.
    """

    n_prompt: str
    n_industry: str
    n_role: str
    n_company_size: str
    n_framework: str
    n_tone: str
    n_channel: str
    n_subject: str
    n_body: str
    n_ideal_body: str
    n_first_name: str
    n_last_name: str
    n_company: str
    level: int
    p_subject: str
    p_body: str
    p_ideal_body: str
    p_first_name: str
    p_last_name: str
    p_company: str
    p_deal: int
    held_out: int
    n_training_tokens: int | None = None
    p_training_tokens: int | None = None

    @property
    def segment(self) -> tuple[str, ...]:
        """The negative's segment attributes, in :data:`SEGMENT_COLUMNS` order."""
        return (self.n_industry, self.n_role, self.n_company_size, self.n_framework, self.n_tone, self.n_channel)


PAIRING_COLUMNS = ("id", "sent_at", "quality_score", "industry", "role", "framework", "tone")


def dpo_query(selection: Selection) -> ExampleQuery:
    """One pair per matured negative (see :data:`DPO_PAIRS_SQL`), best preferred output first."""
    pool, params = pool_sql(selection, [POSITIVE, NEGATIVE], PAIRING_COLUMNS)
    table = connection.ops.quote_name(OutcomeLabel._meta.db_table)
    return ExampleQuery(
        prefix=DPO_PAIRS_SQL.replace("{pool}", pool).replace("{table}", table),
        params=params,
        source="pairs",
        fields=DpoRow._fields,
        expressions={"level": "lvl"},
        order="p_quality DESC, pair_time DESC, n_id DESC",
        time_key="pair_time",
        id_key="n_id",
        limit=selection.limit,
    )


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
# The columns of DpoRow (but level and held_out), with the pair's order and split keys beside them.
_PAIR_COLUMNS = ", ".join(
    [
        *(f"n.{column} AS n_{column}" for column in ("prompt", *SEGMENT_COLUMNS, *TEXT_COLUMNS)),
        "m.lvl AS lvl",
        *(f"p.{column} AS p_{column}" for column in TEXT_COLUMNS),
        "CASE WHEN p.deal_closed_at IS NULL THEN 0 ELSE 1 END AS p_deal",
        "n.training_tokens AS n_training_tokens",
        "p.training_tokens AS p_training_tokens",
    ]
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
