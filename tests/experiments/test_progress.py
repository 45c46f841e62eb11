"""An A/B test per lead and its live progress: the database's per-lead sums, GET /api/experiments and its detail."""

import datetime
from typing import Any

import pytest
from django.utils import timezone

from experiments.models import Experiment
from experiments.progress import Z95, interval, rate_interval
from experiments.selectors import experiment_arm_counts, experiment_decision
from experiments.stats import ArmCounts, arm_moments
from outcomes.leads import lead_key_hash
from registry.models import RegisteredModel
from registry.services import model_deploy
from tests.api_clients import Tenant, assert_error, make_tenant, staff_client
from tests.experiments.experiment_data import in_first_week, send, start
from tests.outcomes.factories import OutcomeLabelFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db

DAY = datetime.timedelta(days=1)


@pytest.fixture
def tenant() -> Tenant:
    return make_tenant()


def arms(tenant: Tenant) -> tuple[RegisteredModel, RegisteredModel]:
    """A deployed control and a variant not deployed yet, in the tenant's pool."""
    control = RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.0.0")
    model_deploy(model=control, traffic_percentage=100)
    return control, RegisteredModelFactory.create(organization=tenant.organization, model_version="v1.1.0")


def lead(model: RegisteredModel, key: str | None, messages: int, *, replies: int, at: datetime.datetime) -> None:
    """``messages`` labels of one lead (``None``: sent without a lead key); the first ``replies`` answered."""
    for n in range(messages):
        OutcomeLabelFactory.create(
            organization=model.organization,
            model=model,
            sent_at=at,
            lead_hash=lead_key_hash(key) if key else "",
            replied_at=at + DAY if n < replies else None,
        )


# --- Per lead, from the database ------------------------------------------------------------------


def test_the_database_sums_each_lead_and_the_variance_is_the_clustered_one(tenant: Tenant) -> None:
    control, variant = arms(tenant)
    experiment = start(variant, look=2)
    week = in_first_week(experiment)
    lead(control, "ana@example.com", 3, replies=3, at=week)
    lead(control, "bo@example.com", 3, replies=0, at=week)
    lead(control, None, 1, replies=0, at=week)  # two messages without a lead key: a lead each
    lead(control, None, 1, replies=1, at=week)

    counts, _ = experiment_arm_counts(experiment)

    assert (counts.messages, counts.replies, counts.lead_count, counts.unkeyed_leads) == (8, 4, 4, 2)
    # R = 4 / 8; sum (y - R n)^2 = 1.5^2 + 1.5^2 + 0.5^2 + 0.5^2 = 5: variance 5 / 64, not 0.25 / 8.
    assert arm_moments(counts, "replies") == pytest.approx((0.5, 5 / 64))
    assert arm_moments(ArmCounts(messages=8, replies=4, meetings=0, deals=0), "replies") == pytest.approx((0.5, 1 / 32))


def test_the_sample_ratio_is_checked_on_leads_not_messages(tenant: Tenant) -> None:
    control, variant = arms(tenant)
    experiment = start(variant, look=2)  # a 50/50 split
    for n in range(30):
        lead(control, f"c{n}", 1, replies=0, at=in_first_week(experiment))
    for n in range(4):
        lead(variant, f"v{n}", 5, replies=1, at=in_first_week(experiment))  # 20 messages, but 4 leads

    _, _, decision = experiment_decision(experiment)

    assert decision.stopped and "4 variant leads of 34" in " ".join(decision.reasons)


# --- The progress API -----------------------------------------------------------------------------


def test_a_new_test_shows_provisional_numbers_from_day_one_and_decides_nothing(tenant: Tenant) -> None:
    control, variant = arms(tenant)
    experiment = start(variant, look=0)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=timezone.now() - 3 * DAY)
    lead(control, "ana@example.com", 2, replies=1, at=timezone.now() - 2 * DAY)
    lead(control, None, 1, replies=0, at=timezone.now() - 2 * DAY)
    lead(variant, "bo@example.com", 1, replies=1, at=timezone.now() - DAY)

    body = tenant.agent.get(f"/api/experiments/{experiment.pk}").json()

    control_arm, variant_arm = body["arms"]
    assert (control_arm["arm"], control_arm["model_version"], variant_arm["arm"]) == ("control", "v1.0.0", "variant")
    assert control_arm["all"] | {"reply_rate": None, "meeting_rate": None, "close_rate": None, "value": None} == {
        "leads": 2, "messages": 3, "leads_without_key": 1, "provisional": True,
        "reply_rate": None, "meeting_rate": None, "close_rate": None, "value": None,
    }  # fmt: skip
    assert control_arm["all"]["reply_rate"]["value"] == pytest.approx(1 / 3)
    assert control_arm["matured"] == {
        "leads": 0, "messages": 0, "leads_without_key": 0, "provisional": False,
        "reply_rate": None, "meeting_rate": None, "close_rate": None, "value": None,
    }  # fmt: skip
    assert body["leads_without_key"] == 1
    assert body["decision"]["look"] == 0 and body["decision"]["promote"] is False
    assert body["looks"]["current"] is None and body["looks"]["next"]["look"] == 1
    assert body["lift"]["all"]["provisional"] is True and body["lift"]["matured"] is None


def test_the_progress_shows_rates_with_intervals_the_plan_and_the_series(tenant: Tenant) -> None:
    control, variant = arms(tenant)
    experiment = start(variant, look=2)
    send(control, 40, at=in_first_week(experiment), replies=4)
    send(variant, 40, at=in_first_week(experiment) + 8 * DAY, replies=8, meetings=2)

    body = tenant.ops.get(f"/api/experiments/{experiment.pk}").json()

    reply = body["arms"][1]["matured"]["reply_rate"]
    assert reply["value"] == pytest.approx(0.2) and reply["low"] < 0.2 < reply["high"]
    assert reply["high"] - reply["value"] == pytest.approx(1.96 * (0.2 * 0.8 / 40) ** 0.5, rel=1e-3)
    assert body["lift"]["matured"]["low"] < body["lift"]["matured"]["value"] < body["lift"]["matured"]["high"]
    assert body["looks"]["current"]["look"] == 2 and body["looks"]["next"]["look"] == 3
    assert len(body["looks"]["schedule"]) == experiment.planned_looks
    plan = body["plan"]
    assert plan["leads_needed"] > 0 and plan["estimated_decision_at"] and 0 < plan["progress_percent"] <= 100
    assert [point["look"] for point in body["series"]["looks"]] == [1, 2]
    assert body["series"]["looks"][1]["boundary"] > 0 and body["series"]["looks"][1]["leads"] == 80
    days = body["series"]["daily"]
    assert {point["arm"] for point in days} == {"control", "variant"}
    assert days[-1]["messages"] == 40 and days[-1]["provisional"] is False


def test_the_earliest_decision_is_stated_from_the_start(tenant: Tenant) -> None:
    _, variant = arms(tenant)
    experiment = start(variant, look=0)

    body = tenant.agent.get(f"/api/experiments/{experiment.pk}").json()
    listed = tenant.agent.get("/api/experiments").json()["experiments"][0]

    # The second look is taken once two weeks of messages have matured for 14 days.
    expected = experiment.started_at + 28 * DAY
    assert body["looks"]["earliest_decision_at"] == listed["earliest_decision_at"]
    assert datetime.datetime.fromisoformat(listed["earliest_decision_at"]) == expected


def test_another_organizations_experiment_answers_404(tenant: Tenant) -> None:
    _, variant = arms(tenant)
    experiment = start(variant, look=1)
    other = make_tenant()

    assert_error(other.agent.get(f"/api/experiments/{experiment.pk}"), 404, "not_found")
    assert other.agent.get("/api/experiments").json() == {"total": 0, "limit": 20, "offset": 0, "experiments": []}
    assert_error(other.ops.get(f"/api/experiments?organization_id={tenant.organization.pk}"), 404)


@pytest.mark.parametrize("experiment_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "a/b"])
def test_an_unknown_or_malformed_id_answers_404(tenant: Tenant, experiment_id: str) -> None:
    assert_error(tenant.agent.get(f"/api/experiments/{experiment_id}"), 404, "not_found")


def test_the_api_needs_a_key_or_a_permitted_staff_session(tenant: Tenant, client: Any) -> None:
    _, variant = arms(tenant)
    experiment = start(variant, look=1)

    assert client.get(f"/api/experiments/{experiment.pk}").status_code in (401, 403)
    assert_error(staff_client().get(f"/api/experiments/{experiment.pk}"), 403)
    permitted = staff_client("experiments.view_experiment")
    assert permitted.get(f"/api/experiments/{experiment.pk}").status_code == 200
    assert permitted.get("/api/experiments").json()["total"] == 1


def test_the_list_is_paginated_newest_first(tenant: Tenant) -> None:
    control, _ = arms(tenant)
    for n in range(3):
        variant = RegisteredModelFactory.create(organization=tenant.organization)
        Experiment.objects.create(
            organization=tenant.organization,
            control=control,
            variant=variant,
            status=Experiment.Status.STOPPED,
            ended_at=timezone.now(),
            end_reason="stopped for the test",
        )
        Experiment.objects.filter(variant=variant).update(started_at=timezone.now() - n * DAY)
    newest = list(Experiment.objects.order_by("-started_at").values_list("id", flat=True))

    first = tenant.agent.get("/api/experiments?limit=2").json()
    second = tenant.agent.get("/api/experiments?limit=2&offset=2").json()

    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    assert [row["id"] for row in first["experiments"] + second["experiments"]] == [str(pk) for pk in newest]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "offset=-1", "status=won"])
def test_a_bad_page_or_filter_answers_400(tenant: Tenant, query: str) -> None:
    assert_error(tenant.agent.get(f"/api/experiments?{query}"), 400)


def test_outcomes_sent_with_their_lead_keys_through_the_api_count_per_lead(tenant: Tenant) -> None:
    control, variant = arms(tenant)
    experiment = start(variant, look=1)
    sent = (experiment.started_at + DAY).isoformat()
    items = [
        {"external_id": f"m{n}", "body": "Hello", "model": str(control.pk), "sent_at": sent, "lead": f"lead-{n % 2}"}
        for n in range(4)
    ]
    assert tenant.agent.post("/api/outcomes", items, format="json").status_code == 200

    body = tenant.agent.get(f"/api/experiments/{experiment.pk}").json()

    assert (body["arms"][0]["matured"]["leads"], body["arms"][0]["matured"]["messages"]) == (2, 4)
    assert body["decision"]["control_leads"] == 2


def test_a_rates_interval_stays_between_zero_and_one_where_the_lift_may_not() -> None:
    assert rate_interval(0.05, 0.01) == {"value": 0.05, "low": 0.0, "high": pytest.approx(0.05 + Z95 * 0.1)}
    assert rate_interval(0.98, 0.01)["high"] == 1.0
    assert interval(0.05, 0.01)["low"] < 0
