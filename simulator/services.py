"""A simulation: a synthetic market driving the real loop week by week, on the simulated clock.

:func:`simulation_run` creates the simulation's organization afresh (so a name is idempotent),
registers and deploys the base model, and then, from one warm-up week of history on, lives each
simulated week: on Monday at 06:00 the policy acts (decisions, a training cycle); every weekday
at 09:00 the agents route, write and report the day's new leads; every evening at 18:00 they
report the funnel events that happened since, as they mature. Django-q2 tasks run in this process.
"""

from __future__ import annotations

import datetime
import heapq
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django_q.conf import Conf

from experiments.models import Experiment
from flywheel.models import Organization
from flywheel.services import api_key_create, organization_create
from outcomes.services import EventItem
from registry.models import RegisteredModel
from registry.services import model_deploy, model_register, model_set_baseline
from simulator.agents import Gateway, HttpGateway, Report, ServiceGateway, outcome_report
from simulator.clock import SimulatedClock
from simulator.funnel import Happening, draw_outcome
from simulator.market import Market, Odds, Prospect
from simulator.policies import POLICIES, Desk, is_tuned
from simulator.server import local_server
from simulator.truth import Judge
from simulator.writing import FRAMEWORKS, TONES, Writer, prompt_for, render
from training.services import model_test

DEFAULT_START = datetime.datetime(2026, 1, 5, tzinfo=datetime.UTC)  # a Monday
WARMUP_WEEKS = 1
BASE_VERSION = "v1.0.0"
SEND_HOUR, REPORT_HOUR, MONDAY_HOUR = 9, 18, 6


@dataclass(frozen=True)
class SimulationSpec:
    """What to simulate: the market, the policy, how long and how much, and where the API is."""

    name: str
    market: str = "default"
    policy: str = "flywheel"
    weeks: int = 16
    leads_per_week: int = 2_000
    seed: int = 1
    start: datetime.datetime = DEFAULT_START
    http: str | None = None  # None: the services in-process; "local": an in-process server; else a URL

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"Unknown policy {self.policy!r}; choose one of {', '.join(POLICIES)}.")
        if self.weeks < 1 or self.leads_per_week < 1:
            raise ValueError("Simulate at least one week and one lead a week.")
        if self.start.weekday() != 0:
            raise ValueError(f"The simulation starts on a Monday, not on {self.start:%A %Y-%m-%d}.")


@dataclass
class WeekRow:
    """One simulated week: what was sent, its hidden expected and its observed outcomes, what the policy did."""

    week: int
    messages: int = 0
    expected_replies: float = 0.0
    expected_meetings: float = 0.0
    expected_deals: float = 0.0
    expected_value: float = 0.0
    replies: int = 0
    meetings: int = 0
    deals: int = 0
    revenue: float = 0.0
    versions: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    promotions: int = 0
    harmful: int = 0

    def rate(self, count: float) -> float:
        return count / self.messages if self.messages else 0.0


@dataclass
class SimulationResult:
    spec: SimulationSpec
    organization: Organization
    market: Market
    rows: list[WeekRow]
    seconds: float


@dataclass(order=True)
class _Pending:
    at: datetime.datetime
    seq: int
    week: int = field(compare=False)
    event: EventItem = field(compare=False)


class Simulation:
    """The running state of one simulation: clock, market, gateway, writer, pending events."""

    def __init__(self, spec: SimulationSpec, organization: Organization, gateway: Gateway, clock: SimulatedClock):
        self.spec, self.organization, self.gateway, self.clock = spec, organization, gateway, clock
        self.market = Market.build(spec.market, seed=spec.seed, weeks=spec.weeks)
        self.writer = Writer(_complete)
        self.judge = Judge(self.market, self.writer)
        self.policy = POLICIES[spec.policy]()
        self.pending: list[_Pending] = []
        self.rows: dict[int, WeekRow] = {}
        self._seq = 0

    def monday(self, week: int) -> datetime.datetime:
        return self.spec.start + datetime.timedelta(weeks=week - 1)

    def live_week(self, week: int) -> WeekRow:
        """Monday's policy (from week 1), five days of sending, seven evenings of reporting."""
        row = self.rows[week] = WeekRow(week=week)
        monday = self.monday(week)
        if week >= 1:
            self.clock.move_to(monday + datetime.timedelta(hours=MONDAY_HOUR))
            done = self.policy.monday(Desk(organization=self.organization, judge=self.judge, week=week))
            row.notes, row.promotions, row.harmful = done.notes, done.promotions, done.harmful
        per_day = _split(self.spec.leads_per_week, 5)
        for day in range(7):
            if day < 5:
                self.clock.move_to(monday + datetime.timedelta(days=day, hours=SEND_HOUR))
                first = sum(per_day[:day])
                self.send(row, range(first, first + per_day[day]))
            self.clock.move_to(monday + datetime.timedelta(days=day, hours=REPORT_HOUR))
            self.report_due()
        return row

    def send(self, row: WeekRow, indexes: range) -> None:
        """Route, write and report one day's new leads; remember their events for later."""
        self.gateway.begin_day()  # traffic moves only on Mondays, before the day's first route
        items = []
        for index in indexes:
            items.append(self.write_one(row, index))
        self.gateway.report(items)

    def write_one(self, row: WeekRow, index: int) -> Report:
        """Route one new lead, write to it with the routed model, draw its fate; its report."""
        week = row.week
        prospect = self.market.prospect(week=week, index=index)
        route = self.gateway.route(prospect.key)
        stream = f"{self.spec.seed}:{week}:{index}"
        choice = random.Random(f"choice:{stream}")
        framework, tone = choice.choice(FRAMEWORKS), choice.choice(TONES)
        prompt = prompt_for(prospect, framework=framework, tone=tone)
        draft = self.writer.draft(
            model_pk=route.registry_id,
            tuned=route.model_version != BASE_VERSION,
            prompt=prompt,
            prospect=prospect,
            framework=framework,
            stream=stream,
        )
        subject, body = render(draft, prospect)
        odds = self.market.odds(f"{subject}\n{body}", prospect, week=week)
        external_id = f"{self.spec.name}-{week}-{index}"
        for happening in draw_outcome(odds, prospect, sent_at=self.clock.now, stream=stream):
            self._remember(week, external_id, happening)
        _count_sent(row, route.model_version, odds)
        return outcome_report(
            external_id=external_id,
            lead_key=prospect.key,
            model_id=route.registry_id,
            industry=prospect.industry,
            role=prospect.role,
            company_size=prospect.company_size,
            framework=framework,
            tone=tone,
            channel="email",
            icp_match_score=prospect.icp,
            **_names(prospect),
            prompt=prompt,
            subject=subject,
            body=body,
            sent_at=self.clock.now,
        )

    def _remember(self, week: int, external_id: str, happening: Happening) -> None:
        value = Decimal(str(happening.deal_value)) if happening.deal_value is not None else None
        event = EventItem(
            external_id=external_id,
            type=happening.stage,
            occurred_at=happening.at,
            sentiment=happening.sentiment,
            deal_value=value,
        )
        self._seq += 1
        heapq.heappush(self.pending, _Pending(happening.at, self._seq, week, event))

    def report_due(self) -> None:
        """Report every event that has happened by now, oldest first, and count it for its week."""
        due = []
        while self.pending and self.pending[0].at <= self.clock.now:
            due.append(heapq.heappop(self.pending))
        if not due:
            return
        self.gateway.events([p.event for p in due])
        for pending in due:
            _count_event(self.rows[pending.week], pending.event)


def _names(prospect: Prospect) -> dict[str, str]:
    return {"first_name": prospect.first_name, "last_name": prospect.last_name, "company": prospect.company}


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _count_sent(row: WeekRow, version: str, odds: Odds) -> None:
    row.messages += 1
    row.versions[version] = row.versions.get(version, 0) + 1
    row.expected_replies += odds.reply_rate
    row.expected_meetings += odds.meeting_rate
    row.expected_deals += odds.close_rate
    row.expected_value += odds.value


def _count_event(row: WeekRow, event: EventItem) -> None:
    if event.type == "replied":
        row.replies += 1
    elif event.type == "meeting_booked":
        row.meetings += 1
    elif event.type == "deal_closed":
        row.deals += 1
        row.revenue += float(event.deal_value or 0)


def _complete(model_pk: str, prompt: str) -> str:
    return model_test(model=RegisteredModel.objects.get(pk=model_pk), prompt=prompt)


# --- Running one -----------------------------------------------------------------------------------


def simulation_run(
    *, spec: SimulationSpec, progress: Callable[[WeekRow], None] | None = None, settle_weeks: int = 0
) -> SimulationResult:
    """Simulate ``spec`` from a fresh organization; return its weekly rows.

    ``settle_weeks`` more weeks of evenings report the events still to come (no sending, no
    policy), so late deals count; the rows then say what a later observer would see.
    """
    began = time.perf_counter()
    organization = simulation_organization_fresh(name=spec.name)
    warmup_start = spec.start - datetime.timedelta(weeks=WARMUP_WEEKS)
    with SimulatedClock(warmup_start) as clock, _tasks_in_process(), _gateway(spec, organization) as gateway:
        _base_model(organization)
        simulation = Simulation(spec, organization, gateway, clock)
        for week in range(1 - WARMUP_WEEKS, spec.weeks + 1):
            row = simulation.live_week(week)
            if week >= 1 and progress is not None:
                progress(row)
        for day in range(7 * settle_weeks):
            clock.move_to(simulation.monday(spec.weeks + 1) + datetime.timedelta(days=day, hours=REPORT_HOUR))
            simulation.report_due()
    rows = [simulation.rows[week] for week in range(1, spec.weeks + 1)]
    return SimulationResult(spec, organization, simulation.market, rows, time.perf_counter() - began)


@transaction.atomic
def simulation_organization_fresh(*, name: str) -> Organization:
    """The simulation's organization, created afresh: an earlier run of the same name is deleted."""
    slug = f"sim-{name}"
    old = Organization.objects.filter(slug=slug).first()
    if old is not None:
        # Experiments protect their models; they go first, then the organization and all it holds.
        Experiment.objects.filter(organization=old).delete()
        old.delete()
    return organization_create(name=f"Simulation {name}", slug=slug)


def _base_model(organization: Organization) -> RegisteredModel:
    """Register the base model the simulation starts from and deploy it to all the traffic."""
    base = model_register(
        model_id=settings.TRAINING_BASE_MODEL,
        model_version=BASE_VERSION,
        base_model=settings.TRAINING_BASE_MODEL,
        organization=organization,
        provider="",
    )
    model_set_baseline(model=base)
    model_deploy(model=base, traffic_percentage=100.0, reason="simulation: the base model")
    return base


@contextmanager
def _tasks_in_process() -> Iterator[None]:
    """Run django-q2 tasks in this process as they are enqueued (its sync mode), then restore."""
    before, quiet = Conf.SYNC, logging.getLogger("django-q")
    level = quiet.level
    Conf.SYNC = True
    quiet.setLevel(logging.WARNING)  # sync mode logs every task it runs
    try:
        yield
    finally:
        Conf.SYNC = before
        quiet.setLevel(level)


@contextmanager
def _gateway(spec: SimulationSpec, organization: Organization) -> Iterator[Gateway]:
    if spec.http is None:
        yield ServiceGateway(organization)
        return
    _, secret = api_key_create(organization=organization, name=f"simulation {spec.name} agents")
    with local_server(spec.http) as base_url:
        gateway = HttpGateway(base_url, secret)
        try:
            yield gateway
        finally:
            gateway.close()


__all__ = ["SimulationResult", "SimulationSpec", "WeekRow", "is_tuned", "simulation_run"]
