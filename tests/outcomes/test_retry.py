"""A write PostgreSQL aborts as a deadlock or serialization failure runs again, a bounded number of times."""

from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError

from outcomes import services
from outcomes.retry import ATTEMPTS, transient
from outcomes.serializers import event_items_from, outcome_items_from
from outcomes.services import outcome_event_record_bulk, outcome_upsert_bulk
from registry.models import RegisteredModel
from tests.api_clients import Tenant
from tests.factories import OrganizationFactory
from tests.registry.factories import RegisteredModelFactory

pytestmark = pytest.mark.django_db


class DriverError(Exception):
    """What the driver raises, as Django's OperationalError carries it."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def aborted(sqlstate: str = "40P01") -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = DriverError(sqlstate)
    return error


def failing(real: Callable[..., Any], times: int, error: OperationalError) -> Callable[..., Any]:
    """``real``, run and then aborted with ``error`` its first ``times`` calls, as PostgreSQL aborts a victim."""
    calls = {"n": 0}

    def call(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return result

    return call


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(services, "pause", lambda attempt: None)


def labelled(org: Any, count: int) -> RegisteredModel:
    model = RegisteredModelFactory.create(organization=org)
    items = outcome_items_from({"external_id": f"m-{n}", "body": "b", "model": str(model.pk)} for n in range(count))
    outcome_upsert_bulk(organization=org, items=items)
    return model


def test_deadlocks_and_serialization_failures_are_transient_other_errors_are_not() -> None:
    assert transient(aborted("40P01")) and transient(aborted("40001"))
    assert not transient(aborted("57014")) and not transient(OperationalError("database is locked"))


def test_an_event_batch_aborted_by_the_database_runs_again_and_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    org = OrganizationFactory.create()
    model = labelled(org, 3)
    monkeypatch.setattr(services, "apply_event_batch", failing(services.apply_event_batch, 2, aborted()))

    result = outcome_event_record_bulk(
        organization=org, events=event_items_from({"external_id": f"m-{n}", "type": "replied"} for n in range(3))
    )

    assert [r.ok for r in result.results] == [True] * 3
    model.refresh_from_db()
    assert model.total_replies == 3


def test_an_upsert_aborted_by_the_database_runs_again_and_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    org = OrganizationFactory.create()
    model = RegisteredModelFactory.create(organization=org)
    monkeypatch.setattr(services, "_write_labels_once", failing(services._write_labels_once, 1, aborted("40001")))

    result = outcome_upsert_bulk(
        organization=org, items=outcome_items_from([{"external_id": "m-1", "body": "b", "model": str(model.pk)}])
    )

    assert (result.results[0].ok, result.results[0].created) == (True, True)
    model.refresh_from_db()
    assert model.total_messages_sent == 1


def test_a_batch_aborted_every_time_answers_409_after_a_bounded_number_of_tries(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = labelled(tenant.organization, 1)
    calls: list[int] = []
    monkeypatch.setattr(services, "pause", calls.append)
    monkeypatch.setattr(services, "apply_event_batch", failing(services.apply_event_batch, 99, aborted()))

    response = tenant.agent.post("/api/outcomes/events", {"external_id": "m-0", "type": "replied"}, format="json")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "conflict"
    assert len(calls) == ATTEMPTS
    model.refresh_from_db()
    assert model.total_replies == 0


def test_another_database_error_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    org = OrganizationFactory.create()
    labelled(org, 1)
    monkeypatch.setattr(services, "apply_event_batch", failing(services.apply_event_batch, 1, aborted("57014")))

    with pytest.raises(OperationalError):
        outcome_event_record_bulk(organization=org, events=event_items_from([{"external_id": "m-0", "type": "opened"}]))
