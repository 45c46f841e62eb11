"""A run's files and job at the provider: found again before anything is created, created at most once.

Creations are sent once, without client retries; before each one (a first try, a retry, a step
resumed after a crash) the provider is asked what already exists for the run. Files are found by
a name made of the run id and the dataset's digest, jobs by the ``training_run_id`` in their
metadata. When more than one exists, the oldest is kept: extra jobs are cancelled, extra files
deleted.
"""

import logging
from pathlib import Path
from typing import Any

from training.models import TrainingRun
from training.providers import FineTuningProvider, ProviderError
from training.transitions import provider_job_cancel

logger = logging.getLogger(__name__)


def dataset_file_name(*, run: TrainingRun, kind: str) -> str:
    """The name a run's ``kind`` file ("train" or "validation") is uploaded under, and found by."""
    return f"flywheel-{run.pk}-{kind}-{run.dataset_sha256[:16]}.jsonl"


def provider_file_ensure(*, provider: FineTuningProvider, run: TrainingRun, kind: str, path: str | Path) -> str:
    """The id of the run's ``kind`` file at the provider: the one uploaded before, else a new upload."""
    name = dataset_file_name(run=run, kind=kind)
    found = provider.find_files(name=name)
    if not found:
        return provider.upload_training_file(path, name=name)
    kept, *extras = found
    for extra in extras:
        _file_delete(provider, extra.id)
    logger.info("Training run %s reuses file %s (%s) at the provider.", run.pk, kept.id, name)
    return kept.id


def provider_job_ensure(*, provider: FineTuningProvider, run: TrainingRun, request: dict[str, Any]) -> str:
    """The id of the run's job at the provider: the oldest one created before, else a new one.

    Any younger job of the run (an orphan of a retried or interrupted creation) is cancelled.
    """
    found = provider.find_jobs(run_id=str(run.pk))
    if not found:
        return provider.create_job(**request)
    kept, *orphans = found
    for orphan in orphans:
        if not orphan.is_terminal:
            provider_job_cancel(provider=provider, job_id=orphan.id)
    logger.info("Training run %s adopts job %s at the provider (%d orphan(s)).", run.pk, kept.id, len(orphans))
    return kept.id


def _file_delete(provider: FineTuningProvider, file_id: str) -> None:
    """Delete a duplicate file; a provider that refuses is logged, not raised (it costs storage only)."""
    try:
        provider.delete_file(file_id)
    except ProviderError as exc:
        logger.warning("Could not delete duplicate file %s: %s", file_id, exc.message)
