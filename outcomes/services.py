"""Every write to outcome labels: upserts by external id, funnel events, score recomputation.

Attribution: a label created with a model adds one to that model's ``total_messages_sent``; the
first time a label reaches replied / meeting booked / deal closed, the model's counters rise
exactly once, in the same transaction as the label. Both rely on conditional statements (a row
is counted only by the statement that moved it from "not yet" to "done") and ``F()`` increments,
so retries, duplicate deliveries and concurrent writers cannot count anything twice.
"""

import datetime
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from flywheel.errors import ApplicationError, validation_details
from flywheel.models import Organization
from outcomes.events import EventBatch, apply_event_batch
from outcomes.models import STAGES, OutcomeLabel
from outcomes.scoring import quality_score_expression
from outcomes.scrubbing import scrub
from registry.models import RegisteredModel
from registry.services import Counts, model_counters_add

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000

# Fields an agent may set when it reports a message; the funnel moves only through events.
UPSERT_FIELDS = (
    "industry",
    "role",
    "company_size",
    "framework",
    "tone",
    "channel",
    "icp_match_score",
    "first_name",
    "last_name",
    "company",
    "prompt",
    "subject",
    "body",
    "sent_at",
)
CURATION_FIELDS = ("excluded_from_training", "reviewer_note", "ideal_body")


@dataclass
class ItemResult:
    index: int
    external_id: str
    ok: bool
    id: str | None = None
    created: bool = False
    changed: bool = False
    errors: dict[str, Any] = field(default_factory=dict)


@dataclass
class BulkResult:
    results: list[ItemResult]

    @property
    def succeeded(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failed(self) -> int:
        return len(self.results) - self.succeeded


class ItemInvalid(Exception):
    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(str(errors))
        self.errors = errors


# --- Outcome labels ---------------------------------------------------------------------------


def _resolve_model(
    organization: Organization, model_ref: Any, known: dict[str, RegisteredModel | None]
) -> RegisteredModel | None:
    """The registry row an item names: one of the organization's models or a global one.

    ``known`` remembers each reference of the batch, so a thousand items naming the same model
    cost one query, not a thousand.
    """
    if model_ref in (None, ""):
        return None
    if isinstance(model_ref, RegisteredModel):
        model_ref = model_ref.pk
    if str(model_ref) not in known:
        known[str(model_ref)] = _find_model(organization, model_ref)
    model = known[str(model_ref)]
    if model is None:
        raise ItemInvalid({"model": [f"No model {model_ref} is registered for this organization."]})
    return model


def _find_model(organization: Organization, model_ref: Any) -> RegisteredModel | None:
    try:
        model = (
            RegisteredModel.objects.filter(Q(organization=organization) | Q(organization__isnull=True))
            .filter(pk=model_ref)
            .first()
        )
    except (ValidationError, ValueError):
        model = None
    return model


def _clean_label(
    organization: Organization, data: dict[str, Any], known_models: dict[str, RegisteredModel | None]
) -> tuple[OutcomeLabel, str]:
    """Build an unsaved, validated label from an item; personal data scrubbed from the text."""
    external_id = str(data.get("external_id") or "").strip()
    if not external_id:
        raise ItemInvalid({"external_id": ["This field is required."]})
    unknown = set(data) - {*UPSERT_FIELDS, *CURATION_FIELDS, "external_id", "model"}
    if unknown:
        raise ItemInvalid({name: ["Unknown field."] for name in sorted(unknown)})
    values = {name: data[name] for name in (*UPSERT_FIELDS, *CURATION_FIELDS) if name in data}
    label = OutcomeLabel(organization=organization, external_id=external_id, **values)
    label.model = _resolve_model(organization, data.get("model"), known_models)
    try:
        # Only the fields an item carries are checked here: an update may send just a few, and
        # a new label's required fields are checked when it is known to be new.
        absent = [f.name for f in OutcomeLabel._meta.fields if f.name not in data]
        label.full_clean(exclude=["organization", "model", *absent], validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        raise ItemInvalid(validation_details(exc)) from exc
    names = {"first_name": label.first_name, "last_name": label.last_name, "company": label.company}
    label.subject = scrub(label.subject, **names)
    label.body = scrub(label.body, **names)
    label.ideal_body = scrub(label.ideal_body, **names)
    return label, external_id


def _count_messages(labels: Iterable[OutcomeLabel]) -> None:
    per_model: dict[Any, Counts] = defaultdict(Counts)
    for label in labels:
        if label.model_id:
            per_model[label.model_id].messages_sent += 1
    model_counters_add(increments=per_model)


def _update_existing(existing: OutcomeLabel, label: OutcomeLabel, data: dict[str, Any]) -> bool:
    if label.model_id and existing.model_id and existing.model_id != label.model_id:
        raise ItemInvalid({"model": ["The model that wrote a message cannot change."]})
    names = [name for name in (*UPSERT_FIELDS, *CURATION_FIELDS) if name in data]
    if label.model_id and not existing.model_id:
        names.append("model")
    changed = [name for name in names if getattr(existing, name) != getattr(label, name)]
    if "first_name" in changed or "last_name" in changed or "company" in changed:
        changed += [name for name in ("subject", "body", "ideal_body") if name not in changed]
    for name in changed:
        setattr(existing, name, getattr(label, name))
    if changed:
        existing.save(update_fields=[*changed, "updated_at"])
    return bool(changed)


def outcome_upsert_bulk(*, organization: Organization, items: Sequence[dict[str, Any]]) -> BulkResult:
    """Create or update labels by ``external_id``; invalid items are reported, valid ones kept.

    A handful of statements per batch: one read of the existing rows (locked), one bulk insert,
    one counter update per attributed model and one score update.
    """
    if len(items) > MAX_BATCH:
        raise ApplicationError(f"At most {MAX_BATCH} items per call.", code="too_many_items")
    results: list[ItemResult] = []
    cleaned: dict[str, tuple[int, OutcomeLabel, dict[str, Any]]] = {}
    known_models: dict[str, RegisteredModel | None] = {}
    for index, data in enumerate(items):
        external_id = str(data.get("external_id", "")) if isinstance(data, dict) else ""
        result = ItemResult(index=index, external_id=external_id, ok=False)
        results.append(result)
        try:
            if not isinstance(data, dict):
                raise ItemInvalid({"non_field_errors": ["Expected an object."]})
            label, external_id = _clean_label(organization, data, known_models)
        except ItemInvalid as exc:
            result.errors = exc.errors
            continue
        if external_id in cleaned:
            results[cleaned[external_id][0]].errors = {"external_id": ["Repeated in this batch."]}
        cleaned[external_id] = (index, label, data)
    _write_labels(organization, cleaned, results)
    return BulkResult(results)


def _write_labels(
    organization: Organization,
    cleaned: dict[str, tuple[int, OutcomeLabel, dict[str, Any]]],
    results: list[ItemResult],
) -> None:
    cleaned = {eid: item for eid, item in cleaned.items() if not results[item[0]].errors}
    for attempt in range(3):
        try:
            with transaction.atomic():
                touched = _write_labels_once(organization, cleaned, results)
                OutcomeLabel.objects.filter(pk__in=touched).update(quality_score=quality_score_expression())
            return
        except IntegrityError:
            # A concurrent writer inserted one of our new external ids first: read again and
            # update those rows instead of inserting them.
            logger.info("outcome upsert raced with another writer (attempt %s); retrying", attempt + 1)
            for index, _, _ in cleaned.values():
                results[index].created = results[index].changed = False
    raise ApplicationError("Too much concurrent activity on these outcomes; retry.", code="conflict")


def _write_labels_once(
    organization: Organization,
    cleaned: dict[str, tuple[int, OutcomeLabel, dict[str, Any]]],
    results: list[ItemResult],
) -> list[Any]:
    existing = {
        label.external_id: label
        for label in OutcomeLabel.objects.select_for_update().filter(
            organization=organization, external_id__in=list(cleaned)
        )
    }
    new: list[OutcomeLabel] = []
    attributed: list[OutcomeLabel] = []
    touched: list[Any] = []
    for external_id, (index, label, data) in cleaned.items():
        result = results[index]
        if external_id in existing:
            newly_attributed = bool(label.model_id and not existing[external_id].model_id)
            try:
                result.changed = _update_existing(existing[external_id], label, data)
            except ItemInvalid as exc:
                result.errors = exc.errors
                continue
            label = existing[external_id]
            if newly_attributed:
                attributed.append(label)
        elif not label.body:
            result.errors = {"body": ["This field is required for a new outcome."]}
            continue
        else:
            new.append(label)
            attributed.append(label)
            result.created = result.changed = True
        result.ok, result.id = True, str(label.pk)
        touched.append(label.pk)
    OutcomeLabel.objects.bulk_create(new, batch_size=500)
    _count_messages(attributed)
    return touched


def outcome_upsert(*, organization: Organization, data: dict[str, Any]) -> OutcomeLabel:
    """Create or update one label by ``external_id``; raises ``ValidationError`` on bad input."""
    result = outcome_upsert_bulk(organization=organization, items=[data]).results[0]
    if not result.ok:
        raise ValidationError(result.errors)
    assert result.id is not None
    return OutcomeLabel.objects.get(pk=result.id)


def outcome_curate(
    *, label: OutcomeLabel, excluded_from_training: bool, reviewer_note: str = "", ideal_body: str = ""
) -> OutcomeLabel:
    """Record a reviewer's decision on a label: exclude it, or give it an ideal training text."""
    label.excluded_from_training = excluded_from_training
    label.reviewer_note = reviewer_note
    label.ideal_body = scrub(ideal_body, first_name=label.first_name, last_name=label.last_name, company=label.company)
    label.full_clean(validate_unique=False, validate_constraints=False)
    label.save(update_fields=["excluded_from_training", "reviewer_note", "ideal_body", "updated_at"])
    return label


# --- Events -----------------------------------------------------------------------------------


def _clean_event(data: Any) -> tuple[str, str, datetime.datetime, float | None, Decimal | None]:
    if not isinstance(data, dict):
        raise ItemInvalid({"non_field_errors": ["Expected an object."]})
    errors: dict[str, list[str]] = {}
    external_id = str(data.get("external_id") or "").strip()
    if not external_id:
        errors["external_id"] = ["This field is required."]
    kind = data.get("type")
    if kind not in STAGES:
        errors["type"] = [f"Must be one of: {', '.join(STAGES)}."]
    occurred_at = _parse_time(data.get("occurred_at"), errors)
    sentiment = _parse_number(data.get("sentiment"), "sentiment", -1, 1, errors, only_for="replied", kind=kind)
    value = _parse_number(data.get("deal_value"), "deal_value", 0, None, errors, only_for="deal_closed", kind=kind)
    if errors:
        raise ItemInvalid(errors)
    assert occurred_at is not None
    return external_id, str(kind), occurred_at, sentiment, None if value is None else Decimal(str(value))


def _parse_time(raw: Any, errors: dict[str, list[str]]) -> datetime.datetime | None:
    if raw in (None, ""):
        return timezone.now()
    parsed: datetime.datetime | None = None
    if isinstance(raw, datetime.datetime):
        parsed = raw
    elif isinstance(raw, str):
        try:
            parsed = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    if parsed is None:
        errors["occurred_at"] = ["Expected an ISO 8601 date and time."]
        return None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, datetime.UTC)
    if parsed > timezone.now() + datetime.timedelta(days=1):
        errors["occurred_at"] = ["Cannot be in the future."]
    return parsed


def _parse_number(
    raw: Any,
    name: str,
    low: float,
    high: float | None,
    errors: dict[str, list[str]],
    *,
    only_for: str,
    kind: Any,
) -> float | None:
    if raw is None:
        return None
    if kind != only_for:
        errors[name] = [f"Only allowed with a {only_for} event."]
        return None
    try:
        number = float(raw)
    except (TypeError, ValueError):
        errors[name] = ["Expected a number."]
        return None
    if number != number or number < low or (high is not None and number > high):
        errors[name] = [f"Must be between {low} and {high}." if high is not None else f"Must be at least {low}."]
        return None
    return number


def outcome_event_record_bulk(*, organization: Organization, events: Sequence[Any]) -> BulkResult:
    """Record funnel events; per-item results, invalid items reported, valid ones applied.

    The earliest timestamp of a stage wins and a repeated event changes nothing, so a retried
    batch is harmless. Set-based: a couple of statements per event type present in the batch,
    one score update and one counter update per affected model, whatever the batch size.
    """
    if len(events) > MAX_BATCH:
        raise ApplicationError(f"At most {MAX_BATCH} events per call.", code="too_many_items")
    results: list[ItemResult] = []
    batch = EventBatch()
    for index, data in enumerate(events):
        external_id = str(data.get("external_id", "")) if isinstance(data, dict) else ""
        result = ItemResult(index=index, external_id=external_id, ok=False)
        results.append(result)
        try:
            external_id, kind, occurred_at, sentiment, value = _clean_event(data)
        except ItemInvalid as exc:
            result.errors = exc.errors
            continue
        batch.add(index, external_id, kind, occurred_at, sentiment, value)
    with transaction.atomic():
        outcome = apply_event_batch(connection, organization_id=organization.pk, batch=batch)
    _finish_results(results, batch, outcome.found, outcome.changed)
    return BulkResult(results)


def _finish_results(
    results: list[ItemResult], batch: EventBatch, found: dict[str, str], changed: set[tuple[str, str]]
) -> None:
    for index, (external_id, kind) in batch.items.items():
        result = results[index]
        if external_id not in found:
            result.errors = {"external_id": [f"No outcome with external id {external_id!r}."]}
            continue
        result.ok, result.id = True, found[external_id]
        result.changed = (external_id, kind) in changed


def outcome_event_record(
    *,
    organization: Organization,
    external_id: str,
    type: str,
    occurred_at: datetime.datetime | None = None,
    sentiment: float | None = None,
    deal_value: Decimal | float | None = None,
) -> bool:
    """Record one funnel event; returns whether it changed the label. Raises on bad input."""
    event: dict[str, Any] = {"external_id": external_id, "type": type, "occurred_at": occurred_at}
    if sentiment is not None:
        event["sentiment"] = sentiment
    if deal_value is not None:
        event["deal_value"] = deal_value
    result = outcome_event_record_bulk(organization=organization, events=[event]).results[0]
    if not result.ok:
        raise ValidationError(result.errors)
    return result.changed


# --- Scores -----------------------------------------------------------------------------------


def quality_scores_recompute(*, chunk_size: int = 5000, progress: Callable[[int, int], None] | None = None) -> int:
    """Rewrite every stored quality score with the current weights, a chunk per statement."""
    total = OutcomeLabel.objects.count()
    done = 0
    last_pk = None
    while True:
        ids = OutcomeLabel.objects.order_by("pk")
        if last_pk is not None:
            ids = ids.filter(pk__gt=last_pk)
        chunk = list(ids.values_list("pk", flat=True)[:chunk_size])
        if not chunk:
            return done
        OutcomeLabel.objects.filter(pk__in=chunk).update(quality_score=quality_score_expression())
        done += len(chunk)
        last_pk = chunk[-1]
        if progress:
            progress(done, total)
