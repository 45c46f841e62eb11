"""Evaluate a pool's running A/B test and apply its decision: promote, roll back, stop or wait."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from experiments.services import promote_ab_test_winner, promotion_preview
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get


class Command(BaseCommand):
    help = (
        "Evaluate the running A/B test of an organization's pool (the global pool by default) and apply "
        "its decision: promote the variant, roll it back, stop a broken test, or report what it still needs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="ID_OR_SLUG", help="The organization (default: the global pool).")
        parser.add_argument("--dry-run", action="store_true", help="Show the decision and change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization: Organization | None = None
            if options["organization"]:
                organization = organization_get(slug_or_id=options["organization"])
            if options["dry_run"]:
                answer, _ = promotion_preview(organization=organization)
            else:
                answer = promote_ab_test_winner(organization=organization)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self._print(answer, dry=options["dry_run"])

    def _print(self, answer: dict[str, Any], *, dry: bool) -> None:
        action = answer["action"]
        verb = {"promoted": "Promoted", "rolled_back": "Rolled back", "stopped": "Stopped", "none": "No change"}
        prefix = "Dry run, nothing changed. Would be: " if dry and action != "none" else ""
        self.stdout.write(f"{prefix}{verb[action]}: winner {answer.get('winner') or 'none yet'}")
        for key in ("look", "control_score", "variant_score", "improvement_percentage", "z", "boundary"):
            if answer.get(key) is not None:
                self.stdout.write(f"  {key.replace('_', ' ')}: {_number(answer[key])}")
        if answer.get("srm_p_value") is not None:
            self.stdout.write(f"  sample ratio p-value: {_number(answer['srm_p_value'])}")
        if answer.get("additional_messages_needed"):
            self.stdout.write(f"  more messages needed: {answer['additional_messages_needed']}")
        for reason in answer.get("reasons", []):
            self.stdout.write(f"  - {reason}")
        style = self.style.SUCCESS if action != "none" else self.style.WARNING
        self.stdout.write(style(f"Experiment {answer['experiment_id']}: {answer['experiment_status']}."))


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
