"""List a pool's registered models: version, status, traffic, test group, messages, rates."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get
from registry.management.commands._output import write_table
from registry.models import RegisteredModel
from registry.selectors import models_list

HEADER = ("version", "status", "traffic", "group", "messages", "reply rate", "revenue", "model id", "registry id")


def row(model: RegisteredModel) -> tuple[object, ...]:
    sent = model.total_messages_sent
    reply_rate = f"{model.total_replies / sent:.1%}" if sent else "-"
    traffic = f"{model.traffic_percentage:g} %"
    group = model.ab_test_group or "-"
    return (
        model.model_version,
        model.status,
        traffic,
        group,
        sent,
        reply_rate,
        model.total_revenue,
        model.model_id,
        model.pk,
    )


class Command(BaseCommand):
    help = "List the registered models of a pool (an organization's, or the global one), newest first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="SLUG_OR_ID", help="The organization (default: the global pool).")
        parser.add_argument("--status", choices=RegisteredModel.Status.values, help="Only models of this status.")

    def handle(self, *args: Any, **options: Any) -> None:
        organization: Organization | None = None
        if options["organization"]:
            try:
                organization = organization_get(slug_or_id=options["organization"])
            except ApplicationError as error:
                raise CommandError(error.message) from error
        models = list(models_list(organization=organization, status=options["status"]))
        write_table(self.stdout, HEADER, [row(model) for model in models])
        pool = organization.slug if organization else "the global pool"
        self.stdout.write(f"{len(models)} model(s) in {pool}.")
