"""Scrubbing does work in proportion to the text, however often a name occurs in it.

Counted in Python line events (deterministic), not timed: a pass that rescans what it already
found grows with the square of the occurrences and fails the ratio below.
"""

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import pytest

from outcomes import scrubbing
from outcomes.scrubbing import scrub


def line_events(call: Callable[[], Any]) -> int:
    """How many lines of the scrubbing module ``call`` runs, generator expressions included."""
    count = 0
    module_file = scrubbing.__file__

    def trace(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if frame.f_code.co_filename != module_file:
            return None
        if event == "line":
            count += 1
        return trace

    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Jo ", {"first_name": "Jo"}),
        ("Jo Smith Acme ", {"first_name": "Jo", "last_name": "Smith", "company": "Acme Inc."}),
        ("{{first_name}} Jo ", {"first_name": "Jo"}),
        ("jojo Jo ", {"first_name": "Jo"}),
    ],
)
def test_scrubbing_work_grows_linearly_with_the_occurrences_of_a_name(text: str, names: dict[str, str]) -> None:
    small = line_events(lambda: scrub(text * 500, **names))
    large = line_events(lambda: scrub(text * 2000, **names))
    assert large / small < 4.5  # 4x the text: about 4x the work, where a quadratic pass does 16x


def test_every_occurrence_of_a_repeated_name_is_replaced() -> None:
    assert scrub("Jo " * 20_000, first_name="Jo") == "{{first_name}} " * 20_000
