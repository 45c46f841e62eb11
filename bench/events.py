"""Funnel events per second: the set-based bulk service against one ORM update per event.

Usage: python bench/events.py [N] (default 20,000 events in batches of 500), on the database of
``DATABASE_URL`` (SQLite by default). Both paths run in the same process on the same fresh data;
rounds interleave them; the script prints the medians with their range and the ratio, with
PASS/FAIL against ``TARGET``. It works in a throwaway test database. The events are
built as checked ``EventItem``s, as the API's edge hands them over: their check is not timed.
"""

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")

import django

django.setup()

from django.db import connection, transaction  # noqa: E402
from django.db.models import F  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402
from django.utils import timezone  # noqa: E402

from flywheel.models import Organization  # noqa: E402
from outcomes.models import OutcomeLabel  # noqa: E402
from outcomes.scoring import quality_score_expression  # noqa: E402
from outcomes.services import EventItem, outcome_event_record_bulk  # noqa: E402
from registry.models import RegisteredModel  # noqa: E402

BATCH = 500
ROUNDS = 3
TARGET = 10.0  # set-based beats the naive path by an order of magnitude


def make_labels(prefix: str, count: int) -> tuple[Organization, RegisteredModel]:
    organization = Organization.objects.create(name=f"bench {prefix}", slug=f"bench-{prefix}-{time.time_ns()}")
    model = RegisteredModel.objects.create(
        organization=organization, model_id="bench", model_version="v9.9.9", base_model="bench"
    )
    OutcomeLabel.objects.bulk_create(
        [
            OutcomeLabel(organization=organization, external_id=f"{prefix}-{n}", body="b", model=model)
            for n in range(count)
        ],
        batch_size=2000,
    )
    RegisteredModel.objects.filter(pk=model.pk).update(total_messages_sent=count)
    return organization, model


def events_for(prefix: str, count: int) -> list[EventItem]:
    kinds = ("delivered", "replied")
    now = timezone.now()
    return [EventItem(external_id=f"{prefix}-{n // 2}", type=kinds[n % 2], occurred_at=now) for n in range(count)]


def set_based(count: int) -> float:
    organization, _ = make_labels("set", count // 2)
    events = events_for("set", count)
    start = time.perf_counter()
    for at in range(0, count, BATCH):
        outcome_event_record_bulk(organization=organization, events=events[at : at + BATCH])
    return count / (time.perf_counter() - start)


def per_event(count: int) -> float:
    """The naive path: one conditional ORM update per event, plus a counter update when it counts."""
    organization, model = make_labels("orm", count // 2)
    events = events_for("orm", count)
    start = time.perf_counter()
    for at in range(0, count, BATCH):
        with transaction.atomic():
            for event in events[at : at + BATCH]:
                column = f"{event.type}_at"
                rows = OutcomeLabel.objects.filter(
                    organization=organization, external_id=event.external_id, **{f"{column}__isnull": True}
                )
                if rows.update(**{column: timezone.now()}) and event.type == "replied":
                    RegisteredModel.objects.filter(pk=model.pk).update(total_replies=F("total_replies") + 1)
                rows.update(quality_score=quality_score_expression())
    return count / (time.perf_counter() - start)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    setup_test_environment()
    old_name = connection.creation.create_test_db(verbosity=0)
    rates: dict[str, list[float]] = {"set-based bulk service": [], "one ORM update per event": []}
    try:
        for round_number in range(ROUNDS):  # interleaved, the order flipping each round
            runs = [("set-based bulk service", set_based), ("one ORM update per event", per_event)]
            for name, run in runs if round_number % 2 == 0 else runs[::-1]:
                rates[name].append(run(count))
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(f"database: {connection.vendor}, {count} events in batches of {BATCH}, medians of {ROUNDS} rounds [range]")
    for name, values in rates.items():
        print(f"{name:24s}: {statistics.median(values):10.0f} events/s [{min(values):.0f}-{max(values):.0f}]")
    ratio = statistics.median(rates["set-based bulk service"]) / statistics.median(rates["one ORM update per event"])
    print(f"ratio                   : {ratio:10.1f}x (target >= {TARGET}x): {'PASS' if ratio >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
