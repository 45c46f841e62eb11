"""Which provider trains with which method, and how the trainer reads datasets and settles "auto"."""

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.training.openweights.examples import dpo_lines, kto_lines, sft_lines, write_jsonl
from training.openweights.config import RunConfig, resolve
from training.openweights.data import DataError, kto_balance, read_rows
from training.providers import ProviderError, get_provider
from training.providers.openai import OpenAIProvider
from training.providers.openweights.artifacts import model_id_for
from training.providers.openweights.provider import trainer_options


def test_openai_refuses_kto_with_a_400_before_calling_openai() -> None:
    client = openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(ProviderError, match="kto") as raised:
        OpenAIProvider(client=client).create_job(training_file="file-1", model="gpt-4o-2024-08-06", method="kto")
    assert raised.value.status_code == 400
    assert raised.value.code == "unsupported_method"
    assert raised.value.details["supported_methods"] == ["dpo", "sft"]


def test_each_provider_declares_the_methods_it_trains_with() -> None:
    assert get_provider("openweights").supported_methods == {"sft", "dpo", "kto"}
    assert get_provider("openai").supported_methods == {"sft", "dpo"}
    assert get_provider("local").supported_methods == {"sft", "dpo"}
    get_provider("openai").ensure_method_supported("supervised")  # OpenAI's own name for sft


def test_the_trainer_reads_each_method_s_export_format(tmp_path: Path) -> None:
    sft = read_rows(write_jsonl(tmp_path / "sft.jsonl", sft_lines(2)), "sft")
    dpo = read_rows(write_jsonl(tmp_path / "dpo.jsonl", dpo_lines(2)), "dpo")
    kto = read_rows(write_jsonl(tmp_path / "kto.jsonl", kto_lines(4)), "kto")
    assert [m["role"] for m in sft[0]["messages"]] == ["system", "user", "assistant"]
    assert set(dpo[0]) == {"prompt", "chosen", "rejected"} and dpo[0]["chosen"][0]["role"] == "assistant"
    assert kto_balance(kto) == (2, 2)


def test_a_wrong_line_is_named_by_its_number(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "kto.jsonl", [*kto_lines(2), {"prompt": [], "completion": [], "label": "yes"}])
    with pytest.raises(DataError, match="line 3: label"):
        read_rows(path, "kto")


@pytest.mark.parametrize(
    ("examples", "method", "epochs", "batch"),
    [(10, "sft", 10, 1), (100, "sft", 3, 1), (20_000, "dpo", 1, 32), (10, "kto", 10, 2)],
)
def test_auto_hyperparameters_follow_the_dataset_size(examples: int, method: str, epochs: int, batch: int) -> None:
    resolved = resolve(RunConfig(base_model="m", method=method, train_file="t", output_dir="o"), examples)
    assert (resolved.n_epochs, resolved.batch_size) == (epochs, batch)


def test_job_hyperparameters_override_the_lora_settings(settings: Any) -> None:
    settings.OPENWEIGHTS_LORA_RANK = 8
    options = trainer_options({"lora_alpha": 64, "n_epochs": None, "seed": 7})
    assert options["lora"] == {"r": 8, "alpha": 64, "dropout": 0.05, "target_modules": "all-linear"}
    assert (options["n_epochs"], options["seed"]) == (3, 7)


def test_adapter_names_come_from_the_pool_and_the_version() -> None:
    assert model_id_for("Acme Corp", "v2.1.0") == "acme-corp--v2-1-0"
    assert model_id_for("global", "v1.0.0") == "global--v1-0-0"
