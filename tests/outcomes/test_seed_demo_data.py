"""seed_demo_data writes any number of labels, a batch at a time, and the seed alone decides the data."""

from io import StringIO

import pytest
from django.core.management import call_command

from outcomes import services
from outcomes.management.commands import seed_demo_data
from outcomes.models import OutcomeLabel

pytestmark = pytest.mark.django_db


def seeded(slug: str) -> list[tuple[object, ...]]:
    """The labels of one seeded organization, without the times (they follow the clock)."""
    rows = OutcomeLabel.objects.filter(organization__slug=slug).order_by("external_id")
    return [
        (
            label.external_id,
            label.body,
            label.subject,
            str(label.model),
            label.furthest_stage,
            label.deal_value,
        )
        for label in rows.select_related("model")
    ]


def test_more_labels_than_one_call_takes_are_written_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "MAX_BATCH", 300)  # what a call takes, scaled down with the labels
    monkeypatch.setattr(seed_demo_data, "LABELS_PER_BATCH", 25, raising=False)

    call_command("seed_demo_data", "--labels", "400", "--seed", "3", stdout=StringIO())

    assert OutcomeLabel.objects.count() == 400
    assert {row[4] for row in seeded("demo")} >= {"deal_closed", "replied", "opened"}


def test_the_same_seed_gives_the_same_labels_whatever_the_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    call_command("seed_demo_data", "--labels", "120", "--seed", "5", "--slug", "whole", stdout=StringIO())
    monkeypatch.setattr(seed_demo_data, "LABELS_PER_BATCH", 7, raising=False)
    call_command("seed_demo_data", "--labels", "120", "--seed", "5", "--slug", "batched", stdout=StringIO())

    assert len(seeded("whole")) == 120
    assert seeded("batched") == seeded("whole")
