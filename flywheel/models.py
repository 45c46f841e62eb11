"""Tenancy: organizations and their API keys."""

import uuid

from django.db import models
from rest_framework_api_key.models import AbstractAPIKey


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    # Bumped whenever the traffic of the organization's deployed models (or of the global pool)
    # changes, so that cached routing tables can be checked for freshness for free.
    routing_version = models.PositiveBigIntegerField(default=0, editable=False)
    # The fine-tuning provider that trains this organization's pool, by its registered name; blank:
    # the FINE_TUNING_PROVIDER setting. A plain string here: the training layer knows the providers
    # and validates it (its admin offers only registered names), so that pools migrate one at a time.
    training_provider = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="The fine-tuning provider of this organization's pool; blank: the FINE_TUNING_PROVIDER setting.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganizationAPIKey(AbstractAPIKey):
    class Role(models.TextChoices):
        AGENT = "agent", "Agent"
        OPS = "ops", "ML ops"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
