"""Store the training-text token count of labels that have none (labels written before counts were kept)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outcomes.stored_texts import training_tokens_backfill


class Command(BaseCommand):
    help = "Count and store the training-text tokens of outcome labels that have no stored count."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--chunk-size", type=int, default=1000, help="Labels per transaction (default 1,000).")
        parser.add_argument(
            "--recount", action="store_true", help="Count every label again, e.g. after the scrubbing rules changed."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["chunk_size"] < 1:
            raise CommandError("--chunk-size must be at least 1.")

        def progress(done: int) -> None:
            if done % (options["chunk_size"] * 50) == 0:
                self.stdout.write(f"  {done:,} labels counted")

        count = training_tokens_backfill(
            chunk_size=options["chunk_size"], recount=options["recount"], progress=progress
        )
        self.stdout.write(self.style.SUCCESS(f"{count:,} training text(s) counted."))
