"""Start a training cycle (the seed's ``run_training_cycle``); with ``--wait``, drive it to its end here.

Without ``--wait`` the run is handed to django-q2 (``manage.py qcluster`` must be running). With
``--wait`` this process performs the steps and polls the job itself, printing progress, then the
seed's result; a django-q2 worker that picks up the same run meanwhile does no harm (each step is
claimed once). The exit status is 1 when the run failed or was cancelled.
"""

import json
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.models import Organization
from flywheel.selectors import organization_get
from training.models import TrainingRun
from training.providers import provider_poll_interval
from training.selectors import training_run_result
from training.services import error_message, training_run_poll, training_run_start, training_run_step

Status = TrainingRun.Status
LOCAL_POLL_INTERVAL = 0.5


class Command(BaseCommand):
    help = "Start a training cycle for an organization (the global pool by default); --wait drives it to its end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--organization", metavar="ID_OR_SLUG", help="The organization (default: the global pool).")
        parser.add_argument("--model-version", metavar="vX.Y.Z", help="Default: the pool's next version.")
        parser.add_argument("--min-quality-score", type=float, default=0.6, metavar="X")
        parser.add_argument(
            "--method", choices=TrainingRun.Method.values, default="sft", help="Only the pool provider's methods."
        )
        parser.add_argument("--validation-percent", type=float, default=0, metavar="P")
        parser.add_argument("--deploy-immediately", action="store_true", help="Start an A/B test of the new model.")
        parser.add_argument("--ab-test-percentage", type=float, default=10.0, metavar="P")
        parser.add_argument(
            "--force", action="store_true", help="Train even when the data has not changed since the last success."
        )
        parser.add_argument("--wait", action="store_true", help="Run the cycle here until it ends, showing progress.")
        parser.add_argument(
            "--poll-interval",
            type=float,
            metavar="SECONDS",
            help=f"With --wait: seconds between polls (default: {LOCAL_POLL_INTERVAL} on the local provider, "
            "the provider's poll interval otherwise).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = self._start(options)
        self.stdout.write(f"Training run {run.pk} started for {run.organization or 'the global pool'}.")
        if not options["wait"]:
            self.stdout.write("A django-q2 worker (manage.py qcluster) takes it from here; follow it in the admin.")
            return
        interval = options["poll_interval"]
        if interval is None:
            interval = LOCAL_POLL_INTERVAL if run.provider == "local" else provider_poll_interval(run.provider)
        run = self._drive(run, interval)
        self.stdout.write(json.dumps(training_run_result(run=run), indent=2))
        if run.status in (Status.FAILED, Status.CANCELLED):
            raise CommandError(f"Training run {run.status}: {run.error}")
        self.stdout.write(self.style.SUCCESS(f"Training run {run.status}."))

    def _start(self, options: dict[str, Any]) -> TrainingRun:
        try:
            organization: Organization | None = None
            if options["organization"]:
                organization = organization_get(slug_or_id=options["organization"])
            return training_run_start(
                organization=organization,
                model_version=options["model_version"],
                min_quality_score=options["min_quality_score"],
                deploy_immediately=options["deploy_immediately"],
                ab_test_percentage=options["ab_test_percentage"],
                method=options["method"],
                validation_percent=options["validation_percent"],
                force=options["force"],
                triggered_by=TrainingRun.Trigger.COMMAND,
                actor=None,
            )
        except (ApplicationError, ValidationError) as exc:
            raise CommandError(error_message(exc)) from exc

    def _drive(self, run: TrainingRun, interval: float) -> TrainingRun:
        """Perform each step and poll the job until the run ends, printing each change."""
        shown = ""
        while run.is_active:
            moved = training_run_poll(run=run) if run.status == Status.TRAINING else training_run_step(run=run)
            run.refresh_from_db()
            line = progress(run)
            if line != shown:
                self.stdout.write(line)
                shown = line
            if not moved and run.is_active:
                time.sleep(interval)  # waiting for the provider, or for a worker that holds the step
        return run


def progress(run: TrainingRun) -> str:
    """One line saying where the run is."""
    if run.status == Status.PENDING:
        return "Pending."
    if run.status == Status.EXPORTING:
        return "Exporting and validating the dataset..."
    if run.status == Status.UPLOADING:
        return (
            f"Exported {run.examples_count} examples ({run.total_tokens:,} tokens, "
            f"estimated ${run.estimated_cost:.2f}) as {run.model_version}; uploading to the {run.provider} provider..."
        )
    if run.status == Status.TRAINING:
        return f"Fine-tuning job {run.provider_job_id}: {run.provider_status or 'created'}"
    if run.status == Status.REGISTERING:
        return f"Job succeeded: {run.fine_tuned_model} ({run.trained_tokens or 0:,} trained tokens); registering..."
    if run.status == Status.TESTING:
        return f"Registered {run.model_version}; testing it on a sample prompt..."
    if run.status == Status.DEPLOYING:
        return f"Deploying as an A/B test at {run.ab_test_percentage:g} %..."
    return f"Ended: {run.status}" + (f" ({run.error})" if run.error else "")
