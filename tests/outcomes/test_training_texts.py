"""The database marks the training texts that more than one label of an organization carries."""

import time
from typing import Any

import pytest
from django.db import connection, transaction

from outcomes.models import OutcomeLabel, TrainingText
from outcomes.selectors import training_data_stats
from outcomes.serializers import outcome_items_from
from outcomes.services import outcome_upsert_bulk
from tests.concurrency import errors_of, run_at_once
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory

pytestmark = pytest.mark.django_db


def marked(organization: Any) -> set[Any]:
    return set(
        TrainingText.objects.filter(organization=organization, duplicated=True).values_list(
            "training_text_hash", flat=True
        )
    )


def text_of(label: OutcomeLabel) -> Any:
    return OutcomeLabel.objects.values_list("training_text_hash", flat=True).get(pk=label.pk)


def test_a_text_two_labels_carry_is_marked_and_a_text_one_label_carries_is_not() -> None:
    organization = OrganizationFactory.create()
    once = OutcomeLabelFactory.create(organization=organization, body="Sent once.")
    first = OutcomeLabelFactory.create(organization=organization, body="A template.")
    assert marked(organization) == set()

    OutcomeLabelFactory.create(organization=organization, body="A template.")

    assert marked(organization) == {text_of(first)}
    assert TrainingText.objects.filter(organization=organization, training_text_hash=text_of(once)).exists()


def test_the_api_marks_a_text_written_twice_in_one_batch() -> None:
    organization = OrganizationFactory.create()
    items = outcome_items_from(
        [
            {"external_id": "a", "body": "Same words."},
            {"external_id": "b", "body": "Same words."},
            {"external_id": "c", "body": "Other words."},
        ]
    )

    outcome_upsert_bulk(organization=organization, items=items)

    same = OutcomeLabel.objects.get(organization=organization, external_id="a")
    assert marked(organization) == {text_of(same)}


def test_a_label_whose_text_becomes_another_labels_text_marks_it() -> None:
    organization = OrganizationFactory.create()
    kept = OutcomeLabelFactory.create(organization=organization, body="The reviewer's favourite.")
    edited = OutcomeLabelFactory.create(organization=organization, body="A weaker draft.")
    assert marked(organization) == set()

    edited.ideal_body = "The reviewer's favourite."
    edited.save()

    assert marked(organization) == {text_of(kept)}


def test_an_excluded_label_still_marks_its_text() -> None:
    """A reviewer may let an excluded label back into the pool: its text must already be marked."""
    organization = OrganizationFactory.create()
    first = OutcomeLabelFactory.create(organization=organization, body="Twice.", excluded_from_training=True)
    OutcomeLabelFactory.create(organization=organization, body="Twice.")

    assert marked(organization) == {text_of(first)}


def test_the_same_text_in_two_organizations_is_a_duplicate_of_neither() -> None:
    one, other = OrganizationFactory.create(), OrganizationFactory.create()
    OutcomeLabelFactory.create(organization=one, body="Shared across tenants.")
    OutcomeLabelFactory.create(organization=other, body="Shared across tenants.")

    assert marked(one) == marked(other) == set()


def test_statistics_count_a_text_marked_after_the_fact_once() -> None:
    organization = OrganizationFactory.create()
    OutcomeLabelFactory.create(organization=organization, body="Alone at first.")
    assert training_data_stats(organization_id=organization.pk)["total_examples"] == 1

    OutcomeLabelFactory.create(organization=organization, body="Alone at first.")
    OutcomeLabelFactory.create(organization=organization, body="Different.")

    assert training_data_stats(organization_id=organization.pk)["total_examples"] == 2


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent transactions need PostgreSQL")
def test_two_writers_that_store_the_same_new_text_at_once_mark_it() -> None:
    """The second writer cannot see the first's uncommitted label; the text's listing makes it wait and look again."""
    organization = OrganizationFactory.create()

    def writer(external_id: str, hold: float, start: float) -> Any:
        def work() -> None:
            time.sleep(start)
            with transaction.atomic():
                OutcomeLabelFactory.create(organization=organization, external_id=external_id, body="New at once.")
                time.sleep(hold)  # still uncommitted while the other writes

        return work

    results = run_at_once([writer("first", 0.5, 0.0), writer("second", 0.0, 0.2)])

    assert not errors_of(results), results
    labels = OutcomeLabel.objects.filter(organization=organization)
    assert labels.count() == 2
    assert marked(organization) == {text_of(labels.get(external_id="first"))}
    assert training_data_stats(organization_id=organization.pk)["total_examples"] == 1
