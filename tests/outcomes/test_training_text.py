"""A label's stored training-text token count always equals a fresh count of the text an export writes."""

import io
from typing import Any

import pytest
from django.core.management import call_command
from django.utils import timezone

from flywheel.models import Organization
from outcomes.models import OutcomeLabel
from outcomes.services import EventItem, OutcomeItem, outcome_curate, outcome_event_record_bulk, outcome_upsert_bulk
from outcomes.training_text import training_text
from tests.factories import OrganizationFactory
from tests.outcomes.factories import OutcomeLabelFactory
from tests.outcomes.varied import build_varied_pool
from training.tokens import count_text_tokens

pytestmark = pytest.mark.django_db

TEXT_FIELDS = ("first_name", "last_name", "company", "prompt", "subject", "body", "ideal_body")


def fresh_count(label: OutcomeLabel) -> int:
    """The tokens of the label's training text, encoded now (gpt-4o uses the stored encoding)."""
    label.refresh_from_db()
    return count_text_tokens(training_text(**{name: getattr(label, name) for name in TEXT_FIELDS}), "gpt-4o")


def stored(label: OutcomeLabel) -> int | None:
    label.refresh_from_db()
    return label.training_tokens


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory.create()


def upsert(organization: Organization, **fields: Any) -> OutcomeLabel:
    result = outcome_upsert_bulk(organization=organization, items=[OutcomeItem(**fields)]).results[0]
    assert result.ok and result.id is not None, result.errors
    return OutcomeLabel.objects.get(pk=result.id)


def test_a_label_written_by_an_agent_stores_the_count_of_its_scrubbed_training_text(organization: Any) -> None:
    label = upsert(
        organization, external_id="m-1", first_name="Jane", company="Acme", subject="Jane, an idea", body="Hi Jane."
    )

    assert label.training_tokens == fresh_count(label)
    assert "Jane" not in training_text(**{name: getattr(label, name) for name in TEXT_FIELDS})


def test_a_label_written_by_an_agent_is_stored_scrubbed_prompt_included_and_marked_so(organization: Any) -> None:
    label = upsert(
        organization, external_id="m-1", first_name="Jane", company="Acme", prompt="Write to Jane at Acme.", body="Hi."
    )

    assert (label.prompt, label.texts_ready) == ("Write to {{first_name}} at {{company}}.", True)


def test_a_renamed_prospect_has_the_stored_prompt_scrubbed_of_the_new_name(organization: Any) -> None:
    upsert(organization, external_id="m-1", first_name="Jane", prompt="Follow up with Omar.", body="Hi.")
    label = upsert(organization, external_id="m-1", first_name="Omar")

    assert label.prompt == "Follow up with {{first_name}}."
    assert not label.texts_ready  # its texts changed: an export checks them before it trusts them
    assert label.training_tokens == fresh_count(label)


def test_a_label_written_straight_to_the_table_is_not_marked_ready(organization: Any) -> None:
    assert not OutcomeLabelFactory.create(organization=organization).texts_ready


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"prompt": "Close with <|endoftext|>"}, id="reserved-token-in-the-prompt"),
        pytest.param({"body": "Hi <|im_start|> there."}, id="reserved-token-in-the-body"),
        pytest.param({"subject": "<|fim_prefix|>"}, id="reserved-token-in-the-subject"),
        pytest.param({"industry": "SaaS <|x|>"}, id="reserved-token-in-the-segment"),
        pytest.param({"role": "VP\tSales"}, id="tab-in-the-segment"),
        pytest.param({"prompt": " \u2003\n"}, id="blank-prompt"),
        pytest.param({"subject": " ", "body": "\u3000"}, id="blank-message"),
    ],
)
def test_a_label_an_export_must_write_apart_is_stored_scrubbed_but_not_marked_ready(
    organization: Any, fields: dict[str, str]
) -> None:
    label = upsert(organization, external_id="m-1", first_name="Jane", **{"body": "Hi Jane.", **fields})

    assert not label.texts_ready
    assert "Jane" not in label.body


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda label: outcome_curate(label=label, excluded_from_training=False, ideal_body="Better."),
                     id="a-reviewer"),
        pytest.param(lambda label: OutcomeLabel.objects.filter(pk=label.pk).update(body="Edited <|endoftext|>"),
                     id="sql"),
        pytest.param(lambda label: OutcomeLabel.objects.filter(pk=label.pk).update(industry="Retail"),
                     id="the-segment"),
    ],
)  # fmt: skip
def test_a_label_whose_texts_are_edited_loses_the_mark_until_an_export_checks_it(organization: Any, edit: Any) -> None:
    label = upsert(organization, external_id="m-1", body="Hi.")
    assert label.texts_ready

    edit(label)

    assert not OutcomeLabel.objects.get(pk=label.pk).texts_ready


def test_a_label_whose_other_fields_change_keeps_the_mark(organization: Any) -> None:
    label = upsert(organization, external_id="m-1", body="Hi.")
    OutcomeLabel.objects.filter(pk=label.pk).update(reviewer_note="Fine.", quality_score=0.9)

    assert OutcomeLabel.objects.get(pk=label.pk).texts_ready


@pytest.mark.parametrize(
    "change",
    [{"body": "A much longer body than before, about pipelines."}, {"subject": ""}, {"first_name": "Hi"}],
)
def test_an_update_of_the_text_or_the_names_counts_the_text_again(organization: Any, change: dict[str, Any]) -> None:
    upsert(organization, external_id="m-1", first_name="Jane", subject="Jane, an idea", body="Hi Jane. Hi there.")
    label = upsert(organization, external_id="m-1", **change)

    assert label.training_tokens == fresh_count(label)


def test_a_reviewers_ideal_text_is_counted_when_it_is_set_and_when_it_is_cleared(organization: Any) -> None:
    label = upsert(organization, external_id="m-1", subject="Idea", body="Hi.")

    outcome_curate(label=label, excluded_from_training=False, ideal_body="A reviewer's far better and longer message.")
    with_ideal = stored(label)
    outcome_curate(label=label, excluded_from_training=False, ideal_body="")

    assert with_ideal == count_text_tokens("Subject: Idea\n\nA reviewer's far better and longer message.", "gpt-4o")
    assert stored(label) == fresh_count(label) == count_text_tokens("Subject: Idea\n\nHi.", "gpt-4o")


def test_funnel_events_leave_the_count_equal_to_a_fresh_one(organization: Any) -> None:
    label = upsert(organization, external_id="m-1", subject="Idea", body="Hi there.")
    events = [EventItem(external_id="m-1", type=kind, occurred_at=timezone.now()) for kind in ("delivered", "replied")]

    outcome_event_record_bulk(organization=organization, events=events)

    assert stored(label) == fresh_count(label)


def test_every_label_of_a_varied_pool_holds_a_fresh_count_once_backfilled(organization: Any) -> None:
    labels = build_varied_pool(organization)
    missing = OutcomeLabel.objects.filter(training_tokens__isnull=True).count()
    out = io.StringIO()

    call_command("count_training_tokens", "--chunk-size", "7", stdout=out)

    assert [stored(label) for label in labels] == [fresh_count(label) for label in labels]
    assert missing > 7 and f"{missing} training text(s) counted" in out.getvalue()


def test_the_backfill_counts_only_labels_without_a_count_unless_asked_to_recount(organization: Any) -> None:
    upsert(organization, external_id="m-1", subject="Idea", body="Hi there.")
    raw = OutcomeLabelFactory.create(organization=organization)
    OutcomeLabel.objects.filter(external_id="m-1").update(training_tokens=1)
    out = io.StringIO()

    call_command("count_training_tokens", stdout=out)
    call_command("count_training_tokens", "--recount", stdout=out)

    assert out.getvalue().count("1 training text(s) counted") == 1 and "2 training text(s) counted" in out.getvalue()
    assert stored(raw) == fresh_count(raw)
    assert [stored(label) for label in OutcomeLabel.objects.all()] == [
        fresh_count(label) for label in OutcomeLabel.objects.all()
    ]


def test_the_database_keeps_the_training_text_hash_whatever_writes_the_text(organization: Any) -> None:
    label = OutcomeLabelFactory.create(organization=organization, body="One text.")
    same = OutcomeLabelFactory.create(organization=organization, body="Other.", ideal_body="One text.")
    OutcomeLabel.objects.filter(pk=label.pk).update(body="Changed by a plain update.")

    hashes = dict(OutcomeLabel.objects.values_list("pk", "training_text_hash"))

    assert hashes[label.pk] != hashes[same.pk]
    OutcomeLabel.objects.filter(pk=label.pk).update(body="One text.")
    hashes = dict(OutcomeLabel.objects.values_list("pk", "training_text_hash"))
    assert hashes[label.pk] == hashes[same.pk]
