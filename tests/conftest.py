"""Test-wide fixtures: background tasks run synchronously; caches start empty."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _isolated(settings: Any, tmp_path: Path) -> Iterator[None]:
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAINING_DATA_DIR = str(tmp_path / "media" / "training_data")
    cache.clear()
    yield
    cache.clear()
