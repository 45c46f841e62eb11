"""Answer a prompt with a registered model through its provider (the seed's ``test_model``)."""

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from registry.models import RegisteredModel
from training.services import error_message, model_test


class Command(BaseCommand):
    help = "Answer a prompt with a registered model, e.g. test_model <id> --prompt 'Write a message for: ...'."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("registry_id", metavar="REGISTRY_ID")
        parser.add_argument("--prompt", required=True, metavar="TEXT")
        parser.add_argument("--system-prompt", metavar="TEXT", help="Default: TRAINING_SYSTEM_PROMPT.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            model = RegisteredModel.objects.filter(pk=options["registry_id"]).first()
            if model is None:
                raise CommandError(f"No registered model has the id {options['registry_id']!r}.")
            answer = model_test(model=model, prompt=options["prompt"], system_prompt=options["system_prompt"])
        except (ApplicationError, ValidationError) as exc:
            raise CommandError(error_message(exc)) from exc
        self.stdout.write(f"{model.model_version} ({model.model_id}):")
        self.stdout.write(answer or "(empty answer)")
