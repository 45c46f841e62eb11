"""Dataset files in Django's storage API, so that a worker on any machine reads what another exported.

An export is written and validated in a local scratch directory, then saved under a storage name
(``training_data/<pool>/<run id>.jsonl``) in the storage named by ``TRAINING_STORAGE`` (a key of
``STORAGES``, default ``"default"``: ``FileSystemStorage`` under ``MEDIA_ROOT`` unless configured).
The upload step reads it back through the same API into a local copy for the provider's client.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, cast

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages

PREFIX = "training_data"
COPY_BUFFER = 1 << 20
# What a preview reads of a dataset at most: the head of the file, never the whole of it.
HEAD_BYTES = 256 << 10


def dataset_storage() -> Storage:
    """The storage datasets go to: ``STORAGES[settings.TRAINING_STORAGE]`` (default ``"default"``)."""
    return storages[getattr(settings, "TRAINING_STORAGE", "default")]


def dataset_name(*, pool: str, run_id: uuid.UUID | str, validation: bool = False) -> str:
    """The storage name of a run's training (or validation) file."""
    suffix = ".validation.jsonl" if validation else ".jsonl"
    return f"{PREFIX}/{pool}/{run_id}{suffix}"


def dataset_store(*, name: str, local_path: Path) -> str:
    """Save a finished local file under ``name``, replacing an older one; return the stored name."""
    storage = dataset_storage()
    if storage.exists(name):
        storage.delete(name)
    with local_path.open("rb") as handle:
        return storage.save(name, File(handle, name=local_path.name))


@contextmanager
def scratch_directory() -> Iterator[Path]:
    """A local directory for one export's files, under ``TRAINING_DATA_DIR``, removed afterwards."""
    parent = Path(settings.TRAINING_DATA_DIR)
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=parent, prefix=".export-") as directory:
        yield Path(directory)


@contextmanager
def dataset_local_copy(name: str) -> Iterator[Path]:
    """A local file holding the stored dataset's bytes, for a provider's upload; removed afterwards.

    An absolute path is a run exported before datasets went through the storage: used as it is.
    Raises ``OSError`` when the file cannot be read.
    """
    if Path(name).is_absolute():
        yield Path(name)
        return
    with tempfile.TemporaryDirectory(prefix="flywheel-dataset-") as directory:
        path = Path(directory) / Path(name).name
        with dataset_storage().open(name, "rb") as source, path.open("wb") as target:
            shutil.copyfileobj(source, target, COPY_BUFFER)
        yield path


def dataset_read(name: str) -> bytes:
    """The stored dataset's bytes (for inspection and tests; uploads use :func:`dataset_local_copy`)."""
    with dataset_storage().open(name, "rb") as source:
        return bytes(source.read())


def dataset_open(name: str) -> IO[bytes]:
    """The stored dataset, opened for reading in binary (the caller closes it).

    An absolute path is a run exported before datasets went through the storage: opened as it
    is. Raises ``OSError`` (``FileNotFoundError`` among them) when the file cannot be read.
    """
    if Path(name).is_absolute():
        return Path(name).open("rb")
    return cast(IO[bytes], dataset_storage().open(name, "rb"))


def dataset_head(name: str, *, lines: int, max_bytes: int = HEAD_BYTES) -> list[bytes]:
    """The first ``lines`` lines of the stored dataset, reading at most ``max_bytes`` of it.

    Only the head of the file is read, however large it is: a line cut off by ``max_bytes`` is
    left out. Raises ``OSError`` when the file cannot be read.
    """
    with dataset_open(name) as handle:
        head = handle.read(max_bytes)
    found = head.split(b"\n")
    complete = found if len(head) < max_bytes else found[:-1]
    return [line for line in complete if line.strip()][:lines]
