"""A varied pool for comparing the export and the statistics with a reference: every kind of label.

Half the labels are written as agents write them (``outcome_upsert_bulk``: scrubbed, their
training text counted), half straight to the table (raw personal data, no stored count). The
pool mixes positives, negatives, neutrals, young and bounced labels, exact and scrubbed-equal
duplicates, ideal bodies, prompts, empty subjects, excluded labels and non-ASCII text.
"""

import datetime
import random
from typing import Any

from django.utils import timezone

from flywheel.models import Organization
from outcomes.models import STAGES, OutcomeLabel
from outcomes.scoring import quality_score_expression
from outcomes.services import OutcomeItem, outcome_curate, outcome_upsert_bulk
from tests.outcomes.factories import OutcomeLabelFactory

FUNNELS = (
    "",
    "delivered",
    "delivered",
    "delivered opened",
    "delivered opened replied",
    "delivered opened replied meeting_booked",
    "delivered opened replied meeting_booked deal_closed",
    "bounced",
    "delivered opened clicked",
)
NAMES = (("Jane", "Doe", "Acme Inc."), ("Omar", "Haddad", "Globex"), ("Mei", "Chen", "Initech GmbH"), ("", "", ""))
TEMPLATES = (
    "Hi {first}, a short note about {company}'s pipeline. Call +1 (415) 555-0142. Ref {m}.",
    "Hi {{first_name}}, a short template that many agents send.",
    "Grüße {first} — one idea for {company} 🚀 https://cal.example.com/{first}",
    "Hi {first},\n\nTeams like yours lose a day a week to pipeline reviews. Ref {n}.",
)


def item_fields(n: int, rng: random.Random) -> dict[str, Any]:
    first, last, company = rng.choice(NAMES)
    body = rng.choice(TEMPLATES).format(first=first, company=company, n=n, m=n % 5)
    return {
        "industry": rng.choice(["SaaS", "Fintech", "Retail, EU"]),
        "role": rng.choice(["VP Sales", "CRO"]),
        "first_name": first,
        "last_name": last,
        "company": company,
        "prompt": rng.choice(["", "", f"Follow up with {first} on the webinar."]),
        "subject": rng.choice(["", f"{first}, an idea", "A question"]),
        "body": body,
    }


def reach(label_ids: list[Any], rng: random.Random) -> None:
    """Give each label a funnel and a send time (texts untouched), then score them all."""
    now = timezone.now()
    for pk in label_ids:
        sent = now - datetime.timedelta(days=rng.choice([2, 20, 40, 90]), seconds=rng.randrange(86_400))
        stages = {STAGES[name]: sent + datetime.timedelta(hours=1) for name in rng.choice(FUNNELS).split()}
        OutcomeLabel.objects.filter(pk=pk).update(sent_at=sent, **stages)
    OutcomeLabel.objects.filter(pk__in=label_ids).update(quality_score=quality_score_expression())


def build_varied_pool(organization: Organization, *, size: int = 80, seed: int = 7) -> list[OutcomeLabel]:
    """``size`` labels of every kind in ``organization`` (see the module's docstring)."""
    rng = random.Random(seed)
    items = [OutcomeItem(external_id=f"agent-{n}", **item_fields(n, rng)) for n in range(size // 2)]
    written = outcome_upsert_bulk(organization=organization, items=items).results
    ids: list[Any] = [result.id for result in written]
    raw = [OutcomeLabelFactory.create(organization=organization, **item_fields(n, rng)) for n in range(size // 2)]
    ids += [label.pk for label in raw]
    reach(ids, rng)
    labels = list(OutcomeLabel.objects.filter(pk__in=ids).order_by("external_id"))
    for label in rng.sample(labels, size // 8):
        outcome_curate(label=label, excluded_from_training=False, ideal_body=rng.choice(TEMPLATES[1:3]))
    for label in rng.sample(labels, size // 16):
        outcome_curate(label=label, excluded_from_training=True)
    return labels
