"""Fine-tuning examples from outcome labels: the messages of each SFT example and DPO pair, scrubbed.

:class:`OutcomeDataFormatter` reads the rows of :mod:`training.datasets.queries` and
:mod:`training.datasets.pairs`, builds the system, user and assistant messages of each, and hands
them to :mod:`training.datasets.writer` (or returns them as a list, for small exports).
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from outcomes.stored_texts import outcome_texts_scrub
from outcomes.training_text import assistant_text, scrubbed
from training.datasets.database_lines import DatabaseLines, database_query, plan_for_export
from training.datasets.dedupe import SeenTexts
from training.datasets.kto import kto_example, kto_query
from training.datasets.pairs import DpoRow, dpo_query
from training.datasets.queries import (
    POSITIVE,
    SEGMENT_LABELS,
    ExampleQuery,
    Selection,
    SftMetadata,
    SftRow,
    sft_query,
    stream_rows,
)
from training.datasets.writer import (
    ExportResult,
    JsonlWriter,
    Line,
    Progress,
    WrittenDataset,
    default_validation_path,
)
from training.tokens import REPLY_PRIMING_TOKENS, Epochs, ExampleCounter
from training.validation import Method, Validator

# The attributes a DPO pair's prompt names at each backoff level, as positions in SEGMENT_LABELS.
LEVEL_ATTRIBUTES: tuple[tuple[int, ...], ...] = ((0, 1, 2, 3, 4, 5), (0, 1), (0,), ())
# Characters that would split a value in the "Key=Value, Key=Value" user message.
_SEPARATORS = str.maketrans({",": "/", ";": "/", "=": ":", "\n": " ", "\r": " "})


# --- Messages ------------------------------------------------------------------------------------


def positive_texts(selection: Selection) -> SeenTexts:
    """The scrubbed training texts of every positive of the selection's pool (no limit).

    DPO pairs are compared against them, so that a negative whose text only differed from a
    positive's by the prospect's data is dropped as the duplicate it is.
    """
    seen = SeenTexts()
    query = sft_query(dataclasses.replace(selection, outcome_conditioned=False, limit=None))
    sql, params = query.stream(None)
    for row in stream_rows(sql, params, make=SftRow._make):
        seen.first(scrubbed(row.first_name, row.last_name, row.company, row.target)[0])
    return seen


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


def user_request(prompt: str, segment: tuple[str, ...], outcome: str) -> str:
    """The user message: the agent's prompt, else the segment's request; then the target outcome, if any."""
    request = prompt or segment_request(segment)
    return f"{request}\n\nTarget outcome: {outcome}" if outcome else request


def uuid_text(value: Any) -> str:
    """A label id as text with dashes, whether the driver gave a UUID (PostgreSQL) or hex (SQLite)."""
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def metadata_of(metadata: SftMetadata) -> dict[str, Any]:
    """The seed's ``metadata`` of an SFT example: outcome_id, quality_score and deal_value."""
    deal_value = float(metadata.deal_value) if metadata.deal_value is not None else None
    outcome_id = uuid_text(metadata.outcome_id)
    return {"outcome_id": outcome_id, "quality_score": metadata.quality_score, "deal_value": deal_value}


# --- The formatter -------------------------------------------------------------------------------


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
        *,
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
        *,
        organization_id: uuid.UUID | str | None = None,
        min_quality_score: float = 0.6,
        include_negative_examples: bool = True,
        limit: int | None = None,
        method: Method = "sft",
        outcome_conditioned: bool = False,
        validation_percent: float = 0,
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
        validation = Path(validation_path) if validation_path else None
        written = self.write_jsonl(
            Path(output_path),
            selection,
            method,
            validation_percent=validation_percent,
            validation_path=validation,
            include_metadata=include_metadata,
            progress=progress,
        )
        return written.finish(model=self.model, n_epochs=n_epochs)

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
        """Stream the examples into temporary files, validating and counting them as they are written.

        The returned :class:`WrittenDataset` is accepted, priced and renamed into place by
        :meth:`WrittenDataset.finish`, or thrown away by :meth:`WrittenDataset.discard`.
        """
        if not 0 <= validation_percent < 100:
            raise ValueError(f"validation_percent must be at least 0 and below 100, not {validation_percent}.")
        database = self.database_writes(method, include_metadata=include_metadata)
        if database:
            outcome_texts_scrub(organization_id=selection.organization_id)
        with transaction.atomic():
            if database:
                plan_for_export()
                selection = dataclasses.replace(selection, table_order=True)
            query = self.query(selection, method, include_metadata=include_metadata)
            cutoff = query.cutoff(validation_percent) if validation_percent else None
            held_out = validation_path or default_validation_path(path)
            validation = self.writer(held_out, method, include_metadata) if cutoff else None
            written = WrittenDataset(method, self.writer(path, method, include_metadata), validation)
            try:
                if database:
                    self.database_written(written, query, cutoff, progress)
                else:
                    self.python_lines(written, selection, query.stream(cutoff), include_metadata, progress)
            except BaseException:
                written.discard()
                raise
        return written

    def database_written(
        self, written: WrittenDataset, query: ExampleQuery, cutoff: tuple[Any, Any] | None, progress: Progress | None
    ) -> None:
        """Write the query's examples with texts the database builds; an order-free digest when in table order."""
        lines = self.database_lines(written, written.method)
        lines.copy(database_query(query).stream(cutoff), progress)
        if query.in_table_order:
            written.order_free_digest = lines.order_free_digest()

    def python_lines(
        self,
        written: WrittenDataset,
        selection: Selection,
        statement: tuple[str, list[Any]],
        include_metadata: bool,
        progress: Progress | None,
    ) -> None:
        """Write the statement's examples, each built, counted and validated in Python."""
        method = written.method
        lines = self.lines(selection, method, include_metadata=include_metadata, statement=statement, count=True)
        written.consume(lines, progress)

    def database_writes(self, method: Method, *, include_metadata: bool) -> bool:
        """Whether the database may build the examples' texts (:mod:`training.datasets.database_lines`).

        On PostgreSQL, for SFT and KTO without metadata, when the model counts tokens in the
        encoding the labels' counts are stored in.
        """
        if connection.vendor != "postgresql" or method not in ("sft", "kto") or include_metadata:
            return False
        return ExampleCounter(self.model).use_stored

    def database_lines(self, written: WrittenDataset, method: Method) -> DatabaseLines:
        """The writer of :func:`database_query`'s rows, falling back on :meth:`sft_line` for suspect rows."""
        counter = ExampleCounter(self.model)
        fallback = functools.partial(self.sft_line, seen=SeenTexts(), counter=counter)
        return DatabaseLines(
            written,
            system=self.system,
            counter=counter,
            kto=method == "kto",
            fallback=fallback,
            segment_request=functools.partial(user_request, ""),
        )

    def writer(self, path: Path, method: Method, include_metadata: bool) -> JsonlWriter:
        """A temporary file for ``path`` whose examples are validated for this formatter's model."""
        return JsonlWriter(path, Validator(method=method, model=self.model, allow_metadata=include_metadata))

    @staticmethod
    def query(selection: Selection, method: Method, *, include_metadata: bool = False) -> ExampleQuery:
        if method == "sft":
            return sft_query(selection, include_metadata=include_metadata)
        if method == "dpo":
            return dpo_query(selection)
        if method == "kto":
            return kto_query(selection)
        raise ValueError(f"method must be 'sft', 'dpo' or 'kto', not {method!r}.")

    def lines(
        self,
        selection: Selection,
        method: Method,
        *,
        include_metadata: bool = False,
        statement: tuple[str, list[Any]] | None = None,
        count: bool = False,
    ) -> Iterator[Line]:
        """Every example of the selection, best first, with its held-out and class flags.

        With ``count``, each line carries the example's exact token count (else 0). Must run
        inside a transaction (see :func:`~training.datasets.queries.stream_rows`).
        """
        sql, params = statement or self.query(selection, method, include_metadata=include_metadata).stream(None)
        counter = ExampleCounter(self.model) if count else None
        if method == "dpo":
            return self.dpo_lines(selection, stream_rows(sql, params, make=DpoRow._make), counter)
        if method == "kto":
            return self.kto_lines(stream_rows(sql, params, make=SftRow._make), counter)
        if include_metadata:
            return self.sft_lines(stream_rows(sql, params, make=SftMetadata.split), counter)
        return self.sft_lines(((row, None) for row in stream_rows(sql, params, make=SftRow._make)), counter)

    def sft_lines(
        self, rows: Iterable[tuple[SftRow, SftMetadata | None]], counter: ExampleCounter | None = None
    ) -> Iterator[Line]:
        """The SFT examples of streamed rows, the first of each scrubbed training text only."""
        seen = SeenTexts()
        for row, metadata in rows:
            line = self.sft_line(row, metadata, seen=seen, counter=counter)
            if line is not None:
                yield line

    def dpo_lines(
        self, selection: Selection, rows: Iterable[DpoRow], counter: ExampleCounter | None = None
    ) -> Iterator[Line]:
        """The DPO pairs of streamed rows, compared on their scrubbed texts.

        A negative whose scrubbed text is a positive's, or another negative's already written,
        is a duplicate and is left out; so is a pair whose two outputs are equal.
        """
        positives = positive_texts(selection)
        negatives = SeenTexts()
        for row in rows:
            line = self.dpo_line(row, positives=positives, negatives=negatives, counter=counter)
            if line is not None:
                yield line

    def sft_line(
        self,
        row: SftRow,
        metadata: SftMetadata | None = None,
        *,
        seen: SeenTexts | None = None,
        counter: ExampleCounter | None = None,
    ) -> Line | None:
        """One SFT example: the request (with the target outcome when conditioned), the scrubbed message.

        None when ``seen`` already holds the scrubbed training text (a duplicate).
        """
        subject, text, prompt = scrubbed(
            row.first_name, row.last_name, row.company, row.subject, row.target, row.prompt
        )
        if seen is not None and not seen.first(text):
            return None
        request = user_request(prompt, row.segment, row.outcome)
        assistant = assistant_text(subject, text)
        example: dict[str, Any] = {
            "messages": [self.system, {"role": "user", "content": request}, {"role": "assistant", "content": assistant}]
        }
        if metadata is not None:
            example["metadata"] = metadata_of(metadata)
        tokens = (
            self.prompt_tokens(counter, request) + counter.completion(assistant, row.training_tokens) if counter else 0
        )
        return example, row.held_out == 1, row.kind == POSITIVE, row.deal == 1, tokens

    def prompt_tokens(self, counter: ExampleCounter, request: str) -> int:
        """Tokens of an example's system and user messages and of the reply priming (all cached)."""
        return (
            counter.message("system", self.system["content"]) + counter.message("user", request) + REPLY_PRIMING_TOKENS
        )

    def kto_lines(self, rows: Iterable[SftRow], counter: ExampleCounter | None = None) -> Iterator[Line]:
        """KTO rows: the request and the scrubbed message, desirable when the label is a positive.

        Deduplicated on the scrubbed training text, like the SFT examples (and counted alike).
        """
        seen = SeenTexts()
        for row in rows:
            line = self.sft_line(row, seen=seen, counter=counter)
            if line is not None:
                example, held_out, positive, deal, tokens = line
                yield kto_example(example, positive), held_out, positive, deal, tokens

    def dpo_line(
        self,
        row: DpoRow,
        *,
        positives: SeenTexts | None = None,
        negatives: SeenTexts | None = None,
        counter: ExampleCounter | None = None,
    ) -> Line | None:
        """One DPO pair: the negative's message is the non-preferred output, the positive's the preferred.

        None when the negative's scrubbed text is among ``positives`` or already in ``negatives``
        (a duplicate), or when both outputs are equal once scrubbed.
        """
        n_text = row.n_ideal_body or row.n_body
        subject, text, prompt = scrubbed(
            row.n_first_name, row.n_last_name, row.n_company, row.n_subject, n_text, row.n_prompt
        )
        if (positives is not None and text in positives) or (negatives is not None and not negatives.first(text)):
            return None
        # An exact segment match keeps the negative's own request; a coarser one names only the
        # attributes both messages share, so the preferred message answers the prompt too.
        exact = row.level == 0 and prompt
        request = prompt if exact else segment_request(row.segment, LEVEL_ATTRIBUTES[row.level])
        p_text = row.p_ideal_body or row.p_body
        p_subject, p_text = scrubbed(row.p_first_name, row.p_last_name, row.p_company, row.p_subject, p_text)
        preferred, non_preferred = assistant_text(p_subject, p_text), assistant_text(subject, text)
        if preferred == non_preferred:
            return None
        example = {
            "input": {"messages": [self.system, {"role": "user", "content": request}]},
            "preferred_output": [{"role": "assistant", "content": preferred}],
            "non_preferred_output": [{"role": "assistant", "content": non_preferred}],
        }
        tokens = self.pair_tokens(counter, request, row, preferred, non_preferred) if counter else 0
        return example, row.held_out == 1, True, row.p_deal == 1, tokens

    def pair_tokens(
        self, counter: ExampleCounter, request: str, row: DpoRow, preferred: str, non_preferred: str
    ) -> int:
        """A DPO pair's tokens: its prompt and the longer of its outputs (see ``count_example_tokens``)."""
        longer = max(
            counter.completion(preferred, row.p_training_tokens),
            counter.completion(non_preferred, row.n_training_tokens),
        )
        return self.prompt_tokens(counter, request) + longer
