"""Training runs: one weekly cycle from outcome labels to a registered (and maybe deployed) model."""

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Q

from registry.models import pool_key


class TrainingRunQuerySet(models.QuerySet["TrainingRun"]):
    def active(self) -> "TrainingRunQuerySet":
        return self.filter(status__in=TrainingRun.ACTIVE_STATUSES)


class TrainingRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        EXPORTING = "exporting", "Exporting"
        UPLOADING = "uploading", "Uploading"
        TRAINING = "training", "Training"
        REGISTERING = "registering", "Registering"
        TESTING = "testing", "Testing"
        DEPLOYING = "deploying", "Deploying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        SKIPPED = "skipped", "Skipped"

    ACTIVE_STATUSES = [
        Status.PENDING,
        Status.EXPORTING,
        Status.UPLOADING,
        Status.TRAINING,
        Status.REGISTERING,
        Status.TESTING,
        Status.DEPLOYING,
    ]

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule", "Schedule"
        ADMIN = "admin", "Admin"
        API = "api", "API"
        COMMAND = "command", "Command"

    class Method(models.TextChoices):
        SFT = "sft", "Supervised (SFT)"
        DPO = "dpo", "Preference (DPO)"
        KTO = "kto", "Unpaired outcomes (KTO)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "flywheel.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="training_runs"
    )
    pool = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)

    # Parameters
    model_version = models.CharField(max_length=32, blank=True, default="")
    base_model = models.CharField(max_length=255, blank=True, default="")
    min_quality_score = models.FloatField(default=0.6)
    method = models.CharField(max_length=8, choices=Method.choices, default=Method.SFT)
    deploy_immediately = models.BooleanField(default=False)
    ab_test_percentage = models.FloatField(default=10.0)
    validation_percent = models.FloatField(default=0.0)
    force = models.BooleanField(
        default=False, help_text="Train even when the dataset equals the last successful run's (same sha256)."
    )
    triggered_by = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.COMMAND)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, default="")

    # Dataset: storage names in the dataset storage (training.datasets.storage), not local paths
    dataset_path = models.CharField(max_length=500, blank=True, default="")
    validation_path = models.CharField(max_length=500, blank=True, default="")
    dataset_sha256 = models.CharField(max_length=64, blank=True, default="")
    dataset_digest = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="What a later run compares to tell unchanged data: the training file's sha256, or a digest of "
        "its examples whatever their order when they were written in the table's order.",
    )
    examples_count = models.PositiveIntegerField(default=0)
    validation_examples_count = models.PositiveIntegerField(default=0)
    positive_examples = models.PositiveIntegerField(default=0)
    deals_in_training = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveBigIntegerField(default=0)
    billed_tokens = models.PositiveBigIntegerField(default=0)
    estimated_cost = models.DecimalField(max_digits=12, decimal_places=4, default=0)

    # Provider
    provider = models.CharField(max_length=32, blank=True, default="")
    provider_file_id = models.CharField(max_length=255, blank=True, default="")
    provider_validation_file_id = models.CharField(max_length=255, blank=True, default="")
    provider_job_id = models.CharField(max_length=255, blank=True, default="", db_index=True)
    provider_status = models.CharField(max_length=32, blank=True, default="")
    fine_tuned_model = models.CharField(max_length=255, blank=True, default="")
    trained_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    events = models.JSONField(default=list, blank=True)
    checkpoints = models.JSONField(default=list, blank=True)
    # Figures the provider measured beyond its checkpoints (the local provider's coverage, counts).
    metrics = models.JSONField(default=dict, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    # Set while a worker performs the run's current step (see training.transitions): a second worker
    # skips the run; a claim whose worker stopped renewing it (heartbeat_at) for a lease is taken over.
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    # A step whose provider call failed in a way worth retrying waits until retry_at (see training.steps).
    step_retries = models.PositiveSmallIntegerField(default=0, editable=False)
    retry_at = models.DateTimeField(null=True, blank=True, editable=False)

    # Result
    registered_model = models.ForeignKey(
        "registry.RegisteredModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    test_output = models.TextField(blank=True, default="")
    deployed = models.BooleanField(default=False)
    error = models.TextField(blank=True, default="")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    training_started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TrainingRunQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("run_training", "Can start and cancel training runs"),
            ("download_dataset", "Can preview and download training datasets"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["pool"],
                condition=Q(
                    status__in=[
                        "pending",
                        "exporting",
                        "uploading",
                        "training",
                        "registering",
                        "testing",
                        "deploying",
                    ]
                ),
                name="training_run_one_active_per_pool",
            ),
            # A version names one model of a pool; a run that failed or was cancelled before
            # registering leaves its version free for the next run.
            models.UniqueConstraint(
                fields=["pool", "model_version"],
                condition=~Q(model_version="")
                & Q(
                    status__in=[
                        "pending",
                        "exporting",
                        "uploading",
                        "training",
                        "registering",
                        "testing",
                        "deploying",
                        "succeeded",
                    ]
                ),
                name="training_run_version_unique_per_pool",
            ),
            models.CheckConstraint(
                condition=Q(min_quality_score__gte=0) & Q(min_quality_score__lte=1),
                name="training_run_quality_0_1",
            ),
            models.CheckConstraint(
                condition=Q(ab_test_percentage__gt=0) & Q(ab_test_percentage__lte=100),
                name="training_run_ab_percentage_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Training run {self.model_version or str(self.id)[:8]} ({self.status})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.pool = pool_key(self.organization_id)
        super().save(*args, **kwargs)

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE_STATUSES

    @property
    def training_duration_seconds(self) -> float | None:
        if self.training_started_at and self.finished_at:
            return (self.finished_at - self.training_started_at).total_seconds()
        return None


class WebhookDelivery(models.Model):
    """A provider webhook we acted on, by its ``webhook-id``: a replay of it is acknowledged, not acted on.

    In the database rather than the cache, because each web process has its own cache unless
    ``CACHE_URL`` names a shared one, and a replay may reach any process.
    """

    webhook_id = models.CharField(max_length=255, unique=True)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return self.webhook_id
