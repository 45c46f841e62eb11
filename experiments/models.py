"""A/B experiments: one variant model tested against the control of its traffic pool."""

import uuid
from typing import Any

from django.db import models
from django.db.models import F, Q

from registry.models import pool_key


class Experiment(models.Model):
    """An A/B test of a variant model against the control, decided by a sequential test."""

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        DECIDED = "decided", "Decided"
        STOPPED = "stopped", "Stopped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "flywheel.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="experiments"
    )
    pool = models.CharField(max_length=64, editable=False)
    control = models.ForeignKey(
        "registry.RegisteredModel", on_delete=models.PROTECT, related_name="experiments_as_control"
    )
    variant = models.ForeignKey(
        "registry.RegisteredModel", on_delete=models.PROTECT, related_name="experiments_as_variant"
    )
    planned_variant_share = models.FloatField(default=0.1)
    planned_looks = models.PositiveSmallIntegerField(default=8)
    look_interval_days = models.PositiveSmallIntegerField(default=7)
    # The design's information: the leads (both arms) it plans to see, and the relative lift in
    # per-message value it is powered (80 %) to detect. A look's information fraction is its
    # leads over ``planned_leads`` (the last planned look is 1).
    planned_leads = models.PositiveIntegerField(default=20_000)
    minimum_effect = models.FloatField(default=0.15)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey(
        "registry.RegisteredModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="experiments_won"
    )
    # The latest decision (experiments.stats.Decision.as_dict()) and the statistic at each look.
    decision = models.JSONField(default=dict, blank=True)
    looks = models.JSONField(default=list, blank=True)

    class Meta:
        # The table the registry app created before experiments had an app of their own.
        db_table = "registry_experiment"
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["pool"], condition=Q(status="running"), name="experiment_one_running_per_pool"
            ),
            models.CheckConstraint(
                condition=Q(planned_variant_share__gt=0) & Q(planned_variant_share__lt=1),
                name="experiment_share_between_0_and_1",
            ),
            models.CheckConstraint(condition=~Q(control=F("variant")), name="experiment_arms_differ"),
            models.CheckConstraint(condition=Q(planned_leads__gt=0), name="experiment_planned_leads_positive"),
            models.CheckConstraint(condition=Q(minimum_effect__gt=0), name="experiment_minimum_effect_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.control} vs {self.variant}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pool = pool_key(self.organization_id)
        super().save(*args, **kwargs)
