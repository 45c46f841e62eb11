"""How the simulated agents write: with the routed model, or a stand-in for the untuned base model.

A model that a training run made is asked through :func:`training.services.model_test`, the same
call as the seed's ``test_model``, on its provider (the offline ``local`` provider's exemplars, or
any configured provider). The base model the simulation starts from cannot be called offline, so
:func:`base_draft` stands in for it: a varied, unlearned writer that composes a message from a
bank of openers, angles, calls to action and (sometimes) spammy phrases. The prompt names the
segment the way training exports do, so a trained model finds its exemplars.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from simulator.market import Prospect
from training.datasets.formatter import segment_request

FRAMEWORKS = ("PAS", "AIDA", "BAB")
TONES = ("professional", "casual", "direct")
SUBJECTS = (
    "Quick question about {{company}}'s pipeline",
    "Pipeline reviews in {industry}",
    "An idea for your team",
    "{{company}} x faster deal reviews",
    "FREE pipeline audit for {{company}}!!!",
)
OPENERS = {
    "PAS": (
        "Most {role} teams in {industry} lose a day every week chasing stale deals.",
        "Pipeline reviews in {industry} still run on spreadsheets nobody trusts.",
    ),
    "AIDA": (
        "One {industry} team we work with doubled its meeting rate in six weeks.",
        "What would a shorter sales cycle mean for your number this year?",
    ),
    "BAB": (
        "Before: reps juggling five tools. After: one view of every deal.",
        "Right now deals go quiet; imagine every one of them flagged the morning it happens.",
    ),
}
ANGLE_LINES = (
    "Our customers see pipeline reviews drop from hours to minutes.",
    "Reps get their evenings back because follow-ups write themselves.",
    "Managers get one honest forecast instead of five optimistic ones.",
    "We flag stalled deals before they slip and tell each rep the next best step.",
    "It plugs into the CRM you already use, so nothing changes for the team.",
    "Teams like yours cut their sales cycle by a third last quarter.",
    "Most teams cover its cost from the budget they save on tools in the first quarter.",
    "An AI assistant drafts every follow-up automatically.",
)
SPAM_LINES = (
    "Act now: this offer is FREE for a limited time and results are guaranteed!!!",
    "100% risk-free, no strings attached.",
)
CALLS = (
    "Worth a 15-minute call next week?",
    "Open to a quick look on Thursday?",
    "Would it help if I sent a two-minute video first?",
    "Should I share how a peer in {industry} rolled it out?",
)


def prompt_for(prospect: Prospect, *, framework: str, tone: str) -> str:
    """The agent's request to the model, in the form training exports write their user messages."""
    return segment_request((prospect.industry, prospect.role, prospect.company_size, framework, tone, "email"))


def base_draft(prospect: Prospect, *, framework: str, rng: random.Random) -> str:
    """A message by the untuned base model's stand-in: "Subject: ..." then a body with placeholders."""
    fill = {"industry": prospect.industry, "role": prospect.role}
    subject = rng.choice(SUBJECTS).format(**fill) if rng.random() < 0.95 else SUBJECTS[-1]
    greeting = "Hi {{first_name}}," if rng.random() < 0.5 else "Hi there,"
    lines = [rng.choice(OPENERS[framework]).format(**fill)]
    lines += rng.sample(ANGLE_LINES, rng.choice((1, 1, 2, 2, 3, 4)))
    if rng.random() < 0.15:
        lines.append(rng.choice(SPAM_LINES))
    if rng.random() < 0.3:
        lines.append("I noticed {{company}} is hiring sellers, so this may be timely.")
    lines.append(rng.choice(CALLS).format(**fill))
    body = "\n\n".join([greeting, " ".join(lines), "Best,\nAlex"])
    return f"Subject: {subject}\n\n{body}"


def render(text: str, prospect: Prospect) -> tuple[str, str]:
    """Split a model's "Subject: ..." answer and fill its placeholders for ``prospect``."""
    for placeholder, value in (
        ("{{first_name}}", prospect.first_name),
        ("{{last_name}}", prospect.last_name),
        ("{{company}}", prospect.company),
    ):
        text = text.replace(placeholder, value)
    head, _, rest = text.partition("\n\n")
    if head.startswith("Subject:") and rest:
        return head.removeprefix("Subject:").strip(), rest.strip()
    return "", text.strip()


class Writer:
    """Drafts for the agents, one model answer per (model, prompt): the models are deterministic.

    ``complete(model_pk, prompt)`` asks a trained model; it answers ``""`` when the model has
    nothing for the segment, and the agent then writes its own draft as the base model would.
    """

    def __init__(self, complete: Callable[[str, str], str]) -> None:
        self._complete = complete
        self._answers: dict[tuple[str, str], str] = {}

    def draft(self, *, model_pk: str, tuned: bool, prompt: str, prospect: Prospect, framework: str, stream: str) -> str:
        if tuned:
            answer = self._answers.get((model_pk, prompt))
            if answer is None:
                answer = self._answers[(model_pk, prompt)] = self._complete(model_pk, prompt)
            if answer:
                return answer
        return base_draft(prospect, framework=framework, rng=random.Random(f"draft:{stream}"))
