"""The files a training run writes into its output directory, and the heartbeat that beats there.

The provider reads them from other processes (and, on a shared directory, other machines), so
every file is replaced atomically (written beside, then renamed) or appended one line at a time.
"""

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

STATUS = "status.json"
EVENTS = "events.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
HEARTBEAT = "heartbeat"
ADAPTER = "adapter"
TRAINER_OUTPUT = "checkpoints"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write JSON beside ``path`` and rename it over ``path``: readers see all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as tmp:
        json.dump(data, tmp)
    os.replace(tmp.name, path)


def read_json(path: Path) -> dict[str, Any]:
    """Return the JSON object in ``path``, or an empty dict when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Return each JSON object line of ``path``; a half-written last line is skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


class RunFiles:
    """Paths and writers of one run's output directory."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.status = self.directory / STATUS
        self.events = self.directory / EVENTS
        self.checkpoints = self.directory / CHECKPOINTS
        self.heartbeat = self.directory / HEARTBEAT
        self.adapter = self.directory / ADAPTER
        self.trainer_output = self.directory / TRAINER_OUTPUT

    def write_status(self, status: str, **fields: Any) -> None:
        """Replace the status file with ``status``, keeping earlier fields not given again."""
        data = {**read_json(self.status), **fields, "status": status, "updated_at": time.time()}
        write_json_atomic(self.status, data)

    def append(self, path: Path, row: Mapping[str, Any]) -> None:
        """Append one JSON line (one ``write`` call, so concurrent readers never see half a row)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")

    def event(self, message: str, *, level: str = "info", **data: Any) -> None:
        self.append(self.events, {"created_at": time.time(), "level": level, "message": message, **data})

    def beat(self) -> None:
        """Record that the run is alive now."""
        write_json_atomic(self.heartbeat, {"at": time.time(), "pid": os.getpid()})

    def last_beat(self) -> float | None:
        """Return the time of the last heartbeat, or None when there has been none."""
        value = read_json(self.heartbeat).get("at")
        return float(value) if isinstance(value, int | float) else None


class Heartbeat:
    """A daemon thread that beats ``files``' heartbeat every ``interval`` seconds while open.

    A thread, not a training callback: one step of a large model, or loading it, can take longer
    than the interval, and the question it answers is whether the process is alive.
    """

    def __init__(self, files: RunFiles, interval: float) -> None:
        self.files = files
        self.interval = max(0.05, interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.files.beat()
            self._stop.wait(self.interval)

    def __enter__(self) -> "Heartbeat":
        self.files.beat()
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 1)
