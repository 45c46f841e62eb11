"""Fixtures for the open-weights tests: a tiny random base model, built once per session, offline.

Every test here is marked ``openweights`` (select them with ``-m openweights``); they run in the
normal suite too. Nothing may be downloaded: the hub is switched off before transformers loads.
"""

import os
from pathlib import Path
from typing import Any

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A two-layer model is fastest on one thread; several spin against each other on a busy machine.
os.environ["OMP_NUM_THREADS"] = "1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "openweights: the open-weights trainer and provider (torch, TRL, PEFT)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.openweights)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random two-layer Qwen2 model (hidden size 32) with a byte-level BPE tokenizer."""
    import torch

    from training.openweights.tiny import build_model

    torch.set_num_threads(1)

    return build_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def openweights(settings: Any, tiny_model: Path, tmp_path: Path) -> Any:
    """Settings for the openweights provider on the tiny model, jobs in this test's directory."""
    settings.OPENWEIGHTS_BASE_MODEL = str(tiny_model)
    settings.OPENWEIGHTS_BASE_MODEL_NAME = "tiny-qwen2"
    settings.OPENWEIGHTS_JOBS_DIR = str(tmp_path / "jobs")
    settings.OPENWEIGHTS_SERVING_URL = ""
    settings.OPENWEIGHTS_HEARTBEAT_SECONDS = 0.2
    settings.OPENWEIGHTS_HEARTBEAT_TIMEOUT = 30
    settings.OPENWEIGHTS_CANCEL_GRACE = 2
    settings.OPENWEIGHTS_MAX_NEW_TOKENS = 8
    return settings
