"""A label's admin page explains its quality score item by item, and the items add up to the stored score."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from outcomes.models import OutcomeLabel
from outcomes.scoring import score_breakdown
from tests.factories import UserFactory
from tests.outcomes.factories import OutcomeLabelFactory, reached

pytestmark = pytest.mark.django_db
EVERYTHING = "delivered opened clicked replied meeting_booked meeting_completed deal_closed"
LABELS = [
    pytest.param({}, id="sent only"),
    pytest.param({**reached("delivered opened replied"), "reply_sentiment": 0.8}, id="positive reply"),
    pytest.param({**reached("meeting_completed"), "icp_match_score": 0.1234565}, id="meeting and a fractional icp"),
    pytest.param({**reached("bounced"), "icp_match_score": 1.0}, id="bounced with an icp bonus"),
    pytest.param(
        {**reached(EVERYTHING), "reply_sentiment": 1.0, "deal_value": Decimal(80000), "icp_match_score": 0.9},
        id="capped",
    ),
]


def row_of(label: OutcomeLabel) -> dict[str, object]:
    return {field.attname: getattr(label, field.attname) for field in label._meta.concrete_fields}


def shown_table(client: Client, label: OutcomeLabel) -> dict[str, list[str]]:
    """The breakdown table on the label's admin page: each row's first cell to its other cells."""
    page = client.get(f"/admin/outcomes/outcomelabel/{label.pk}/change/")
    assert page.status_code == 200
    table = re.search(r'<table class="score-breakdown">(.*?)</table>', page.content.decode(), re.S)
    assert table is not None
    rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table.group(1))]
    return {cells[0]: cells[1:] for cells in rows}


@pytest.mark.parametrize("fields", LABELS)
def test_the_breakdown_adds_up_to_the_stored_score(fields: dict[str, object]) -> None:
    label = OutcomeLabelFactory.create(**fields)

    breakdown = score_breakdown(row_of(label))

    assert breakdown.total == label.quality_score
    assert sum(line.points for line in breakdown.lines) == pytest.approx(breakdown.sum)


def test_a_labels_page_shows_each_rubric_item_and_the_stored_score(client: Client) -> None:
    label = OutcomeLabelFactory.create(**reached("delivered opened replied"), reply_sentiment=0.8, icp_match_score=0.5)
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    table = shown_table(client, label)

    assert label.quality_score == pytest.approx(0.65)
    assert table["Delivered"] == ["0.1", "yes", "0.1"]
    assert table["Clicked"] == ["0.15", "no", "0"]
    assert table["Positive reply (sentiment &gt; 0.5)"] == ["0.2", "yes", "0.2"]
    assert table["ICP match (match score x weight)"] == ["0.1", "yes", "0.05"]
    assert table["Quality score"] == ["0.65"]
    assert "Capped at" not in table


def test_a_capped_score_shows_the_sum_and_the_cap(client: Client) -> None:
    everything = {**reached(EVERYTHING), "reply_sentiment": 1.0, "deal_value": Decimal(80000), "icp_match_score": 1.0}
    label = OutcomeLabelFactory.create(**everything)
    client.force_login(UserFactory.create(is_staff=True, is_superuser=True))

    table = shown_table(client, label)

    assert table["Sum"] == ["2.25"]
    assert table["Capped at"] == ["1"]
    assert table["Quality score"] == ["1"] and label.quality_score == 1.0
