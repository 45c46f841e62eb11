"""Rewrite every stored quality score, e.g. after QUALITY_WEIGHTS changed."""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from outcomes.services import quality_scores_recompute


class Command(BaseCommand):
    help = "Recompute every outcome label's quality score with the current QUALITY_WEIGHTS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(done: int, total: int) -> None:
            self.stdout.write(f"  {done}/{total} labels rescored")

        count = quality_scores_recompute(chunk_size=options["chunk_size"], progress=progress)
        self.stdout.write(self.style.SUCCESS(f"{count} quality score(s) recomputed."))
