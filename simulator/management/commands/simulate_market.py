"""Run the real loop against a synthetic market and print what each week looked like.

``python manage.py simulate_market --market default --weeks 16 --policy flywheel`` prints a
weekly table and the totals; ``--compare`` runs every policy on the same market and seed side by
side; ``--report DIR`` writes CSV and SVG charts; ``--truth`` prints the market's hidden truth.
"""

import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.market import MARKETS, Market
from simulator.policies import POLICIES
from simulator.reports import compare_table, totals_lines, weekly_table, write_report
from simulator.services import DEFAULT_START, SimulationResult, SimulationSpec, WeekRow, simulation_run


class Command(BaseCommand):
    help = "Simulate a market driving the real loop (routing, outcomes, training, A/B tests) week by week."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--market", choices=sorted(MARKETS), default="default")
        parser.add_argument("--policy", choices=list(POLICIES), default="flywheel")
        parser.add_argument("--weeks", type=int, default=16)
        parser.add_argument("--leads-per-week", type=int, default=2_000)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--name", default="", help="The simulation's name (its organization is sim-NAME).")
        parser.add_argument("--start", default=DEFAULT_START.date().isoformat(), help="The first Monday.")
        parser.add_argument(
            "--end-last-week", action="store_true", help="Start so that the history ends last Sunday (the demo)."
        )
        parser.add_argument("--http", default=None, help='The API to call: "local" (in-process server) or a URL.')
        parser.add_argument("--report", type=Path, default=None, help="A folder for CSV and SVG charts.")
        parser.add_argument("--compare", action="store_true", help="Run every policy on this market and seed.")
        parser.add_argument("--no-regret", action="store_true", help="Skip the oracle run that regret needs.")
        parser.add_argument("--truth", action="store_true", help="Print the market's hidden truth first.")

    def handle(self, *args: Any, **options: Any) -> None:
        specs = self._specs(options)
        if options["truth"]:
            self.stdout.write(Market.build(options["market"], seed=options["seed"], weeks=options["weeks"]).describe())
        results = {spec.policy: self._run(spec) for spec in specs}
        if options["compare"]:
            self.stdout.write("\n".join(compare_table(list(results.values()))))
        else:
            main = results[options["policy"]]
            self.stdout.write("\n".join(weekly_table(main) + totals_lines(main, results.get("oracle"))))
        if options["report"] is not None:
            for path in write_report(options["report"], list(results.values())):
                self.stdout.write(f"wrote {path}")

    def _specs(self, options: dict[str, Any]) -> list[SimulationSpec]:
        policies = list(POLICIES) if options["compare"] else [options["policy"]]
        if not options["compare"] and not options["no_regret"] and options["policy"] != "oracle":
            policies.append("oracle")
        name = options["name"] or f"{options['market']}-{options['seed']}"
        try:
            start = datetime.datetime.fromisoformat(options["start"]).replace(tzinfo=datetime.UTC)
            if options["end_last_week"]:  # the one read of the wall clock: where to put the history
                today = datetime.datetime.now(datetime.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                start = today - datetime.timedelta(days=today.weekday(), weeks=options["weeks"])
            common = {
                "market": options["market"],
                "weeks": options["weeks"],
                "leads_per_week": options["leads_per_week"],
                "seed": options["seed"],
                "start": start,
                "http": options["http"],
            }
            return [SimulationSpec(name=f"{name}-{policy}", policy=policy, **common) for policy in policies]
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

    def _run(self, spec: SimulationSpec) -> SimulationResult:
        self.stdout.write(f"simulating {spec.name}: {spec.weeks} weeks of {spec.leads_per_week} leads")

        def progress(row: WeekRow) -> None:
            self.stdout.write(f"  week {row.week}/{spec.weeks}: {row.messages} messages; {'; '.join(row.notes)}")
            self.stdout.flush()

        result = simulation_run(spec=spec, progress=progress)
        self.stdout.write(f"  done in {result.seconds:.1f} s")
        return result
