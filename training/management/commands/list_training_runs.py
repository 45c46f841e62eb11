"""List a pool's training runs, newest first: status, version, method, provider, examples, cost, times."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.selectors import organization_get
from registry.management.commands._output import write_table
from training.models import TrainingRun

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
        runs = TrainingRun.objects.filter(organization__isnull=True)
        if options["organization"]:
            try:
                runs = TrainingRun.objects.filter(organization=organization_get(slug_or_id=options["organization"]))
            except ApplicationError as error:
                raise CommandError(error.message) from error
        if options["status"]:
            runs = runs.filter(status=options["status"])
        runs = runs.order_by("-created_at")[: options["limit"]]
        write_table(self.stdout, HEADER, [row(run) for run in runs])
