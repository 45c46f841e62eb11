"""KTO rows: unpaired desirable and undesirable completions, straight from outcome labels.

KTO learns from single examples labelled good or bad, which is what outcomes are: each positive
is a desirable completion, each matured negative an undesirable one, with no same-segment pairing.
Rows are TRL's conversational unpaired-preference format (``prompt`` messages, one assistant
``completion``, boolean ``label``). The pool, classes, maturation, exclusions, scrubbing, order
and validation split are the SFT export's own; the prompt never names the outcome.
"""

import dataclasses
from typing import Any

from training.datasets.queries import NEGATIVE, POSITIVE, ExampleQuery, Selection, SftRow, best_first_query


def kto_query(selection: Selection) -> ExampleQuery:
    """Positives and (unless ``include_negative_examples`` is off) matured negatives; best first."""
    kinds = [POSITIVE, NEGATIVE] if selection.include_negative_examples else [POSITIVE]
    plain = dataclasses.replace(selection, outcome_conditioned=False)
    return best_first_query(plain, kinds, SftRow._fields)


def kto_example(sft_example: dict[str, Any], desirable: bool) -> dict[str, Any]:
    """Split an SFT example's messages into KTO's prompt and completion, with its label."""
    *prompt, completion = sft_example["messages"]
    return {"prompt": prompt, "completion": [completion], "label": desirable}
