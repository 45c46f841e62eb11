"""Benchmark: the product at 200,000 and 2,000,000 labels, built with SQL in minutes, and each figure's growth per row.

Usage (from the project's root; PostgreSQL only, as production runs)::

    DATABASE_URL=postgres://postgres@127.0.0.1:54329/flywheel_scale .venv/bin/python bench/scale.py \
        [--sizes 200000,2000000] [--rounds 3]

It fills one organization (``scale``) with labels of about 600 characters by ``INSERT ... SELECT
FROM generate_series`` (texts stored as ``outcome_upsert`` stores them: scrubbed and marked so, 2 % of
them one shared template), scores them with the rubric and stores their training-text token counts with
the backfill that existing labels get (``count_training_tokens``); building is timed apart. At
each size it reports, as medians of ``--rounds`` rounds with their range:

- ``stats``: ``GET /training/stats``'s query (target under 0.5 s at 2M);
- ``export``: ``export_to_jsonl`` end to end against ``copy_org``, a binary ``COPY`` of the
  organization's rows, measured in the same round (target at most 2.0x);
- ``events``: one batch of 1,000 funnel events (``outcome_event_record_bulk``);
- ``leaderboard``: the organization's pool of the model leaderboard;
- ``route``: one routing decision (``choose_model``), in microseconds.

The last table gives each figure's growth per 1,000 rows between the two sizes. Everything runs
in this one process after start-up; run it on an otherwise idle machine for figures to keep.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")

from export import SENTENCES  # noqa: E402 - the same sentences as the export benchmark's messages

STATS_TARGET_S = 0.5
EXPORT_TARGET = 2.0
EVENTS_PER_BATCH = 1_000
ROUTES = 2_000
INSERT_CHUNK = 100_000

SENTENCE_STEPS = (1, 5, 7, 11, 13, 17, 19, 23)
# Eight sentences per body, chosen from the row number; 2 % of the rows send one shared template.
BODY_SQL = (
    "CASE WHEN g %% 50 = 0 THEN 'Hi {{first_name}}, a short template that many agents send.' ELSE "
    "'Hi {{first_name}},' || E'\\n\\n' || "
    + " || ' ' || ".join(f"(%(sentences)s::text[])[1 + (g * {k} + g / 12) %% 12]" for k in SENTENCE_STEPS)
    + " || E'\\n\\nRef ' || g || '.' END"
)
# Funnels: 70 % replied (20 % of them up to a closed deal), 10 % clicked, 1 % bounced, the rest delivered.
INSERT_SQL = f"""
INSERT INTO outcome_labels (id, organization_id, model_id, external_id, industry, role, company_size, framework,
    tone, channel, icp_match_score, first_name, last_name, company, prompt, subject, body, sent_at, delivered_at,
    opened_at, clicked_at, replied_at, meeting_booked_at, deal_closed_at, bounced_at, deal_value, quality_score,
    excluded_from_training, reviewer_note, ideal_body, created_at, updated_at, lead_hash, texts_ready)
SELECT gen_random_uuid(), %(org)s, %(model)s, 'scale-' || g,
    (ARRAY['SaaS','Fintech','Healthcare','Retail'])[1 + g %% 4], (ARRAY['VP Sales','CRO','Head of RevOps'])[1 + g %% 3],
    '51-200', (ARRAY['PAS','AIDA','BAB'])[1 + g %% 3], 'professional', 'email', 0,
    (ARRAY['Jane','Omar','Mei','Lars'])[1 + g %% 4], 'Doe', 'Company' || (g %% 5000) || ' Inc.',
    CASE WHEN g %% 10 < 3 THEN 'Follow up on the webinar; mention the benchmark report.' ELSE '' END,
    CASE WHEN g %% 10 < 3 THEN '{{{{first_name}}}}, an idea for {{{{company}}}}'
        ELSE 'A question about your pipeline' END,
    {BODY_SQL}, sent, sent + interval '1 day',
    CASE WHEN r < 80 THEN sent + interval '1 day' END, CASE WHEN r >= 70 AND r < 80 THEN sent + interval '1 day' END,
    CASE WHEN r < 70 THEN sent + interval '1 day' END, CASE WHEN r < 14 THEN sent + interval '2 days' END,
    CASE WHEN r < 14 THEN sent + interval '3 days' END, CASE WHEN r = 99 THEN sent + interval '1 day' END,
    CASE WHEN r < 14 THEN 60000 END, 0, false, '', '', now(), now(), '', true
FROM (SELECT g, (g * 7919) %% 100 AS r, now() - interval '15 days' - (g %% 350) * interval '1 day' AS sent
      FROM generate_series(%(start)s::bigint, %(stop)s - 1) AS g) AS rows
"""


def setup_django() -> None:
    import django
    from django.conf import settings

    django.setup()
    settings.DEBUG = False


def scale_organization() -> tuple[Any, Any]:
    """The ``scale`` organization and its deployed model (created once)."""
    from flywheel.models import Organization
    from registry.models import RegisteredModel
    from registry.services import model_deploy, model_register

    organization, created = Organization.objects.get_or_create(slug="scale", defaults={"name": "Scale bench"})
    model = RegisteredModel.objects.filter(organization=organization).first()
    if created or model is None:
        model = model_register(
            model_id="ft:scale:1", model_version="v1.0.0", base_model="bench", organization=organization
        )
        model_deploy(model=model, traffic_percentage=100)
    return organization, model


def build(organization: Any, model: Any, size: int, *, count: bool = True) -> None:
    """Grow the organization's labels to ``size`` rows with SQL, then score and count the new ones."""
    from django.db import connection

    from outcomes.models import OutcomeLabel
    from outcomes.scoring import quality_score_expression

    have = OutcomeLabel.objects.filter(organization=organization).count()
    if have >= size:
        return
    started = time.perf_counter()
    for start in range(have, size, INSERT_CHUNK):
        params = {"org": organization.pk, "model": model.pk, "sentences": SENTENCES, "start": start}
        with connection.cursor() as cursor:
            cursor.execute(INSERT_SQL, {**params, "stop": min(size, start + INSERT_CHUNK)})
    inserted = time.perf_counter()
    OutcomeLabel.objects.filter(organization=organization, quality_score=0).update(
        quality_score=quality_score_expression()
    )
    scored = time.perf_counter()
    if count:
        count_tokens()
    counted = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE outcome_labels")
    print(
        f"built {size - have:,} labels: insert {inserted - started:.0f}s, score {scored - inserted:.0f}s, "
        f"count tokens {counted - scored:.0f}s, vacuum {time.perf_counter() - counted:.0f}s",
        file=sys.stderr,
    )


def count_tokens() -> None:
    """The backfill of stored training-text counts, where the code stores them."""
    try:
        from outcomes.stored_texts import training_tokens_backfill
    except ImportError:
        return
    training_tokens_backfill(chunk_size=2000)


# --- The figures -------------------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def stats(organization: Any) -> float:
    from outcomes.selectors import training_data_stats

    return timed(lambda: training_data_stats(organization_id=organization.pk))


def export(organization: Any) -> float:
    from training.datasets import OutcomeDataFormatter

    path = Path(tempfile.mkdtemp(prefix="flywheel-scale-")) / "train.jsonl"
    seconds = timed(lambda: OutcomeDataFormatter().export_to_jsonl(path, organization_id=organization.pk))
    path.unlink()
    return seconds


def copy_org(organization: Any) -> float:
    from export import copy_to_file, org_sql

    path = Path(tempfile.mkdtemp(prefix="flywheel-scale-")) / "copy.bin"
    sql, params = org_sql(str(organization.pk))
    seconds = timed(lambda: copy_to_file(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params, path))
    path.unlink()
    return seconds


def events(organization: Any, size: int, round_number: int) -> float:
    from django.utils import timezone

    from outcomes.services import EventItem, outcome_event_record_bulk

    rng = random.Random(round_number * 1_000_003 + size)
    now = timezone.now()
    batch = [
        EventItem(external_id=f"scale-{rng.randrange(size)}", type="clicked", occurred_at=now)
        for _ in range(EVENTS_PER_BATCH)
    ]
    return timed(lambda: outcome_event_record_bulk(organization=organization, events=batch))


def leaderboard(organization: Any) -> float:
    from registry.selectors import leaderboard as pool_leaderboard

    return timed(lambda: list(pool_leaderboard(organization=organization)))


def route(organization: Any) -> float:
    from registry import routing

    routing.choose_model(organization, "lead-0")  # the routing cache, as a warm worker has it
    return timed(lambda: [routing.choose_model(organization, f"lead-{n}") for n in range(ROUTES)]) / ROUTES


def measure(organization: Any, size: int, rounds: int, skip: set[str]) -> dict[str, list[float]]:
    """Every figure (but those skipped) once per round, the rounds interleaved."""
    actions: dict[str, Callable[[int], float]] = {
        "stats": lambda _: stats(organization),
        "copy_org": lambda _: copy_org(organization),
        "export": lambda _: export(organization),
        "events": lambda round_number: events(organization, size, round_number),
        "leaderboard": lambda _: leaderboard(organization),
        "route": lambda _: route(organization),
    }
    figures: dict[str, list[float]] = {name: [] for name in actions if name not in skip}
    if "export" in figures:
        export(organization)  # loads the tokenizer once, as a worker that has exported before has it
    for round_number in range(rounds):
        for name in figures:
            figures[name].append(actions[name](round_number))
        print(
            f"  N={size:,} round {round_number + 1}: " + ", ".join(f"{k} {v[-1]:.3g}s" for k, v in figures.items()),
            file=sys.stderr,
        )
    return figures


# --- The report ---------------------------------------------------------------------------------------


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def verdicts(figures: dict[str, list[float]]) -> list[str]:
    """The targets of the figures that were measured, with PASS or FAIL."""
    lines = []
    if "export" in figures and "copy_org" in figures:
        ratios = [e / c for e, c in zip(figures["export"], figures["copy_org"], strict=True)]
        ratio = statistics.median(ratios)
        lines.append(
            f"export / copy_org {ratio:.2f}x ({min(ratios):.2f}-{max(ratios):.2f}; "
            f"target <= {EXPORT_TARGET}x): {verdict(ratio <= EXPORT_TARGET)}"
        )
    if "stats" in figures:
        seconds = statistics.median(figures["stats"])
        lines.append(f"stats {seconds:.3f}s (target < {STATS_TARGET_S}s): {verdict(seconds < STATS_TARGET_S)}")
    return lines


def report(results: dict[int, dict[str, list[float]]]) -> None:
    sizes = sorted(results)
    print(f"{'figure':<12} " + " ".join(f"{f'N={size:,} median (range)':>30}" for size in sizes))
    for name in results[sizes[0]]:
        cells = []
        for size in sizes:
            values = results[size][name]
            cells.append(f"{statistics.median(values):.4g}s ({min(values):.3g}-{max(values):.3g})")
        print(f"{name:<12} " + " ".join(f"{cell:>30}" for cell in cells))
    for size in sizes:
        print(f"N={size:,}: " + "; ".join(verdicts(results[size])))
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        print(f"growth per 1,000 rows between N={small:,} and N={large:,}:")
        for name in results[small]:
            growth = statistics.median(results[large][name]) - statistics.median(results[small][name])
            print(f"  {name:<12} {growth / (large - small) * 1000 * 1e3:+.4g} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="200000,2000000", help="comma-separated label counts (default 200k,2M)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size (default 3)")
    parser.add_argument(
        "--no-token-counts", action="store_true", help="build without storing token counts (then skip the export)"
    )
    parser.add_argument("--skip", default="", help="comma-separated figures not to measure, e.g. export,copy_org")
    args = parser.parse_args()
    setup_django()
    from django.db import connection
    from export import ensure_database

    ensure_database()
    if connection.vendor != "postgresql":
        raise SystemExit("bench/scale.py runs on PostgreSQL (set DATABASE_URL).")
    organization, model = scale_organization()
    results = {}
    for size in sorted(int(value) for value in args.sizes.split(",")):
        build(organization, model, size, count=not args.no_token_counts)
        results[size] = measure(organization, size, args.rounds, set(filter(None, args.skip.split(","))))
    report(results)


if __name__ == "__main__":
    main()
