"""Benchmark: the training-data export against the database's own floors.

Usage (from the project's root)::

    .venv/bin/python bench/export.py [N] [--repeat 3] [--raw-share 0.01] [--memory-check]
    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_bench .venv/bin/python bench/export.py 200000

It builds N outcome labels (default 200,000) for an organization called ``bench`` in the
configured database: texts as ``outcome_upsert`` stores them (agents' messages with names, links,
phones and emails, scrubbed at write time), except ``--raw-share`` of them (default 1 %) stored
raw, as rows written straight to the table would be. Then it times each variant in its own
subprocess, so that memory peaks do not mix, and prints rows per second, peak memory and ratios:

- ``export``: the project's export as a training run streams it (``write_jsonl``: SFT, scrubbing
  included, sha256, atomic rename), without validation;
- ``export_dpo``: the same for DPO pairs;
- ``export_full``: ``export_to_jsonl`` end to end, adding validation and exact token counts;
- PostgreSQL floors on the export's own query: ``copy_binary`` (``COPY ... TO STDOUT (FORMAT
  BINARY)`` read through psycopg, no JSON at all), ``copy_binary_plain`` (the same columns with
  only the eligibility filter, i.e. without the duplicate collapse) and ``copy_json``
  (``json_build_object`` in the server, ``COPY ... TO STDOUT``);
- ``raw_json``: a raw cursor on the same query writing the same JSON lines with orjson (no
  scrubbing, no Django model layer): the SQLite baseline, also shown on PostgreSQL;
- ``scrub``: the cost per row of the personal-data guard against scrubbing every text.

Peak memory is the child's maximum resident set (``ru_maxrss``) beside the growth of the Python
heap measured by ``tracemalloc`` in a separate run of the same child (tracing slows it down, so
it is never timed). ``--memory-check`` runs the export at N and at 4N and compares the peaks.

The database is created (PostgreSQL) and migrated when needed. Without ``DATABASE_URL`` the bench
uses a scratch SQLite file in the temporary directory, never the development database. Only the
``bench`` organization's labels are ever deleted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRATCH_SQLITE = Path(tempfile.gettempdir()) / "flywheel_bench.sqlite3"
BUILD_CHUNK = 5_000
SCRUB_SAMPLE = 50_000
TARGET_FLOOR_RATIO = 2.5
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
    lines = [f"Hi {first},", " ".join(rng.sample(SENTENCES, 5))]
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
    if rng.random() >= raw_share:
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
        "sent_at": sent,
        **funnel(rng, sent + datetime.timedelta(days=1)),
    }


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

    name = f"Bench (raw share {raw_share:g})"
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
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE outcome_labels" if is_postgres() else "ANALYZE")
        print(f"built {n - have:,} labels in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return str(org.id)


# --- Variants (each runs in a child process) -----------------------------------------------------


def selection(org_id: str) -> Any:
    from training.datasets import Selection

    return Selection(org_id, 0.6, True, False, None)


def export_variant(method: str) -> Callable[[str, Path], int]:
    def run(org_id: str, path: Path) -> int:
        from training.datasets import OutcomeDataFormatter

        written = OutcomeDataFormatter().write_jsonl(path, selection(org_id), method)  # type: ignore[arg-type]
        written.training.commit()
        return written.training.count

    return run


def export_full(org_id: str, path: Path) -> int:
    from training.datasets import OutcomeDataFormatter

    return OutcomeDataFormatter().export_to_jsonl(path, organization_id=org_id).count


def export_sql(org_id: str, plain: bool = False) -> tuple[str, list[Any]]:
    """The export's own SFT query (or, with ``plain``, the same columns without the duplicate collapse)."""
    from outcomes.models import OutcomeLabel
    from outcomes.selectors import positive_q
    from training.datasets import SEGMENT_COLUMNS, sft_query

    if not plain:
        return sft_query(selection(org_id)).stream(None)
    queryset = (
        OutcomeLabel.objects.filter(organization_id=org_id, excluded_from_training=False)
        .filter(positive_q(0.6))
        .order_by("-quality_score", "-sent_at", "-id")
        .values_list("prompt", *SEGMENT_COLUMNS, "subject", "body", "ideal_body", "first_name", "last_name", "company")
    )
    sql, params = queryset.query.sql_with_params()
    return sql, list(params)


def copy_to_file(statement: str, params: list[Any], path: Path, serial: bool) -> None:
    """COPY to a file through the psycopg cursor itself (no Django), optionally without parallel workers.

    A server-side cursor, which the export needs to stream, never runs in parallel; on a busy
    machine the parallel plan a COPY gets can be slower or faster, so the floor is taken both ways.
    """
    from django.db import connection

    with connection.cursor() as cursor, path.open("wb") as out:
        raw = cursor.cursor
        if serial:
            raw.execute("SET max_parallel_workers_per_gather = 0")
        with raw.copy(statement, params) as copy:
            for block in copy:
                out.write(block)


def copy_binary(org_id: str, path: Path, plain: bool = False, serial: bool = False) -> int:
    sql, params = export_sql(org_id, plain)
    copy_to_file(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params, path, serial)
    return count_rows(sql, params)


def copy_json(org_id: str, path: Path, serial: bool = False) -> int:
    from django.conf import settings

    sql, params = export_sql(org_id)
    user = (
        "CASE WHEN q.prompt <> '' THEN q.prompt ELSE 'Write a message for: Industry=' || q.industry"
        " || ', Role=' || q.role || ', Company size=' || q.company_size || ', Framework=' || q.framework"
        " || ', Tone=' || q.tone || ', Channel=' || q.channel END"
    )
    assistant = "'Subject: ' || q.subject || E'\\n\\n' || q.target"
    select = (
        "SELECT json_build_object('messages', json_build_array("
        "json_build_object('role', 'system', 'content', %s::text), "
        f"json_build_object('role', 'user', 'content', {user}), "
        f"json_build_object('role', 'assistant', 'content', {assistant}))) FROM ({sql}) q"
    )
    copy_to_file(f"COPY ({select}) TO STDOUT", [settings.TRAINING_SYSTEM_PROMPT, *params], path, serial)
    return count_rows(sql, params)


def raw_json(org_id: str, path: Path) -> int:
    """A raw cursor over the same query, the same JSON lines through orjson, nothing else."""
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


def count_rows(sql: str, params: list[Any]) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({sql}) q", params)
        return int(cursor.fetchone()[0])


def scrub_cost(org_id: str, path: Path) -> int:
    """Time the guard (scrub only rows whose texts may hold personal data) against scrubbing every text."""
    from outcomes.models import OutcomeLabel
    from outcomes.scrubbing import may_hold_personal_data, scrub
    from training.datasets import scrubbed

    rows = list(
        OutcomeLabel.objects.filter(organization_id=org_id).values_list(
            "first_name", "last_name", "company", "subject", "body", "prompt"
        )[:SCRUB_SAMPLE]
    )
    started = time.perf_counter()
    for first, last, company, *texts in rows:
        scrubbed(first, last, company, *texts)
    guarded = time.perf_counter() - started
    started = time.perf_counter()
    for first, last, company, *texts in rows:
        for text in texts:
            scrub(text, first_name=first, last_name=last, company=company)
    everything = time.perf_counter() - started
    flagged = sum(
        may_hold_personal_data("\n".join(texts), first, last, company) for first, last, company, *texts in rows
    )
    figures = {"guarded_us": guarded / len(rows) * 1e6, "scrub_all_us": everything / len(rows) * 1e6}
    path.write_text(json.dumps({**figures, "flagged": flagged / len(rows)}))
    return len(rows)


VARIANTS: dict[str, Callable[[str, Path], int]] = {
    "export": export_variant("sft"),
    "export_dpo": export_variant("dpo"),
    "export_full": export_full,
    "copy_binary": copy_binary,
    "copy_binary_serial": lambda org_id, path: copy_binary(org_id, path, serial=True),
    "copy_binary_plain": lambda org_id, path: copy_binary(org_id, path, plain=True),
    "copy_json": copy_json,
    "copy_json_serial": lambda org_id, path: copy_json(org_id, path, serial=True),
    "raw_json": raw_json,
    "scrub": scrub_cost,
}
POSTGRES_ONLY = {name for name in VARIANTS if name.startswith("copy_")}


def peak_rss_mb() -> float:
    """This process's peak resident set since it started its program.

    ``ru_maxrss`` would carry the parent's peak over (Linux keeps it across fork and exec), so
    the kernel's per-program high-water mark is read instead where there is one.
    """
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(variant: str, org_id: str, trace: bool) -> None:
    """Run one variant once and print its figures as JSON (the parent's only input)."""
    setup_django()
    from django.db import connection

    connection.ensure_connection()
    path = Path(tempfile.mkdtemp(prefix="flywheel-bench-")) / f"{variant}.jsonl"
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    rows = VARIANTS[variant](org_id, path)
    seconds = time.perf_counter() - started
    heap = tracemalloc.get_traced_memory()[1] if trace else 0
    cached = cache_entries()
    cache_mb = cache_heap_mb() if trace else 0.0
    extra = json.loads(path.read_text()) if variant == "scrub" else {}
    size = path.stat().st_size
    path.unlink()
    print(
        json.dumps(
            {
                "rows": rows,
                "seconds": seconds,
                "rss_mb": peak_rss_mb(),
                "heap_mb": heap / 2**20,
                "bytes": size,
                "cached": cached,
                "cache_mb": cache_mb,
                **extra,
            }
        )
    )


def bounded_caches() -> tuple[Any, ...]:
    """The bounded caches an export fills: they grow until their bound, then stay."""
    from outcomes import scrubbing
    from training import datasets

    return (scrubbing.first_word, datasets.segment_request, scrubbing._name_values)


def cache_entries() -> int:
    return sum(cache.cache_info().currsize for cache in bounded_caches())


def cache_heap_mb() -> float:
    """Python heap held by the bounded caches: what clearing them gives back (tracing must be on)."""
    held = tracemalloc.get_traced_memory()[0]
    entries = cache_entries()
    for cache in bounded_caches():
        cache.cache_clear()
    gc.collect()
    return (held - tracemalloc.get_traced_memory()[0]) / 2**20 if entries else 0.0


# --- The parent ----------------------------------------------------------------------------------


def run_child(variant: str, org_id: str, trace: bool = False) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", variant, "--org", org_id, *(["--trace"] if trace else [])]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=os.environ.copy())  # noqa: S603
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(variant: str, org_id: str, repeat: int) -> dict[str, Any]:
    """Best time of ``repeat`` runs (others share this machine), with the peaks of a traced run."""
    runs = [run_child(variant, org_id) for _ in range(repeat)]
    best = min(runs, key=lambda run: run["seconds"])
    best["rss_mb"] = max(run["rss_mb"] for run in runs)
    traced = run_child(variant, org_id, trace=True) if variant != "scrub" else {"heap_mb": 0.0, "cache_mb": 0.0}
    best["heap_mb"], best["cache_mb"] = traced["heap_mb"], traced["cache_mb"]
    return best


def fastest(results: dict[str, dict[str, Any]], *names: str) -> dict[str, Any] | None:
    """The fastest of the named runs that took place (the stricter baseline)."""
    runs = [results[name] for name in names if name in results]
    return min(runs, key=lambda run: run["seconds"]) if runs else None


def report(results: dict[str, dict[str, Any]]) -> None:
    floor = fastest(results, "copy_binary", "copy_binary_serial") or results.get("raw_json")
    print(
        f"{'variant':<18} {'rows':>9} {'seconds':>8} {'rows/s':>10} {'x floor':>8} {'peak RSS MB':>12} {'heap MB':>8}"
    )
    for name, run in results.items():
        if name == "scrub":
            continue
        ratio = run["seconds"] / floor["seconds"] if floor else float("nan")
        rate = run["rows"] / run["seconds"] if run["seconds"] else 0
        print(
            f"{name:<18} {run['rows']:>9,} {run['seconds']:>8.2f} {rate:>10,.0f} {ratio:>8.2f} "
            f"{run['rss_mb']:>12.1f} {run['heap_mb']:>8.1f}"
        )
    if "scrub" in results:
        scrub = results["scrub"]
        print(
            f"personal data per row ({scrub['rows']:,} rows; subject, body, prompt): guard + scrub where flagged "
            f"{scrub['guarded_us']:.2f} µs ({scrub['flagged']:.1%} flagged), "
            f"scrub every text {scrub['scrub_all_us']:.2f} µs"
        )
    verdicts(results)


def verdicts(results: dict[str, dict[str, Any]]) -> None:
    export = results["export"]["seconds"]
    floor, as_json = (
        fastest(results, "copy_binary", "copy_binary_serial"),
        fastest(results, "copy_json", "copy_json_serial"),
    )
    if floor and as_json:
        ratio = export / floor["seconds"]
        print(
            f"export / binary COPY floor (the faster plan): {ratio:.2f}x "
            f"(target <= {TARGET_FLOOR_RATIO}x): {_ok(ratio <= TARGET_FLOOR_RATIO)}"
        )
        json_ratio = export / as_json["seconds"]
        print(
            f"export / json_build_object COPY (the faster plan): {json_ratio:.2f}x (target < 1): {_ok(json_ratio < 1)}"
        )
        plain = results["copy_binary_plain"]["seconds"]
        print(f"export / binary COPY without the duplicate collapse: {export / plain:.2f}x (for scale)")
    if "raw_json" in results:
        print(f"export / raw cursor + orjson: {export / results['raw_json']['seconds']:.2f}x")


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def memory_check(n: int, raw_share: float) -> None:
    """Export at N and at 4N; the peaks must stay within 10 %."""
    peaks = {}
    for size in (n, 4 * n):
        org_id = build(size, raw_share)
        peaks[size] = measure("export", org_id, repeat=1)
        run = peaks[size]
        print(
            f"N={size:>9,}: {run['rows']:,} examples in {run['seconds']:.2f}s, "
            f"peak RSS {run['rss_mb']:.1f} MB, Python heap peak {run['heap_mb']:.1f} MB, of which "
            f"{run['cache_mb']:.1f} MB in the bounded name and segment caches ({run['cached']:,} entries)"
        )
        run["streaming_mb"] = run["heap_mb"] - run["cache_mb"]
    labels = (("rss_mb", "peak RSS"), ("heap_mb", "Python heap peak"), ("streaming_mb", "heap peak less the caches"))
    for key, label in labels:
        growth = peaks[4 * n][key] / peaks[n][key] - 1
        print(
            f"{label} at 4N vs N: {growth:+.1%} "
            f"(target within {MEMORY_TOLERANCE:.0%}): {_ok(growth <= MEMORY_TOLERANCE)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=200_000, help="labels to build (default 200,000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per variant; the best counts")
    parser.add_argument("--memory-check", action="store_true", help="compare the export's peak memory at N and 4N")
    parser.add_argument(
        "--raw-share", type=float, default=0.01, help="share of labels stored with raw personal data (default 0.01)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--org", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.org, args.trace)
        return
    setup_django()
    ensure_database()
    print(f"database: {'PostgreSQL' if is_postgres() else 'SQLite'}", file=sys.stderr)
    if args.memory_check:
        memory_check(args.n, args.raw_share)
        return
    org_id = build(args.n, args.raw_share)
    variants = [name for name in VARIANTS if is_postgres() or name not in POSTGRES_ONLY]
    results = {}
    for name in variants:
        results[name] = measure(name, org_id, 1 if name in ("export_full", "scrub") else args.repeat)
        print(f"  {name}: {results[name]['seconds']:.2f}s", file=sys.stderr)
    report(results)


if __name__ == "__main__":
    main()
