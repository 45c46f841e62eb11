"""KTO rows: unpaired desirable and undesirable completions, straight from outcome labels.

KTO learns from single examples labelled good or bad, which is what outcomes are: each positive
is a desirable completion, each matured negative an undesirable one, with no same-segment pairing.
Rows are TRL's conversational unpaired-preference format (``prompt`` messages, one assistant
``completion``, boolean ``label``). The pool, classes, maturation, exclusions, scrubbing, order
and validation split are the SFT export's own; the prompt never names the outcome.
"""

import dataclasses
from typing import Any

from training.datasets.queries import (
    NEGATIVE,
    POOL_COLUMNS,
    POSITIVE,
    SFT_EXPRESSIONS,
    ExampleQuery,
    Selection,
    SftRow,
    pool_sql,
)


def kto_query(selection: Selection) -> ExampleQuery:
    """Positives and (unless ``include_negative_examples`` is off) matured negatives; best first."""
    kinds = [POSITIVE, NEGATIVE] if selection.include_negative_examples else [POSITIVE]
    plain = dataclasses.replace(selection, outcome_conditioned=False)
    pool, params = pool_sql(plain, kinds, (*POOL_COLUMNS, "deal", "outcome"))
    return ExampleQuery(
        prefix=f"WITH pool AS ({pool})",
        params=params,
        source="pool",
        fields=SftRow._fields,
        expressions=SFT_EXPRESSIONS,
        order="quality_score DESC, sent_at DESC, id DESC",
        time_key="sent_at",
        id_key="id",
        limit=selection.limit,
    )


def kto_example(sft_example: dict[str, Any], desirable: bool) -> dict[str, Any]:
    """Split an SFT example's messages into KTO's prompt and completion, with its label."""
    *prompt, completion = sft_example["messages"]
    return {"prompt": prompt, "completion": [completion], "label": desirable}
