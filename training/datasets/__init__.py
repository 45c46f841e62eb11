"""Training datasets: outcome labels to fine-tuning JSONL (SFT, DPO or KTO), scrubbed, validated and priced.

:mod:`~training.datasets.queries` and :mod:`~training.datasets.pairs` hold the SQL (the pool, the
SFT examples, the DPO pairs, the KTO rows) and stream rows by column name; :mod:`~training.datasets.formatter`
turns them into examples; :mod:`~training.datasets.writer` writes the files with their sha256,
validates and prices them. The rules every export follows are in ``docs/``.
"""

from training.datasets.formatter import OutcomeDataFormatter, scrubbed, segment_request
from training.datasets.kto import kto_query
from training.datasets.pairs import DpoRow, dpo_query
from training.datasets.queries import (
    SEGMENT_COLUMNS,
    Selection,
    SftMetadata,
    SftRow,
    dataset_counts,
    export_size_bound,
    sft_query,
)
from training.datasets.writer import ExportResult, WrittenDataset
from training.validation import Method

__all__ = [
    "SEGMENT_COLUMNS",
    "DpoRow",
    "ExportResult",
    "Method",
    "OutcomeDataFormatter",
    "Selection",
    "SftMetadata",
    "SftRow",
    "WrittenDataset",
    "dataset_counts",
    "dpo_query",
    "export_size_bound",
    "kto_query",
    "scrubbed",
    "segment_request",
    "sft_query",
]
