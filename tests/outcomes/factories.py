"""Outcome label factories. Labels are written straight to the table; scores come from the rubric."""

import datetime
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from outcomes.models import OutcomeLabel
from outcomes.scoring import quality_score_expression
from tests.factories import OrganizationFactory


class OutcomeLabelFactory(DjangoModelFactory[OutcomeLabel]):
    class Meta:
        model = OutcomeLabel

    organization = factory.SubFactory(OrganizationFactory)
    external_id = factory.Sequence(lambda n: f"msg-{n:06d}")
    industry = "SaaS"
    role = "VP Sales"
    company_size = "51-200"
    framework = "PAS"
    tone = "professional"
    channel = "email"
    icp_match_score = 0.0
    subject = factory.Sequence(lambda n: f"Idea {n} for your pipeline")
    body = factory.Sequence(lambda n: f"Hi {{{{first_name}}}},\n\nMessage number {n} about faster pipeline reviews.")
    sent_at = factory.LazyFunction(lambda: timezone.now() - datetime.timedelta(days=30))

    @classmethod
    def _after_postgeneration(cls, instance: OutcomeLabel, create: bool, results: Any = None) -> None:
        if create:
            OutcomeLabel.objects.filter(pk=instance.pk).update(quality_score=quality_score_expression())
            instance.refresh_from_db(fields=["quality_score"])


def reached(stage_names: str, *, at: datetime.datetime | None = None) -> dict[str, datetime.datetime]:
    """Factory keyword arguments setting the timestamps of the named stages, e.g. ``reached("delivered opened")``."""
    from outcomes.models import STAGES

    moment = at or timezone.now() - datetime.timedelta(days=20)
    return {STAGES[name]: moment for name in stage_names.split()}
