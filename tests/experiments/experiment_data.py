"""Helpers for experiment tests: a test dated back to a given look, and messages with known outcomes."""

import datetime
from decimal import Decimal

from django.utils import timezone

from experiments.models import Experiment
from experiments.services import experiment_start
from flywheel.models import Organization
from registry.models import RegisteredModel
from tests.outcomes.factories import OutcomeLabelFactory

DAY = datetime.timedelta(days=1)


def start(variant: RegisteredModel, *, look: int, share: float = 50.0, planned_leads: int = 160) -> Experiment:
    """Start a test of ``variant`` at ``share`` % and date it back so that ``look`` is its current look.

    The design plans ``planned_leads`` leads: the tests' 80 messages are half its information.
    """
    experiment = experiment_start(variant=variant, variant_traffic=share)
    # Look k is taken once k weeks of messages have matured (14 days): half a day past that.
    started = timezone.now() - datetime.timedelta(days=14 + 7 * look, hours=12)
    Experiment.objects.filter(pk=experiment.pk).update(started_at=started, planned_leads=planned_leads)
    experiment.refresh_from_db()
    return experiment


def send(
    model: RegisteredModel,
    messages: int,
    *,
    at: datetime.datetime,
    replies: int = 0,
    meetings: int = 0,
    deals: int = 0,
    unsubscribes: int = 0,
) -> None:
    """``messages`` labels written by ``model`` and sent ``at``; the first ones reach the deeper stages."""
    organization = model.organization or Organization.objects.first()
    for n in range(messages):
        moment = at + datetime.timedelta(hours=1)
        OutcomeLabelFactory.create(
            organization=organization,
            model=model,
            sent_at=at,
            replied_at=moment if n < replies else None,
            meeting_booked_at=moment if n < meetings else None,
            deal_closed_at=moment if n < deals else None,
            deal_value=Decimal("1000.00") if n < deals else None,
            unsubscribed_at=moment if replies <= n < replies + unsubscribes else None,
        )


def in_first_week(experiment: Experiment) -> datetime.datetime:
    return experiment.started_at + DAY
