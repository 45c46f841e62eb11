"""Shapes of the agents' outcome and event items, and of the per-item results they get back.

Items are validated one by one (see ``outcomes.api.validate_items``) so that a bad item is
reported in its own result and never sinks the rest of the batch. The services validate again
(and decide what the serializers cannot: whether a model or an external id exists).
"""

from typing import Any

from rest_framework import serializers

from flywheel.errors import FiniteFloatField
from outcomes.models import STAGES

MAX_ITEMS = 1_000


class StrictSerializer(serializers.Serializer):
    """A serializer that reports unknown fields instead of silently dropping them.

    An agent that misspells ``subject`` should hear about it, not lose the subject.
    """

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors: dict[str, Any] = {name: ["Unknown field."] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if not errors or not isinstance(exc.detail, dict):
                raise
            raise serializers.ValidationError({**exc.detail, **errors}) from exc
        if errors:
            raise serializers.ValidationError(errors)
        return value


def text(max_length: int | None = None, **kwargs: Any) -> serializers.CharField:
    """An optional text field that may be blank and keeps its surrounding spaces."""
    if max_length is not None:
        kwargs["max_length"] = max_length
    return serializers.CharField(required=False, allow_blank=True, trim_whitespace=False, **kwargs)


class OutcomeItemSerializer(StrictSerializer):
    """One sent message, upserted by ``external_id``. Fields left out keep their stored values."""

    external_id = serializers.CharField(max_length=255, help_text="The agent's id for the message.")
    model = serializers.UUIDField(
        required=False, allow_null=True, help_text="Registry id of the model that wrote it (yours or a global one)."
    )
    industry = text(100)
    role = text(100)
    company_size = text(50)
    framework = text(50)
    tone = text(50)
    channel = text(50)
    icp_match_score = FiniteFloatField(required=False, min_value=0.0, max_value=1.0)
    first_name = text(100)
    last_name = text(100)
    company = text(200)
    prompt = text(help_text="The request the agent used.")
    subject = text(500)
    body = text(help_text="The message (required).")
    sent_at = serializers.DateTimeField(required=False)
    excluded_from_training = serializers.BooleanField(required=False)
    reviewer_note = text()
    ideal_body = text(help_text="A reviewer's text that replaces the body as training target.")


class EventItemSerializer(StrictSerializer):
    """One funnel event of a message. The earliest time of a stage wins; repeats change nothing."""

    external_id = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=list(STAGES))
    occurred_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Default: now.")
    sentiment = FiniteFloatField(
        required=False, allow_null=True, min_value=-1.0, max_value=1.0, help_text="Only with a replied event."
    )
    deal_value = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=0,
        required=False,
        allow_null=True,
        coerce_to_string=False,
        help_text="Only with a deal_closed event.",
    )


class ItemResultSerializer(serializers.Serializer):
    """What happened to one item of a batch."""

    index = serializers.IntegerField(help_text="The item's position in the request (0 for a single object).")
    external_id = serializers.CharField(allow_blank=True)
    ok = serializers.BooleanField()
    id = serializers.UUIDField(allow_null=True, help_text="The outcome label's id.")
    created = serializers.BooleanField()
    changed = serializers.BooleanField()
    # The field shadows Serializer.errors (the serializer's own validation errors), which an
    # output-only serializer never uses.
    errors = serializers.DictField(  # type: ignore[assignment]
        child=serializers.JSONField(), help_text="Field errors; empty when ok."
    )


class BulkResultSerializer(serializers.Serializer):
    """A batch's per-item results, in the order of the request."""

    total = serializers.IntegerField()
    succeeded = serializers.IntegerField()
    failed = serializers.IntegerField()
    results = ItemResultSerializer(many=True)
