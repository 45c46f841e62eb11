"""SFT and KTO examples whose JSON PostgreSQL writes: the export's fast path.

On PostgreSQL, an SFT or KTO export without metadata, for a model counted in the stored
encoding, lets the database build each example's texts as JSON strings: the assistant message,
and the user message when the agent gave a prompt (plus the target outcome when conditioned). A
row without a prompt carries its segment's values, and its request is the formatter's own,
built once per segment. One ``COPY`` streams the rows in the export's order. Python only places
fixed fragments around the texts, adds the stored token counts to the cached counts of the
requests, and writes and hashes the bytes.

A row the database cannot vouch for (not marked ``texts_ready``: written around the API, edited
since, or holding a reserved token or a blank message; or not counted) carries its raw columns
instead and takes the formatter's own Python path, so its line is the one that path writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from operator import itemgetter
from typing import Any

import orjson
from django.db import connection

from training.datasets.kto import kto_example
from training.datasets.queries import SEGMENT_COLUMNS, ExampleQuery, SftRow
from training.datasets.writer import JsonlWriter, Line, Progress, WrittenDataset
from training.tokens import PROMPT_CACHE_SIZE, REPLY_PRIMING_TOKENS, ExampleCounter

PROGRESS_EVERY = 10_000
CHUNK_ROWS = 1_000  # rows written at once
# Python's whitespace (str.strip), as a SQL string and as regular-expression escapes.
WHITESPACE = "".join(character for character in map(chr, range(0x110000)) if character.isspace())
WHITESPACE_SQL = "U&'" + "".join(f"\\{ord(character):04X}" for character in WHITESPACE) + "'"
WHITESPACE_RE = "".join(f"\\u{ord(character):04x}" for character in WHITESPACE)
TARGET = "COALESCE(NULLIF(l.ideal_body, ''), l.body)"
OUTCOME_SUFFIX = "CASE WHEN best.outcome <> '' THEN E'\\n\\nTarget outcome: ' || best.outcome ELSE '' END"


def blank(text: str) -> str:
    """Whether a text is whitespace only; cheap for the usual text, whose first character settles it.

    Only a text that starts with whitespace is matched against the (anchored) expression.
    """
    return f"({text} = '' OR (strpos({WHITESPACE_SQL}, left({text}, 1)) > 0 AND {text} ~ '^[{WHITESPACE_RE}]*$'))"


# A row the database cannot vouch for: written around the API (so not scrubbed), holding a reserved
# token or a blank message (``texts_ready`` is off for those), or not counted.
SUSPECT_SQL = "NOT l.texts_ready OR l.training_tokens IS NULL"
# What a suspect row carries for the Python path (NULL for the others): SftRow's texts, then the outcome.
RAW_FIELDS = SftRow._fields[: SftRow._fields.index("company") + 1]
RAW_SQL = "CASE WHEN {} THEN encode(convert_to(json_build_array({})::text, 'UTF8'), 'hex') END".format(
    SUSPECT_SQL, ", ".join(TARGET if name == "target" else f"l.{name}" for name in RAW_FIELDS) + ", best.outcome"
)
# A row's fingerprint: a 64-bit hash of everything its example is made of (the training text by its
# stored MD5), so that a file in the table's order is described by the sum of its rows' fingerprints.
FINGERPRINT_SQL = "hash_record_extended(ROW({}, best.outcome, best.kind), 0)".format(
    ", ".join("l.training_text_hash" if name == "target" else f"l.{name}" for name in RAW_FIELDS)
)
# The user message is the agent's prompt (built here), or else the segment's request, built in Python
# from the segment's values and the outcome (one text, tab-separated: a ready row's segment holds no
# tab), once per segment. The assistant message is "Subject: <subject>\n\n<target>", or the target
# alone when the subject is blank.
FIELDS = ("held_out", "kind", "deal", "training_tokens", "fingerprint", "request", "segment", "assistant", "raw")
HELD_OUT, KIND, DEAL, TOKENS, FINGERPRINT, REQUEST, SEGMENT, ASSISTANT, RAW = range(len(FIELDS))
SEGMENT_SEPARATOR = "\t"
SUBJECT_LINE = "'Subject: ' || l.subject || E'\\n\\n'"
EXPRESSIONS = {
    "kind": "best.kind",
    "deal": "best.deal",
    "training_tokens": "l.training_tokens",
    "fingerprint": FINGERPRINT_SQL,
    "request": f"CASE WHEN l.prompt <> '' THEN l.prompt || {OUTCOME_SUFFIX} END",
    "segment": "CASE WHEN l.prompt = '' THEN concat_ws(E'\\t', {}, best.outcome) END".format(
        ", ".join(f"l.{column}" for column in SEGMENT_COLUMNS)
    ),
    "assistant": f"CASE WHEN {blank('l.subject')} THEN {TARGET} ELSE {SUBJECT_LINE} || {TARGET} END",
    "raw": RAW_SQL,
}
# COPY's text format writes NULL so: a row that is not suspect has a NULL raw field.
NULL = b"\\N"
# COPY's text format escapes a text almost as JSON escapes a string: a backslash, \b, \f, \n, \r and
# \t alike. It leaves quotes alone (JSON escapes them), writes a vertical tab as \v (JSON: \u000b)
# and leaves other control characters raw (JSON escapes them). A chunk holding either of the last
# two (rare) has its texts converted exactly; a false alarm (a backslash before "v") is only slower.
RAW_CONTROLS = bytes([*range(0x09), *range(0x0B, 0x20)])
ALL_BUT_RAW_CONTROLS = bytes(byte for byte in range(256) if byte not in RAW_CONTROLS)
COPY_ESCAPES = {b"\\": b"\\", b"n": b"\n", b"t": b"\t", b"r": b"\r", b"b": b"\b", b"f": b"\f", b"v": b"\v"}
# A chunk's quotes are escaped before its fields are split (see DatabaseLines.chunk).
COPY_AND_QUOTE_ESCAPES = {**COPY_ESCAPES, b'"': b'"'}
COPY_ESCAPE = re.compile(rb"\\(.)")


def copied_text(copied: bytes) -> str:
    """A text as COPY wrote it (its quotes escaped or not), as the text itself."""
    return COPY_ESCAPE.sub(lambda match: COPY_AND_QUOTE_ESCAPES[match.group(1)], copied).decode()


def json_string(copied: bytes) -> bytes:
    """A text as COPY wrote it, as the inside of a JSON string (exactly as orjson writes it)."""
    text = COPY_ESCAPE.sub(lambda match: COPY_ESCAPES[match.group(1)], copied).decode()
    return orjson.dumps(text)[1:-1]


def exact_json(record: list[bytes]) -> list[bytes]:
    """A row whose texts hold characters COPY and JSON escape differently, with its texts made JSON."""
    for index in (REQUEST, ASSISTANT):
        if record[index] != NULL:
            record[index] = json_string(record[index])
    return record


def plan_for_export() -> None:
    """Settings for the export's transaction: no JIT, and a table read from its start.

    The export's query is costly by the planner's measure, so PostgreSQL would compile its
    expressions, which takes longer than the whole read; and a scan joined to another scan of the
    table midway would change the order of the rows of a file written in the table's order.
    """
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")
        cursor.execute("SET LOCAL synchronize_seqscans = off")


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
        requests, assistants = map(itemgetter(REQUEST), records), map(itemgetter(ASSISTANT), records)
        ends = map(self.tails.__getitem__, map(b"1".__eq__, map(itemgetter(KIND), records)))
        pieces = zip(repeat(self.head), requests, repeat(self.middle), assistants, ends)
        self.writer.write_lines(b"".join(chain.from_iterable(pieces)), len(records))
        self.writer.validator.feed_counted(counts)


class DatabaseLines:
    """Writes the rows of :func:`database_query` into a :class:`WrittenDataset`, a chunk at a time.

    ``system`` is the formatter's system message, ``kto`` whether rows are KTO's, and
    ``fallback`` the formatter's own line of an :class:`SftRow` (for the rows marked suspect).
    """

    def __init__(
        self, dataset: WrittenDataset, *, system: dict[str, str], counter: ExampleCounter, kto: bool,
        fallback: Callable[[SftRow], Line | None], segment_request: Callable[[tuple[str, ...], str], str],
    ) -> None:  # fmt: skip
        self.dataset, self.counter, self.kto, self.fallback = dataset, counter, kto, fallback
        self.segment_request = segment_request
        self.segment_requests: dict[bytes, bytes] = {}
        self.fingerprints = 0  # the sum of the training file's rows' fingerprints
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
            text = text.replace(b'"', b'\\"')  # the texts become JSON strings (copied_text reads the others back)
        records = [line.split(b"\t") for line in text.split(b"\n")[:-1]]
        if exact:
            records = [exact_json(record) for record in records]
        if all(record[RAW] == NULL for record in records):
            self.clean(records)
            return len(records)
        start = 0
        for index, record in enumerate(records):
            if record[RAW] != NULL:
                self.clean(records[start:index])
                self.suspect(record)
                start = index + 1
        self.clean(records[start:])
        return len(records)

    def clean(self, records: list[list[bytes]]) -> None:
        """Rows the database vouches for: tokens from the stored count and the cached request counts."""
        if self.validation is not None:
            self.to(self.validation, [record for record in records if record[HELD_OUT] == b"1"])
            records = [record for record in records if record[HELD_OUT] != b"1"]
        self.to(self.training, records)

    def to(self, output: Output, records: list[list[bytes]]) -> None:
        if not records:
            return
        known, fixed = self.request_counts, self.fixed
        for record in records:
            if record[REQUEST] == NULL:
                record[REQUEST] = self.request_of_segment(record[SEGMENT])
        counts = [
            fixed + (known.get(record[REQUEST]) or self.count_request(record[REQUEST])) + int(record[TOKENS])
            for record in records
        ]
        output.write(records, counts)
        if output is self.training:
            self.fingerprints += sum(map(int, map(itemgetter(FINGERPRINT), records)))
            kinds, deals = [record[KIND] for record in records], [record[DEAL] for record in records]
            self.dataset.count_many(positive=kinds.count(b"1"), total=len(kinds), deals=deals.count(b"1"))

    def request_of_segment(self, copied: bytes) -> bytes:
        """The user message of a row without a prompt (the inside of its JSON string), remembered per segment.

        ``copied`` is the segment's values and the outcome, tab-separated, as COPY wrote them; the
        request is the formatter's own, so it is worded exactly as the Python path words it.
        """
        request = self.segment_requests.get(copied)
        if request is None:
            if len(self.segment_requests) >= PROMPT_CACHE_SIZE:
                self.segment_requests.clear()
            *segment, outcome = copied_text(copied).split(SEGMENT_SEPARATOR)
            text = self.segment_request(tuple(segment), outcome)
            request = self.segment_requests[copied] = orjson.dumps(text)[1:-1]
        return request

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
            self.fingerprints += int(record[FINGERPRINT])
            self.dataset.count(positive=positive, deal=closed)

    def order_free_digest(self) -> str:
        """The training file's examples, described whatever their order: its frame, count and fingerprints' sum."""
        frame = b"\0".join([self.training.head, self.training.middle, *self.training.tails])
        described = b"\0".join([b"examples in any order", frame, b"%d" % self.dataset.training.count])
        return hashlib.sha256(described + b"\0%d" % (self.fingerprints % (1 << 64))).hexdigest()
