"""Cancel an active training run: its provider job is cancelled and no model of it stays ready."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from training.models import TrainingRun
from training.services import error_message, training_run_cancel


class Command(BaseCommand):
    help = "Cancel an active training run and its fine-tuning job."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run_id", metavar="RUN_ID")
        parser.add_argument("--reason", default="", help="Why; kept in the run's error.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = TrainingRun.objects.filter(pk=options["run_id"]).first()
            if run is None:
                raise CommandError(f"No training run has the id {options['run_id']!r}.")
            training_run_cancel(run=run, actor=None, reason=options["reason"])
        except (ApplicationError, ValidationError) as exc:
            raise CommandError(error_message(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Training run {run.pk} cancelled."))
