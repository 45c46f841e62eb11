"""Browser fixtures: Debian's Chromium at 1400x900, each page checked for console errors and overflow.

The tests drive the admin through Playwright against pytest-django's live server. Chromium is not
downloaded: Debian's build at ``/usr/bin/chromium`` is launched, and without it every browser test
is skipped with that reason. Each visited page's load time is collected for the session and its
p50 and max are printed at the end; screenshots go under ``BROWSER_SCREENSHOTS``.
"""

import os
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Error, Page, sync_playwright

CHROMIUM = Path(os.environ.get("BROWSER_CHROMIUM", "/usr/bin/chromium"))
WIDTH, HEIGHT = 1400, 900
PASSWORD = "operator-password-1"
WEEKS = 6


@dataclass
class PageTimes:
    """The navigation timing (load event end, ms) of every page the browser tests visited."""

    loads: dict[str, list[float]] = field(default_factory=dict)

    def add(self, url: str, milliseconds: float) -> None:
        self.loads.setdefault(url, []).append(milliseconds)

    def summary(self) -> str:
        every = [ms for times in self.loads.values() for ms in times]
        if not every:
            return "browser page loads: none measured"
        slowest = max(self.loads, key=lambda url: max(self.loads[url]))
        return (
            f"browser page loads: {len(every)} pages, p50 {statistics.median(every):.0f} ms, "
            f"max {max(every):.0f} ms ({slowest})"
        )


PAGE_TIMES = PageTimes()


@pytest.fixture(scope="session")
def page_times() -> PageTimes:
    """The session's collector; its p50 and max are printed with the terminal summary."""
    return PAGE_TIMES


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PAGE_TIMES.loads:
        terminalreporter.write_line(PAGE_TIMES.summary())


@pytest.fixture(scope="session")
def screenshots() -> Path:
    folder = Path(os.environ.get("BROWSER_SCREENSHOTS", "build/screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, for one module's tests; skipped with the reason when it is not installed.

    Playwright's synchronous API keeps an event loop running in this thread while it is started,
    which Django takes for an async context: the tests' own ORM calls (seeding, checks) are
    synchronous all the same, so ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set only while the browser lives.
    The browser is this module's, not the session's, so that no loop outlives the browser tests.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian's `apt-get install chromium`; CI installs it)")
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def tab(chromium: Browser) -> Iterator[Page]:
    """A fresh context at 1400x900."""
    context = chromium.new_context(viewport={"width": WIDTH, "height": HEIGHT})
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    context.close()


WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 0.5)
  .filter(e => ![...e.children].some(c => c.getBoundingClientRect().right > window.innerWidth + 0.5))
  .slice(0, 5)
  .map(e => `${e.tagName.toLowerCase()}.${e.className} (${Math.round(e.getBoundingClientRect().right)} px)`)"""


# A changelist's results scroll inside their own box (overflow-x: auto) rather than widening the
# page: its content width against its visible width, or null on a page without a list.
RESULTS_BOX = """() => { const box = document.querySelector('#changelist .results');
  return box ? [box.scrollWidth, box.clientWidth] : null; }"""
# The widest columns of that list (for the failure message).
COLUMNS = """() => [...document.querySelectorAll('#result_list thead th')]
  .map(th => `${th.className.split(' ')[0]} ${Math.round(th.getBoundingClientRect().width)} px`)"""


@dataclass
class Operator:
    """The browser of a person at the admin: visits pages and checks each one it leaves."""

    page: Page
    base: str
    times: PageTimes
    folder: Path
    errors: list[str] = field(default_factory=list)

    def goto(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.settled()

    def settled(self) -> None:
        """Check the page now shown: loaded, no console errors, nothing wider than the window or its list's box."""
        self.page.wait_for_load_state("load")
        timing = self.page.evaluate(
            "() => { const n = performance.getEntriesByType('navigation')[0]; return n ? n.loadEventEnd : null; }"
        )
        url = self.page.url.removeprefix(self.base)
        if timing:
            self.times.add(url, float(timing))
        assert self.errors == [], f"console errors on {url}: {self.errors}"
        width = self.page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{url} is {width[0]} px wide in a {width[1]} px window: {self.too_wide()}"
        box = self.page.evaluate(RESULTS_BOX)
        assert box is None or box[0] <= box[1], (
            f"{url}'s list scrolls sideways: {box[0]} px in a {box[1]} px box: {self.page.evaluate(COLUMNS)}"
        )

    def too_wide(self) -> list[str]:
        """The innermost elements reaching past the window's right edge (for the failure message)."""
        return list(self.page.evaluate(WIDEST))

    def shot(self, name: str) -> Path:
        path = self.folder / name
        self.page.screenshot(path=str(path), full_page=False)
        return path


@pytest.fixture
def operator(tab: Page, live_server: Any, page_times: PageTimes, screenshots: Path, simulated: Any) -> Operator:
    """A superuser logged in to the admin in Chromium; console errors and page errors are recorded."""
    from tests.factories import UserFactory

    user = UserFactory.create(is_superuser=True, is_staff=True, username="operator")
    user.set_password(PASSWORD)
    user.save()
    seen = Operator(page=tab, base=live_server.url, times=page_times, folder=screenshots)
    tab.on("console", lambda message: _console(seen, message))
    tab.on("pageerror", lambda error: seen.errors.append(f"page error: {_text(error)}"))
    seen.goto("/admin/login/")
    tab.fill("#id_username", "operator")
    tab.fill("#id_password", PASSWORD)
    tab.click("input[type=submit]")
    seen.settled()
    return seen


def _console(operator: Operator, message: ConsoleMessage) -> None:
    if message.type == "error":
        operator.errors.append(f"{message.text} ({message.location.get('url', '')})")


def _text(error: Error | Any) -> str:
    return str(getattr(error, "message", error))


@pytest.fixture
def simulated(transactional_db: None, settings: Any) -> Any:
    """A pool with history made by the real loop: the simulator's services, a few small weeks ending last week."""
    import datetime

    from simulator.services import SimulationSpec, simulation_run

    settings.FINE_TUNING_PROVIDER = "local"
    settings.TRAINING_MIN_EXAMPLES = 3
    today = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - datetime.timedelta(days=today.weekday(), weeks=WEEKS)
    spec = SimulationSpec(name="browser", policy="flywheel", weeks=WEEKS, leads_per_week=60, seed=7, start=start)
    return simulation_run(spec=spec).organization
