"""Shapes of the agents' outcome and event items, and of the per-item results they get back.

Items are validated one by one (see ``outcomes.api.validate_items``) so that a bad item is
reported in its own result and never sinks the rest of the batch. The services validate again
(and decide what the serializers cannot: whether a model or an external id exists).
"""

from typing import Any

from rest_framework import serializers

from flywheel.fields import FiniteFloatField
from outcomes.models import STAGES

MAX_ITEMS = 1_000


class StrictSerializer(serializers.Serializer):
    """A flat serializer that reports unknown fields instead of silently dropping them.

    An agent that misspells ``subject`` should hear about it, not lose the subject.
    """

    @classmethod
    def check(cls, item: Any) -> dict[str, Any]:
        """Validate one item with the declared fields; every field's errors at once.

        What ``run_validation`` does for these flat serializers, without a serializer instance
        per item (each copies its fields): a batch of 1,000 is checked several times faster.
        Only the fields sent are returned, so an upsert leaves the others as stored.
        """
        if not isinstance(item, dict):
            raise serializers.ValidationError({"non_field_errors": [f"Expected an object, not {type(item).__name__}."]})
        fields = cls._declared_fields
        errors: dict[str, Any] = {name: ["Unknown field."] for name in sorted(item.keys() - fields.keys())}
        values: dict[str, Any] = {}
        for name, field in fields.items():
            if name not in item:
                if field.required:
                    errors[name] = [field.error_messages["required"]]
                continue
            try:
                values[name] = field.run_validation(item[name])
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return values

    def to_internal_value(self, data: Any) -> Any:
        return self.check(data)


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
