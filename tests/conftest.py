"""Test-wide fixtures: background tasks run synchronously; caches start empty."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache
from django_q.conf import Conf


@pytest.fixture(autouse=True)
def _isolated(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # django-q2 reads its configuration once at import, so sync mode is switched on its Conf.
    monkeypatch.setattr(Conf, "SYNC", True)
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.TRAINING_DATA_DIR = str(tmp_path / "media" / "training_data")
    cache.clear()
    yield
    cache.clear()
