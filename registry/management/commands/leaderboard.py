"""Print a pool's model leaderboard (the seed's ``get_leaderboard``), from the ``model_leaderboard`` view.

Best first by close rate, then reply rate, then revenue; ranks are among every model of the pool.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry.management.commands._output import write_table
from registry.selectors import leaderboard, organization_get


class Command(BaseCommand):
    help = "Print the leaderboard of a pool (an organization's, or the global one), models with enough messages only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument("--min-samples", type=int, default=0, help="Messages a model must have sent (default 0).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["min_samples"] < 0:
            raise CommandError("--min-samples cannot be negative.")
        organization: Organization | None = None
        if options["organization"]:
            try:
                organization = organization_get(slug_or_id=options["organization"])
            except ApplicationError as error:
                raise CommandError(error.message) from error
        entries = list(leaderboard(organization=organization, min_samples=options["min_samples"]))
        header = ["close #", "reply #", "revenue #", "version", "status", "traffic", "messages"]
        header += ["reply rate", "meeting rate", "close rate", "revenue", "model id"]
        rows = [
            (
                e.close_rate_rank,
                e.reply_rate_rank,
                e.revenue_rank,
                e.model_version,
                e.status,
                f"{e.traffic_percentage:g} %",
                e.total_messages_sent,
                f"{e.reply_rate:.2%}",
                f"{e.meeting_rate:.2%}",
                f"{e.close_rate:.2%}",
                e.total_revenue,
                e.model_id,
            )
            for e in entries
        ]
        write_table(self.stdout, header, rows)
        pool = organization.slug if organization else "the global pool"
        self.stdout.write(f"{len(entries)} model(s) in {pool} with at least {options['min_samples']} message(s) sent.")
