"""Seed a demo organization with realistic synthetic outcome labels attributed to two models.

Labels are written a batch at a time (their events after them), so any number fits the services'
batch limit; the random draws do not depend on the batch size, so a seed always gives the same data.
"""

import datetime
import random
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from flywheel.models import Organization
from flywheel.services import api_key_create, organization_create
from outcomes.services import EventItem, OutcomeItem, outcome_event_record_bulk, outcome_upsert_bulk
from registry.models import RegisteredModel
from registry.services import model_deploy, model_register, model_set_baseline

INDUSTRIES = ["SaaS", "FinTech", "Healthcare", "Logistics", "E-commerce"]
ROLES = ["VP Sales", "Head of Growth", "CTO", "Revenue Operations Lead"]
FRAMEWORKS = ["PAS", "AIDA", "BAB"]
TONES = ["professional", "casual", "direct"]
FIRST_NAMES = ["Maya", "Jonas", "Priya", "Lucas", "Amara", "Ethan", "Sofia", "Kenji"]
LAST_NAMES = ["Okafor", "Lindqvist", "Raman", "Moreau", "Haddad", "Novak", "Silva", "Tanaka"]
COMPANIES = ["Northwind", "Brightpath", "Quantix", "Helio Labs", "Cobalt Freight", "Verdant Health"]
OPENERS = {
    "PAS": [
        "Most {role} teams in {industry} lose hours every week chasing stale pipeline.",
        "Forecast calls in {industry} still run on spreadsheets nobody trusts.",
        "Your reps probably spend Friday afternoons updating the CRM instead of selling.",
    ],
    "AIDA": [
        "Teams like {company} cut their sales cycle by a third last quarter.",
        "One {industry} team we work with doubled its meeting rate in six weeks.",
        "What would a 20% shorter sales cycle mean for your number this year?",
    ],
    "BAB": [
        "Before: reps juggling five tools. After: one view of every deal.",
        "Today your pipeline review takes a day; it could take twenty minutes.",
        "Right now deals slip silently; imagine every risk flagged the morning it appears.",
    ],
}
VALUE = [
    "We flag stalled deals before they slip and tell each rep the next best step.",
    "Our customers see pipeline reviews drop from hours to minutes.",
    "It plugs into the CRM you already use, so nothing changes for the team.",
    "Managers get one honest forecast instead of five optimistic ones.",
    "Reps get their evenings back because follow-ups write themselves.",
    "Setup takes an afternoon and the first insights arrive the same week.",
]
CALLS_TO_ACTION = [
    "Worth a 15-minute call next week?",
    "Open to a quick look on Thursday?",
    "Would it help if I sent a two-minute video first?",
    "Should I share how a peer in {industry} rolled it out?",
]
# Labels per write: a label has at most 8 events, so a batch's events stay under the services' limit.
LABELS_PER_BATCH = 1_000
# Per-message probabilities of reaching each stage; the fine-tuned model does a little better.
FUNNEL = {
    "base": {
        "opened": 0.55,
        "clicked": 0.2,
        "replied": 0.28,
        "meeting_booked": 0.4,
        "meeting_completed": 0.75,
        "deal_closed": 0.45,
    },
    "tuned": {
        "opened": 0.6,
        "clicked": 0.24,
        "replied": 0.34,
        "meeting_booked": 0.45,
        "meeting_completed": 0.8,
        "deal_closed": 0.5,
    },
}


class Command(BaseCommand):
    help = "Create the demo organization, two registered models and synthetic outcome labels."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=7, help="Random seed: the same seed gives the same data.")
        parser.add_argument("--labels", type=int, default=600)
        parser.add_argument("--slug", default="demo")

    def handle(self, *args: Any, **options: Any) -> None:
        rng = random.Random(options["seed"])
        organization = Organization.objects.filter(slug=options["slug"]).first()
        if organization is None:
            organization = organization_create(name="Demo Sales Co", slug=options["slug"])
            _, secret = api_key_create(organization=organization, role="ops")
            self.stdout.write(f"Demo organization created; its ops API key (shown once): {secret}")
        models = self._models(organization)
        now = timezone.now()
        created = changed = 0
        for start in range(0, options["labels"], LABELS_PER_BATCH):
            items: list[OutcomeItem] = []
            events: list[EventItem] = []
            for n in range(start, min(start + LABELS_PER_BATCH, options["labels"])):
                model = models["tuned"] if n % 3 == 0 else models["base"]
                item, item_events = _synthetic_label(rng, n, model, now)
                items.append(item)
                events.extend(item_events)
            created += sum(r.created for r in outcome_upsert_bulk(organization=organization, items=items).results)
            recorded = outcome_event_record_bulk(organization=organization, events=events)
            changed += sum(r.changed for r in recorded.results)
        self.stdout.write(f"{created} outcome label(s) created, {changed} event(s) recorded.")

    def _models(self, organization: Organization) -> dict[str, RegisteredModel]:
        existing = {m.model_version: m for m in RegisteredModel.objects.filter(organization=organization)}
        if "v2.0.0" in existing and "v2.1.0" in existing:
            return {"base": existing["v2.0.0"], "tuned": existing["v2.1.0"]}
        base = model_register(
            model_id="gpt-4o-2024-08-06",
            model_version="v2.0.0",
            base_model="gpt-4o-2024-08-06",
            organization=organization,
            provider="openai",
        )
        tuned = model_register(
            model_id="ft:gpt-4o-2024-08-06:demo:rekindle-v2-1-0:demo01",
            model_version="v2.1.0",
            base_model="gpt-4o-2024-08-06",
            organization=organization,
            provider="openai",
            training_stats={"training_examples_count": 180, "positive_examples": 120, "deals_in_training": 14},
        )
        model_set_baseline(model=base, actor=None)
        model_deploy(model=base, traffic_percentage=100.0, ab_test_group="control", actor=None, reason="demo data")
        self.stdout.write("2 model(s) registered; v2.0.0 deployed as the baseline.")
        return {"base": base, "tuned": tuned}


def _synthetic_label(
    rng: random.Random, n: int, model: RegisteredModel, now: datetime.datetime
) -> tuple[OutcomeItem, list[EventItem]]:
    industry, role = rng.choice(INDUSTRIES), rng.choice(ROLES)
    framework, tone = rng.choice(FRAMEWORKS), rng.choice(TONES)
    first, last, company = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES), rng.choice(COMPANIES)
    sent_at = now - datetime.timedelta(days=rng.uniform(1, 75))
    opener = rng.choice(OPENERS[framework]).format(role=role, industry=industry, company=company)
    pitch = f"{opener} {rng.choice(VALUE)} {rng.choice(CALLS_TO_ACTION).format(industry=industry)}"
    item = OutcomeItem(
        external_id=f"demo-{n:05d}",
        model_id=model.pk,
        industry=industry,
        role=role,
        framework=framework,
        tone=tone,
        channel="email",
        company_size=rng.choice(["1-50", "51-200", "201-1000", "1000+"]),
        icp_match_score=round(rng.uniform(0.3, 1.0), 2),
        first_name=first,
        last_name=last,
        company=company,
        subject=f"{company} x faster pipeline reviews",
        body=f"Hi {first},\n\n{pitch}\n\nBest,\nAlex",
        sent_at=sent_at,
    )
    return item, _synthetic_events(
        rng, f"demo-{n:05d}", FUNNEL["tuned" if "ft:" in model.model_id else "base"], sent_at, now
    )


def _synthetic_events(
    rng: random.Random, external_id: str, odds: dict[str, float], sent_at: datetime.datetime, now: datetime.datetime
) -> list[EventItem]:
    if rng.random() < 0.04:
        return [EventItem(external_id=external_id, type="bounced", occurred_at=sent_at + datetime.timedelta(minutes=2))]
    at = sent_at + datetime.timedelta(minutes=5)
    events = [EventItem(external_id=external_id, type="delivered", occurred_at=at)]
    for stage in ("opened", "clicked", "replied", "meeting_booked", "meeting_completed", "deal_closed"):
        if stage != "clicked" and rng.random() >= odds[stage]:
            break
        if stage == "clicked" and rng.random() >= odds[stage]:
            continue
        at = min(at + datetime.timedelta(hours=rng.uniform(1, 96)), now)
        sentiment = round(rng.uniform(-0.2, 1.0), 2) if stage == "replied" else None
        value = Decimal(rng.choice([8000, 15000, 24000, 50000, 72000])) if stage == "deal_closed" else None
        events.append(
            EventItem(external_id=external_id, type=stage, occurred_at=at, sentiment=sentiment, deal_value=value)
        )
    if rng.random() < 0.02:
        events.append(EventItem(external_id=external_id, type="unsubscribed", occurred_at=at))
    return events
