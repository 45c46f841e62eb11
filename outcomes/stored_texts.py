"""Labels' stored texts: scrubbed and counted in place, for rows written around the API or before counts.

The API scrubs a label's prompt, subject, body and ideal body when it writes them, counts its
training text, and marks the row ``texts_ready`` unless a text holds what an export must write
apart (a reserved token, a blank message). An export on PostgreSQL then trusts the stored texts
of the marked rows and lets the database write their JSON. Rows written straight to the table
(an import, a SQL script) are not marked; :func:`outcome_texts_scrub` scrubs them in place first,
so that they read exactly as if the API had written them. :func:`training_tokens_backfill` counts
the texts of labels written before counts were stored.

Both work a chunk per transaction, its rows locked in id order as every writer of labels locks
them, so a concurrent upsert is never overwritten with a scrub or a count of its old text, and
write a chunk with one ``UPDATE ... FROM (VALUES ...)``: Django's ``bulk_update`` writes a CASE
with a branch per row, which the database evaluates row by row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, transaction

from outcomes.models import OutcomeLabel, OutcomeLabelQuerySet
from outcomes.scrubbing import scrub
from outcomes.services import (
    NAMES,
    SCRUBBED_TEXTS,
    SEGMENT_FIELDS,
    TEXT_FIELDS,
    count_training_text,
    stored_texts_ready,
)

CHUNK_SIZE = 1000
Progress = Callable[[int], None]


def outcome_texts_scrub(*, organization_id: uuid.UUID | str | None, chunk_size: int = CHUNK_SIZE) -> int:
    """Scrub and count the pool's labels that were written around the API; how many were.

    Scrubbing is idempotent, so a retry or two exports at once change nothing twice. ``None`` is
    the global pool (every organization). The partial index on unmarked rows makes a pool with
    none cheap.
    """
    rows = OutcomeLabel.objects.for_pool(organization_id).filter(texts_ready=False)
    return _in_locked_chunks(rows, _store_scrubbed, chunk_size=chunk_size)


def training_tokens_backfill(
    *, chunk_size: int = CHUNK_SIZE, recount: bool = False, progress: Progress | None = None
) -> int:
    """Count the training texts of labels written before counts were stored (or all, with ``recount``)."""
    rows = OutcomeLabel.objects.all() if recount else OutcomeLabel.objects.filter(training_tokens__isnull=True)
    return _in_locked_chunks(rows, _store_counts, chunk_size=chunk_size, progress=progress)


def _in_locked_chunks(
    rows: OutcomeLabelQuerySet,
    store: Callable[[list[OutcomeLabel]], None],
    *,
    chunk_size: int,
    progress: Progress | None = None,
) -> int:
    """Hand ``rows`` to ``store`` a chunk per transaction, locked in id order; how many there were."""
    done, last_pk = 0, None
    while True:
        with transaction.atomic():
            locked = rows.select_for_update().order_by("pk").only("pk", *TEXT_FIELDS, *SEGMENT_FIELDS)
            chunk = list((locked.filter(pk__gt=last_pk) if last_pk is not None else locked)[:chunk_size])
            store(chunk)
        if not chunk:
            return done
        done, last_pk = done + len(chunk), chunk[-1].pk
        if progress:
            progress(done)


def _store_counts(labels: list[OutcomeLabel]) -> None:
    for label in labels:
        count_training_text(label)
    _update_from_values(labels, ("training_tokens",))


def _store_scrubbed(labels: list[OutcomeLabel]) -> None:
    for label in labels:
        names = {name: getattr(label, name) for name in NAMES}
        for name in SCRUBBED_TEXTS:
            setattr(label, name, scrub(getattr(label, name), **names))
        count_training_text(label)
        label.texts_ready = stored_texts_ready(label)
    _update_from_values(labels, (*SCRUBBED_TEXTS, "training_tokens", "texts_ready"))


def _update_from_values(labels: Sequence[OutcomeLabel], fields: Sequence[str]) -> None:
    """Write the labels' ``fields`` in one ``UPDATE ... FROM (VALUES ...)``."""
    if not labels:
        return
    values: list[Any] = []
    for label in labels:
        values += [OutcomeLabel._meta.pk.get_db_prep_value(label.pk, connection), *(getattr(label, f) for f in fields)]
    table = connection.ops.quote_name(OutcomeLabel._meta.db_table)
    row = "(" + ", ".join(["%s"] * (len(fields) + 1)) + ")"
    assignments = [f"{name} = v.column{index}" for index, name in enumerate(fields, start=2)]
    sql = (
        f"UPDATE {table} SET {', '.join(assignments)} "  # noqa: S608 - names are constants
        f"FROM (VALUES {', '.join([row] * len(labels))}) AS v WHERE {table}.id = v.column1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
