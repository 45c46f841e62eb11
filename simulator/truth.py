"""The hidden truth about a model: its expected per-message value on a fixed panel of prospects.

Only the simulator knows it. It rates a model by what the model writes for the same panel of 400
leads (the base model's stand-in writes their drafts from the same streams every time), scored by
the market at a given week. The oracle policy deploys by it; a promotion is harmful when the
promoted model's value is below the one it replaced.
"""

from __future__ import annotations

from simulator.market import Market
from simulator.writing import FRAMEWORKS, TONES, Writer, prompt_for, render

PANEL_SIZE = 400


class Judge:
    """Rates models by the truth, remembering each model's value per market era."""

    def __init__(self, market: Market, writer: Writer) -> None:
        self.market = market
        self.writer = writer
        self.panel = [market.prospect(week=-1, index=index) for index in range(PANEL_SIZE)]
        self._values: dict[tuple[str, int], float] = {}

    def value(self, *, model_pk: str, tuned: bool, week: int) -> float:
        """The model's expected value per message (0.5 close + 0.3 meeting + 0.2 reply) at ``week``."""
        era = int(self.market.drift_week is not None and week >= self.market.drift_week)
        key = (model_pk, era)
        if key not in self._values:
            self._values[key] = self._rate(model_pk=model_pk, tuned=tuned, week=week)
        return self._values[key]

    def _rate(self, *, model_pk: str, tuned: bool, week: int) -> float:
        total = 0.0
        for index, prospect in enumerate(self.panel):
            framework, tone = FRAMEWORKS[index % 3], TONES[(index // 3) % 3]
            prompt = prompt_for(prospect, framework=framework, tone=tone)
            stream = f"panel:{self.market.seed}:{index}"
            draft = self.writer.draft(
                model_pk=model_pk, tuned=tuned, prompt=prompt, prospect=prospect, framework=framework, stream=stream
            )
            subject, body = render(draft, prospect)
            total += self.market.odds(f"{subject}\n{body}", prospect, week=week).value
        return total / len(self.panel)
