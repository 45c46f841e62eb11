"""Issue, revoke and list an existing organization's API keys."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import OrganizationAPIKey
from flywheel.selectors import api_keys_of, organization_get
from flywheel.services import api_key_create, api_key_revoke


class Command(BaseCommand):
    help = "Issue (printed once), revoke or list the API keys of an existing organization."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        issue = actions.add_parser("issue", help="Issue a new key and print its secret, once.")
        issue.add_argument("organization", metavar="SLUG_OR_ID")
        issue.add_argument("--role", choices=OrganizationAPIKey.Role.values, default=OrganizationAPIKey.Role.AGENT)
        issue.add_argument("--name", default="", help="A label for the key (default: '<slug> <role>').")
        revoke = actions.add_parser("revoke", help="Revoke a key by its prefix (the part before the dot).")
        revoke.add_argument("organization", metavar="SLUG_OR_ID")
        revoke.add_argument("prefix")
        listing = actions.add_parser("list", help="List the keys: prefix, name, role, revoked, created.")
        listing.add_argument("organization", metavar="SLUG_OR_ID")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = organization_get(slug_or_id=options["organization"])
            if options["action"] == "issue":
                api_key, secret = api_key_create(organization=organization, role=options["role"], name=options["name"])
                self.stdout.write(f"Issued {api_key.role} key {api_key.prefix} for {organization.slug}.")
                self.stdout.write(f"API key, shown only once: {secret}")
            elif options["action"] == "revoke":
                api_key = api_key_revoke(organization=organization, prefix=options["prefix"])
                self.stdout.write(f"Key {api_key.prefix} of {organization.slug} is revoked.")
            else:
                for api_key in api_keys_of(organization=organization):
                    state = "revoked" if api_key.revoked else "active"
                    self.stdout.write(
                        f"{api_key.prefix}  {api_key.role:5}  {state:7}  {api_key.created:%Y-%m-%d}  {api_key.name}"
                    )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
