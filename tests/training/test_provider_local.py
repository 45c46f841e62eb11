"""The local provider: the offline lifecycle and the exemplar (retrieval) model it builds."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from training.providers import FineTuningProvider, ProviderError, get_provider
from training.providers.local import LocalProvider
from training.providers.openai import OpenAIProvider
from training.tokens import count_example_tokens

BASE_MODEL = "gpt-4o-mini-2024-07-18"
SYSTEM = "You are an expert B2B sales copywriter."


def prompt(industry: str, role: str, framework: str = "PAS", tone: str = "professional") -> str:
    return f"Write a message for: Industry={industry}, Role={role}, Framework={framework}, Tone={tone}..."


def sft(user: str, assistant: str, quality: float | None = None) -> dict[str, Any]:
    example: dict[str, Any] = {
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant},
        ]
    }
    if quality is not None:
        example["metadata"] = {"outcome_id": "x", "quality_score": quality, "deal_value": None}
    return example


EXAMPLES = [
    sft(prompt("SaaS", "VP Sales"), "SaaS VP PAS good", 0.7),
    sft(prompt("SaaS", "VP Sales"), "SaaS VP PAS best", 0.95),
    sft(prompt("SaaS", "VP Sales", "AIDA", "casual"), "SaaS VP AIDA", 0.8),
    sft(prompt("SaaS", "CTO"), "SaaS CTO", 0.99),
    sft(prompt("Fintech", "CFO"), "Fintech CFO", 1.0),
    sft("Write something nice about our product.", "Unformatted", 0.6),
]


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def provider() -> LocalProvider:
    built = get_provider("local")
    assert isinstance(built, LocalProvider)
    return built


def start_job(provider: LocalProvider, path: Path, **overrides: Any) -> str:
    arguments: dict[str, Any] = {
        "training_file": provider.upload_training_file(path),
        "model": BASE_MODEL,
        "suffix": "rekindle-v2-1-0",
        "method": "sft",
        "hyperparameters": None,
        "metadata": {"run_id": "run-1", "organization": None},
    }
    arguments.update(overrides)
    return provider.create_job(**arguments)


@pytest.fixture
def trained_model(provider: LocalProvider, tmp_path: Path) -> str:
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES))
    model_id = [provider.get_job(job_id) for _ in range(3)][-1].fine_tuned_model
    assert model_id is not None
    return model_id


# --- choosing a provider ---------------------------------------------------------------------------


def test_the_local_provider_is_the_default(settings: Any) -> None:
    del settings.FINE_TUNING_PROVIDER
    assert isinstance(get_provider(), LocalProvider)


def test_the_setting_chooses_the_provider_by_name_or_dotted_path(settings: Any) -> None:
    settings.FINE_TUNING_PROVIDER = "openai"
    assert isinstance(get_provider(), OpenAIProvider)
    settings.FINE_TUNING_PROVIDER = "training.providers.local.LocalProvider"
    assert isinstance(get_provider(), LocalProvider)
    assert get_provider("openai").name == "openai"


@pytest.mark.parametrize("name", ["nope", "training.providers.local.Missing", "training.tokens.count_example_tokens"])
def test_an_unknown_provider_is_a_configuration_error(name: str) -> None:
    with pytest.raises(ImproperlyConfigured):
        get_provider(name)


# --- the lifecycle -----------------------------------------------------------------------------


def test_a_job_advances_one_state_per_poll_to_succeeded(provider: LocalProvider, tmp_path: Path) -> None:
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES))

    polls = [provider.get_job(job_id) for _ in range(4)]

    assert [info.status for info in polls] == ["queued", "running", "succeeded", "succeeded"]
    assert polls[1].estimated_finish is not None
    done = polls[-1]
    assert done.model == BASE_MODEL
    assert done.fine_tuned_model == f"ft:{BASE_MODEL}:local:rekindle-v2-1-0:{job_id.removeprefix('ftjob-')[:8]}"
    assert done.finished_at is not None and done.created_at is not None
    assert done.error is None and done.estimated_finish is None


def test_it_records_events_and_the_tokens_it_read_once_and_claims_no_loss(
    provider: LocalProvider, tmp_path: Path
) -> None:
    lines = EXAMPLES * 10  # 60 examples: "auto" would mean 3 epochs, but a retrieval model reads them once
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", lines))
    for _ in range(3):
        provider.get_job(job_id)

    info = provider.get_job(job_id)
    events = [event.message for event in provider.list_events(job_id)]

    assert info.trained_tokens == sum(count_example_tokens(line, BASE_MODEL) for line in lines)
    assert events[0] == f"Created fine-tuning job: {job_id}"
    assert "Training file validated: 60 examples. Job queued." in events
    assert "Fine-tuning job started" in events
    assert events[-2:] == [
        f"New fine-tuned model created: {info.fine_tuned_model}",
        "The job has successfully completed",
    ]
    assert provider.list_checkpoints(job_id) == []
    assert not any("loss=" in event for event in events)
    assert not any("loss" in name or "accuracy" in name for name in provider.job_metrics(job_id))
    assert provider.reports_loss is False


def test_it_measures_segments_and_exemplars_per_segment_on_a_known_dataset(
    provider: LocalProvider, trained_model: str
) -> None:
    (job_id,) = [path.stem for path in (Path(provider.root) / "jobs").glob("*.json")]

    metrics = provider.job_metrics(job_id)

    # Finest segments: SaaS/VP Sales/PAS (2 texts), SaaS/VP Sales/AIDA, SaaS/CTO, Fintech/CFO (1 each), and the
    # unformatted prompt's, the whole pool (5 of its 6 texts, the cap).
    assert metrics == {
        "training_examples": 6,
        "segments": 5,
        "exemplars_per_segment_min": 1,
        "exemplars_per_segment_mean": 2.0,
        "exemplars_per_segment_max": 5,
    }
    assert "Exemplar model built from 6 examples: 5 segments, 1 to 5 exemplars each (mean 2.0)." in " ".join(
        event.message for event in provider.list_events(job_id)
    )


def test_it_measures_the_segment_coverage_of_the_validation_prompts(provider: LocalProvider, tmp_path: Path) -> None:
    validation = [
        sft(prompt("SaaS", "VP Sales"), "held out 1"),  # its own segment was trained
        sft(prompt("Fintech", "CFO"), "held out 2"),  # trained
        sft(prompt("Healthcare", "CEO"), "held out 3"),  # unseen industry: only the whole pool answers
        sft(prompt("Fintech", "CFO", "AIDA", "casual"), "held out 4"),  # backs off to Fintech/CFO
    ]
    validation_file = provider.upload_training_file(write_jsonl(tmp_path / "valid.jsonl", validation))
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES), validation_file=validation_file)
    for _ in range(3):
        provider.get_job(job_id)

    metrics = provider.job_metrics(job_id)

    assert metrics["validation_prompts"] == 4
    assert metrics["validation_prompts_in_trained_segment"] == 2
    assert metrics["validation_segment_coverage"] == 0.5
    assert "Validation: 2 of 4 prompts fall in a segment seen in training (coverage 0.5)." in [
        event.message for event in provider.list_events(job_id)
    ]


def test_jobs_live_on_disk_and_survive_a_new_provider(provider: LocalProvider, tmp_path: Path, settings: Any) -> None:
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES))

    assert LocalProvider().get_job(job_id).status == "queued"
    assert LocalProvider().get_job(job_id).status == "running"

    store = Path(settings.MEDIA_ROOT) / "local_provider"
    assert (store / "jobs" / f"{job_id}.json").exists()
    assert not list(store.rglob("*.tmp"))


def test_a_file_that_is_not_jsonl_fails_the_job(provider: LocalProvider, tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text(json.dumps(EXAMPLES[0]) + "\n{not json\n", encoding="utf-8")
    job_id = start_job(provider, path)

    info = provider.get_job(job_id)

    assert info.status == "failed"
    assert (
        info.error
        == "Invalid training file: line 2 is not valid JSON (Expecting property name enclosed in double quotes)."
    )
    assert info.finished_at is not None
    assert provider.list_events(job_id)[-1].level == "error"
    assert provider.get_job(job_id).status == "failed"


@pytest.mark.parametrize(
    ("lines", "problem"),
    [
        ([], "it holds no examples"),
        ([["a list"]], "line 1 is not a JSON object"),
        ([{"messages": [{"role": "user", "content": "hi"}]}], "line 1 has no assistant message"),
    ],
)
def test_a_file_without_usable_examples_fails_the_job(
    provider: LocalProvider, tmp_path: Path, lines: list[Any], problem: str
) -> None:
    job_id = start_job(provider, write_jsonl(tmp_path / "bad.jsonl", lines))

    info = provider.get_job(job_id)

    assert info.status == "failed"
    assert problem in (info.error or "")


def test_create_job_refuses_an_unknown_file(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="no file 'file-missing'") as caught:
        provider.create_job(training_file="file-missing", model=BASE_MODEL)
    assert caught.value.status_code == 404


def test_an_unknown_job_is_a_provider_error(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="no job"):
        provider.get_job("ftjob-nope")


def test_cancel_stops_a_running_job_and_leaves_an_ended_one_alone(provider: LocalProvider, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", EXAMPLES)
    running = start_job(provider, path)
    provider.get_job(running)
    provider.get_job(running)
    finished = start_job(provider, path)
    for _ in range(3):
        provider.get_job(finished)

    assert provider.cancel_job(running).status == "cancelled"
    assert provider.get_job(running).status == "cancelled"
    assert provider.list_events(running)[-1].message == "Fine-tuning job cancelled"
    assert provider.cancel_job(finished).status == "succeeded"


def test_the_base_model_has_no_shutdown_date(provider: LocalProvider) -> None:
    assert provider.base_model_shutdown_date(BASE_MODEL) is None
    provider.check_base_model(BASE_MODEL)


# --- the exemplar model ------------------------------------------------------------------------------


def test_complete_returns_the_best_exemplar_for_the_segment(provider: LocalProvider, trained_model: str) -> None:
    assert provider.complete(trained_model, SYSTEM, prompt("SaaS", "VP Sales")) == "SaaS VP PAS best"
    assert provider.complete(trained_model, SYSTEM, prompt("saas", "vp  sales", "AIDA", "Casual")) == "SaaS VP AIDA"


@pytest.mark.parametrize(
    ("user_prompt", "expected"),
    [
        pytest.param(prompt("SaaS", "VP Sales", "BAB"), "SaaS VP PAS best", id="industry and role"),
        pytest.param(prompt("SaaS", "CMO"), "SaaS CTO", id="industry"),
        pytest.param("Write a message for: Industry=SaaS", "SaaS CTO", id="industry only"),
        pytest.param(prompt("Healthcare", "COO"), "Fintech CFO", id="whole pool"),
        pytest.param("Say hello to a prospect.", "Fintech CFO", id="no segment format"),
    ],
)
def test_complete_backs_off_to_coarser_segments(
    provider: LocalProvider, trained_model: str, user_prompt: str, expected: str
) -> None:
    assert provider.complete(trained_model, SYSTEM, user_prompt) == expected


def test_without_quality_scores_file_order_decides(provider: LocalProvider, tmp_path: Path) -> None:
    lines = [sft(prompt("SaaS", "CTO"), "first"), sft(prompt("SaaS", "CTO"), "second")]
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", lines))
    model_id = [provider.get_job(job_id) for _ in range(3)][-1].fine_tuned_model
    assert model_id is not None

    assert provider.complete(model_id, SYSTEM, prompt("SaaS", "CTO")) == "first"


def test_a_dpo_job_learns_the_preferred_output(provider: LocalProvider, tmp_path: Path) -> None:
    pair = {
        "input": {
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt("SaaS", "CTO")}]
        },
        "preferred_output": [{"role": "assistant", "content": "the one that booked a meeting"}],
        "non_preferred_output": [{"role": "assistant", "content": "the one that bounced"}],
    }
    job_id = start_job(provider, write_jsonl(tmp_path / "dpo.jsonl", [pair]), method="dpo")
    info = [provider.get_job(job_id) for _ in range(3)][-1]
    assert info.status == "succeeded" and info.fine_tuned_model is not None

    assert provider.complete(info.fine_tuned_model, SYSTEM, prompt("SaaS", "CTO")) == "the one that booked a meeting"


def test_an_sft_file_fails_a_dpo_job(provider: LocalProvider, tmp_path: Path) -> None:
    job_id = start_job(provider, write_jsonl(tmp_path / "train.jsonl", EXAMPLES), method="dpo")

    assert provider.get_job(job_id).error == "Invalid training file: line 1 has no input.messages."


def test_complete_refuses_an_unknown_model(provider: LocalProvider) -> None:
    with pytest.raises(ProviderError, match="no model") as caught:
        provider.complete("ft:gpt-4o:local:nothing:1234", SYSTEM, "Hi")
    assert caught.value.code == "model_not_found"


def test_every_provider_speaks_the_same_interface() -> None:
    for name in ("local", "openai"):
        assert isinstance(get_provider(name), FineTuningProvider)


def test_uploading_a_missing_file_is_a_provider_error(provider: LocalProvider, tmp_path: Path) -> None:
    with pytest.raises(ProviderError, match="Cannot read training file") as caught:
        provider.upload_training_file(tmp_path / "missing.jsonl")
    assert caught.value.code == "file_unreadable"


# --- finding what was made before ------------------------------------------------------------------


def test_a_file_uploaded_twice_under_one_name_is_stored_once(provider: LocalProvider, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", EXAMPLES)
    first = provider.upload_training_file(path, name="flywheel-run-1-train.jsonl")
    assert provider.upload_training_file(path, name="flywheel-run-1-train.jsonl") == first
    assert len(list((provider.root / "files").glob("*.jsonl"))) == 1
    (found,) = provider.find_files(name="flywheel-run-1-train.jsonl")
    assert (found.id, found.name) == (first, "flywheel-run-1-train.jsonl")
    assert provider.find_files(name="flywheel-run-2-train.jsonl") == []
    provider.delete_file(first)
    provider.delete_file(first)  # already gone: not an error
    assert provider.find_files(name="flywheel-run-1-train.jsonl") == []


def test_find_jobs_returns_the_runs_jobs_oldest_first(provider: LocalProvider, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", EXAMPLES)
    ours = [start_job(provider, path, metadata={"training_run_id": "run-1"}) for _ in range(3)]
    start_job(provider, path, metadata={"training_run_id": "run-2"})
    assert [job.id for job in provider.find_jobs(run_id="run-1")] == ours
    assert provider.find_jobs(run_id="run-3") == []
