"""The model registry (the seed's ``model_registry`` table), its audit trail and its SQL views."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Case, F, Q, Value, When
from django.db.models.functions import Cast

REVENUE_MAX_DIGITS = 21  # total_revenue: up to 10**19 - 0.01


def pool_key(organization_id: uuid.UUID | str | None) -> str:
    """The traffic pool a row belongs to: an organization's id, or ``global``."""
    return str(organization_id) if organization_id else "global"


def rate(numerator: str) -> Case:
    """``numerator / total_messages_sent`` computed by the database, 0 when nothing was sent."""
    return Case(
        When(total_messages_sent=0, then=Value(0.0)),
        default=Cast(numerator, models.FloatField()) / Cast("total_messages_sent", models.FloatField()),
        output_field=models.FloatField(),
    )


class RegisteredModelQuerySet(models.QuerySet["RegisteredModel"]):
    def deployed(self) -> "RegisteredModelQuerySet":
        return self.filter(status=RegisteredModel.Status.DEPLOYED)

    def active(self) -> "RegisteredModelQuerySet":
        return self.filter(status__in=[RegisteredModel.Status.DEPLOYED, RegisteredModel.Status.READY])

    def in_pool(self, organization_id: uuid.UUID | str | None) -> "RegisteredModelQuerySet":
        """An organization's own models, or the global pool's for ``None``."""
        if organization_id is None:
            return self.filter(organization__isnull=True)
        return self.filter(organization_id=organization_id)


class RegisteredModel(models.Model):
    class Status(models.TextChoices):
        TRAINING = "training", "Training"
        READY = "ready", "Ready"
        DEPLOYED = "deployed", "Deployed"
        ARCHIVED = "archived", "Archived"
        FAILED = "failed", "Failed"

    class ServingStatus(models.TextChoices):
        LOADED = "loaded", "Loaded"
        UNLOADED = "unloaded", "Unloaded"
        UNLOAD_FAILED = "unload_failed", "Unload failed"

    class ABTestGroup(models.TextChoices):
        CONTROL = "control", "Control"
        VARIANT_A = "variant_a", "Variant A"
        VARIANT_B = "variant_b", "Variant B"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "flywheel.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="models",
        help_text="Empty for a global model shared by every organization.",
    )
    model_id = models.CharField("model id", max_length=255, help_text="The provider's model id.")
    model_version = models.CharField(max_length=32, help_text="Semantic version, e.g. v2.1.0.")
    base_model = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY, db_index=True)
    deployed_at = models.DateTimeField(null=True, blank=True)
    traffic_percentage = models.FloatField(default=0.0)
    ab_test_group = models.CharField(max_length=16, choices=ABTestGroup.choices, blank=True, default="")
    is_baseline = models.BooleanField(
        default=False, help_text="The model every *_vs_baseline column is compared against."
    )

    # Training stats
    training_examples_count = models.PositiveIntegerField(default=0)
    positive_examples = models.PositiveIntegerField(default=0)
    deals_in_training = models.PositiveIntegerField(default=0)

    # Performance counters, moved only by conditional F() updates
    total_messages_sent = models.PositiveIntegerField(default=0)
    total_replies = models.PositiveIntegerField(default=0)
    total_meetings_booked = models.PositiveIntegerField(default=0)
    total_deals_closed = models.PositiveIntegerField(default=0)
    # Room for every deal a model can close: at most 2**31 - 1 of them (the counters' integer
    # columns), each at most outcomes' MAX_DEAL_VALUE (10**9), stays below 10**19.
    total_revenue = models.DecimalField(max_digits=REVENUE_MAX_DIGITS, decimal_places=2, default=0)
    reply_rate = models.GeneratedField(
        expression=rate("total_replies"), output_field=models.FloatField(), db_persist=True
    )
    meeting_rate = models.GeneratedField(
        expression=rate("total_meetings_booked"), output_field=models.FloatField(), db_persist=True
    )
    close_rate = models.GeneratedField(
        expression=rate("total_deals_closed"), output_field=models.FloatField(), db_persist=True
    )
    reply_rate_vs_baseline = models.FloatField(null=True, blank=True)
    meeting_rate_vs_baseline = models.FloatField(null=True, blank=True)
    close_rate_vs_baseline = models.FloatField(null=True, blank=True)

    # Lineage
    provider = models.CharField(max_length=32, blank=True, default="")
    fine_tuning_job_id = models.CharField(max_length=255, blank=True, default="")
    training_run_id = models.UUIDField(null=True, blank=True, help_text="The training run that made it.")
    dataset_sha256 = models.CharField(max_length=64, blank=True, default="")
    base_model_shutdown_date = models.DateField(null=True, blank=True)
    error = models.TextField(blank=True, default="")

    # Open-weights lineage: which adapter, on which base model (blank for other providers)
    adapter_sha256 = models.CharField(
        "adapter sha256", max_length=64, blank=True, default="", help_text="sha256 of the adapter's weights."
    )
    base_model_config_sha256 = models.CharField(
        "base model config sha256", max_length=64, blank=True, default="", help_text="sha256 of its config.json."
    )

    # Serving: whether the model's adapter is loaded into its serving server (blank: no load step)
    serving_status = models.CharField(max_length=16, choices=ServingStatus.choices, blank=True, default="")
    serving_error = models.TextField(blank=True, default="", help_text="Why the last unload failed.")

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RegisteredModelQuerySet.as_manager()

    class Meta:
        db_table = "model_registry"
        verbose_name = "registered model"
        ordering = ["-created_at"]
        permissions = [("deploy_model", "Can deploy models and move traffic")]
        constraints = [
            models.CheckConstraint(
                condition=Q(traffic_percentage__gte=0) & Q(traffic_percentage__lte=100),
                name="model_registry_traffic_0_100",
            ),
            models.CheckConstraint(
                condition=Q(traffic_percentage=0) | Q(status="deployed"),
                name="model_registry_traffic_only_when_deployed",
            ),
            models.CheckConstraint(
                condition=Q(total_replies__lte=F("total_messages_sent"))
                & Q(total_deals_closed__lte=F("total_messages_sent"))
                & Q(total_meetings_booked__lte=F("total_messages_sent")),
                name="model_registry_counters_within_messages",
            ),
            models.CheckConstraint(condition=Q(total_revenue__gte=0), name="model_registry_revenue_gte_0"),
            models.UniqueConstraint(
                fields=["organization", "model_version"],
                condition=Q(organization__isnull=False),
                name="model_registry_version_unique_per_org",
            ),
            models.UniqueConstraint(
                fields=["model_version"],
                condition=Q(organization__isnull=True),
                name="model_registry_version_unique_global",
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(is_baseline=True, organization__isnull=False),
                name="model_registry_one_baseline_per_org",
            ),
            models.UniqueConstraint(
                fields=["is_baseline"],
                condition=Q(is_baseline=True, organization__isnull=True),
                name="model_registry_one_global_baseline",
            ),
            # A model's A/B test group is its role in the pool it serves: one control per pool.
            models.CheckConstraint(
                condition=Q(status="deployed") | Q(ab_test_group=""), name="model_registry_group_only_when_deployed"
            ),
            models.UniqueConstraint(
                fields=["organization"],
                condition=Q(status="deployed", ab_test_group="control", organization__isnull=False),
                name="model_registry_one_control_per_org",
            ),
            models.UniqueConstraint(
                fields=["ab_test_group"],
                condition=Q(status="deployed", ab_test_group="control", organization__isnull=True),
                name="model_registry_one_global_control",
            ),
            # A resumed training run calls model_register again; the database, not only the
            # service, makes sure it registers exactly one model.
            models.UniqueConstraint(
                fields=["training_run_id"],
                condition=Q(training_run_id__isnull=False),
                name="model_registry_one_model_per_training_run",
            ),
        ]
        indexes = [models.Index(fields=["organization", "status"], name="model_registry_org_status")]

    def __str__(self) -> str:
        return f"{self.model_version} ({self.model_id})"

    @property
    def pool(self) -> str:
        return pool_key(self.organization_id)


class ModelEvent(models.Model):
    """Append-only audit trail of everything that changed a model's status or traffic."""

    class Action(models.TextChoices):
        REGISTERED = "registered", "Registered"
        DEPLOYED = "deployed", "Deployed"
        TRAFFIC_CHANGED = "traffic_changed", "Traffic changed"
        PROMOTED = "promoted", "Promoted"
        ARCHIVED = "archived", "Archived"
        ROLLED_BACK = "rolled_back", "Rolled back"
        FAILED = "failed", "Failed"
        BASELINE_SET = "baseline_set", "Baseline set"
        TEST_ENDED = "test_ended", "A/B test ended"

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="events")
    organization = models.ForeignKey(
        "flywheel.Organization", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    action = models.CharField(max_length=20, choices=Action.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, default="", help_text="API key or system.")
    status_before = models.CharField(max_length=16, blank=True, default="")
    status_after = models.CharField(max_length=16, blank=True, default="")
    traffic_before = models.FloatField(null=True, blank=True)
    traffic_after = models.FloatField(null=True, blank=True)
    # The pool's deployed configuration before this action: {model id: [traffic, ab_test_group]}.
    pool_before = models.JSONField(default=dict, blank=True)
    # Groups the rows written by one service call, so a rollback can find the whole step.
    batch = models.UUIDField(default=uuid.uuid4, db_index=True)
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.model_id} at {self.created_at:%Y-%m-%d %H:%M}"


# --- SQL views (created by migration 0002_views), read-only -----------------------------------
#
# A later migration that rebuilds model_registry (on SQLite most AlterField and some AddField
# operations copy the table and rename it; on PostgreSQL any change to a column a view selects)
# must drop these views first and create them again afterwards: see 0002_views.


class ActiveModel(models.Model):
    """A row of the ``active_models`` view: a model that is deployed or ready to deploy."""

    id = models.UUIDField(primary_key=True)
    organization = models.ForeignKey(
        "flywheel.Organization", null=True, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    model_id = models.CharField("model id", max_length=255)
    model_version = models.CharField(max_length=32)
    base_model = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=RegisteredModel.Status.choices)
    deployed_at = models.DateTimeField(null=True)
    traffic_percentage = models.FloatField()
    ab_test_group = models.CharField(max_length=16, choices=RegisteredModel.ABTestGroup.choices)
    is_baseline = models.BooleanField()
    total_messages_sent = models.PositiveIntegerField()
    reply_rate = models.FloatField()
    meeting_rate = models.FloatField()
    close_rate = models.FloatField()
    created_at = models.DateTimeField()

    class Meta:
        managed = False
        db_table = "active_models"
        ordering = ["-traffic_percentage", "-created_at"]

    def __str__(self) -> str:
        return f"{self.model_version} ({self.model_id})"


class LeaderboardEntry(models.Model):
    """A row of the ``model_leaderboard`` view: a model, its counters, rates and ranks.

    Ranks are computed by the database among every model of the same pool (an organization's
    models, or the global ones); equal rates share a rank (``RANK()``).
    """

    id = models.UUIDField(primary_key=True)
    organization = models.ForeignKey(
        "flywheel.Organization", null=True, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False
    )
    model_id = models.CharField("model id", max_length=255)
    model_version = models.CharField(max_length=32)
    base_model = models.CharField(max_length=255)
    status = models.CharField(max_length=16, choices=RegisteredModel.Status.choices)
    traffic_percentage = models.FloatField()
    ab_test_group = models.CharField(max_length=16, choices=RegisteredModel.ABTestGroup.choices)
    total_messages_sent = models.PositiveIntegerField()
    total_replies = models.PositiveIntegerField()
    total_meetings_booked = models.PositiveIntegerField()
    total_deals_closed = models.PositiveIntegerField()
    total_revenue = models.DecimalField(max_digits=REVENUE_MAX_DIGITS, decimal_places=2)
    reply_rate = models.FloatField()
    meeting_rate = models.FloatField()
    close_rate = models.FloatField()
    reply_rate_vs_baseline = models.FloatField(null=True)
    meeting_rate_vs_baseline = models.FloatField(null=True)
    close_rate_vs_baseline = models.FloatField(null=True)
    close_rate_rank = models.PositiveIntegerField()
    reply_rate_rank = models.PositiveIntegerField()
    revenue_rank = models.PositiveIntegerField()

    class Meta:
        managed = False
        db_table = "model_leaderboard"
        verbose_name_plural = "leaderboard entries"
        ordering = ["-close_rate", "-reply_rate", "-total_revenue", "model_version"]

    def __str__(self) -> str:
        return f"#{self.close_rate_rank} {self.model_version} ({self.model_id})"
