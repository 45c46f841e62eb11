"""What the registry's commands print: audit rows and tables, as plain aligned text."""

from collections.abc import Sequence

from django.core.management.base import OutputWrapper

from registry.models import ModelEvent


def write_table(out: OutputWrapper, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Write ``rows`` under ``header`` in left-aligned columns."""
    cells = [[str(value) for value in row] for row in [header, *rows]]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    for row in cells:
        out.write("  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip())


def write_events(out: OutputWrapper, events: Sequence[ModelEvent]) -> None:
    """Each audit row: the model and its status and traffic before and after."""
    rows = [
        (
            event.model.model_version,
            event.get_action_display(),
            f"{event.status_before} -> {event.status_after}",
            f"{event.traffic_before:g} % -> {event.traffic_after:g} %",
            event.reason,
        )
        for event in events
    ]
    write_table(out, ("model", "change", "status", "traffic", "reason"), rows)
