"""Factories for training tests; organizations and users come from the shared ``tests.factories``."""

from factory.django import DjangoModelFactory

from training.models import TrainingRun


class TrainingRunFactory(DjangoModelFactory[TrainingRun]):
    """A pending run of the global pool unless told otherwise; drive it through the services.

    Building a row directly is for states the services reach only over time (a run on another
    provider, one that ended long ago) and for the database's own constraints.
    """

    class Meta:
        model = TrainingRun

    organization = None
    status = TrainingRun.Status.PENDING
    provider = "local"
    base_model = "gpt-4o-2024-08-06"
    triggered_by = TrainingRun.Trigger.COMMAND
