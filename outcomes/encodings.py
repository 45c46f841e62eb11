"""The tokenizers behind every exact token count, loaded offline: tiktoken's encodings by model.

Counts use the model's own BPE encoding through tiktoken, whose encoding files are seeded from
the pinned ``bpe-openai`` package (:func:`seed_tiktoken_cache`) because the project runs without
a network. Outcome labels store the token count of their training text when they are written,
so the encodings live here, below the training app that prices whole datasets.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import tempfile
import threading
from contextlib import suppress
from functools import cache, lru_cache
from pathlib import Path

import tiktoken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# tiktoken's own URLs and sha256 digests (tiktoken_ext/openai_public.py): the cache key is
# sha1(url) and the digest is what tiktoken verifies when it reads the cached file.
ENCODING_FILES: dict[str, tuple[str, str]] = {
    "o200k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}
DEFAULT_ENCODING = "o200k_base"
# The encoding a label's stored training-text token count is counted in (today's models use it).
STORED_ENCODING = "o200k_base"
# Checked in order, so the gpt-4o / gpt-4.1 prefixes win over the bare "gpt-4" below them.
_O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5", "gpt-35")

_seed_lock = threading.Lock()
_seeded_dirs: set[Path] = set()


# --- Offline encodings ---------------------------------------------------------------------------


def seed_tiktoken_cache() -> Path:
    """Put the encodings shipped in ``bpe-openai`` into tiktoken's cache and return the cache dir.

    Honours ``TIKTOKEN_CACHE_DIR`` when the user set it; otherwise uses ``<BASE_DIR>/.tiktoken``
    (git-ignored) and sets the variable so tiktoken reads from there. Runs once per directory and
    process; files are written to a temporary name and renamed, so concurrent workers never see a
    half-written file.
    """
    cache_dir = _cache_dir()
    with _seed_lock:
        if cache_dir not in _seeded_dirs:
            for name in ENCODING_FILES:
                _seed_file(cache_dir, name)
            _seeded_dirs.add(cache_dir)
    return cache_dir


def _cache_dir() -> Path:
    """The directory tiktoken will read, choosing and exporting the default when none is set.

    An empty ``TIKTOKEN_CACHE_DIR`` means "no cache" to tiktoken, which would force a download on
    every load; with no network that can only fail, so it is treated like an unset variable.
    """
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    default = Path(settings.BASE_DIR) / ".tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(default)
    return default


def _seed_file(cache_dir: Path, name: str) -> None:
    """Write one decompressed encoding file under tiktoken's cache key unless a good copy exists."""
    url, expected_sha256 = ENCODING_FILES[name]
    target = cache_dir / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()
    if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == expected_sha256:
        return
    data = gzip.decompress(_packaged_encoding_file(name).read_bytes())
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        # tiktoken would discard the file and try the network; fail here with the real reason.
        raise ImproperlyConfigured(f"bpe-openai's {name} file is not OpenAI's published encoding.")
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=cache_dir, prefix=f"{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
        os.chmod(tmp_name, 0o644)  # mkstemp makes 0600; workers running as other users must read it
        os.replace(tmp_name, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _packaged_encoding_file(name: str) -> Path:
    """The gzipped encoding file inside the installed ``bpe-openai`` package.

    Found through the import spec so the package is never imported: importing it builds its own
    tokenizers, which takes seconds and tens of megabytes that we do not need.
    """
    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise ImproperlyConfigured("The bpe-openai package (see requirements.txt) is not installed.")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"


@cache
def encoding_named(name: str) -> tiktoken.Encoding:
    seed_tiktoken_cache()
    return tiktoken.get_encoding(name)


def base_model(model: str) -> str:
    """The base model a name refers to, lower-cased: ``ft:gpt-4o-mini-...:org::id`` → ``gpt-4o-mini-...``."""
    name = model.strip().lower()
    if name.startswith("ft:"):
        name = name.split(":")[1]
    return name


def encoding_name_for(model: str) -> str:
    """The tiktoken encoding a model uses; unknown models get o200k_base, today's default."""
    name = base_model(model)
    if name.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if name.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return DEFAULT_ENCODING


@lru_cache(maxsize=128)
def encoding_for(model: str) -> tiktoken.Encoding:
    """The model's tiktoken encoding, loaded offline from the seeded cache."""
    return encoding_named(encoding_name_for(model))
