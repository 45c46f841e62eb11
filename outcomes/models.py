"""Outcome labels: what happened to each message an agent sent (the seed's ``outcome_labels``)."""

import uuid
from decimal import Decimal

from django.core.validators import MaxLengthValidator, MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import MD5, Cast, Coalesce, NullIf
from django.utils import timezone

# The longest texts an outcome may carry (the API refuses longer ones with a 400). Scrubbing is
# linear in the text, so these bound the work one request can ask for. The other text fields are
# columns of a fixed length.
PROMPT_MAX_LENGTH = 20_000
BODY_MAX_LENGTH = 20_000  # the body and a reviewer's ideal body
REVIEWER_NOTE_MAX_LENGTH = 5_000
# The largest deal one event may report; a model's total revenue has room for every deal it can close.
MAX_DEAL_VALUE = Decimal(1_000_000_000)

# What the model learns to write: the reviewer's ideal text when there is one, else the body.
TRAINING_TEXT = Coalesce(NullIf(F("ideal_body"), Value("")), F("body"))

# The funnel stages an event can set, in funnel order, each with the timestamp column it sets.
STAGES: dict[str, str] = {
    "delivered": "delivered_at",
    "opened": "opened_at",
    "clicked": "clicked_at",
    "replied": "replied_at",
    "meeting_booked": "meeting_booked_at",
    "meeting_completed": "meeting_completed_at",
    "deal_closed": "deal_closed_at",
    "bounced": "bounced_at",
    "unsubscribed": "unsubscribed_at",
}


# The stages the training statistics count, carried in the pool index so that it answers alone.
POOL_STAGE_COLUMNS = ("bounced_at", "replied_at", "meeting_booked_at", "meeting_completed_at", "deal_closed_at")


class OutcomeLabelQuerySet(models.QuerySet["OutcomeLabel"]):
    def for_pool(self, organization_id: uuid.UUID | str | None) -> "OutcomeLabelQuerySet":
        """Labels that train an organization's model; ``None`` means the global model (all)."""
        return self if organization_id is None else self.filter(organization_id=organization_id)

    def eligible_for_training(self) -> "OutcomeLabelQuerySet":
        return self.filter(excluded_from_training=False)


class OutcomeLabel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey("flywheel.Organization", on_delete=models.CASCADE, related_name="outcomes")
    external_id = models.CharField(max_length=255, help_text="The agent's id for the message.")
    model = models.ForeignKey(
        "registry.RegisteredModel",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="outcomes",
        help_text="The model that wrote the message.",
    )

    # Segment
    industry = models.CharField(max_length=100, blank=True, default="")
    role = models.CharField(max_length=100, blank=True, default="")
    company_size = models.CharField(max_length=50, blank=True, default="")
    framework = models.CharField(max_length=50, blank=True, default="")
    tone = models.CharField(max_length=50, blank=True, default="")
    channel = models.CharField(max_length=50, blank=True, default="")
    icp_match_score = models.FloatField(default=0.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])

    # Prospect (kept out of every export: replaced by placeholders in subject and body)
    first_name = models.CharField(max_length=100, blank=True, default="")
    last_name = models.CharField(max_length=100, blank=True, default="")
    company = models.CharField(max_length=200, blank=True, default="")

    # Message
    prompt = models.TextField(
        blank=True,
        default="",
        validators=[MaxLengthValidator(PROMPT_MAX_LENGTH)],
        help_text="The request the agent used.",
    )
    subject = models.CharField(max_length=500, blank=True, default="")
    body = models.TextField(validators=[MaxLengthValidator(BODY_MAX_LENGTH)])

    # Funnel
    sent_at = models.DateTimeField(default=timezone.now, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    opened_at = models.DateTimeField(null=True, blank=True)
    clicked_at = models.DateTimeField(null=True, blank=True)
    replied_at = models.DateTimeField(null=True, blank=True)
    meeting_booked_at = models.DateTimeField(null=True, blank=True)
    meeting_completed_at = models.DateTimeField(null=True, blank=True)
    deal_closed_at = models.DateTimeField(null=True, blank=True)
    bounced_at = models.DateTimeField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    reply_sentiment = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-1.0), MaxValueValidator(1.0)]
    )
    deal_value = models.DecimalField(
        max_digits=14,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(MAX_DEAL_VALUE)],
    )
    quality_score = models.FloatField(default=0.0, db_index=True, editable=False)
    # The lead the message went to, as a keyed hash (outcomes.leads); "" when the agent sent none.
    # Never exported, never shown: it only groups a lead's messages in A/B tests.
    lead_hash = models.CharField(max_length=64, blank=True, default="", editable=False)

    # Curation
    excluded_from_training = models.BooleanField(default=False)
    reviewer_note = models.TextField(blank=True, default="", validators=[MaxLengthValidator(REVIEWER_NOTE_MAX_LENGTH)])
    ideal_body = models.TextField(
        blank=True,
        default="",
        validators=[MaxLengthValidator(BODY_MAX_LENGTH)],
        help_text="A reviewer's text that replaces the body as training target.",
    )

    # Derived from the training text, so that exports and statistics never read it all again
    training_text_hash = models.GeneratedField(
        expression=Cast(MD5(TRAINING_TEXT), models.UUIDField()),
        output_field=models.UUIDField(),
        db_persist=True,
        help_text="MD5 of the training text (the ideal body, else the body), kept by the database.",
    )
    training_tokens = models.PositiveIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Tokens of the training text as exported (subject and text, scrubbed), in o200k_base; "
        "empty until counted.",
    )
    texts_ready = models.BooleanField(
        default=False,
        db_default=False,
        editable=False,
        help_text="Whether an export may write the stored texts as they are: the prompt, subject, body and ideal "
        "body are stored scrubbed, as the API stores them, and hold no reserved token and no blank message. "
        "Rows written straight to the table are not, until an export scrubs them in place.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = OutcomeLabelQuerySet.as_manager()

    class Meta:
        db_table = "outcome_labels"
        ordering = ["-sent_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "external_id"], name="outcome_labels_external_id_per_org"),
            models.CheckConstraint(
                condition=Q(icp_match_score__gte=0) & Q(icp_match_score__lte=1), name="outcome_labels_icp_0_1"
            ),
            models.CheckConstraint(
                condition=Q(reply_sentiment__isnull=True) | (Q(reply_sentiment__gte=-1) & Q(reply_sentiment__lte=1)),
                name="outcome_labels_sentiment_range",
            ),
            models.CheckConstraint(
                condition=Q(deal_value__isnull=True) | Q(deal_value__gte=0), name="outcome_labels_deal_value_gte_0"
            ),
            models.CheckConstraint(
                condition=Q(quality_score__gte=0) & Q(quality_score__lte=1), name="outcome_labels_quality_0_1"
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "sent_at"], name="outcome_labels_org_sent"),
            models.Index(fields=["organization", "quality_score"], name="outcome_labels_org_quality"),
            # The training pool's duplicate collapse as an index walk: per text, best label first.
            models.Index(
                fields=["organization", "training_text_hash", "-quality_score", "-sent_at", "-id"],
                include=[*POOL_STAGE_COLUMNS],
                condition=Q(excluded_from_training=False),
                name="outcome_labels_pool_text",
            ),
            models.Index(fields=["model", "sent_at", "lead_hash"], name="outcome_labels_model_lead"),
            # The few rows an export must scrub in place (or write apart) before it trusts the stored texts.
            models.Index(fields=["organization"], condition=Q(texts_ready=False), name="outcome_labels_raw_texts"),
        ]

    def __str__(self) -> str:
        return self.external_id

    @property
    def furthest_stage(self) -> str:
        """The deepest funnel stage reached (bounced counts as its own end)."""
        for stage in ("deal_closed", "meeting_completed", "meeting_booked", "replied", "clicked", "opened"):
            if getattr(self, STAGES[stage]):
                return stage
        if self.bounced_at:
            return "bounced"
        return "delivered" if self.delivered_at else "sent"


class TrainingText(models.Model):
    """A training text some label of an organization has carried, and whether more than one has.

    Kept by the database itself: triggers on ``outcome_labels`` list a label's text when the label
    is written or its text changes, and mark it ``duplicated`` when the text was listed already,
    so rows written around the API count too. A text is marked, never unmarked (its other labels
    may be deleted or excluded since), so the marks may hold more than the duplicated texts but
    never fewer: a label whose text is not marked is the only label of its text, and the pool's
    duplicate collapse only has to rank the labels of the marked texts.
    """

    id = models.BigAutoField(primary_key=True)
    organization = models.ForeignKey("flywheel.Organization", on_delete=models.CASCADE, related_name="+")
    training_text_hash = models.UUIDField()
    duplicated = models.BooleanField(default=False)

    class Meta:
        db_table = "outcome_training_texts"
        constraints = [
            models.UniqueConstraint(fields=["organization", "training_text_hash"], name="outcome_training_texts_once")
        ]
        indexes = [
            models.Index(
                fields=["organization", "training_text_hash"],
                condition=Q(duplicated=True),
                name="outcome_texts_repeated",
            )
        ]

    def __str__(self) -> str:
        return str(self.training_text_hash)
