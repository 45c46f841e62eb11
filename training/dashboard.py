"""The admin's home page: the flywheel of one pool week by week, its models, its test, its runs.

Every panel is read here, in the top app, because the dashboard reads from every app below it.
Each panel is one bounded query (or a handful, for the experiment's progress), limited to the
last ``DASHBOARD_WEEKS`` weeks or the latest rows, so the page stays fast at millions of labels.
A panel the user may not view is left out: each is guarded by the view permission of its model.
Numbers are as measured: weeks whose outcomes have not all matured are marked provisional, and
the experiment's rates carry the 95 % intervals its progress computes.
"""

import datetime
import uuid
from decimal import Decimal
from typing import Any

from django.db.models import Case, Count, IntegerField, Q, Sum, Value, When
from django.utils import timezone
from django_q.models import Schedule

from experiments.models import Experiment
from experiments.progress import experiment_progress
from flywheel.models import Organization
from outcomes.models import OutcomeLabel
from outcomes.selectors import matured_before, positive_q
from registry.models import ModelEvent, RegisteredModel
from training.models import TrainingRun
from training.selectors import pool_provider_name, provider_wind_down_notice

DASHBOARD_WEEKS = 12
ELIGIBLE_MIN_QUALITY = 0.6  # the training form's and the API's default threshold
LATEST_ROWS = 5
TIMELINE_EVENTS = 100
POOL_CHOICES = 200
MARKED_ACTIONS: dict[str, str] = {ModelEvent.Action.PROMOTED: "promoted", ModelEvent.Action.ROLLED_BACK: "rolled_back"}
PANEL_PERMISSIONS = {
    "flywheel": "outcomes.view_outcomelabel",
    "versions": "registry.view_modelevent",
    "experiment": "experiments.view_experiment",
    "schedules": "django_q.view_schedule",
    "runs": "training.view_trainingrun",
    "provider": "flywheel.view_organization",
}


# --- The pool -----------------------------------------------------------------------------------


def dashboard_pools() -> list[Organization]:
    """The organizations a pool picker offers (by name; the global pool is offered beside them)."""
    return list(Organization.objects.order_by("name")[:POOL_CHOICES])


def dashboard_pool(*, choice: str | None) -> tuple[Organization | None, str]:
    """The pool to show and its key for the picker: the chosen one, else the latest active organization.

    ``choice`` is an organization's slug or "global". Without a (known) choice, the pool is the
    organization whose message was sent last (one lookup on the ``sent_at`` index).
    """
    if choice == "global":
        return None, "global"
    organization = Organization.objects.filter(slug=choice).first() if choice else None
    if organization is None:
        latest = OutcomeLabel.objects.order_by("-sent_at").values_list("organization_id", flat=True).first()
        organization = Organization.objects.filter(pk=latest).first() if latest else None
    return organization, organization.slug if organization else "global"


def _pool_filter(organization: Organization | None, field: str = "organization") -> Q:
    return Q(**{f"{field}__isnull": True}) if organization is None else Q(**{field: organization})


# --- The flywheel, week by week -----------------------------------------------------------------


def week_starts(*, now: datetime.datetime, weeks: int = DASHBOARD_WEEKS) -> list[datetime.datetime]:
    """The Mondays (00:00, current time zone) that start the last ``weeks`` weeks, oldest first."""
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today - datetime.timedelta(days=today.weekday())
    return [monday - datetime.timedelta(weeks=back) for back in range(weeks - 1, -1, -1)]


def week_bucket(starts: list[datetime.datetime]) -> Case:
    """The position in ``starts`` of the week a label was sent in, as a SQL expression.

    Plain comparisons that the database evaluates natively: SQLite's date truncation calls back
    into Python for every row, which costs about a second per 20,000 labels.
    """
    whens = [When(sent_at__gte=start, then=Value(position)) for position, start in enumerate(starts)]
    return Case(*reversed(whens), default=Value(0), output_field=IntegerField())


def weekly_rows(*, organization: Organization | None, starts: list[datetime.datetime]) -> list[dict[str, Any]]:
    """One aggregate query: per week sent (its position in ``starts``) and per model, labels and counts.

    Reads the ``(organization, sent_at)`` index for an organization and the ``sent_at`` index for
    the global pool (every organization's labels), from the first week on.
    """
    return list(
        OutcomeLabel.objects.for_pool(organization.pk if organization else None)
        .filter(sent_at__gte=starts[0])
        .order_by()
        .annotate(week=week_bucket(starts))
        .values("week", "model_id")
        .annotate(
            labels=Count("id"),
            eligible=Count("id", filter=Q(excluded_from_training=False) & positive_q(ELIGIBLE_MIN_QUALITY)),
            replies=Count("id", filter=Q(replied_at__isnull=False)),
            meetings=Count("id", filter=Q(meeting_booked_at__isnull=False)),
            deals=Count("id", filter=Q(deal_closed_at__isnull=False)),
        )
    )


def flywheel_series(*, organization: Organization | None, now: datetime.datetime) -> dict[str, Any]:
    """The weekly series the flywheel charts draw: labels, eligible examples, rates per model version.

    A week is ``provisional`` while some of its messages are younger than the maturation window
    (their replies, meetings and deals may still arrive). A version's rate is ``None`` in a week
    it sent nothing, never 0.
    """
    starts = week_starts(now=now)
    labels, eligible = [0] * len(starts), [0] * len(starts)
    per_model: dict[uuid.UUID | None, list[dict[str, int] | None]] = {}
    for row in weekly_rows(organization=organization, starts=starts):
        position = row["week"]
        labels[position] += row["labels"]
        eligible[position] += row["eligible"]
        per_model.setdefault(row["model_id"], [None] * len(starts))[position] = row
    matured = matured_before(now)
    return {
        "weeks": [start.date().isoformat() for start in starts],
        "provisional": [start + datetime.timedelta(weeks=1) > matured for start in starts],
        "labels": labels,
        "eligible": eligible,
        "eligible_min_quality": ELIGIBLE_MIN_QUALITY,
        "versions": _version_rates(per_model),
    }


def _version_rates(per_model: dict[uuid.UUID | None, list[dict[str, int] | None]]) -> list[dict[str, Any]]:
    """Each model's weekly messages and reply, meeting and close rates (one query for the versions' names)."""
    names = dict(RegisteredModel.objects.filter(pk__in=[k for k in per_model if k]).values_list("pk", "model_version"))
    versions = []
    for model_id, weeks in per_model.items():
        rates: dict[str, list[float | None]] = {"reply_rate": [], "meeting_rate": [], "close_rate": []}
        for row in weeks:
            for rate, count in (("reply_rate", "replies"), ("meeting_rate", "meetings"), ("close_rate", "deals")):
                rates[rate].append(row[count] / row["labels"] if row else None)
        version = names.get(model_id, "unknown model") if model_id else "no model recorded"
        messages = [row["labels"] if row else 0 for row in weeks]
        versions.append(
            {"version": version, "model_id": str(model_id) if model_id else None, "messages": messages, **rates}
        )
    return sorted(versions, key=lambda item: -sum(item["messages"]))


# --- Model versions over time -------------------------------------------------------------------


def version_timeline(
    *, organization: Organization | None, since: datetime.datetime, now: datetime.datetime
) -> dict[str, Any]:
    """Each version's traffic over time from the registry's audit, promotions and rollbacks marked.

    One query: the pool's latest ``TIMELINE_EVENTS`` audit rows since ``since`` that set a
    traffic share (deploys, traffic changes, promotions, archives, rollbacks), oldest first.
    Each version's line ends ``now`` at its current share, so a step lasts until today.
    """
    events = list(
        ModelEvent.objects.filter(_pool_filter(organization), created_at__gte=since, traffic_after__isnull=False)
        .select_related("model")
        .order_by("-created_at", "-id")[:TIMELINE_EVENTS]
    )
    series: dict[str, list[dict[str, Any]]] = {}
    marks: list[dict[str, Any]] = []
    current = {event.model.model_version: event.model.traffic_percentage for event in events}
    for event in reversed(events):
        point = {"x": _milliseconds(event.created_at), "y": event.traffic_after}
        series.setdefault(event.model.model_version, []).append(point)
        if event.action in MARKED_ACTIONS:
            marks.append({**point, "kind": MARKED_ACTIONS[event.action], "version": event.model.model_version})
    for version, points in series.items():
        points.append({"x": _milliseconds(now), "y": current[version]})
    return {
        "versions": [{"version": version, "points": points} for version, points in series.items()],
        "marks": marks,
        "truncated": len(events) == TIMELINE_EVENTS,
    }


def _milliseconds(moment: datetime.datetime) -> int:
    """A time as Chart.js's linear axis reads it: milliseconds since the epoch."""
    return int(moment.timestamp() * 1000)


# --- Experiment, schedules, runs, provider --------------------------------------------------------


def running_experiment_progress(*, organization: Organization | None) -> dict[str, Any] | None:
    """The pool's running experiment's live progress (see :mod:`experiments.progress`), else None."""
    experiment = (
        Experiment.objects.filter(_pool_filter(organization), status=Experiment.Status.RUNNING)
        .select_related("control", "variant")
        .first()
    )
    return experiment_progress(experiment) if experiment else None


def next_schedules() -> list[Schedule]:
    """The next django-q2 schedules due, soonest first."""
    return list(Schedule.objects.filter(next_run__isnull=False).order_by("next_run")[:LATEST_ROWS])


def latest_runs(*, organization: Organization | None) -> dict[str, Any]:
    """The pool's last training runs and the estimated cost of all its runs so far (two queries)."""
    runs = TrainingRun.objects.filter(_pool_filter(organization))
    total = runs.aggregate(cost=Sum("estimated_cost"), count=Count("id"))
    return {
        "runs": list(runs.order_by("-created_at")[:LATEST_ROWS]),
        "cost_to_date": total["cost"] or Decimal(0),
        "run_count": total["count"],
    }


def provider_health(*, organization: Organization | None) -> dict[str, str]:
    """The pool's training provider and what its operator must know about it (OpenAI's wind-down)."""
    provider = pool_provider_name(organization=organization)
    return {"provider": provider, "notice": provider_wind_down_notice(provider=provider)}


# --- The whole page -----------------------------------------------------------------------------


def dashboard_context(*, user: Any, choice: str | None, now: datetime.datetime | None = None) -> dict[str, Any]:
    """Every panel of the dashboard the user may view, for the chosen pool (see :func:`dashboard_pool`).

    A panel whose model the user may not view is absent from the answer (its key is missing),
    so the page shows neither its numbers nor its title.
    """
    now = now or timezone.now()
    organization, pool_key = dashboard_pool(choice=choice)
    allowed = {panel for panel, permission in PANEL_PERMISSIONS.items() if user.has_perm(permission)}
    since = week_starts(now=now)[0]
    panels: dict[str, Any] = {}
    if "flywheel" in allowed:
        panels["flywheel"] = flywheel_series(organization=organization, now=now)
    if "versions" in allowed:
        panels["versions"] = version_timeline(organization=organization, since=since, now=now)
    if "experiment" in allowed:
        panels["experiment"] = {"progress": running_experiment_progress(organization=organization)}
    if "schedules" in allowed:
        panels["schedules"] = {"next": next_schedules()}
    if "runs" in allowed:
        panels["runs"] = latest_runs(organization=organization)
    if "provider" in allowed:
        panels["provider"] = provider_health(organization=organization)
    pools = dashboard_pools() if user.has_perm("flywheel.view_organization") else []
    return {"organization": organization, "pool_key": pool_key, "pools": pools, "weeks": DASHBOARD_WEEKS, **panels}
