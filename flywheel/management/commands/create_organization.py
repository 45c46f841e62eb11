"""Create an organization and print a new API key for it, once."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import OrganizationAPIKey
from flywheel.services import api_key_create, organization_create


class Command(BaseCommand):
    help = "Create an organization and print a new API key (shown only this once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument("--slug", default="")
        parser.add_argument("--key-role", choices=OrganizationAPIKey.Role.values, default=OrganizationAPIKey.Role.AGENT)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = organization_create(name=options["name"], slug=options["slug"])
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        _, secret = api_key_create(organization=organization, role=options["key_role"])
        self.stdout.write(f"Created organization {organization.name} ({organization.slug}, id {organization.pk}).")
        self.stdout.write(f"API key ({options['key_role']}), shown only once: {secret}")
