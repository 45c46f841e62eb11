"""Roll a pool back to its deployed configuration before its latest traffic change.

Undoes one step, from the audit trail; running it again undoes the rollback. A rollback that
touches a running A/B test is refused unless ``--override --reason`` stops the test with it.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.services import traffic_change
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get
from registry.management.commands._output import write_events
from registry.services import dry_run, model_rollback, recorded


class Command(BaseCommand):
    help = (
        "Restore the deployed models and traffic of a pool (an organization's, or the global one) "
        "from before its last change."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument("--reason", default="", help="Why, for the audit trail.")
        parser.add_argument("--dry-run", action="store_true", help="Show what would change and change nothing.")
        parser.add_argument(
            "--override", action="store_true", help="Stop an A/B test the rollback touches (needs --reason)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization: Organization | None = None
            if options["organization"]:
                organization = organization_get(slug_or_id=options["organization"])
            run = dry_run if options["dry_run"] else recorded
            events = run(
                lambda: traffic_change(
                    change=lambda: model_rollback(organization=organization, reason=options["reason"]),
                    actor=None,
                    override=options["override"],
                    reason=options["reason"],
                )
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        write_events(self.stdout, events)
        pool = organization.slug if organization else "the global pool"
        verb = "Would roll back" if options["dry_run"] else "Rolled back"
        self.stdout.write(self.style.SUCCESS(f"{verb} {pool}: {len(events)} model(s) changed."))
