"""What happens to one sent message, and when: the funnel events drawn from the market's odds.

Delays follow how sales outreach behaves: opens within hours, replies within days, meetings booked
within a week of the reply and held within three, deals closed two to eight weeks after the
meeting. The draws come from the message's own stream (its lead and week), so a policy that
sends the same text to the same lead gets the same outcome: policies are compared on common
random numbers.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import dataclass

from simulator.market import DEAL_SIZE, Odds, Prospect

HOUR = datetime.timedelta(hours=1)
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Happening:
    """One funnel event of a message: its stage, when, and the reply's sentiment or the deal's value."""

    stage: str
    at: datetime.datetime
    sentiment: float | None = None
    deal_value: float | None = None


def draw_outcome(odds: Odds, prospect: Prospect, *, sent_at: datetime.datetime, stream: str) -> list[Happening]:
    """The events of a message sent at ``sent_at``, in time order, drawn from ``stream``."""
    rng = random.Random(f"fate:{stream}")
    if rng.random() < odds.bounce:
        return [Happening("bounced", sent_at + HOUR / 30)]
    events = [Happening("delivered", sent_at + HOUR / 12)]
    replied = rng.random() < odds.reply
    if replied or rng.random() < odds.open:
        opened = sent_at + rng.expovariate(1 / 8) * HOUR + HOUR / 6
        events.append(Happening("opened", opened))
        if rng.random() < odds.click:
            events.append(Happening("clicked", opened + rng.uniform(0.05, 2) * HOUR))
    if replied:
        events.extend(_after_reply(rng, odds, prospect, events[-1].at))
    elif rng.random() < odds.unsubscribe:
        events.append(Happening("unsubscribed", sent_at + rng.uniform(0.1, 3) * DAY))
    return sorted(events, key=lambda event: event.at)


def _after_reply(rng: random.Random, odds: Odds, prospect: Prospect, opened: datetime.datetime) -> list[Happening]:
    """The reply and what may follow it: a meeting booked, held, and a deal closed."""
    replied = opened + rng.lognormvariate(0, 0.8) * DAY
    positive = rng.random() < odds.positive
    sentiment = round(rng.uniform(0.55, 1.0) if positive else rng.uniform(-0.8, 0.5), 2)
    events = [Happening("replied", replied, sentiment=sentiment)]
    if not positive or rng.random() >= odds.meeting:
        return events
    booked = replied + rng.uniform(0.5, 7) * DAY
    events.append(Happening("meeting_booked", booked))
    if rng.random() >= odds.completed:
        return events
    held = booked + rng.uniform(3, 21) * DAY
    events.append(Happening("meeting_completed", held))
    if rng.random() < odds.deal:
        value = round(DEAL_SIZE[prospect.company_size] * rng.lognormvariate(0, 0.4), -2)
        events.append(Happening("deal_closed", held + rng.uniform(14, 56) * DAY, deal_value=value))
    return events
