"""Token counts are exact and work offline; cost estimates follow OpenAI's billing rules."""

import hashlib
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import tiktoken
import tiktoken.load
from tiktoken_ext import openai_public

from training.tokens import (
    ENCODING_FILES,
    CostEstimate,
    TokenTally,
    count_example_tokens,
    count_text_tokens,
    encoding_for,
    estimate_cost,
    price_per_million,
    resolve_epochs,
    seed_tiktoken_cache,
    token_limit_for,
)

GPT_4O = "gpt-4o-2024-08-06"
FIXED_STRINGS = [
    "hello world",
    "Hello, world!",
    "Subject: Quick question about {{company}}'s SDR hiring\n\nHi {{first_name}},\n\nWorth a 15-minute call?",
    "東京で会いましょう",
    "Grüße aus München — indefatigable salespeople 🚀",
    "",
]


@pytest.fixture
def no_downloads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any attempt by tiktoken to fetch an encoding file fail the test."""

    def refuse(blobpath: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", refuse)


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_downloads: None) -> Iterator[Path]:
    """Point tiktoken at a cache directory that does not exist yet."""
    cache_dir = tmp_path / "tiktoken-cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
    yield cache_dir


def cache_file(cache_dir: Path, encoding: str) -> Path:
    url, _ = ENCODING_FILES[encoding]
    return cache_dir / hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()


# --- Offline encodings ---------------------------------------------------------------------------


def test_it_seeds_an_empty_cache_with_openais_exact_encoding_files(empty_cache: Path) -> None:
    assert seed_tiktoken_cache() == empty_cache

    for name, (_, sha256) in ENCODING_FILES.items():
        assert hashlib.sha256(cache_file(empty_cache, name).read_bytes()).hexdigest() == sha256
    assert not list(empty_cache.glob("*.tmp"))


def test_a_fresh_encoding_loads_from_the_seeded_cache_with_no_network(empty_cache: Path) -> None:
    seed_tiktoken_cache()

    # Built from scratch through tiktoken's loader, which verifies the sha256 and would download
    # on a cache miss (the no_downloads fixture turns that into a failure).
    fresh = tiktoken.Encoding(**openai_public.o200k_base())

    for text in FIXED_STRINGS:
        assert count_text_tokens(text, GPT_4O) == len(fresh.encode(text))


def test_it_replaces_a_corrupt_cached_file(empty_cache: Path) -> None:
    empty_cache.mkdir()
    cache_file(empty_cache, "o200k_base").write_bytes(b"not an encoding")

    seed_tiktoken_cache()

    data = cache_file(empty_cache, "o200k_base").read_bytes()
    assert hashlib.sha256(data).hexdigest() == ENCODING_FILES["o200k_base"][1]


def test_without_a_configured_cache_it_uses_the_git_ignored_project_directory(
    monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path, no_downloads: None
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "placeholder")  # so that monkeypatch restores the variable
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    settings.BASE_DIR = tmp_path

    assert seed_tiktoken_cache() == tmp_path / ".tiktoken"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path / ".tiktoken")
    assert cache_file(tmp_path / ".tiktoken", "cl100k_base").exists()


@pytest.mark.parametrize("text", FIXED_STRINGS)
def test_text_counts_equal_tiktokens_own_o200k_encoding(text: str, no_downloads: None) -> None:
    assert count_text_tokens(text, GPT_4O) == len(tiktoken.get_encoding("o200k_base").encode(text))


@pytest.mark.parametrize(
    ("text", "model", "expected"),
    [
        ("hello world", GPT_4O, 2),
        ("Hello, world!", GPT_4O, 4),
        ("東京で会いましょう", GPT_4O, 6),
        ("東京で会いましょう", "gpt-4-0613", 11),  # cl100k_base splits Japanese far more finely
    ],
)
def test_text_counts_match_known_values(text: str, model: str, expected: int, no_downloads: None) -> None:
    assert count_text_tokens(text, model) == expected


def test_special_token_strings_are_counted_as_text_instead_of_raising(no_downloads: None) -> None:
    encoding = tiktoken.get_encoding("o200k_base")

    assert count_text_tokens("<|endoftext|>", GPT_4O) == len(encoding.encode_ordinary("<|endoftext|>"))


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        (GPT_4O, "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("gpt-4.1-2025-04-14", "o200k_base"),
        ("gpt-4.1-mini-2025-04-14", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("ft:gpt-4o-mini-2024-07-18:acme::9ABel2dg", "o200k_base"),
        ("gpt-4-0613", "cl100k_base"),
        ("gpt-3.5-turbo-0125", "cl100k_base"),
        ("an-open-weights-model", "o200k_base"),
    ],
)
def test_each_model_gets_its_familys_encoding(model: str, encoding: str, no_downloads: None) -> None:
    assert encoding_for(model).name == encoding


# --- Examples ------------------------------------------------------------------------------------


def test_a_chat_example_counts_3_per_message_its_values_1_per_name_and_3_for_the_reply() -> None:
    encoding = tiktoken.get_encoding("o200k_base")
    system, user, reply = "You write sales emails.", "hello world", "Hello, world!"
    example = {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": user, "name": "sam"},
            {"role": "assistant", "content": reply, "weight": 1},
        ]
    }
    values = ["system", system, "user", user, "sam", "assistant", reply]

    expected = 3 * 3 + sum(len(encoding.encode(value)) for value in values) + 1 + 3
    assert count_example_tokens(example, GPT_4O) == expected


def test_a_preference_example_counts_the_input_and_the_longer_output() -> None:
    encoding = tiktoken.get_encoding("o200k_base")
    short, long = "Hi.", "Hi Sam, here is a much longer and more detailed reply."
    example = {
        "input": {"messages": [{"role": "user", "content": "hello world"}]},
        "preferred_output": [{"role": "assistant", "content": short}],
        "non_preferred_output": [{"role": "assistant", "content": long}],
    }

    prompt = 3 + len(encoding.encode("user")) + len(encoding.encode("hello world"))
    longer = 3 + len(encoding.encode("assistant")) + len(encoding.encode(long))
    assert count_example_tokens(example, GPT_4O) == prompt + longer + 3


@pytest.mark.parametrize(
    ("model", "limit"),
    [
        (GPT_4O, 65_536),
        ("gpt-4o-mini-2024-07-18", 65_536),
        ("gpt-4.1-mini-2025-04-14", 65_536),
        ("ft:gpt-4o-2024-08-06:acme::abc", 65_536),
        ("gpt-3.5-turbo-0125", 16_385),
        ("gpt-4-0613", 8_192),
        ("an-open-weights-model", 65_536),
    ],
)
def test_each_model_family_has_its_training_example_limit(model: str, limit: int) -> None:
    assert token_limit_for(model) == limit


# --- Cost ----------------------------------------------------------------------------------------


def test_cost_is_billed_tokens_times_epochs_at_the_models_price() -> None:
    estimate = estimate_cost([1_000] * 100, model=GPT_4O, n_epochs=3)

    assert estimate == CostEstimate(
        n_examples=100,
        total_tokens=100_000,
        billed_tokens_per_epoch=100_000,
        n_epochs=3,
        billed_tokens=300_000,
        price_per_million=Decimal("25.0"),
        estimated_cost=Decimal("7.5000"),
    )


def test_tokens_beyond_the_example_limit_are_not_billed() -> None:
    estimate = estimate_cost([70_000, 10], model=GPT_4O, n_epochs=1)

    assert estimate.total_tokens == 70_010
    assert estimate.billed_tokens == 65_536 + 10


def test_the_cost_is_rounded_half_up_to_a_hundredth_of_a_cent() -> None:
    estimate = estimate_cost([2], model=GPT_4O, n_epochs=3)  # 6 tokens x $25/1M = $0.00015

    assert estimate.estimated_cost == Decimal("0.0002")


@pytest.mark.parametrize(
    ("n_examples", "epochs"),
    [
        (3, 25),  # 100 / 3 rounds up to 34, capped at 25
        (10, 10),
        (30, 4),  # 90 < 100, so 4 epochs reach 120
        (34, 3),  # 102 already reaches 100
        (100, 3),
        (8_333, 3),  # 24,999 stays under 25,000
        (8_334, 2),  # 25,002 is over, so 25,000 // 8,334
        (10_000, 2),
        (30_000, 1),  # 25,000 // 30,000 is 0, floored at 1
    ],
)
def test_auto_epochs_keep_examples_times_epochs_between_100_and_25000(n_examples: int, epochs: int) -> None:
    assert resolve_epochs(n_examples, "auto") == epochs


def test_auto_epochs_are_used_in_the_estimate() -> None:
    estimate = estimate_cost([100] * 10, model=GPT_4O, n_epochs="auto")

    assert estimate.n_epochs == 10
    assert estimate.billed_tokens == 10_000


@pytest.mark.parametrize("n_epochs", [0, 51])
def test_it_refuses_an_epoch_count_the_provider_refuses(n_epochs: int) -> None:
    with pytest.raises(ValueError, match="n_epochs"):
        resolve_epochs(100, n_epochs)


@pytest.mark.parametrize(
    ("model", "price"),
    [
        (GPT_4O, "25.0"),
        ("gpt-4o-mini-2024-07-18", "3.0"),
        ("gpt-4o-mini", "3.0"),  # the undated family name finds its snapshot
        ("ft:gpt-4o-mini-2024-07-18:acme::abc", "3.0"),  # fine-tunes are priced by their base
        ("gpt-4.1-mini-2025-04-14", "5.0"),
        ("an-open-weights-model", "25.0"),  # unknown models get the gpt-4o price
    ],
)
def test_prices_come_from_settings(model: str, price: str) -> None:
    assert price_per_million(model) == Decimal(price)


def test_unknown_models_follow_the_configured_gpt_4o_price(settings: Any) -> None:
    settings.TRAINING_PRICES_PER_MILLION = {"gpt-4o": 30.0}

    assert price_per_million("an-open-weights-model") == Decimal("30.0")


# --- Streaming tally -----------------------------------------------------------------------------


def test_a_tally_accumulates_counts_while_a_dataset_streams() -> None:
    tally = TokenTally("gpt-4-0613")  # an 8,192-token limit keeps the long example cheap to build
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello world"}]}
    long = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello " * 9_000}]}

    counts = [tally.add(short, position=1), tally.add(long, position=2), tally.add(short, position=3)]

    assert tally.n_examples == 3
    assert tally.total_tokens == sum(counts)
    assert (tally.min_tokens, tally.max_tokens) == (counts[0], counts[1])
    assert tally.mean_tokens == sum(counts) / 3
    assert tally.over_limit == [2]
    assert tally.billed_tokens_per_epoch == counts[0] * 2 + 8_192
    assert tally.estimate(n_epochs="auto") == estimate_cost(counts, model="gpt-4-0613", n_epochs="auto")


def test_a_cost_estimate_serialises_its_decimals_as_strings() -> None:
    data = estimate_cost([1_000], model=GPT_4O, n_epochs=1).as_dict()

    assert data["estimated_cost"] == "0.0250"
    assert data["price_per_million"] == "25.0"
