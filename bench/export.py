"""Benchmark: the export a training run performs, end to end, against a binary COPY of the same rows.

Usage (from the project's root)::

    .venv/bin/python bench/export.py [N] [--rounds 3] [--raw-share 0.01] [--memory-check]
    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench .venv/bin/python bench/export.py 200000

It builds N outcome labels (default 200,000) for an organization called ``bench``: messages of
about 600 characters as ``outcome_upsert`` stores them (scrubbed at write time, their training
text's tokens counted and stored), except ``--raw-share`` of them (default 1 %) stored raw, as
rows written straight to the table would be. Building is never timed. The raw rows are then
scrubbed in place, once, as a pool's first export does (that one-time step is timed on its own).
Then it runs each variant in its own process, interleaved, for ``--rounds`` rounds, and prints
the median with the range:

- ``export_full``: ``export_to_jsonl`` as a training run calls it (SFT: on PostgreSQL the
  database builds the examples' texts; on SQLite the Python path: the pool's query,
  scrubbing, JSON, sha256, validation, exact token counts, cost, atomic rename);
- ``copy_org`` (the floor): ``COPY (SELECT <the columns the export reads> FROM outcome_labels
  WHERE organization_id = ...) TO STDOUT (FORMAT BINARY)`` read through psycopg into a file;
- ``copy_query``: the same COPY of the export's own query (duplicate collapse, classes, order);
- ``raw_json``: a raw cursor on the export's query writing JSON lines with orjson (no scrubbing,
  validation or counting): the floor on SQLite, where there is no COPY;
- ``export_full@baseline``, with ``--baseline-tree DIR``: ``export_full`` of another checkout (say,
  the main branch, with this script copied into its ``bench/``) in the same rounds, for a
  before/after under the same conditions; ``--baseline-database URL`` when that checkout's schema
  differs (a copy of the database made with ``CREATE DATABASE ... TEMPLATE``, migrated back).

Floors time only the statement and the bytes it returns: no ``COUNT(*)``, no start-up. Every
variant is timed inside its process, after Django's set-up and the connection are made, so process
start-up is excluded everywhere, and so is loading the tokenizer's encoding, which a worker does
once for every export it runs. The target is ``export_full`` at most 2.0x ``copy_org``;
``--memory-check`` exports at N and at 10N and compares the peak resident sets (within 10 %).

The database is created (PostgreSQL) and migrated when needed. Without ``DATABASE_URL`` the bench
uses a scratch SQLite file in the temporary directory. Only the ``bench`` organization's labels
are ever deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_SQLITE = Path(tempfile.gettempdir()) / "flywheel_bench.sqlite3"
BUILD_CHUNK = 5_000
TARGET_FLOOR_RATIO = 2.0
MEMORY_TOLERANCE = 0.10


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DATABASE_URL", f"sqlite:///{SCRATCH_SQLITE}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False  # as in production: no query log growing with every statement


def is_postgres() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


# --- Building the data ---------------------------------------------------------------------------


def ensure_database() -> None:
    """Create the PostgreSQL database named in DATABASE_URL when it does not exist, then migrate."""
    from django.core.management import call_command
    from django.db import connection

    if is_postgres():
        import psycopg

        params = connection.get_connection_params()
        name = connection.settings_dict["NAME"]
        admin = {key: value for key, value in params.items() if key not in ("dbname", "cursor_factory", "context")}
        with psycopg.connect(dbname="postgres", autocommit=True, **admin) as server:
            if not server.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
                server.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)


SENTENCES = [
    "Teams like yours usually lose a day a week to manual pipeline reviews.",
    "We cut forecast prep from six hours to forty minutes for a similar team.",
    "Most sales leaders we talk to say their CRM data is stale by Friday.",
    "Our customers see reply rates climb once reps stop copy-pasting templates.",
    "Would a short walkthrough next week be useful?",
    "The playbook takes fifteen minutes to set up and needs no engineering help.",
    "I noticed your team is hiring account executives across three regions.",
    "Quarter-end is when deal slippage hurts the most, and it is preventable.",
    "Happy to share the benchmark report we put together for revenue leaders.",
    "If timing is off, tell me and I will not follow up again.",
    "One customer booked 40% more meetings in their first quarter with us.",
    "Your competitors are already automating the boring parts of prospecting.",
]
FIRST_NAMES = ["Jane", "Omar", "Mei", "Lars", "Priya", "Diego", "Anna", "Kwame", "Sofia", "Tom"]
LAST_NAMES = ["Doe", "Haddad", "Chen", "Berg", "Iyer", "Ramos", "Novak", "Mensah", "Rossi", "Baker"]


def message(index: int, rng: random.Random, first: str, last: str, company: str) -> tuple[str, str]:
    """(subject, body) as an agent writes them: names, and sometimes a link, a phone or an email."""
    subject = f"{first}, an idea for {company}" if rng.random() < 0.3 else "A question about your pipeline"
    lines = [f"Hi {first},", " ".join(rng.sample(SENTENCES, 8))]
    if rng.random() < 0.3:
        lines.append(f"I saw {company} is hiring account executives.")
    if rng.random() < 0.15:
        lines.append(f"Grab a slot: https://cal.example.com/{first.lower()}-{index}?utm_source=agent")
    if rng.random() < 0.05:
        domain = company.split()[0].lower()
        lines.append(f"Or call me on +1 (415) 555-{index % 10_000:04d}, or write to {first}.{last}@{domain}.com.")
    lines.append(f"Ref {index}.")
    return subject, "\n\n".join(lines)


def label_kwargs(index: int, rng: random.Random, raw_share: float) -> dict[str, Any]:
    """One label: 70 % positive, 20 % negative, 10 % neutral.

    Texts are stored as ``outcome_upsert`` stores them (scrubbed at write time), except a
    ``raw_share`` of rows written straight to the table with the prospect's data still in them,
    which the export must catch.
    """
    from django.utils import timezone

    from outcomes.scrubbing import scrub

    first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), f"Company{rng.randrange(5000)} Inc."
    subject, body = message(index, rng, first, last, company)
    stored_scrubbed = rng.random() >= raw_share
    if stored_scrubbed:
        subject, body = (scrub(text, first_name=first, last_name=last, company=company) for text in (subject, body))
    if rng.random() < 0.02:
        body = "Hi {{first_name}}, a short template that many agents send."
    sent = timezone.now() - datetime.timedelta(days=15 + rng.random() * 350)
    return {
        "external_id": f"bench-{index}",
        "industry": rng.choice(["SaaS", "Fintech", "Healthcare", "Retail"]),
        "role": rng.choice(["VP Sales", "CRO", "Head of RevOps"]),
        "company_size": rng.choice(["11-50", "51-200", "201-1000"]),
        "framework": rng.choice(["PAS", "AIDA", "BAB"]),
        "tone": rng.choice(["professional", "casual"]),
        "channel": "email",
        "first_name": first,
        "last_name": last,
        "company": company,
        "prompt": "Follow up on the webinar; mention the benchmark report." if rng.random() < 0.3 else "",
        "subject": subject,
        "body": body,
        **({ready_field(): True} if stored_scrubbed and ready_field() else {}),
        "sent_at": sent,
        **funnel(rng, sent + datetime.timedelta(days=1)),
    }


def ready_field() -> str:
    """The label model's mark of texts stored as the API stores them ("" in a baseline tree that predates it)."""
    from outcomes.models import OutcomeLabel

    names = {field.name for field in OutcomeLabel._meta.fields}
    return next((name for name in ("texts_ready", "texts_scrubbed") if name in names), "")


def funnel(rng: random.Random, later: datetime.datetime) -> dict[str, Any]:
    stages: dict[str, Any] = {"delivered_at": later, "bounced_at": later if rng.random() < 0.01 else None}
    roll = rng.random()
    if roll < 0.7:
        stages.update(opened_at=later, replied_at=later, reply_sentiment=0.8)
        if roll < 0.2:
            stages.update(meeting_booked_at=later, deal_closed_at=later, deal_value=60_000)
    elif roll < 0.8:
        stages.update(opened_at=later, clicked_at=later)
    return stages


def build(n: int, raw_share: float) -> str:
    """Make the bench organization hold exactly labels 0..n-1 (reusing what is there); return its id.

    The organization's name records the raw share; labels built with another share are replaced.
    """
    from django.db import connection

    from flywheel.models import Organization
    from outcomes.models import OutcomeLabel
    from outcomes.scoring import quality_score_expression

    name = f"Bench (raw share {raw_share:g}, 8 sentences, stored as the API stores them)"
    org, _ = Organization.objects.get_or_create(slug="bench", defaults={"name": name})
    labels = OutcomeLabel.objects.filter(organization=org)
    have = labels.count() if org.name == name else 0
    if have > n or org.name != name:
        labels.delete()
        Organization.objects.filter(pk=org.pk).update(name=name)
        have = 0
    started = time.perf_counter()
    for start in range(have, n, BUILD_CHUNK):
        rng = random.Random(start)
        stop = min(n, start + BUILD_CHUNK)
        OutcomeLabel.objects.bulk_create(
            [OutcomeLabel(organization=org, **label_kwargs(i, rng, raw_share)) for i in range(start, stop)]
        )
    if have < n:
        labels.update(quality_score=quality_score_expression())
        count_stored_tokens()
        scrub_raw_rows(org.id)
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE outcome_labels" if is_postgres() else "ANALYZE")
        print(f"built {n - have:,} labels in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return str(org.id)


def count_stored_tokens() -> None:
    """Store the labels' training-text token counts, as ``outcome_upsert`` does when it writes them.

    Rows built here go straight to the table, so the backfill that existing labels get is run
    (not timed). Code without stored counts (before they existed) has nothing to run.
    """
    try:
        from outcomes.stored_texts import training_tokens_backfill
    except ImportError:
        return
    started = time.perf_counter()
    counted = training_tokens_backfill()
    print(f"counted {counted:,} training texts in {time.perf_counter() - started:.1f}s", file=sys.stderr)


def scrub_raw_rows(org_id: Any) -> None:
    """Scrub the raw share in place, once, as the first export of a pool does (timed on its own).

    An export scrubs the rows written around the API before it reads the pool, and each row only
    once; the rounds then measure the export a pool's runs perform from then on.
    """
    try:
        from outcomes.stored_texts import outcome_texts_scrub
    except ImportError:
        return
    started = time.perf_counter()
    scrubbed = outcome_texts_scrub(organization_id=org_id)
    print(f"scrubbed {scrubbed:,} raw labels in place in {time.perf_counter() - started:.1f}s (once)", file=sys.stderr)


# --- Variants (each runs in a child process) -----------------------------------------------------


def export_full(org_id: str, path: Path) -> int:
    from training.datasets import OutcomeDataFormatter

    return OutcomeDataFormatter().export_to_jsonl(path, organization_id=org_id).count


def export_sql(org_id: str) -> tuple[str, list[Any]]:
    """The export's own SFT query (in the table's order where the checkout has it, as its database path reads)."""
    import dataclasses

    from training.datasets import Selection, sft_query

    selection = Selection(org_id, 0.6, True, False, None)
    if "table_order" in {field.name for field in dataclasses.fields(Selection)}:
        selection = dataclasses.replace(selection, table_order=True)
    return sft_query(selection).stream(None)


EXPORT_COLUMNS = (
    "id, sent_at, quality_score, prompt, industry, role, company_size, framework, tone, channel, "
    "subject, body, ideal_body, first_name, last_name, company, bounced_at, deal_closed_at, excluded_from_training"
)


def org_sql(org_id: str) -> tuple[str, list[Any]]:
    """The organization's rows: every column the export reads, nothing else."""
    return f"SELECT {EXPORT_COLUMNS} FROM outcome_labels WHERE organization_id = %s", [org_id]


def copy_to_file(statement: str, params: list[Any], path: Path) -> int:
    """COPY to a file through the psycopg cursor itself (no Django); the bytes it wrote."""
    from django.db import connection

    size = 0
    with connection.cursor() as cursor, path.open("wb") as out, cursor.cursor.copy(statement, params) as copy:
        for block in copy:
            size += out.write(block)
    return size


def copy_variant(make_sql: Callable[[str], tuple[str, list[Any]]]) -> Callable[[str, Path], int]:
    def run(org_id: str, path: Path) -> int:
        sql, params = make_sql(org_id)
        copy_to_file(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params, path)
        return 0  # rows are not counted: a count would be a second statement inside the floor

    return run


def raw_json(org_id: str, path: Path) -> int:
    """A raw cursor over the export's query, the same JSON lines through orjson, nothing else."""
    import orjson
    from django.conf import settings
    from django.db import connection, transaction

    sql, params = export_sql(org_id)
    system = {"role": "system", "content": settings.TRAINING_SYSTEM_PROMPT}
    count = 0
    with transaction.atomic(), connection.chunked_cursor() as cursor, path.open("wb", buffering=1 << 20) as out:
        cursor.execute(sql, params)
        while rows := cursor.fetchmany(2000):
            for row in rows:
                segment = ", ".join(f"{key}={value}" for key, value in zip(LABELS, row[1:7], strict=True))
                user = row[0] or f"Write a message for: {segment}"
                text = f"Subject: {row[7]}\n\n{row[8]}"
                messages = [system, {"role": "user", "content": user}, {"role": "assistant", "content": text}]
                out.write(orjson.dumps({"messages": messages}, option=orjson.OPT_APPEND_NEWLINE))
                count += 1
    return count


LABELS = ("Industry", "Role", "Company size", "Framework", "Tone", "Channel")

VARIANTS: dict[str, Callable[[str, Path], int]] = {
    "export_full": export_full,
    "copy_org": copy_variant(org_sql),
    "copy_query": copy_variant(export_sql),
    "raw_json": raw_json,
}
POSTGRES_ONLY = {"copy_org", "copy_query"}


def peak_rss_mb() -> float:
    """This process's peak resident set since it started its program (the kernel's VmHWM)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def warm_encodings() -> None:
    """Load the tokenizer's encoding, as a worker does once for all the exports it runs (start-up, untimed)."""
    from django.conf import settings

    from training.tokens import encoding_for

    encoding_for(settings.TRAINING_BASE_MODEL).encode_ordinary("warm")


def child(variant: str, org_id: str) -> None:
    """Run one variant once and print its figures as JSON (the parent's only input)."""
    setup_django()
    from django.db import connection

    connection.ensure_connection()
    warm_encodings()
    path = Path(tempfile.mkdtemp(prefix="flywheel-bench-")) / f"{variant}.jsonl"
    started = time.perf_counter()
    rows = VARIANTS[variant](org_id, path)
    seconds = time.perf_counter() - started
    size = path.stat().st_size
    path.unlink()
    print(json.dumps({"rows": rows, "seconds": seconds, "rss_mb": peak_rss_mb(), "bytes": size}))


# --- The parent ----------------------------------------------------------------------------------


BASELINE_SUFFIX = "@baseline"
BASELINE_TREE: list[Path] = []  # --baseline-tree: another checkout whose export runs beside this one's
BASELINE_DATABASE: list[str] = []  # --baseline-database: the database that checkout reads (its schema)


def run_child(variant: str, org_id: str) -> dict[str, Any]:
    script, name, env = Path(__file__), variant, os.environ.copy()
    if variant.endswith(BASELINE_SUFFIX):
        script, name = BASELINE_TREE[0] / "bench" / "export.py", variant.removesuffix(BASELINE_SUFFIX)
        if BASELINE_DATABASE:
            env["DATABASE_URL"] = BASELINE_DATABASE[0]
    command = [sys.executable, str(script), "--child", name, "--org", org_id]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)  # noqa: S603
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def interleaved(variants: list[str], org_id: str, rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Every variant once per round, the order rotated each round so that none always runs first."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for round_number in range(rounds):
        shift = round_number % len(variants)
        for name in variants[shift:] + variants[:shift]:
            runs[name].append(run_child(name, org_id))
            print(f"  round {round_number + 1}: {name} {runs[name][-1]['seconds']:.2f}s", file=sys.stderr)
    return runs


def seconds_of(runs: list[dict[str, Any]]) -> list[float]:
    return [run["seconds"] for run in runs]


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    """Medians with their ranges, ratios to the floor, the target and its verdict."""
    floor_name = "copy_org" if "copy_org" in runs else "raw_json"
    floor = statistics.median(seconds_of(runs[floor_name]))
    print(
        f"{'variant':<12} {'rows':>9} {'median s':>9} {'range s':>13} {'x floor':>8} {'peak RSS MB':>12} {'MB out':>8}"
    )
    for name, results in runs.items():
        times = seconds_of(results)
        median = statistics.median(times)
        rows = f"{results[0]['rows']:,}" if results[0]["rows"] else "-"
        print(
            f"{name:<12} {rows:>9} {median:>9.2f} {min(times):>6.2f}-{max(times):<6.2f} {median / floor:>8.2f} "
            f"{max(run['rss_mb'] for run in results):>12.1f} {results[0]['bytes'] / 2**20:>8.1f}"
        )
    for name in (variant for variant in runs if variant.startswith("export_full")):
        ratio = statistics.median(seconds_of(runs[name])) / floor
        ratios = [a / b for a, b in zip(seconds_of(runs[name]), seconds_of(runs[floor_name]), strict=True)]
        print(
            f"{name} / {floor_name}: {ratio:.2f}x (per-round range {min(ratios):.2f}-{max(ratios):.2f}; "
            f"target <= {TARGET_FLOOR_RATIO}x): {_ok(ratio <= TARGET_FLOOR_RATIO)}"
        )


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def memory_check(n: int, raw_share: float, rounds: int) -> None:
    """Export at N and at 10N; the peak resident sets must stay within 10 %."""
    peaks = {}
    for size in (n, 10 * n):
        org_id = build(size, raw_share)
        results = [run_child("export_full", org_id) for _ in range(rounds)]
        peaks[size] = statistics.median(run["rss_mb"] for run in results)
        seconds = statistics.median(seconds_of(results))
        print(f"N={size:>9,}: {results[0]['rows']:,} examples in {seconds:.2f}s, peak RSS {peaks[size]:.1f} MB")
    growth = peaks[10 * n] / peaks[n] - 1
    print(
        f"peak RSS at 10N vs N: {growth:+.1%} (target within {MEMORY_TOLERANCE:.0%}): {_ok(growth <= MEMORY_TOLERANCE)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000, help="labels to build (default 200,000)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians and ranges are shown")
    parser.add_argument("--memory-check", action="store_true", help="compare the export's peak memory at N and 10N")
    parser.add_argument("--variants", default="", help="comma-separated subset of the variants")
    parser.add_argument(
        "--raw-share", type=float, default=0.01, help="share of labels stored with raw personal data (default 0.01)"
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout (with this bench copied in): its export_full runs in the same rounds",
    )
    parser.add_argument(
        "--baseline-database",
        help="the database the baseline tree reads, when its schema differs: a copy of this one's, migrated back",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--org", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.org)
        return
    setup_django()
    ensure_database()
    print(f"database: {'PostgreSQL' if is_postgres() else 'SQLite'}", file=sys.stderr)
    if args.memory_check:
        memory_check(args.n, args.raw_share, args.rounds)
        return
    org_id = build(args.n, args.raw_share)
    chosen = args.variants.split(",") if args.variants else list(VARIANTS)
    variants = [name for name in chosen if is_postgres() or name not in POSTGRES_ONLY]
    if args.baseline_tree:
        BASELINE_TREE.append(args.baseline_tree.resolve())
        BASELINE_DATABASE.extend([args.baseline_database] if args.baseline_database else [])
        variants.append("export_full" + BASELINE_SUFFIX)
    report(interleaved(variants, org_id, args.rounds))


if __name__ == "__main__":
    main()
