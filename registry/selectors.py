"""Reads of the model registry for lists, the leaderboard, the admin and the API."""

import uuid

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet

from flywheel.errors import NotFound
from flywheel.models import Organization
from registry.models import ActiveModel, LeaderboardEntry, RegisteredModel


def _pool_filter(organization: Organization | None) -> Q:
    if organization is None:
        return Q(organization__isnull=True)
    return Q(organization_id=organization.pk)


def active_models(*, organization: Organization | None) -> QuerySet[ActiveModel]:
    """The pool's deployed and ready models (the ``active_models`` view), most traffic first."""
    return ActiveModel.objects.filter(_pool_filter(organization))


def leaderboard(*, organization: Organization | None, min_samples: int = 0) -> QuerySet[LeaderboardEntry]:
    """The pool's models that sent at least ``min_samples`` messages, best first (the seed's ``get_leaderboard``).

    Ordered by close rate, then reply rate, then revenue. The rank columns come from the view:
    they rank each model among every model of its pool, whether or not it has enough samples.
    """
    entries = LeaderboardEntry.objects.filter(_pool_filter(organization), total_messages_sent__gte=min_samples)
    return entries.order_by("-close_rate", "-reply_rate", "-total_revenue", "model_version")


def models_list(
    *, organization: Organization | None, status: str | None = None, include_global: bool = False
) -> QuerySet[RegisteredModel]:
    """A pool's models, newest first, optionally of one status and with the global ones beside them."""
    pools = _pool_filter(organization)
    if include_global and organization is not None:
        pools |= Q(organization__isnull=True)
    models = RegisteredModel.objects.filter(pools).select_related("organization")
    if status:
        models = models.filter(status=status)
    return models.order_by("-created_at")


def model_get(*, registry_id: uuid.UUID | str, organization: Organization | None = None) -> RegisteredModel:
    """A model by its registry id, within ``organization``'s pool or the global one when given.

    Raises :class:`NotFound` for an unknown or malformed id.
    """
    models = RegisteredModel.objects.select_related("organization")
    if organization is not None:
        models = models.filter(_pool_filter(organization) | Q(organization__isnull=True))
    try:
        return models.get(pk=registry_id)
    except (RegisteredModel.DoesNotExist, ValidationError, ValueError):
        raise NotFound(f"No registered model has the id {registry_id}.") from None
