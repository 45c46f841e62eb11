"""Deploy a registered model at a share of its pool's traffic (the seed's ``deploy_model``).

At 100 % the previously deployed models of the pool are archived; below 100 % they keep their
proportions of the rest, and a new variant beside a single control starts an A/B test with its
experiment. A deploy that touches a running A/B test is refused unless ``--override --reason``
stops the test with it. Prints each model's status and traffic before and after.
"""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.services import model_deploy_or_start_test
from flywheel.errors import ApplicationError
from registry.management.commands._output import write_events
from registry.models import RegisteredModel
from registry.selectors import model_get
from registry.services import dry_run, recorded


class Command(BaseCommand):
    help = (
        "Deploy the model REGISTRY_ID at --traffic-percentage % of its pool; the others rescale or, at 100 %, retire."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("registry_id", help="The model's registry id (a UUID).")
        parser.add_argument("--traffic-percentage", type=float, default=100.0, help="Share of the pool (default 100).")
        parser.add_argument(
            "--ab-test-group",
            default=RegisteredModel.ABTestGroup.CONTROL,
            choices=RegisteredModel.ABTestGroup.values,
            help="The model's A/B test group (default control).",
        )
        parser.add_argument("--reason", default="", help="Why, for the audit trail.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would change and change nothing.")
        parser.add_argument(
            "--override", action="store_true", help="Stop an A/B test the deploy touches (needs --reason)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = model_get(registry_id=options["registry_id"])
            run = dry_run if options["dry_run"] else recorded
            events = run(
                lambda: model_deploy_or_start_test(
                    model=model,
                    traffic_percentage=options["traffic_percentage"],
                    ab_test_group=options["ab_test_group"],
                    reason=options["reason"],
                    override_experiment=options["override"],
                )
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error
        write_events(self.stdout, events)
        pool = model.organization.slug if model.organization else "the global pool"
        verb = "Would deploy" if options["dry_run"] else "Deployed"
        summary = f"{verb} {model.model_version} at {options['traffic_percentage']:g} % of {pool}: "
        self.stdout.write(self.style.SUCCESS(summary + f"{len(events)} model(s) changed."))
