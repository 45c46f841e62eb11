"""The simulation's figures as text tables, totals, CSV files and self-contained SVG charts.

Expected rates are the hidden truth's probabilities of what was sent; observed rates count the
events reported by the end of the run, so the last weeks' observed meetings and deals are still
provisional (deals close up to about twelve weeks after sending). Charts are plain SVG written
here, with no script and no CDN; the project's chart library can replace them when it is chosen.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from simulator.services import SimulationResult, WeekRow

PROVISIONAL_WEEKS = 12  # deals can close this long after sending


@dataclass(frozen=True)
class Totals:
    messages: int
    replies: int
    meetings: int
    deals: int
    revenue: float
    expected_value: float
    final_expected_reply_rate: float
    promotions: int
    harmful: int


def totals_of(result: SimulationResult) -> Totals:
    rows = result.rows
    return Totals(
        messages=sum(r.messages for r in rows),
        replies=sum(r.replies for r in rows),
        meetings=sum(r.meetings for r in rows),
        deals=sum(r.deals for r in rows),
        revenue=sum(r.revenue for r in rows),
        expected_value=sum(r.expected_value for r in rows),
        final_expected_reply_rate=rows[-1].rate(rows[-1].expected_replies),
        promotions=sum(r.promotions for r in rows),
        harmful=sum(r.harmful for r in rows),
    )


def _shares(row: WeekRow) -> str:
    return " ".join(f"{v}:{n * 100 / row.messages:.0f}%" for v, n in sorted(row.versions.items()))


def weekly_table(result: SimulationResult) -> list[str]:
    """The weekly table: messages, expected and observed rates, versions and shares, decisions."""
    header = (
        f"{'week':>4} {'msgs':>6} | {'E[reply]':>8} {'E[meet]':>7} {'E[close]':>8} | "
        f"{'reply':>6} {'meet':>6} {'close':>6} | versions; decisions"
    )
    lines = [header, "-" * len(header)]
    last = result.rows[-1].week
    for row in result.rows:
        mark = "*" if last - row.week < PROVISIONAL_WEEKS else " "
        lines.append(
            f"{row.week:>4} {row.messages:>6} | {row.rate(row.expected_replies):>8.2%} "
            f"{row.rate(row.expected_meetings):>7.2%} "
            f"{row.rate(row.expected_deals):>8.2%} | {row.rate(row.replies):>6.2%} {row.rate(row.meetings):>6.2%} "
            f"{row.rate(row.deals):>5.2%}{mark} | {_shares(row)}; {'; '.join(row.notes)}"
        )
    lines.append("* observed meetings and deals of recent weeks are provisional: they are still maturing.")
    return lines


def totals_lines(result: SimulationResult, oracle: SimulationResult | None) -> list[str]:
    """Cumulative replies, meetings, revenue, promotions, harmful promotions, regret against the oracle."""
    t = totals_of(result)
    lines = [
        f"policy {result.spec.policy}: {t.messages} messages, {t.replies} replies, {t.meetings} meetings, "
        f"{t.deals} deals, revenue {t.revenue:,.0f}; {t.promotions} promotion(s), {t.harmful} harmful; "
        f"expected reply rate in the last week {t.final_expected_reply_rate:.2%}",
    ]
    if oracle is not None:
        regret = totals_of(oracle).expected_value - t.expected_value
        lines.append(f"regret against oracle: {regret:.1f} expected value units (0.5 deal + 0.3 meeting + 0.2 reply)")
    return lines


def compare_table(results: list[SimulationResult]) -> list[str]:
    """The policies side by side: expected reply rate per week, then their totals."""
    weeks = [row.week for row in results[0].rows]
    lines = ["expected reply rate of what was sent, per week:"]
    lines.append(f"{'week':>4} " + " ".join(f"{r.spec.policy:>10}" for r in results))
    for i, week in enumerate(weeks):
        lines.append(f"{week:>4} " + " ".join(f"{r.rows[i].rate(r.rows[i].expected_replies):>10.2%}" for r in results))
    oracle = next((r for r in results if r.spec.policy == "oracle"), None)
    header = (
        f"{'policy':>10} {'replies':>8} {'meetings':>8} {'deals':>6} {'revenue':>12} "
        f"{'promoted':>8} {'harmful':>7} {'regret':>8} {'wall s':>7}"
    )
    lines += ["", header]
    for result in results:
        t = totals_of(result)
        regret = f"{totals_of(oracle).expected_value - t.expected_value:>8.1f}" if oracle else f"{'n/a':>8}"
        lines.append(
            f"{result.spec.policy:>10} {t.replies:>8} {t.meetings:>8} {t.deals:>6} {t.revenue:>12,.0f} "
            f"{t.promotions:>8} {t.harmful:>7} {regret} {result.seconds:>7.1f}"
        )
    return lines


# --- Files ------------------------------------------------------------------------------------------

CSV_FIELDS = (
    "policy", "week", "messages", "expected_reply_rate", "expected_meeting_rate", "expected_close_rate",
    "expected_value", "observed_reply_rate", "observed_meeting_rate", "observed_close_rate", "revenue",
    "promotions", "harmful", "versions", "notes",
)  # fmt: skip


def write_report(folder: Path, results: list[SimulationResult]) -> list[Path]:
    """Write ``weeks.csv`` and the SVG charts into ``folder``; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "weeks.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_FIELDS)
        for result in results:
            for row in result.rows:
                writer.writerow(_csv_row(result.spec.policy, row))
    charts = [folder / "expected_reply_rate.svg", folder / "versions.svg"]
    series = {r.spec.policy: [r2.rate(r2.expected_replies) for r2 in r.rows] for r in results}
    charts[0].write_text(line_chart("Expected reply rate of what was sent", series), encoding="utf-8")
    charts[1].write_text(versions_chart(results), encoding="utf-8")
    return [path, *charts]


def _csv_row(policy: str, row: WeekRow) -> list[object]:
    return [
        policy, row.week, row.messages, round(row.rate(row.expected_replies), 5),
        round(row.rate(row.expected_meetings), 5), round(row.rate(row.expected_deals), 5),
        round(row.expected_value, 3), round(row.rate(row.replies), 5), round(row.rate(row.meetings), 5),
        round(row.rate(row.deals), 5), round(row.revenue, 2), row.promotions, row.harmful,
        " ".join(f"{v}={n}" for v, n in sorted(row.versions.items())), "; ".join(row.notes),
    ]  # fmt: skip


COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
W, H, PAD = 640, 320, 48


def line_chart(title: str, series: dict[str, list[float]], *, percent: bool = True) -> str:
    """A small SVG line chart, one line per series over the weeks, with its legend and axis labels."""
    top = max((max(values) for values in series.values() if values), default=1.0) * 1.1 or 1.0
    weeks = max(len(values) for values in series.values())
    parts = [_svg_head(title), _axes(top, weeks, percent=percent)]
    for i, (name, values) in enumerate(series.items()):
        points = " ".join(f"{_x(w, weeks):.1f},{_y(v, top):.1f}" for w, v in enumerate(values))
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{W - PAD + 4}" y="{PAD + 14 * i}" fill="{colour}" font-size="11">{name}</text>')
    return "\n".join([*parts, "</svg>"])


def versions_chart(results: list[SimulationResult]) -> str:
    """Per policy, the newest model version serving traffic each week (its number along the y axis)."""
    series = {}
    for result in results:
        series[result.spec.policy] = [float(_minor(max(row.versions, key=_version_key))) for row in result.rows]
    return line_chart("Newest model version in use (minor number)", series, percent=False)


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.lstrip("v").split(".") if part.isdigit())


def _minor(version: str) -> int:
    key = _version_key(version)
    return key[1] if len(key) > 1 else 0


def _svg_head(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W + 90}" height="{H}" font-family="sans-serif">'
        f'<text x="{PAD}" y="20" font-size="13">{title}</text>'
    )


def _axes(top: float, weeks: int, *, percent: bool) -> str:
    lines = [f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#888"/>']
    lines.append(f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>')
    for tick in range(5):
        value = top * tick / 4
        label = f"{value:.1%}" if percent else f"{value:.0f}"
        lines.append(f'<text x="4" y="{_y(value, top) + 4:.1f}" font-size="10">{label}</text>')
    for week in range(weeks):
        lines.append(f'<text x="{_x(week, weeks) - 4:.1f}" y="{H - PAD + 14}" font-size="10">{week + 1}</text>')
    return "\n".join(lines)


def _x(index: int, count: int) -> float:
    return PAD + (W - 2 * PAD) * (index / max(count - 1, 1))


def _y(value: float, top: float) -> float:
    return H - PAD - (H - 2 * PAD) * (value / top)
