"""The synthetic market: prospects, the hidden scoring of any message text, and the outcomes it draws.

A market is a small parameter set (:data:`MARKETS`) plus a truth drawn from it and the seed: how
much each segment (industry and role) likes each selling angle. :func:`message_odds` scores any
text for a prospect (angles found by their keywords, personalisation, length, spammy words) and
turns the score into the probabilities of each funnel stage; :func:`draw_outcome` draws what
happens and when, from the message's own random stream, so the same text sent to the same lead
has the same fate under every policy. Nothing here touches the database.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass, field

INDUSTRIES = ("SaaS", "FinTech", "Healthcare", "Logistics", "E-commerce")
ROLES = ("VP Sales", "Head of Growth", "CTO", "Revenue Operations Lead")
SIZES = ("1-50", "51-200", "201-1000", "1000+")
DEAL_SIZE = {"1-50": 8_000.0, "51-200": 20_000.0, "201-1000": 45_000.0, "1000+": 90_000.0}
FIRST_NAMES = ("Maya", "Jonas", "Priya", "Lucas", "Amara", "Ethan", "Sofia", "Kenji", "Lena", "Omar")
LAST_NAMES = ("Okafor", "Lindqvist", "Raman", "Moreau", "Haddad", "Novak", "Silva", "Tanaka")
COMPANIES = ("Northwind", "Brightpath", "Quantix", "Helio Labs", "Cobalt Freight", "Verdant Health", "Arcwise")

# The selling angles the truth rates per segment, and the keywords that reveal one in any text.
ANGLES: dict[str, tuple[str, ...]] = {
    "time": ("hours", "minutes", "evenings", "afternoon"),
    "forecast": ("forecast",),
    "risk": ("stalled", "slip", "risk"),
    "integration": ("crm", "plugs into", "nothing changes"),
    "proof": ("teams like", "peer", "customers"),
    "cost": ("cost", "budget", "roi"),
    "automation": ("automatic", " ai ", "write themselves"),
}
SPAMMY = ("free", "guarantee", "act now", "!!!", "100%", "limited time", "risk-free")
_WORD = re.compile(r"\w+")
STAGES = ("delivered", "opened", "clicked", "replied", "meeting_booked", "meeting_completed", "deal_closed")


@dataclass(frozen=True)
class MarketParams:
    """A named market: how strongly texts matter, and whether tastes change halfway."""

    name: str
    description: str
    angle_spread: float = 0.6  # standard deviation of a segment's liking of an angle (log-odds)
    personalisation: float = 0.3  # bonus for naming the prospect or the company
    spam_penalty: float = 0.5  # per spammy phrase
    ideal_words: int = 80
    length_penalty: float = 0.006  # per word away from the ideal
    drifts: bool = False
    base_reply: float = 0.06
    responsiveness_shape: float = 2.0  # Gamma shape of a lead's responsiveness (mean 1)


MARKETS: dict[str, MarketParams] = {
    "default": MarketParams("default", "Learnable: segments like some angles and dislike others."),
    "aa": MarketParams(
        "aa",
        "No signal: every text is equally good; only the lead and its ICP match matter.",
        angle_spread=0.0,
        personalisation=0.0,
        spam_penalty=0.0,
        length_penalty=0.0,
    ),
    "drift": MarketParams("drift", "Learnable, but every segment's tastes are drawn anew halfway.", drifts=True),
}


@dataclass(frozen=True)
class Prospect:
    """A lead: its segment, names, ICP match and (hidden) responsiveness."""

    key: str
    industry: str
    role: str
    company_size: str
    first_name: str
    last_name: str
    company: str
    icp: float
    responsiveness: float


@dataclass(frozen=True)
class Odds:
    """The hidden probabilities of a message's funnel, each conditional on the stage before."""

    bounce: float
    open: float
    click: float
    reply: float
    positive: float
    meeting: float
    completed: float
    deal: float
    unsubscribe: float

    @property
    def reply_rate(self) -> float:
        return (1 - self.bounce) * self.reply

    @property
    def meeting_rate(self) -> float:
        return self.reply_rate * self.positive * self.meeting

    @property
    def close_rate(self) -> float:
        return self.meeting_rate * self.completed * self.deal

    @property
    def value(self) -> float:
        """The specification's per-message score: 0.5 close + 0.3 meeting + 0.2 reply."""
        return 0.5 * self.close_rate + 0.3 * self.meeting_rate + 0.2 * self.reply_rate


@dataclass
class Market:
    """A market's parameters and its truth for one seed: each segment's liking of each angle."""

    params: MarketParams
    seed: int
    drift_week: int | None = None
    tastes: list[dict[tuple[str, str], dict[str, float]]] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, *, seed: int, weeks: int) -> Market:
        """The market ``name`` for ``seed``; a drifting market changes tastes at week ``weeks // 2 + 1``."""
        if name not in MARKETS:
            raise ValueError(f"Unknown market {name!r}; choose one of {', '.join(MARKETS)}.")
        params = MARKETS[name]
        eras = 2 if params.drifts else 1
        rng = random.Random(f"truth:{name}:{seed}")
        tastes = [_draw_tastes(rng, params.angle_spread) for _ in range(eras)]
        return cls(params=params, seed=seed, drift_week=weeks // 2 + 1 if params.drifts else None, tastes=tastes)

    def tastes_at(self, week: int) -> dict[tuple[str, str], dict[str, float]]:
        return self.tastes[1 if self.drift_week is not None and week >= self.drift_week else 0]

    def prospect(self, *, week: int, index: int) -> Prospect:
        """The ``index``-th new lead of ``week``: the same for every policy of one seed."""
        rng = random.Random(f"lead:{self.seed}:{week}:{index}")
        shape = self.params.responsiveness_shape
        return Prospect(
            key=f"lead-{self.seed}-{week}-{index}",
            industry=rng.choice(INDUSTRIES),
            role=rng.choice(ROLES),
            company_size=rng.choice(SIZES),
            first_name=rng.choice(FIRST_NAMES),
            last_name=rng.choice(LAST_NAMES),
            company=rng.choice(COMPANIES),
            icp=round(rng.betavariate(3, 2), 2),
            responsiveness=rng.gammavariate(shape, 1 / shape),
        )

    def text_score(self, text: str, prospect: Prospect, *, week: int) -> float:
        """The hidden log-odds effect of ``text`` on ``prospect``: angles, personalisation, length, spam."""
        lowered = f" {text.lower()} "
        liking = self.tastes_at(week)[(prospect.industry, prospect.role)]
        score = sum(weight for angle, weight in liking.items() if any(k in lowered for k in ANGLES[angle]))
        personal = prospect.first_name.lower() in lowered or prospect.company.lower() in lowered
        score += self.params.personalisation if personal else 0.0
        score -= self.params.spam_penalty * spam_count(lowered)
        words = len(_WORD.findall(text))
        return score - self.params.length_penalty * abs(words - self.params.ideal_words)

    def odds(self, text: str, prospect: Prospect, *, week: int) -> Odds:
        """The hidden funnel probabilities of sending ``text`` to ``prospect`` in ``week``."""
        s = self.text_score(text, prospect, week=week)
        icp = prospect.icp
        reply = self.params.base_reply * prospect.responsiveness * (0.6 + 0.8 * icp) * math.exp(s)
        return Odds(
            bounce=0.03,
            open=_sigmoid(0.2 + 0.3 * s),
            click=0.15,
            reply=min(reply, 0.9),
            positive=_sigmoid(0.4 + s),
            meeting=min(0.3 * (0.5 + icp) * math.exp(0.5 * s), 0.9),
            completed=0.8,
            deal=min(0.25 * (0.5 + icp), 0.9),
            unsubscribe=min(0.01 * math.exp(0.7 * spam_count(text.lower())), 0.5),
        )

    def describe(self) -> str:
        """The truth as text: parameters, then each segment's liking of each angle."""
        lines = [f"market {self.params.name} (seed {self.seed}): {self.params.description}", repr(self.params)]
        for era, tastes in enumerate(self.tastes):
            when = "from the start" if era == 0 else f"from week {self.drift_week}"
            lines.append(f"segment tastes {when} (log-odds per angle):")
            lines.append(f"  {'industry / role':40} " + " ".join(f"{angle:>11}" for angle in ANGLES))
            for (industry, role), liking in tastes.items():
                cells = " ".join(f"{liking[angle]:>+11.2f}" for angle in ANGLES)
                lines.append(f"  {industry + ' / ' + role:40} {cells}")
        return "\n".join(lines)


def _draw_tastes(rng: random.Random, spread: float) -> dict[tuple[str, str], dict[str, float]]:
    return {
        (industry, role): {angle: round(rng.gauss(0, spread), 3) if spread else 0.0 for angle in ANGLES}
        for industry in INDUSTRIES
        for role in ROLES
    }


def spam_count(lowered: str) -> int:
    return sum(lowered.count(word) for word in SPAMMY)


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))
