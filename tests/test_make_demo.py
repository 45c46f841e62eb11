"""``make demo``'s recipe: it sets up the schedules and ends with the address and the login together.

The recipe is read from the Makefile (running it would install and serve); ``make -n`` prints
the commands it would run, in order, with the variables expanded.
"""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def demo_commands() -> list[str]:
    """The commands ``make demo`` runs, its install step taken as done."""
    result = subprocess.run(  # noqa: S603 - make, on our own Makefile, with fixed arguments
        [str(MAKE), "--no-print-directory", "-n", "-o", ".venv/.installed", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line for line in result.stdout.splitlines() if line.strip()]


def test_make_demo_sets_up_the_weekly_schedules_for_the_simulated_organization() -> None:
    commands = demo_commands()
    [setup] = [line for line in commands if "manage.py setup_schedules" in line]
    assert "TRAINING_SCHEDULE_ORGANIZATIONS=sim-demo-flywheel" in setup  # the simulated history's pool
    assert commands.index(setup) < next(i for i, line in enumerate(commands) if "runserver" in line)


def test_make_demo_prints_the_address_and_the_login_together_just_before_serving() -> None:
    commands = demo_commands()
    address = next(i for i, line in enumerate(commands) if "http://127.0.0.1:8000/admin/" in line)
    assert "manage.py ensure_demo_superuser" in commands[address + 1]
    assert not any("manage.py" in line and "runserver" not in line for line in commands[address + 2 : -2])
    assert all("run_training_cycle" not in line for line in commands[address:])
