"""Create or repair the django-q2 schedules of training and of the A/B tests (idempotent).

The weekly training (``0 2 * * 1``, UTC) for the global pool and each organization the settings
name, the ten-minute sweep that re-delivers lost runs, and the daily A/B auto-promotion (which
applies decisions only when ``AB_TEST_AUTO_PROMOTE`` is on). Weekly schedules no longer
configured are removed.
"""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from experiments.services import ensure_auto_promote_schedule
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get
from training.schedules import training_schedules_ensure


class Command(BaseCommand):
    help = "Create or repair the weekly training schedules (0 2 * * 1) and the resume schedule."

    def handle(self, *args: Any, **options: Any) -> None:
        organizations = self._organizations(settings.TRAINING_SCHEDULE_ORGANIZATIONS)
        counts = training_schedules_ensure(
            include_global=settings.TRAINING_SCHEDULE_GLOBAL, organizations=organizations
        )
        pools = (["global"] if settings.TRAINING_SCHEDULE_GLOBAL else []) + [org.slug for org in organizations]
        self.stdout.write(f"Weekly training (0 2 * * 1, UTC) for: {', '.join(pools) or 'no pool'}.")
        self.stdout.write(
            f"{counts['created']} schedule(s) created, {counts['updated']} updated, {counts['removed']} removed."
        )
        verb = "scheduled" if ensure_auto_promote_schedule() else "already scheduled"
        switch = "on" if settings.AB_TEST_AUTO_PROMOTE else "off"
        self.stdout.write(f"Daily A/B test auto-promotion {verb} (AB_TEST_AUTO_PROMOTE is {switch}).")

    def _organizations(self, references: list[str]) -> list[Organization]:
        found, missing = [], []
        for reference in references:
            try:
                found.append(organization_get(slug_or_id=reference))
            except ApplicationError:
                missing.append(reference)
        if missing:
            raise CommandError(f"TRAINING_SCHEDULE_ORGANIZATIONS names unknown organizations: {', '.join(missing)}.")
        return found
