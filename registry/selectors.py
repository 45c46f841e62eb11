"""Reads of the model registry for lists, the leaderboard, the admin and the API."""

import math
import uuid

from django.core.exceptions import ValidationError
from django.db.models import F, Q, QuerySet, Window
from django.db.models.functions import Rank

from flywheel.errors import NotFound
from flywheel.models import Organization
from registry.models import ActiveModel, RegisteredModel

# The leaderboard's default minimum of messages sent, the same in the admin, the API and the command.
LEADERBOARD_MIN_SAMPLES = 100


def _pool_filter(organization: Organization | None) -> Q:
    if organization is None:
        return Q(organization__isnull=True)
    return Q(organization_id=organization.pk)


def active_models(*, organization: Organization | None) -> QuerySet[ActiveModel]:
    """The pool's deployed and ready models (the ``active_models`` view), most traffic first."""
    return ActiveModel.objects.filter(_pool_filter(organization))


def leaderboard(
    *,
    organization: Organization | None,
    min_samples: int = LEADERBOARD_MIN_SAMPLES,
    include_archived: bool = False,
) -> QuerySet[RegisteredModel]:
    """The pool's models that sent at least ``min_samples`` messages, best first (the seed's ``get_leaderboard``).

    Ordered by close rate, then reply rate, then revenue. Ranks are computed after the filter,
    among the models listed (the first row is rank 1); archived models are left out unless
    ``include_archived``. One pool's rows only, read through the ``organization`` index.
    """
    rows = RegisteredModel.objects.filter(_pool_filter(organization), total_messages_sent__gte=min_samples)
    if not include_archived:
        rows = rows.exclude(status=RegisteredModel.Status.ARCHIVED)
    rows = rows.annotate(
        close_rate_rank=Window(Rank(), order_by=F("close_rate").desc()),
        reply_rate_rank=Window(Rank(), order_by=F("reply_rate").desc()),
        revenue_rank=Window(Rank(), order_by=F("total_revenue").desc()),
    )
    return rows.order_by("-close_rate", "-reply_rate", "-total_revenue", "model_version")


def leaderboard_below_minimum(
    *, organization: Organization | None, min_samples: int, include_archived: bool = False
) -> QuerySet[RegisteredModel]:
    """The pool's models with fewer than ``min_samples`` messages: listed unranked, marked "too few messages"."""
    rows = RegisteredModel.objects.filter(_pool_filter(organization), total_messages_sent__lt=min_samples)
    if not include_archived:
        rows = rows.exclude(status=RegisteredModel.Status.ARCHIVED)
    return rows.order_by("-total_messages_sent", "model_version")


def wilson_interval(successes: int, trials: int, *, z: float = 1.959964) -> tuple[float, float] | None:
    """The 95 % Wilson score interval of ``successes / trials`` (``None`` without trials)."""
    if trials <= 0:
        return None
    p = successes / trials
    denominator = 1 + z * z / trials
    center = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, center - half), min(1.0, center + half)


def pools_with_models() -> list[Organization | None]:
    """The pools that have models, for a pool picker: the global pool (``None``) first if it has any."""
    organizations = list(Organization.objects.filter(models__isnull=False).distinct().order_by("name"))
    has_global = RegisteredModel.objects.filter(organization__isnull=True).exists()
    return [None, *organizations] if has_global else list(organizations)


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
