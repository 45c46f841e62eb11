"""The edge of the outcome endpoints: each item checked once, into the typed item a service takes.

``OutcomeItemSerializer.check`` and ``EventItemSerializer.check`` turn one raw item into an
:class:`~outcomes.services.OutcomeItem` or :class:`~outcomes.services.EventItem`, or raise with
every field's errors. :func:`check_batch` runs one of them over a list, so that a bad item gets
its own result and the others are still written; the API, commands and tests share it.
"""

import datetime
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from django.utils import timezone
from rest_framework import serializers

from flywheel.fields import FiniteFloatField
from outcomes.leads import LEAD_KEY_MAX_LENGTH, lead_key_hash
from outcomes.models import (
    BODY_MAX_LENGTH,
    MAX_DEAL_VALUE,
    PROMPT_MAX_LENGTH,
    REVIEWER_NOTE_MAX_LENGTH,
    STAGES,
)
from outcomes.services import BulkResult, EventItem, ItemResult, OutcomeItem

MAX_ITEMS = 1_000
FUTURE_SLACK = datetime.timedelta(days=1)  # clocks of agents run a little ahead: sent_at and occurred_at
AHEAD = "Cannot be in the future."

ItemT = TypeVar("ItemT", OutcomeItem, EventItem)


class StrictSerializer(serializers.Serializer):
    """A flat serializer that reports unknown fields instead of silently dropping them.

    An agent that misspells ``subject`` should hear about it, not lose the subject.
    """

    @classmethod
    def check_fields(cls, item: Any) -> dict[str, Any]:
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
        for name, field_ in fields.items():
            if name not in item:
                if field_.required:
                    errors[name] = [field_.error_messages["required"]]
                continue
            try:
                values[name] = field_.run_validation(item[name])
            except serializers.ValidationError as exc:
                errors[name] = exc.detail
        if errors:
            raise serializers.ValidationError(errors)
        return values

    @classmethod
    def check(cls, item: Any) -> Any:
        """The typed item a service takes; raises ``ValidationError`` with the item's errors."""
        raise NotImplementedError

    def to_internal_value(self, data: Any) -> Any:
        return self.check_fields(data)


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
    prompt = text(PROMPT_MAX_LENGTH, help_text="The request the agent used.")
    subject = text(500)
    body = text(BODY_MAX_LENGTH, help_text="The message (required for a new outcome).")
    sent_at = serializers.DateTimeField(required=False, help_text="Default: now; at most a day ahead.")
    lead = serializers.CharField(
        required=False,
        max_length=LEAD_KEY_MAX_LENGTH,
        write_only=True,
        help_text="The lead's key, as sent to GET /api/route?lead=; stored only as a keyed hash, never returned.",
    )
    excluded_from_training = serializers.BooleanField(required=False)
    reviewer_note = text(REVIEWER_NOTE_MAX_LENGTH)
    ideal_body = text(BODY_MAX_LENGTH, help_text="A reviewer's text that replaces the body as training target.")

    @classmethod
    def check(cls, item: Any) -> OutcomeItem:
        values = cls.check_fields(item)
        errors: dict[str, list[str]] = {}
        if values.get("body") == "":
            # Absent, a body keeps the stored one (or is missing on a new label: the service says
            # so); sent, it must say something.
            errors["body"] = ["This field cannot be blank."]
        if _ahead(values.get("sent_at")):
            errors["sent_at"] = [AHEAD]
        if errors:
            raise serializers.ValidationError(errors)
        lead = values.pop("lead", None)
        lead_hash = None if lead is None else lead_key_hash(lead)
        return OutcomeItem(model_id=values.pop("model", None), lead_hash=lead_hash, **values)


def _ahead(moment: datetime.datetime | None) -> bool:
    """Whether ``moment`` is further ahead of now than an agent's clock may run: the one rule of every time."""
    return moment is not None and moment > timezone.now() + FUTURE_SLACK


class EventItemSerializer(StrictSerializer):
    """One funnel event of a message. The earliest time of a stage wins; repeats change nothing."""

    external_id = serializers.CharField(max_length=255)
    type = serializers.ChoiceField(choices=list(STAGES))
    occurred_at = serializers.DateTimeField(
        required=False, allow_null=True, help_text="Default: now; at most a day ahead."
    )
    sentiment = FiniteFloatField(
        required=False, allow_null=True, min_value=-1.0, max_value=1.0, help_text="Only with a replied event."
    )
    deal_value = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=0,
        max_value=MAX_DEAL_VALUE,
        required=False,
        allow_null=True,
        coerce_to_string=False,
        help_text="Only with a deal_closed event; at most 1,000,000,000.",
    )

    @classmethod
    def check(cls, item: Any) -> EventItem:
        values = cls.check_fields(item)
        event = EventItem(
            external_id=values["external_id"],
            type=values["type"],
            occurred_at=values.get("occurred_at") or timezone.now(),
            sentiment=values.get("sentiment"),
            deal_value=values.get("deal_value"),
        )
        errors = _event_rule_errors(event)
        if errors:
            raise serializers.ValidationError(errors)
        return event


def _event_rule_errors(event: EventItem) -> dict[str, list[str]]:
    """What a well-formed event may still get wrong: a time ahead of now, a figure of another stage."""
    errors: dict[str, list[str]] = {}
    if _ahead(event.occurred_at):
        errors["occurred_at"] = [AHEAD]
    if event.sentiment is not None and event.type != "replied":
        errors["sentiment"] = ["Only allowed with a replied event."]
    if event.deal_value is not None and event.type != "deal_closed":
        errors["deal_value"] = ["Only allowed with a deal_closed event."]
    return errors


@dataclass
class CheckedBatch(Generic[ItemT]):
    """A batch after the edge: the valid items for one service call, and a result per rejected one."""

    items: list[ItemT] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    rejected: list[ItemResult] = field(default_factory=list)

    def write_with(self, write: Callable[[list[ItemT]], BulkResult]) -> BulkResult:
        """Hand the valid items to ``write`` (one service call); all results, in the request's order."""
        by_index = {result.index: result for result in self.rejected}
        written = write(self.items).results if self.items else []
        for position, result in zip(self.positions, written, strict=True):
            result.index = position
            by_index[position] = result
        return BulkResult([by_index[index] for index in range(len(by_index))])


def check_batch(raw_items: Iterable[Any], check: Callable[[Any], ItemT]) -> CheckedBatch[ItemT]:
    """Check each raw item with ``check`` (a serializer's ``check``); a bad item never sinks the others."""
    batch: CheckedBatch[ItemT] = CheckedBatch()
    for index, raw in enumerate(raw_items):
        try:
            batch.items.append(check(raw))
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            batch.rejected.append(ItemResult(index=index, external_id=_external_id(raw), ok=False, errors=detail))
            continue
        batch.positions.append(index)
    return batch


def _external_id(raw: Any) -> str:
    return str(raw.get("external_id", "")) if isinstance(raw, dict) else ""


def outcome_items_from(raw_items: Iterable[Any]) -> list[OutcomeItem]:
    """Checked outcome items from plain dicts (commands, tests); raises naming each bad item's index."""
    return _all_valid(check_batch(raw_items, OutcomeItemSerializer.check))


def event_items_from(raw_items: Iterable[Any]) -> list[EventItem]:
    """Checked events from plain dicts (commands, tests); raises naming each bad item's index."""
    return _all_valid(check_batch(raw_items, EventItemSerializer.check))


def _all_valid(batch: CheckedBatch[ItemT]) -> list[ItemT]:
    if batch.rejected:
        raise serializers.ValidationError({str(result.index): result.errors for result in batch.rejected})
    return batch.items


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
