"""The synthetic market: its truth and outcomes are a function of the market and the seed alone."""

import datetime
import random

from simulator.funnel import Happening, draw_outcome
from simulator.market import Market, Odds, Prospect
from simulator.writing import base_draft, render

SENT = datetime.datetime(2026, 1, 5, 9, tzinfo=datetime.UTC)
GOOD = "Subject: Hi\n\nHi Maya, our customers see pipeline reviews drop from hours to minutes. Worth a call?"
SPAMMY = "Subject: FREE!!!\n\nAct now: this offer is FREE for a limited time and results are guaranteed!!!"


def _fates(market: Market, week: int, count: int) -> list[tuple[Prospect, Odds, list[Happening]]]:
    fates = []
    for index in range(count):
        prospect = market.prospect(week=week, index=index)
        odds = market.odds(GOOD, prospect, week=week)
        fates.append((prospect, odds, draw_outcome(odds, prospect, sent_at=SENT, stream=f"{week}:{index}")))
    return fates


def test_the_same_seed_gives_the_same_truth_prospects_odds_and_outcomes() -> None:
    first, again = Market.build("default", seed=3, weeks=16), Market.build("default", seed=3, weeks=16)

    assert first.describe() == again.describe()
    assert _fates(first, 2, 200) == _fates(again, 2, 200)


def test_another_seed_gives_another_truth_and_other_prospects() -> None:
    first, other = Market.build("default", seed=3, weeks=16), Market.build("default", seed=4, weeks=16)

    assert first.tastes != other.tastes
    assert [first.prospect(week=1, index=i) for i in range(20)] != [other.prospect(week=1, index=i) for i in range(20)]


def test_the_default_market_rates_texts_differently_and_punishes_spam() -> None:
    market = Market.build("default", seed=1, weeks=16)
    prospect = market.prospect(week=1, index=0)

    assert market.odds(SPAMMY, prospect, week=1).value < market.odds(GOOD, prospect, week=1).value
    assert market.odds(SPAMMY, prospect, week=1).unsubscribe > market.odds(GOOD, prospect, week=1).unsubscribe


def test_in_the_aa_market_every_text_is_equally_good() -> None:
    market = Market.build("aa", seed=1, weeks=16)
    for index in range(50):
        prospect = market.prospect(week=1, index=index)
        draft = "\n".join(render(base_draft(prospect, framework="PAS", rng=random.Random(index)), prospect))

        assert market.odds(draft, prospect, week=1).reply == market.odds(GOOD, prospect, week=1).reply


def test_the_drift_market_changes_its_tastes_halfway() -> None:
    market = Market.build("drift", seed=1, weeks=16)

    assert market.drift_week == 9
    assert market.tastes_at(8) is market.tastes[0]
    assert market.tastes_at(9) is market.tastes[1] != market.tastes[0]


def test_outcomes_follow_the_funnel_in_time_order_with_realistic_delays() -> None:
    market = Market.build("default", seed=2, weeks=16)
    for _, _, events in _fates(market, 1, 3000):
        stages = [event.stage for event in events]
        times = [event.at for event in events]

        assert times == sorted(times) and times[0] >= SENT
        if "deal_closed" in stages:
            deal = events[stages.index("deal_closed")].at
            assert "meeting_completed" in stages and deal - SENT >= datetime.timedelta(weeks=2)
            assert (events[stages.index("deal_closed")].deal_value or 0) > 0
        if "meeting_booked" in stages:
            assert "replied" in stages
