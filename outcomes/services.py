"""Every write to outcome labels: upserts by external id, funnel events, score recomputation.

The services take items already checked at the edge (:mod:`outcomes.serializers`) and decide only
what needs the database: the model an item names, whether its label exists, whether its model may
change. Counters move through the registry's ``model_counters_add``, exactly once per label and stage.
Concurrent batches are safe: labels are locked in id order, a transaction PostgreSQL aborts as a
deadlock or serialization failure runs again (a few times), and an item a full counter cannot
take is reported on its own while the rest of its batch is written.
"""

import datetime
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q

from flywheel.errors import ApplicationError, Conflict
from flywheel.models import Organization
from outcomes.events import COUNTED, BatchOutcome, EventBatch, EventsRefused, apply_event_batch
from outcomes.models import OutcomeLabel
from outcomes.retry import ATTEMPTS, pause, transient
from outcomes.scoring import quality_score_expression
from outcomes.scrubbing import scrub
from outcomes.training_text import ready_as_stored, training_tokens_of
from registry.models import RegisteredModel
from registry.services import Counts, model_counters_add
from registry.services.performance import CounterOverflow

logger = logging.getLogger(__name__)

MAX_BATCH = 10_000
BUSY = "Too much concurrent activity on these outcomes; retry."
FULL = "The performance counters of this label's model have no room for this event."

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
    "lead_hash",
)
CURATION_FIELDS = ("excluded_from_training", "reviewer_note", "ideal_body")
LABEL_FIELDS = (*UPSERT_FIELDS, *CURATION_FIELDS)
# The fields a label's training text (and so its stored token count) is made of.
TEXT_FIELDS = ("first_name", "last_name", "company", "prompt", "subject", "body", "ideal_body")
# The texts stored scrubbed (the prospect's data replaced by placeholders) when a label is written.
SCRUBBED_TEXTS = ("prompt", "subject", "body", "ideal_body")
NAMES = ("first_name", "last_name", "company")
SEGMENT_FIELDS = ("industry", "role", "company_size", "framework", "tone", "channel")


@dataclass(frozen=True, slots=True)
class OutcomeItem:
    """One checked message report. ``None`` means "not sent": the stored value stays."""

    external_id: str
    model_id: uuid.UUID | None = None
    industry: str | None = None
    role: str | None = None
    company_size: str | None = None
    framework: str | None = None
    tone: str | None = None
    channel: str | None = None
    icp_match_score: float | None = None
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    prompt: str | None = None
    subject: str | None = None
    body: str | None = None
    sent_at: datetime.datetime | None = None
    lead_hash: str | None = None  # the keyed hash of the lead key (outcomes.leads), never the key
    excluded_from_training: bool | None = None
    reviewer_note: str | None = None
    ideal_body: str | None = None

    def values(self) -> dict[str, Any]:
        """The label fields this item sets, by name."""
        return {name: value for name in LABEL_FIELDS if (value := getattr(self, name)) is not None}


@dataclass(frozen=True, slots=True)
class EventItem:
    """One checked funnel event: a stage of ``STAGES``, when it happened, and its reply or deal figure."""

    external_id: str
    type: str
    occurred_at: datetime.datetime
    sentiment: float | None = None
    deal_value: Decimal | None = None


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


class ItemsRefused(Exception):
    """Items of a batch that cannot be written, with their errors by index; the others can."""

    def __init__(self, errors: dict[int, dict[str, Any]]) -> None:
        super().__init__(str(errors))
        self.errors = errors


# --- Outcome labels ---------------------------------------------------------------------------

CleanedLabels = dict[str, tuple[int, OutcomeLabel, OutcomeItem]]


def _resolve_model(
    organization: Organization, model_id: uuid.UUID | None, known: dict[uuid.UUID, RegisteredModel | None]
) -> RegisteredModel | None:
    """The registry row an item names: one of the organization's models or a global one.

    ``known`` remembers each model of the batch, so a thousand items naming the same model cost
    one query, not a thousand.
    """
    if model_id is None:
        return None
    if model_id not in known:
        visible = RegisteredModel.objects.filter(Q(organization=organization) | Q(organization__isnull=True))
        known[model_id] = visible.filter(pk=model_id).first()
    model = known[model_id]
    if model is None:
        raise ItemInvalid({"model": [f"No model {model_id} is registered for this organization."]})
    return model


def _label_from(organization: Organization, item: OutcomeItem, model: RegisteredModel | None) -> OutcomeLabel:
    """An unsaved label with the item's fields; personal data scrubbed from the text."""
    label = OutcomeLabel(organization=organization, external_id=item.external_id, model=model, **item.values())
    names = {name: getattr(label, name) for name in NAMES}
    for name in SCRUBBED_TEXTS:
        setattr(label, name, scrub(getattr(label, name), **names))
    label.texts_ready = stored_texts_ready(label)
    return label


def stored_texts_ready(label: OutcomeLabel) -> bool:
    """Whether a label whose texts are all scrubbed may be exported as stored (``OutcomeLabel.texts_ready``)."""
    return ready_as_stored(
        prompt=label.prompt,
        subject=label.subject,
        target=label.ideal_body or label.body,
        segment=[getattr(label, name) for name in SEGMENT_FIELDS],
    )


def _reached(label: OutcomeLabel) -> Counts:
    """What a label adds to the model it is attributed to: its message and every counted stage it reached."""
    counts = Counts(messages_sent=1)
    for stage, name in COUNTED.items():
        setattr(counts, name, int(getattr(label, f"{stage}_at") is not None))
    if label.deal_closed_at is not None and label.deal_value is not None:
        counts.revenue = Decimal(label.deal_value)
    return counts


def _count_attributed(attributed: Iterable[tuple[int, OutcomeLabel]]) -> None:
    """Add newly attributed labels to their models' counters.

    When a counter has no room for them all, the labels that still fit, in the batch's order, are
    kept and the others refused (:class:`ItemsRefused`).
    """
    per_model: dict[Any, Counts] = defaultdict(Counts)
    added = [(index, label.model_id, _reached(label)) for index, label in attributed if label.model_id]
    for _, model_id, reached in added:
        per_model[model_id].add(reached)
    try:
        model_counters_add(increments=per_model)
    except CounterOverflow as exc:
        room = {str(model_id): counts for model_id, counts in exc.room.items()}
        refused: dict[int, dict[str, Any]] = {}
        for index, model_id, reached in sorted(added, key=lambda entry: entry[0]):
            left = room.get(str(model_id))
            if left is not None and not left.take(reached):
                refused[index] = {"model": ["The model's performance counters have no room for this message."]}
        raise ItemsRefused(refused) from exc


def _update_existing(existing: OutcomeLabel, label: OutcomeLabel, item: OutcomeItem) -> bool:
    if label.model_id and existing.model_id and existing.model_id != label.model_id:
        raise ItemInvalid({"model": ["The model that wrote a message cannot change."]})
    if label.lead_hash and existing.lead_hash and existing.lead_hash != label.lead_hash:
        raise ItemInvalid({"lead": ["The lead a message went to cannot change."]})
    names = list(item.values())
    if label.model_id and not existing.model_id:
        names.append("model")
    changed = [name for name in names if getattr(existing, name) != getattr(label, name)]
    renamed = "first_name" in changed or "last_name" in changed or "company" in changed
    if renamed:
        changed += [name for name in ("subject", "body", "ideal_body") if name not in changed]
    for name in changed:
        setattr(existing, name, getattr(label, name))
    if renamed and "prompt" not in changed:  # every text is now scrubbed with the new names, the prompt too
        existing.prompt = scrub(existing.prompt, **{name: getattr(existing, name) for name in NAMES})
        changed.append("prompt")
    if set(changed) & set(TEXT_FIELDS):
        count_training_text(existing)
        changed.append("training_tokens")
    if changed:
        existing.save(update_fields=[*changed, "updated_at"])
    return bool(changed)


def outcome_upsert_bulk(*, organization: Organization, items: Sequence[OutcomeItem]) -> BulkResult:
    """Create or update labels by ``external_id``; items the database refuses are reported, the others kept.

    A handful of statements per batch: one read of the existing rows (locked), one bulk insert,
    one counter update per attributed model and one score update.
    """
    if len(items) > MAX_BATCH:
        raise ApplicationError(f"At most {MAX_BATCH} items per call.", code="too_many_items")
    results = [ItemResult(index=index, external_id=item.external_id, ok=False) for index, item in enumerate(items)]
    cleaned: CleanedLabels = {}
    known_models: dict[uuid.UUID, RegisteredModel | None] = {}
    for index, item in enumerate(items):
        try:
            model = _resolve_model(organization, item.model_id, known_models)
        except ItemInvalid as exc:
            results[index].errors = exc.errors
            continue
        if item.external_id in cleaned:
            results[cleaned[item.external_id][0]].errors = {"external_id": ["Repeated in this batch."]}
        cleaned[item.external_id] = (index, _label_from(organization, item, model), item)
    _write_labels(organization, cleaned, results)
    return BulkResult(results)


def _write_labels(organization: Organization, cleaned: CleanedLabels, results: list[ItemResult]) -> None:
    """Write the labels in one transaction, run again after a collision or without the items refused."""
    for attempt in range(ATTEMPTS):
        pending = {eid: entry for eid, entry in cleaned.items() if not results[entry[0]].errors}
        refused: dict[int, dict[str, Any]] = {}
        try:
            with transaction.atomic():
                touched = _write_labels_once(organization, pending, results)
                OutcomeLabel.objects.filter(pk__in=touched).update(quality_score=quality_score_expression())
            return
        except ItemsRefused as exc:
            refused = exc.errors
        except IntegrityError:
            # A concurrent writer inserted one of our new external ids first: read again and
            # update those rows instead of inserting them.
            logger.info("outcome upsert raced with another writer (attempt %s); retrying", attempt + 1)
        except OperationalError as exc:
            if not transient(exc):
                raise
            pause(attempt)
        for index, _, _ in pending.values():
            results[index] = ItemResult(index=index, external_id=results[index].external_id, ok=False)
        for index, errors in refused.items():
            results[index].errors = errors
    raise Conflict(BUSY)


def _write_labels_once(organization: Organization, cleaned: CleanedLabels, results: list[ItemResult]) -> list[Any]:
    """Update the labels that exist (locked in id order), insert the others (in external id order)."""
    rows = OutcomeLabel.objects.select_for_update().filter(organization=organization, external_id__in=list(cleaned))
    existing = {label.external_id: label for label in rows.order_by("pk")}
    new: list[OutcomeLabel] = []
    attributed: list[tuple[int, OutcomeLabel]] = []
    touched: list[Any] = []
    for external_id, (index, label, item) in cleaned.items():
        result = results[index]
        if external_id in existing:
            newly_attributed = bool(label.model_id and not existing[external_id].model_id)
            try:
                result.changed = _update_existing(existing[external_id], label, item)
            except ItemInvalid as exc:
                result.errors = exc.errors
                continue
            label = existing[external_id]
            if newly_attributed:
                attributed.append((index, label))
        elif not label.body:
            result.errors = {"body": ["This field is required for a new outcome."]}
            continue
        else:
            count_training_text(label)
            new.append(label)
            attributed.append((index, label))
            result.created = result.changed = True
        result.ok, result.id = True, str(label.pk)
        touched.append(label.pk)
    OutcomeLabel.objects.bulk_create(sorted(new, key=lambda label: label.external_id), batch_size=500)
    _count_attributed(attributed)
    return touched


def outcome_upsert(*, organization: Organization, item: OutcomeItem) -> OutcomeLabel:
    """Create or update one label by ``external_id``; raises ``ValidationError`` when it cannot be written."""
    result = outcome_upsert_bulk(organization=organization, items=[item]).results[0]
    if not result.ok:
        raise ValidationError(result.errors)
    assert result.id is not None
    return OutcomeLabel.objects.get(pk=result.id)


def outcome_curate(
    *, label: OutcomeLabel, excluded_from_training: bool, reviewer_note: str = "", ideal_body: str = ""
) -> OutcomeLabel:
    """Record a reviewer's decision on a label: exclude it, or give it an ideal training text.

    The texts' lengths are checked before the ideal body is scrubbed, as the API's edge does.
    """
    label.excluded_from_training = excluded_from_training
    label.reviewer_note = reviewer_note
    label.ideal_body = ideal_body
    others = [field.name for field in OutcomeLabel._meta.fields if field.name not in CURATION_FIELDS]
    label.full_clean(exclude=others, validate_unique=False, validate_constraints=False)
    label.ideal_body = scrub(ideal_body, first_name=label.first_name, last_name=label.last_name, company=label.company)
    count_training_text(label)
    label.save(update_fields=["excluded_from_training", "reviewer_note", "ideal_body", "training_tokens", "updated_at"])
    return label


# --- Training texts ---------------------------------------------------------------------------


def count_training_text(label: OutcomeLabel) -> None:
    """Store the token count of the label's training text on it (not saved): at every write of its text."""
    label.training_tokens = training_tokens_of(**{name: getattr(label, name) for name in TEXT_FIELDS})


# --- Events -----------------------------------------------------------------------------------


def outcome_event_record_bulk(*, organization: Organization, events: Sequence[EventItem]) -> BulkResult:
    """Record funnel events; per-item results: an event whose label is not found is reported.

    The earliest timestamp of a stage wins and a repeated event changes nothing, so a retried
    batch is harmless. Set-based: a couple of statements per event type present in the batch,
    one score update and one counter update per affected model, whatever the batch size.
    """
    if len(events) > MAX_BATCH:
        raise ApplicationError(f"At most {MAX_BATCH} events per call.", code="too_many_items")
    results = [ItemResult(index=index, external_id=event.external_id, ok=False) for index, event in enumerate(events)]
    refused: set[tuple[str, str]] = set()
    for attempt in range(ATTEMPTS):
        batch = EventBatch()
        for index, event in enumerate(events):
            if (event.external_id, event.type) in refused:
                results[index].errors = {"non_field_errors": [FULL]}
                continue
            batch.add(index, event.external_id, event.type, event.occurred_at, event.sentiment, event.deal_value)
        try:
            outcome = _apply_events(organization, batch)
        except EventsRefused as exc:
            refused |= exc.refused
            continue
        except OperationalError as exc:
            if not transient(exc):
                raise
            pause(attempt)
            continue
        _finish_results(results, batch, outcome)
        return BulkResult(results)
    raise Conflict(BUSY)


def _apply_events(organization: Organization, batch: EventBatch) -> BatchOutcome:
    with transaction.atomic():
        return apply_event_batch(connection, organization_id=organization.pk, batch=batch)


def _finish_results(results: list[ItemResult], batch: EventBatch, outcome: BatchOutcome) -> None:
    found, changed = outcome.found, outcome.changed
    for index, (external_id, kind) in batch.items.items():
        result = results[index]
        if external_id not in found:
            result.errors = {"external_id": [f"No outcome with external id {external_id!r}."]}
            continue
        result.ok, result.id = True, found[external_id]
        result.changed = (external_id, kind) in changed


def outcome_event_record(*, organization: Organization, event: EventItem) -> bool:
    """Record one funnel event; returns whether it changed the label. Raises when its label is not found."""
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
