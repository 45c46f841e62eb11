"""Print a pool's model leaderboard (the seed's ``get_leaderboard``), from the ``model_leaderboard`` view.

Best first by close rate, then reply rate, then revenue; ranks are among the models listed,
archived ones only with ``--include-archived``.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get
from registry.management.commands._output import write_table
from registry.models import RegisteredModel
from registry.selectors import LEADERBOARD_MIN_SAMPLES, leaderboard

HEADER = ["close #", "reply #", "revenue #", "version", "status", "traffic", "messages"]
HEADER += ["reply rate", "meeting rate", "close rate", "revenue", "model id"]


def row(entry: RegisteredModel) -> tuple[object, ...]:
    """One line of the table: the view's ranks, then the model, its counters and rates."""
    ranks = (entry.close_rate_rank, entry.reply_rate_rank, entry.revenue_rank)  # type: ignore[attr-defined]
    model = (entry.model_version, entry.status, f"{entry.traffic_percentage:g} %", entry.total_messages_sent)
    rates = (f"{entry.reply_rate:.2%}", f"{entry.meeting_rate:.2%}", f"{entry.close_rate:.2%}")
    return (*ranks, *model, *rates, entry.total_revenue, entry.model_id)


class Command(BaseCommand):
    help = "Print the leaderboard of a pool (an organization's, or the global one), models with enough messages only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument(
            "--min-samples",
            type=int,
            default=LEADERBOARD_MIN_SAMPLES,
            help=f"Messages a model must have sent (default {LEADERBOARD_MIN_SAMPLES}).",
        )
        parser.add_argument("--include-archived", action="store_true", help="List archived models too.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["min_samples"] < 0:
            raise CommandError("--min-samples cannot be negative.")
        organization: Organization | None = None
        if options["organization"]:
            try:
                organization = organization_get(slug_or_id=options["organization"])
            except ApplicationError as error:
                raise CommandError(error.message) from error
        entries = list(
            leaderboard(
                organization=organization,
                min_samples=options["min_samples"],
                include_archived=options["include_archived"],
            )
        )
        rows = [row(entry) for entry in entries]
        write_table(self.stdout, HEADER, rows)
        pool = organization.slug if organization else "the global pool"
        self.stdout.write(f"{len(entries)} model(s) in {pool} with at least {options['min_samples']} message(s) sent.")
