"""SFT and KTO examples whose JSON PostgreSQL writes: the export's fast path.

On PostgreSQL, an SFT or KTO export without metadata, for a model counted in the stored
encoding, lets the database build each example's two texts: the request (the agent's prompt,
else the segment's request exactly as :func:`~training.datasets.formatter.segment_request`
words it, plus the target outcome when conditioned) and the assistant message, both as JSON
strings. One ``COPY`` streams them in the export's order. Python only places fixed fragments
around them, adds the stored token counts to the cached counts of the prompts, and writes and
hashes the bytes.

A row the database cannot vouch for (written around the API, so not stored scrubbed; not
counted; blank; holding a reserved token) carries its raw columns instead and takes the
formatter's own Python path, so the file is byte for byte the one that path writes.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import orjson
from django.db import connection

from training.datasets.kto import kto_example
from training.datasets.queries import SEGMENT_COLUMNS, SEGMENT_LABELS, ExampleQuery, SftRow
from training.datasets.writer import JsonlWriter, Line, Progress, WrittenDataset
from training.tokens import PROMPT_CACHE_SIZE, REPLY_PRIMING_TOKENS, ExampleCounter

PROGRESS_EVERY = 10_000
CHUNK_ROWS = 1_000  # rows written at once
# Python's whitespace (str.split, str.strip), as a SQL string and as regular-expression escapes.
WHITESPACE = "".join(character for character in map(chr, range(0x110000)) if character.isspace())
WHITESPACE_SQL = "U&'" + "".join(f"\\{ord(character):04X}" for character in WHITESPACE) + "'"
WHITESPACE_RE = "".join(f"\\u{ord(character):04x}" for character in WHITESPACE)
WHITESPACE_BUT_SPACE_RE = "".join(f"\\u{ord(character):04x}" for character in WHITESPACE if character != " ")
TARGET = "COALESCE(NULLIF(l.ideal_body, ''), l.body)"


def normalized(column: str) -> str:
    """A segment value as ``segment_request`` writes it: separators replaced, whitespace collapsed.

    Most values need nothing, which one regular expression settles; the others are translated,
    their whitespace runs made one space and the ends trimmed, as ``" ".join(value.split())``.
    """
    needs_work = f"'[,;={WHITESPACE_BUT_SPACE_RE}]|^ | $|  '"
    spaced = f"regexp_replace(translate({column}, E',;=\\n\\r', '//:  '), '[{WHITESPACE_RE}]+', ' ', 'g')"
    return f"CASE WHEN {column} ~ {needs_work} THEN btrim({spaced}, ' ') ELSE {column} END"


def request_sql() -> str:
    """The user message: the agent's prompt, else the segment's request; then the target outcome, if any."""
    parts = ", ".join(
        f"'{label}=' || NULLIF({normalized(f'l.{column}')}, '')"
        for label, column in zip(SEGMENT_LABELS, SEGMENT_COLUMNS, strict=True)
    )
    segment = f"COALESCE('Write a message for: ' || NULLIF(concat_ws(', ', {parts}), ''), 'Write a message.')"
    outcome = "CASE WHEN best.outcome <> '' THEN E'\\n\\nTarget outcome: ' || best.outcome ELSE '' END"
    return f"(CASE WHEN l.prompt <> '' THEN l.prompt ELSE {segment} END) || {outcome}"


def blank(text: str) -> str:
    """Whether a text is whitespace only; cheap for the usual text, whose first character settles it.

    Only a text that starts with whitespace is matched against the (anchored) expression.
    """
    return f"({text} = '' OR (strpos({WHITESPACE_SQL}, left({text}, 1)) > 0 AND {text} ~ '^[{WHITESPACE_RE}]*$'))"


SEGMENT_TEXT = "concat({})".format(", ".join(f"l.{column}" for column in SEGMENT_COLUMNS))
# A row the database cannot vouch for: written around the API, not counted, a blank message, or a
# reserved token in one. Checked on the columns the texts are made of; a false alarm (a token
# split across two segment values, say) only sends the row down the exact path.
SUSPECT_SQL = (
    "NOT l.texts_scrubbed OR l.training_tokens IS NULL "
    f"OR (l.prompt <> '' AND best.outcome = '' AND {blank('l.prompt')}) "
    f"OR ({blank('l.subject')} AND {blank(TARGET)}) "
    f"OR strpos(l.prompt, '<|') > 0 OR strpos({SEGMENT_TEXT}, '<|') > 0 "
    f"OR strpos(l.subject, '<|') > 0 OR strpos({TARGET}, '<|') > 0"
)
# What a suspect row carries for the Python path (NULL for the others): SftRow's texts, then the outcome.
RAW_FIELDS = SftRow._fields[: SftRow._fields.index("company") + 1]
RAW_SQL = "CASE WHEN {} THEN encode(convert_to(json_build_array({})::text, 'UTF8'), 'hex') END".format(
    SUSPECT_SQL, ", ".join(TARGET if name == "target" else f"l.{name}" for name in RAW_FIELDS) + ", best.outcome"
)
# The assistant message is "Subject: <subject>\n\n<target>", or the target alone when the subject is blank.
FIELDS = ("held_out", "kind", "deal", "training_tokens", "request", "subject", "target", "raw")
EXPRESSIONS = {
    "kind": "best.kind",
    "deal": "best.deal",
    "training_tokens": "l.training_tokens",
    "request": request_sql(),
    "subject": f"CASE WHEN NOT {blank('l.subject')} THEN l.subject END",
    "target": TARGET,
    "raw": RAW_SQL,
}
# How a row that is not suspect ends in COPY's text format: its last field, raw, is NULL.
NULL = b"\\N"
CLEAN_END = b"\t" + NULL + b"\n"
# COPY's text format escapes a text almost as JSON escapes a string: a backslash, \b, \f, \n, \r and
# \t alike. It leaves quotes alone (JSON escapes them), writes a vertical tab as \v (JSON: \u000b)
# and leaves other control characters raw (JSON escapes them). A chunk holding either of the last
# two (rare) has its texts converted exactly; a false alarm (a backslash before "v") is only slower.
RAW_CONTROLS = bytes([*range(0x09), *range(0x0B, 0x20)])
ALL_BUT_RAW_CONTROLS = bytes(byte for byte in range(256) if byte not in RAW_CONTROLS)
COPY_ESCAPES = {b"\\": b"\\", b"n": b"\n", b"t": b"\t", b"r": b"\r", b"b": b"\b", b"f": b"\f", b"v": b"\v"}
COPY_ESCAPE = re.compile(rb"\\(.)")


def json_string(copied: bytes) -> bytes:
    """A text as COPY wrote it, as the inside of a JSON string (exactly as orjson writes it)."""
    text = COPY_ESCAPE.sub(lambda match: COPY_ESCAPES[match.group(1)], copied).decode()
    return orjson.dumps(text)[1:-1]


def exact_json(record: list[bytes]) -> list[bytes]:
    """A row whose texts hold characters COPY and JSON escape differently, with its texts made JSON."""
    for index in (4, 5, 6):
        if record[index] != NULL:
            record[index] = json_string(record[index])
    return record


def subject_part(subject: bytes) -> bytes:
    """The start of an assistant message: "Subject: ...", then a blank line (in JSON), or nothing."""
    return b"" if subject == NULL else b"Subject: " + subject + b"\\n\\n"


def database_query(query: ExampleQuery) -> ExampleQuery:
    """``query`` (the SFT or KTO export's) with the examples' texts built by the database."""
    return dataclasses.replace(query, fields=FIELDS, expressions=EXPRESSIONS)


@dataclass
class Output:
    """One file being filled: its writer, and how its lines end (SFT's, or KTO's by label)."""

    writer: JsonlWriter
    head: bytes
    middle: bytes
    tails: tuple[bytes, bytes]

    def write(self, records: list[list[bytes]], counts: list[int]) -> None:
        """Write clean rows (already counted) as lines: fixed fragments around the rows' JSON strings."""
        requests, subjects, targets = (map(itemgetter(index), records) for index in (4, 5, 6))
        ends = map(self.tails.__getitem__, map(b"1".__eq__, map(itemgetter(1), records)))
        pieces = zip(repeat(self.head), requests, repeat(self.middle), map(subject_part, subjects), targets, ends)
        self.writer.write_lines(b"".join(chain.from_iterable(pieces)), len(records))
        self.writer.validator.feed_counted(counts)


class DatabaseLines:
    """Writes the rows of :func:`database_query` into a :class:`WrittenDataset`, a chunk at a time.

    ``system`` is the formatter's system message, ``kto`` whether rows are KTO's, and
    ``fallback`` the formatter's own line of an :class:`SftRow` (for the rows marked suspect).
    """

    def __init__(
        self, dataset: WrittenDataset, *, system: dict[str, str], counter: ExampleCounter, kto: bool,
        fallback: Callable[[SftRow], Line | None],
    ) -> None:  # fmt: skip
        self.dataset, self.counter, self.kto, self.fallback = dataset, counter, kto, fallback
        self.fixed = counter.message("system", system["content"]) + REPLY_PRIMING_TOKENS + counter.completion("", 0)
        self.request_counts: dict[bytes, int] = {}
        user = b',{"role":"user","content":"'
        if kto:
            parts = (b'{"prompt":[', b'"}],"completion":[{"role":"assistant","content":"')
            tails = (b'"}],"label":false}\n', b'"}],"label":true}\n')
        else:
            parts, tails = (b'{"messages":[', b'"},{"role":"assistant","content":"'), (b'"}]}\n', b'"}]}\n')
        head = parts[0] + orjson.dumps(system) + user
        self.training = Output(dataset.training, head, parts[1], tails)
        self.validation = Output(dataset.validation, head, parts[1], tails) if dataset.validation else None

    def copy(self, statement: tuple[str, Sequence[Any]], progress: Progress | None) -> None:
        """Stream the statement through ``COPY`` and write every row; call inside a transaction."""
        sql, params = statement
        written, rows = 0, []
        with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({sql}) TO STDOUT", params) as copy:
            for data in copy:
                rows.append(data)
                if len(rows) == CHUNK_ROWS:
                    written += self.chunk(rows)
                    rows = []
                    if progress is not None and written % PROGRESS_EVERY < CHUNK_ROWS:
                        progress(written)
        written += self.chunk(rows)
        if progress is not None:
            progress(written)

    def chunk(self, rows: list[Any]) -> int:
        """Write a chunk of COPY rows in order: runs of clean rows at once, suspect rows one by one."""
        text = b"".join(rows)
        exact = bool(text.translate(None, ALL_BUT_RAW_CONTROLS)) or b"\\v" in text
        if not exact:
            text = text.replace(b'"', b'\\"')  # the texts become JSON strings; no other field holds a quote
        records = [line.split(b"\t") for line in text.split(b"\n")[:-1]]
        if exact:
            records = [exact_json(record) for record in records]
        if text.count(CLEAN_END) == len(records):
            self.clean(records)
            return len(records)
        start = 0
        for index, record in enumerate(records):
            if record[7] != NULL:
                self.clean(records[start:index])
                self.suspect(record)
                start = index + 1
        self.clean(records[start:])
        return len(records)

    def clean(self, records: list[list[bytes]]) -> None:
        """Rows the database vouches for: tokens from the stored count and the cached request counts."""
        if self.validation is not None:
            self.to(self.validation, [record for record in records if record[0] == b"1"])
            records = [record for record in records if record[0] != b"1"]
        self.to(self.training, records)

    def to(self, output: Output, records: list[list[bytes]]) -> None:
        if not records:
            return
        known, fixed = self.request_counts, self.fixed
        counts = [
            fixed + (known.get(record[4]) or self.count_request(record[4])) + int(record[3]) for record in records
        ]
        output.write(records, counts)
        if output is self.training:
            kinds, deals = [record[1] for record in records], [record[2] for record in records]
            self.dataset.count_many(positive=kinds.count(b"1"), total=len(kinds), deals=deals.count(b"1"))

    def count_request(self, request: bytes) -> int:
        """Tokens of a user message (the inside of its JSON string), remembered in a bounded memory."""
        if len(self.request_counts) >= PROMPT_CACHE_SIZE:
            self.request_counts.clear()
        text = orjson.loads(b'"' + request + b'"')
        tokens = self.request_counts[request] = int(self.counter.message("user", text))
        return tokens

    def suspect(self, record: list[bytes]) -> None:
        """A suspect row through the formatter's own path (it may turn out a duplicate, and be left out)."""
        held_out, kind, deal, stored, *_, raw = record
        *texts, outcome = orjson.loads(bytes.fromhex(raw.decode("ascii")))
        tokens = None if stored == NULL else int(stored)
        row = SftRow(*texts, int(kind), int(deal), outcome, int(held_out), tokens)  # type: ignore[call-arg]
        line = self.fallback(row)
        if line is None:
            return
        example, held, positive, closed, counted = line
        output = self.validation if held and self.validation is not None else self.training
        if self.kto:
            example = kto_example(example, positive)
        output.writer.write_lines(orjson.dumps(example, option=orjson.OPT_APPEND_NEWLINE), 1)
        output.writer.validator.feed_example(example, counted)
        if output is self.training:
            self.dataset.count(positive=positive, deal=closed)
