"""Stop a running A/B test without a winner: the variant leaves and the control gets its traffic back.

Names the experiment by id, or by its pool (``--organization``, the global pool without it). A
reason is required; stopping an experiment that has already ended fails and changes nothing.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.models import Experiment
from experiments.selectors import running_experiment
from experiments.services import experiment_stop
from flywheel.errors import ApplicationError, NotFound
from flywheel.selectors import organization_get
from registry.management.commands._output import write_events
from registry.services import dry_run, recorded


class Command(BaseCommand):
    help = "Stop a running A/B test (by EXPERIMENT_ID, or the one running in --organization's pool) with --reason."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("experiment_id", nargs="?", help="The experiment's id (default: the pool's running one).")
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument("--reason", required=True, help="Why, for the audit trail (required).")
        parser.add_argument("--dry-run", action="store_true", help="Show what would change and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            experiment = self._experiment(options)
            run = dry_run if options["dry_run"] else recorded
            events = run(lambda: experiment_stop(experiment=experiment, actor=None, reason=options["reason"]))
        except ApplicationError as error:
            raise CommandError(error.message) from error
        write_events(self.stdout, events)
        verb = "Would stop" if options["dry_run"] else "Stopped"
        self.stdout.write(self.style.SUCCESS(f"{verb} the A/B test {experiment.pk}: {len(events)} audit row(s)."))

    def _experiment(self, options: dict[str, Any]) -> Experiment:
        if options["experiment_id"]:
            try:
                return Experiment.objects.select_related("organization").get(pk=options["experiment_id"])
            except (Experiment.DoesNotExist, ValidationError, ValueError) as error:
                raise NotFound(f"No experiment has the id {options['experiment_id']}.") from error
        organization = organization_get(slug_or_id=options["organization"]) if options["organization"] else None
        return running_experiment(organization)
