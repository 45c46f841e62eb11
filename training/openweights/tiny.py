"""A tiny random causal language model in Hugging Face format, built offline.

Tests, the benchmark and the GPU check need a base model, and nothing can be downloaded: this
trains a byte-level BPE tokenizer on a small corpus of sales messages, wraps it in
``PreTrainedTokenizerFast`` with the marked ChatML template, and saves a randomly initialised
Qwen2 model of the requested shape beside it.
"""

import argparse
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from training.openweights.template import CHATML_GENERATION_TEMPLATE, END_OF_TURN, PAD, SPECIAL_TOKENS

INDUSTRIES = ("SaaS", "Fintech", "Healthcare", "Retail", "Logistics", "Manufacturing")
ROLES = ("VP Sales", "CTO", "Head of Marketing", "CFO", "Founder")
OPENERS = ("Quick question", "Saw your news", "An idea for", "Following up", "Congrats on")
BODIES = (
    "teams like yours cut onboarding time in half with a short weekly review.",
    "we help {role}s in {industry} book more meetings without more headcount.",
    "would a 15 minute call next week be useful to compare notes?",
    "our customers in {industry} saw replies double within a month.",
)
SHAPES: dict[str, dict[str, Any]] = {
    "tiny": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    # vLLM's CPU attention takes head sizes of 32 and more (this one: 64 / 2).
    "tiny-vllm": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2},
    # Qwen2.5-0.5B's shape (about 494M parameters with its 151,936-entry tied embedding).
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "vocab_size": 151_936,
    },
}


def sales_corpus(count: int = 400, seed: int = 0) -> Iterator[str]:
    """Yield deterministic sales-like lines (prompts and messages) to train the tokenizer on."""
    rng = random.Random(seed)
    for _ in range(count):
        industry, role = rng.choice(INDUSTRIES), rng.choice(ROLES)
        yield f"Write a message for: Industry={industry}, Role={role}, Framework=PAS, Tone=professional"
        body = rng.choice(BODIES).format(role=role, industry=industry)
        yield f"Subject: {rng.choice(OPENERS)} {industry}\n\nHi there, {body}"


def build_tokenizer(vocab_size: int = 512) -> Any:
    """Train a byte-level BPE tokenizer on :func:`sales_corpus` and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(itertools.chain(sales_corpus(), SPECIAL_TOKENS), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=END_OF_TURN, pad_token=PAD)
    tokenizer.chat_template = CHATML_GENERATION_TEMPLATE
    return tokenizer


def build_model(
    directory: str | Path, *, shape: str = "tiny", seed: int = 0, vocab_size: int = 512, dtype: str = "float32"
) -> Path:
    """Save a random Qwen2 model of ``shape`` and its tokenizer into ``directory``; return it.

    A shape may give the embedding more rows than the small tokenizer has ids (the real model's
    vocabulary size, so that the embedding and the LM head cost what they cost there).
    """
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    target = Path(directory)
    tokenizer = build_tokenizer(vocab_size)
    dims = {"num_key_value_heads": max(1, SHAPES[shape]["num_attention_heads"] // 2), **SHAPES[shape]}
    dims["vocab_size"] = max(len(tokenizer), int(dims.get("vocab_size", 0)))
    config = Qwen2Config(
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        **dims,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).to(getattr(torch, dtype))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build a random base model for offline training tests.")
    parser.add_argument("directory")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args(argv)
    print(build_model(args.directory, shape=args.shape, seed=args.seed, dtype=args.dtype))


if __name__ == "__main__":
    main()
