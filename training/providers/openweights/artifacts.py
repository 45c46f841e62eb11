"""Datasets and adapters in shared storage (Django's storage API), and what names them.

Under ``OPENWEIGHTS_ARTIFACTS_ROOT`` in the ``OPENWEIGHTS_STORAGE`` storage: uploaded datasets as
``datasets/<file id>.jsonl`` (the id is the content's sha256, so an upload is idempotent) and each
adapter as ``adapters/<pool>/<version>/`` with ``adapter_config.json``,
``adapter_model.safetensors`` and a ``manifest.json`` (base model, its config hash, sha256). The
adapter's name, ``<pool>--<version>``, is the ``model_id`` the registry and vLLM know it by.
"""

import hashlib
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from rest_framework import status

from training.openweights.files import ADAPTER_FILES
from training.providers.base import FileInfo, ProviderError

MANIFEST = "manifest.json"
SEPARATOR = "--"


def storage() -> Storage:
    return storages[str(getattr(settings, "OPENWEIGHTS_STORAGE", "default"))]


def root() -> str:
    return str(getattr(settings, "OPENWEIGHTS_ARTIFACTS_ROOT", "openweights")).strip("/")


def cache_dir() -> Path:
    """``OPENWEIGHTS_CACHE_DIR``, or ``MEDIA_ROOT/openweights/cache``: local copies of adapters."""
    configured = str(getattr(settings, "OPENWEIGHTS_CACHE_DIR", "") or "")
    return Path(configured) if configured else Path(str(settings.MEDIA_ROOT)) / "openweights" / "cache"


def slug(value: str) -> str:
    """Lowercase letters and digits joined by single dashes (so ``--`` never occurs inside)."""
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-") or "x"


def model_id_for(pool: str, version: str) -> str:
    """The adapter's stable name: ``acme--v1-2-0`` for pool "acme", version "v1.2.0"."""
    return f"{slug(pool)}{SEPARATOR}{slug(version)}"


def adapter_prefix(model_id: str) -> str:
    """Where the adapter ``model_id`` lives in storage; a 404-class error for a foreign name."""
    pool, _, version = model_id.partition(SEPARATOR)
    if not version or slug(pool) != pool or slug(version) != version:
        raise ProviderError(
            f"{model_id!r} is not an open-weights adapter name (<pool>--<version>).",
            code="model_not_found",
            status_code=status.HTTP_404_NOT_FOUND,
        )
    return f"{root()}/adapters/{pool}/{version}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def replace(name: str, content: bytes) -> None:
    """Write ``content`` at exactly ``name`` (a storage renames rather than overwrite)."""
    store = storage()
    if store.exists(name):
        store.delete(name)
    store.save(name, ContentFile(content))


def dataset_name(file_id: str) -> str:
    return f"{root()}/datasets/{file_id}.jsonl"


def dataset_store(path: str | Path, name: str | None = None) -> str:
    """Keep a dataset file in storage and return its id.

    The id is ``file-`` and the sha256 of ``name`` when one is given (so ``dataset_find`` finds
    it again), else of the content: either way a repeated upload lands on the same file.
    """
    source = Path(path)
    try:
        content = source.read_bytes()
    except OSError as exc:
        raise ProviderError(f"Cannot read training file {source}: {exc}", code="file_unreadable") from exc
    digest = hashlib.sha256(name.encode() if name else content).hexdigest()
    file_id = f"file-{digest}"
    replace(dataset_name(file_id), content)
    return file_id


def dataset_find(name: str) -> FileInfo | None:
    """The dataset uploaded under ``name``, or None."""
    file_id = f"file-{hashlib.sha256(name.encode()).hexdigest()}"
    if not storage().exists(dataset_name(file_id)):
        return None
    try:
        created: int | None = int(storage().get_created_time(dataset_name(file_id)).timestamp())
    except NotImplementedError:
        created = None
    return FileInfo(id=file_id, name=name, created_at=created)


def dataset_delete(file_id: str) -> None:
    """Delete the dataset; one already gone is not an error."""
    if re.fullmatch(r"file-[0-9a-f]{64}", file_id) and storage().exists(dataset_name(file_id)):
        storage().delete(dataset_name(file_id))


def dataset_fetch(file_id: str, target: Path) -> Path:
    """Copy the dataset ``file_id`` from storage to ``target`` (on the machine that trains)."""
    if not re.fullmatch(r"file-[0-9a-f]{64}", file_id):
        raise ProviderError(f"{file_id!r} is not an open-weights file id.", code="file_not_found")
    target.parent.mkdir(parents=True, exist_ok=True)
    with storage().open(dataset_name(file_id), "rb") as source, target.open("wb") as sink:
        shutil.copyfileobj(source, sink)
    return target


def adapter_store(adapter_dir: Path, model_id: str, manifest: Mapping[str, Any]) -> dict[str, Any]:
    """Store the adapter's files and manifest under its prefix; return the manifest with sha256."""
    prefix = adapter_prefix(model_id)
    for filename in ADAPTER_FILES:
        replace(f"{prefix}/{filename}", (adapter_dir / filename).read_bytes())
    stored = {**manifest, "model_id": model_id, "sha256": sha256_file(adapter_dir / ADAPTER_FILES[1])}
    replace(f"{prefix}/{MANIFEST}", orjson.dumps(stored, option=orjson.OPT_INDENT_2))
    return stored


def adapter_manifest(model_id: str) -> dict[str, Any]:
    """The stored adapter's manifest; a 404-class error when there is no such adapter."""
    name = f"{adapter_prefix(model_id)}/{MANIFEST}"
    if not storage().exists(name):
        raise ProviderError(
            f"No open-weights adapter {model_id!r}.", code="model_not_found", status_code=status.HTTP_404_NOT_FOUND
        )
    with storage().open(name, "rb") as handle:
        data = orjson.loads(handle.read())
    return data if isinstance(data, dict) else {}


def adapter_local_dir(model_id: str) -> Path:
    """A local directory holding the adapter: the storage's own when it has paths, else a copy."""
    prefix = adapter_prefix(model_id)
    manifest = adapter_manifest(model_id)
    try:
        return Path(storage().path(prefix))
    except NotImplementedError:
        pass
    target = cache_dir() / model_id
    weights = target / ADAPTER_FILES[1]
    if not weights.exists() or sha256_file(weights) != manifest.get("sha256"):
        target.mkdir(parents=True, exist_ok=True)
        for filename in ADAPTER_FILES:
            with storage().open(f"{prefix}/{filename}", "rb") as source, (target / filename).open("wb") as sink:
                shutil.copyfileobj(source, sink)
    return target
