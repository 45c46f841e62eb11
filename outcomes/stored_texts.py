"""Labels written around the API, stored as the API stores them: texts scrubbed, training text counted.

The API scrubs a label's prompt, subject, body and ideal body when it writes them, counts its
training text, and marks the row ``texts_scrubbed``. An export on PostgreSQL then trusts the
stored texts and lets the database write their JSON. Rows written straight to the table (an
import, a SQL script) are not marked; :func:`outcome_texts_scrub` scrubs them in place first,
so that they read exactly as if the API had written them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.db import connection, transaction

from outcomes.models import OutcomeLabel
from outcomes.scrubbing import scrub
from outcomes.services import NAMES, SCRUBBED_TEXTS, TEXT_FIELDS, count_training_text

CHUNK_SIZE = 1000
# The columns one UPDATE writes, in the order of its VALUES after the id.
WRITTEN = (*SCRUBBED_TEXTS, "training_tokens")


def outcome_texts_scrub(*, organization_id: uuid.UUID | str | None, chunk_size: int = CHUNK_SIZE) -> int:
    """Scrub and count the pool's labels that were written around the API; how many were.

    A chunk per transaction, its rows locked in id order as every writer of labels locks them,
    so a concurrent upsert is never overwritten with a scrub of its old text. Scrubbing is
    idempotent, so a retry or two exports at once change nothing twice. ``None`` is the global
    pool (every organization). The partial index on unmarked rows makes a pool with none cheap.
    """
    done, last_pk = 0, None
    while True:
        with transaction.atomic():
            rows = OutcomeLabel.objects.for_pool(organization_id).filter(texts_scrubbed=False)
            rows = rows.select_for_update().order_by("pk").only("pk", *TEXT_FIELDS)
            chunk = list((rows.filter(pk__gt=last_pk) if last_pk is not None else rows)[:chunk_size])
            _store_scrubbed(chunk)
        if not chunk:
            return done
        done, last_pk = done + len(chunk), chunk[-1].pk


def _store_scrubbed(labels: Sequence[OutcomeLabel]) -> None:
    """Write the labels' scrubbed texts, their counts and the mark in one ``UPDATE ... FROM (VALUES ...)``."""
    if not labels:
        return
    values: list[Any] = []
    for label in labels:
        names = {name: getattr(label, name) for name in NAMES}
        for name in SCRUBBED_TEXTS:
            setattr(label, name, scrub(getattr(label, name), **names))
        count_training_text(label)
        values += [OutcomeLabel._meta.pk.get_db_prep_value(label.pk, connection)]
        values += [getattr(label, name) for name in WRITTEN]
    table = connection.ops.quote_name(OutcomeLabel._meta.db_table)
    row = "(" + ", ".join(["%s"] * (len(WRITTEN) + 1)) + ")"
    assignments = ", ".join(f"{name} = v.column{index}" for index, name in enumerate(WRITTEN, start=2))
    sql = (
        f"UPDATE {table} SET {assignments}, texts_scrubbed = %s "  # noqa: S608 - names are constants
        f"FROM (VALUES {', '.join([row] * len(labels))}) AS v WHERE {table}.id = v.column1"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [True, *values])
