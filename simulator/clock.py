"""The simulation's one clock: the process's time, travelled with ``time-machine``.

``time-machine`` replaces the C-level time functions of the whole process, so ``timezone.now()``
in every service, ``auto_now`` columns and django-q2's schedules all read the simulated time, and
nothing needs a clock argument threaded through it. The clock does not tick on its own: it moves
only when the simulation moves it, so a Monday's decisions and training all happen at the same
instant and an experiment's weekly looks fall exactly on later Mondays. An in-process HTTP server
(``--http local``) runs in the same process and so reads the same clock; an external server keeps
its own.
"""

from __future__ import annotations

import datetime
from types import TracebackType

import time_machine


class SimulatedClock:
    """A context manager holding the process at a simulated instant until it is moved on."""

    def __init__(self, start: datetime.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("The simulated clock needs an aware start time.")
        self._now = start
        self._travel = time_machine.travel(start, tick=False)
        self._traveller: time_machine.Traveller | None = None

    def __enter__(self) -> SimulatedClock:
        self._traveller = self._travel.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._travel.stop()
        self._traveller = None

    @property
    def now(self) -> datetime.datetime:
        return self._now

    def move_to(self, when: datetime.datetime) -> None:
        """Jump to ``when`` (never backwards: the services' records would stop making sense)."""
        if when < self._now:
            raise ValueError(f"The simulated clock cannot go back from {self._now} to {when}.")
        if self._traveller is None:
            raise RuntimeError("The simulated clock is not running.")
        self._traveller.move_to(when)
        self._now = when
