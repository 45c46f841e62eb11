"""The registry's admin actions in the admin's log: one entry per model a change touched.

Every traffic action runs its services under :func:`registry.services.recorded`, which returns
the audit rows (:class:`~registry.models.ModelEvent`) the change wrote. Each model among them
gets one ``LogEntry`` whose message tells what happened to it, in words, with the reason.
"""

from collections.abc import Callable
from typing import TypeVar

from django.http import HttpRequest

from flywheel.admin_helpers import log_admin_action
from registry.models import ModelEvent, RegisteredModel
from registry.services import recorded

T = TypeVar("T")


def share(value: float | None) -> str:
    return "-" if value is None else f"{value:g} %"


def event_message(event: ModelEvent) -> str:
    """One audit row in words: "Deployed: ready → deployed, traffic 0 % → 100 % (reason: …)"."""
    moves = []
    if event.status_before != event.status_after:
        moves.append(f"{event.status_before or '-'} → {event.status_after or '-'}")
    if event.traffic_before != event.traffic_after:
        moves.append(f"traffic {share(event.traffic_before)} → {share(event.traffic_after)}")
    text = event.get_action_display() + (f": {', '.join(moves)}" if moves else "")
    return f"{text} (reason: {event.reason})" if event.reason else text


def log_model_events(request: HttpRequest, events: list[ModelEvent]) -> int:
    """Write one log entry per model the ``events`` touched, as the signed-in user; return how many."""
    by_model: dict[object, list[ModelEvent]] = {}
    for event in events:
        by_model.setdefault(event.model_id, []).append(event)
    models = RegisteredModel.objects.in_bulk(list(by_model))
    for model_id, changes in by_model.items():
        if model_id in models:
            log_admin_action(request, models[model_id], "; ".join(event_message(event) for event in changes))
    return len(by_model)


def recorded_call(call: Callable[[], T]) -> tuple[T, list[ModelEvent]]:
    """What ``call`` returns, and the audit rows it wrote (see :func:`registry.services.recorded`)."""
    results: list[T] = []
    events = recorded(lambda: results.append(call()))
    return results[0], events
