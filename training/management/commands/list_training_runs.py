"""List a pool's training runs, newest first: status, version, method, provider, examples, cost, times."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.selectors import organization_get
from registry.management.commands._output import write_table
from training.models import TrainingRun
from training.selectors import training_runs_list

HEADER = ("created", "status", "version", "method", "provider", "examples", "est. cost (USD)", "trigger", "run id")


def row(run: TrainingRun) -> tuple[object, ...]:
    created = f"{run.created_at:%Y-%m-%d %H:%M}"
    cost = f"{run.estimated_cost:.2f}"
    version = run.model_version or "-"
    provider = run.provider or "-"
    return (created, run.status, version, run.method, provider, run.examples_count, cost, run.triggered_by, run.pk)


class Command(BaseCommand):
    help = "List the training runs of a pool (an organization's, or the global one), newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument("--status", choices=TrainingRun.Status.values, help="Only runs of this status.")
        parser.add_argument("--limit", type=int, default=20, help="At most this many runs (default 20).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            organization = organization_get(slug_or_id=options["organization"]) if options["organization"] else None
        except ApplicationError as error:
            raise CommandError(error.message) from error
        runs = training_runs_list(organization=organization, status=options["status"] or "", limit=options["limit"])
        write_table(self.stdout, HEADER, [row(run) for run in runs])
