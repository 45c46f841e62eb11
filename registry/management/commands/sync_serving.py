"""Load every deployed model's adapter into its serving server again, and retry failed unloads.

Run it after a serving server restarts (it forgets the adapters it had loaded) and whenever the
admin shows a model whose unload failed; running it twice does no harm.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.selectors import organization_get
from registry.services import serving_sync


class Command(BaseCommand):
    help = "Load the adapters of deployed models into their serving server and retry failed unloads."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="Only this organization's models.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = organization_get(slug_or_id=options["organization"]) if options["organization"] else None
        except ApplicationError as error:
            raise CommandError(error.message) from error
        counts = serving_sync(organization=organization)
        summary = f"{counts.loaded} adapter(s) loaded, {counts.unloaded} unloaded, {counts.failed} failed."
        if counts.failed:
            raise CommandError(f"{summary} The log says why; run it again once the server answers.")
        self.stdout.write(self.style.SUCCESS(summary))
