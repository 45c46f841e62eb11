"""Export outcome labels to a fine-tuning JSONL file: validated, token-counted and priced.

    python manage.py export_training_data --output training.jsonl [--organization acme]
        [--min-quality-score 0.6] [--method sft|dpo] [--validation-percent 10] [--limit 10000]

Without ``--organization`` the export covers the global pool (every organization). Progress goes
to stderr every 10,000 examples; the summary (count, tokens, estimated cost, sha256) to stdout.
"""

import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from flywheel.errors import ApplicationError
from flywheel.selectors import organization_get
from training.datasets import ExportResult, OutcomeDataFormatter, export_size_bound


class Command(BaseCommand):
    help = "Export outcome labels to a validated fine-tuning JSONL file and print its count, tokens, cost and sha256."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, metavar="PATH", help="The JSONL file to write.")
        parser.add_argument("--organization", metavar="ID_OR_SLUG", help="Default: the global pool.")
        parser.add_argument("--min-quality-score", type=float, default=0.6, metavar="X")
        parser.add_argument("--method", choices=["sft", "dpo"], default="sft")
        parser.add_argument(
            "--validation-percent", type=float, default=0, metavar="N", help="Hold out the most recent N %%."
        )
        parser.add_argument("--limit", type=int, metavar="N", help="Keep the N best examples (default: all).")
        parser.add_argument(
            "--outcome-conditioned", action="store_true", help="SFT: add matured negatives, outcome in the prompt."
        )
        parser.add_argument("--include-metadata", action="store_true", help="For the local provider only.")
        parser.add_argument("--model", default=settings.TRAINING_BASE_MODEL, help="Base model to count and price for.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not 0 <= options["min_quality_score"] <= 1:
            raise CommandError("--min-quality-score must be between 0 and 1.")
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        try:
            organization_id = self.organization_id(options["organization"])
            expected = self.expected(organization_id, options)
            result = OutcomeDataFormatter(model=options["model"]).export_to_jsonl(
                options["output"],
                organization_id=organization_id,
                min_quality_score=options["min_quality_score"],
                limit=options["limit"],
                method=options["method"],
                outcome_conditioned=options["outcome_conditioned"],
                validation_percent=options["validation_percent"],
                include_metadata=options["include_metadata"],
                progress=self.progress(expected),
            )
        except (ApplicationError, ValueError, OSError) as exc:
            raise CommandError(getattr(exc, "message", str(exc))) from exc
        self.summarize(result)

    @staticmethod
    def organization_id(slug_or_id: str | None) -> Any:
        return organization_get(slug_or_id=slug_or_id).pk if slug_or_id else None

    @staticmethod
    def expected(organization_id: Any, options: dict[str, Any]) -> int:
        """At most how many examples the export writes, for the progress line: an index count, not the stats.

        See :func:`~training.datasets.export_size_bound`; the exact count would cost a pass as
        long as the duplicate collapse itself.
        """
        method = options["method"]
        bound = export_size_bound(
            organization_id,
            options["min_quality_score"],
            positives=method != "dpo",
            negatives=method in ("dpo", "kto") or options["outcome_conditioned"],
        )
        return min(bound, options["limit"]) if options["limit"] else bound

    def progress(self, expected: int) -> Any:
        started = time.monotonic()

        def report(written: int) -> None:
            share = f" (>= {written / expected:.0%})" if expected else ""
            rate = written / max(time.monotonic() - started, 1e-9)
            self.stderr.write(f"  {written:,} of at most {expected:,} examples{share}, {rate:,.0f}/s")

        return report

    def summarize(self, result: ExportResult) -> None:
        what = "DPO pair(s)" if result.method == "dpo" else "example(s)"
        self.stdout.write(self.style.SUCCESS(f"Exported {result.count:,} {what} to {result.path}"))
        if result.validation_path:
            self.stdout.write(f"Validation file: {result.validation_count:,} {what} in {result.validation_path}")
        self.stdout.write(
            f"Positive examples: {result.positive_examples:,}; closed deals: {result.deals_in_training:,}"
        )
        self.stdout.write(
            f"Tokens: {result.total_tokens:,} ({result.billed_tokens:,} billed over {result.cost.n_epochs} epochs)"
        )
        self.stdout.write(
            f"Estimated cost: ${result.estimated_cost} (at ${result.cost.price_per_million} per 1M tokens)"
        )
        self.stdout.write(f"sha256: {result.sha256}")
