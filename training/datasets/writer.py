"""The dataset files: JSONL written beside the target, hashed, validated, priced, then renamed into place.

One pass: each example is serialized, hashed, validated and counted as it is written, so a
file is never read back. Nothing appears at a target path until its file is complete and valid,
so a crash or a refused dataset never leaves a half-written file behind. Counts, tokens and cost
come back as an :class:`ExportResult`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from training.tokens import CostEstimate, Epochs, TokenTally
from training.validation import Method, ValidationReport, Validator, ensure_valid

# example, held out for validation, positive, closed a deal, exact tokens
Line = tuple[dict[str, Any], bool, bool, bool, int]
Progress = Callable[[int], None]

PROGRESS_EVERY = 10_000
WRITE_BUFFER = 1 << 20
FILE_MODE = 0o644  # mkstemp creates 0600; the web and worker processes must read datasets too


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
    # What "the same dataset" compares: the training file's sha256, unless its examples come in the
    # table's order, which updates change; then a digest of its examples whatever their order.
    content_digest: str = ""

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
            "content_digest": self.content_digest,
            "positive_examples": self.positive_examples,
            "negative_examples": self.negative_examples,
            "deals_in_training": self.deals_in_training,
            "total_tokens": self.total_tokens,
            "billed_tokens": self.billed_tokens,
            "estimated_cost": str(self.estimated_cost),
            "cost": self.cost.as_dict(),
        }


class JsonlWriter:
    """One JSONL file being written: a temporary file beside the target, its sha256, line count and validation.

    Nothing appears at the target path until :meth:`commit` renames the finished file over it, so
    a crash or a failed validation never leaves a half-written or invalid dataset behind.
    """

    def __init__(self, path: Path, validator: Validator) -> None:
        self.path = path
        self.validator = validator
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, FILE_MODE)
        self.temporary = Path(temporary)
        self.file = os.fdopen(fd, "wb", buffering=WRITE_BUFFER)
        self.digest = hashlib.sha256()
        self.count = 0

    def write(self, example: dict[str, Any], tokens: int) -> None:
        """Append one example (whose exact token count is ``tokens``), hash it and validate it."""
        line = orjson.dumps(example, option=orjson.OPT_APPEND_NEWLINE)
        self.file.write(line)
        self.digest.update(line)
        self.count += 1
        self.validator.feed_example(example, tokens)

    def write_lines(self, data: bytes, lines: int) -> None:
        """Append ``lines`` examples already serialized (and validated by the caller), and hash them."""
        self.file.write(data)
        self.digest.update(data)
        self.count += lines

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


@dataclass
class WrittenDataset:
    """Temporary training (and validation) files that have been streamed but not yet accepted."""

    method: Method
    training: JsonlWriter
    validation: JsonlWriter | None
    positive_examples: int = 0
    negative_examples: int = 0
    deals_in_training: int = 0
    order_free_digest: str = ""  # set when the examples come in the table's order

    def count(self, *, positive: bool, deal: bool) -> None:
        """Count one example of the training file by class, and whether it closed a deal."""
        self.count_many(positive=int(positive), total=1, deals=int(deal))

    def count_many(self, *, positive: int, total: int, deals: int) -> None:
        """Count ``total`` examples of the training file, ``positive`` of them positives, ``deals`` deals."""
        self.positive_examples += positive
        self.negative_examples += total - positive
        self.deals_in_training += deals

    def consume(self, lines: Iterator[Line], progress: Progress | None) -> None:
        """Write each line to its file, counting the training file's classes and deals."""
        training, validation = self.training, self.validation
        written = 0
        for example, held_out, positive, deal, tokens in lines:
            if held_out and validation is not None:
                validation.write(example, tokens)
            else:
                training.write(example, tokens)
                self.count(positive=positive, deal=deal)
            written += 1
            if progress is not None and written % PROGRESS_EVERY == 0:
                progress(written)
        if progress is not None:
            progress(written)

    def finish(self, *, model: str, n_epochs: Epochs = 3) -> ExportResult:
        """Accept both files when they are valid, rename them into place and return counts, tokens and cost.

        When a file fails validation (or anything else goes wrong), both are thrown away.
        """
        try:
            report = self.validated()
            return self.result(report, cost_of(report, model=model, n_epochs=n_epochs))
        except BaseException:
            self.discard()
            raise

    def validated(self) -> ValidationReport:
        """Close both files and check their reports; the training file's (a validation file may be small)."""
        self.training.close()
        report = ensure_valid(self.training.validator.report())
        if self.validation is not None:
            self.validation.close()
            ensure_valid_holdout(self.validation.validator.report())
        return report

    def result(self, report: ValidationReport, cost: CostEstimate) -> ExportResult:
        """Rename the files into place and describe them."""
        validation = self.validation
        sha256 = self.training.commit()
        return ExportResult(
            method=self.method,
            path=str(self.training.path),
            count=self.training.count,
            sha256=sha256,
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
            content_digest=self.order_free_digest or sha256,
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


def cost_of(report: ValidationReport, *, model: str, n_epochs: Epochs) -> CostEstimate:
    """The cost estimate of a validated file from the validator's token totals (no second count)."""
    tally = TokenTally(model)
    tally.n_examples = report.n_examples
    tally.total_tokens = report.total_tokens
    tally.billed_tokens_per_epoch = report.billed_tokens_per_epoch
    return tally.estimate(n_epochs)
