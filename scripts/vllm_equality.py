"""Deploy a trained open-weights model into a vLLM server and compare its answers with PEFT's.

Usage (from the project's root, with the run already trained and registered; see ``.ci/vllm``)::

    OPENWEIGHTS_SERVING_URL=http://127.0.0.1:PORT/v1 FLYWHEEL_API_KEY=<the organization's key> \
        .venv/bin/python scripts/vllm_equality.py --organization demo --prompts 3

The organization's newest ready ``openweights`` model is deployed through Flywheel's deploy
service, which loads its adapter into the server; a second load of the same adapter must count as
success, and ``GET /api/route`` must name the adapter and the server. Then, for each prompt, a
greedy chat completion with the official ``openai`` client where the route says (vLLM returning
token ids and log-probabilities) is compared with greedy decoding of the same messages by
transformers + PEFT in this process: the prompt's token ids (so the chat template is the same on
both sides), the generated token ids and text, each step's log-probabilities of the chosen token
and of vLLM's top ``TOP_LOGPROBS`` alternatives (within ``LOGPROB_TOLERANCE``), and the text the
provider's ``complete()`` returns through either path. The base model's own answer from the same
server shows that the adapter was applied: it must differ in tokens or move the
log-probabilities by more than ``ADAPTER_EFFECT``. Prints both sides' ids and PASS or FAIL;
exits 1 on any difference.
"""

import argparse
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# float32 on both sides: the same tokens, and log-probabilities within this of each other.
LOGPROB_TOLERANCE = 1e-3
# The adapter must move the served log-probabilities by more than this (or change the tokens).
ADAPTER_EFFECT = 1e-2
TOP_LOGPROBS = 5
USER_PROMPTS = (
    "Write a message for: Industry=SaaS, Role=CTO, Framework=PAS, Tone=professional",
    "Write a message for: Industry=Fintech, Role=CFO, Framework=AIDA, Tone=friendly",
    "Write a message for: Industry=Logistics, Role=Founder, Framework=BAB, Tone=direct",
)


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flywheel.settings")
    import django

    django.setup()


def newest_model(organization: str) -> Any:
    """The organization's newest ready model trained on ``openweights``."""
    from registry.models import RegisteredModel

    model = (
        RegisteredModel.objects.filter(organization__slug=organization, provider="openweights")
        .filter(status=RegisteredModel.Status.READY)
        .order_by("-created_at")
        .first()
    )
    if model is None:
        raise SystemExit(f"FAIL: {organization} has no ready openweights model to deploy.")
    return model


def deploy(model: Any) -> None:
    """Deploy through the registry's service; the adapter must then be loaded, and a reload succeed."""
    from registry.services import model_deploy
    from training.providers import get_provider
    from training.providers.openweights.provider import OpenWeightsProvider

    model_deploy(model=model, traffic_percentage=100.0, actor=None, reason="CI: serve the adapter with vLLM")
    provider = get_provider("openweights")
    assert isinstance(provider, OpenWeightsProvider)
    served = provider.serving_server().loaded()
    print(f"deployed {model.model_version} as {model.model_id}; the server answers to {sorted(served)}")
    if model.model_id not in served:
        raise SystemExit("FAIL: deploying the model did not load its adapter into the vLLM server.")
    provider.load_adapter(model.model_id)  # the server answers 400 to this second load: still a success
    print("a second load of the same adapter counted as success")


def route(api_key: str) -> tuple[str, str]:
    """What ``GET /api/route`` tells an agent: the model's name and the base URL to call."""
    from django.test import Client

    answer = Client(SERVER_NAME="localhost").get(
        "/api/route", {"lead": "ci-lead"}, HTTP_AUTHORIZATION=f"Api-Key {api_key}"
    )
    if answer.status_code != 200:
        raise SystemExit(f"FAIL: /api/route answered {answer.status_code}: {answer.content[:300]!r}")
    data = answer.json()
    print(f"/api/route: model {data['model']!r} at {data['base_url']!r}")
    return str(data["model"]), str(data["base_url"])


@dataclass(frozen=True)
class Answer:
    """One greedy answer: prompt and generated token ids, text, each step's log-probabilities.

    ``alternatives`` maps token ids to their log-probability at each step: vLLM's top
    ``TOP_LOGPROBS``, or the whole vocabulary in-process.
    """

    prompt: list[int]
    ids: list[int]
    text: str
    logprobs: list[float]
    alternatives: list[dict[int, float]]


def served(base_url: str, model: str, messages: list[dict[str, str]], max_tokens: int) -> Answer:
    """A greedy chat completion from vLLM through ``openai``, with its token ids and log-probabilities."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="EMPTY", timeout=120)
    completion = client.chat.completions.create(
        model=model,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,
        logprobs=True,
        top_logprobs=TOP_LOGPROBS,
        extra_body={"return_token_ids": True, "return_tokens_as_token_ids": True},
    )
    choice = completion.choices[0]
    steps = (choice.logprobs.content or []) if choice.logprobs else []
    return Answer(
        prompt=list((completion.model_extra or {})["prompt_token_ids"]),
        ids=list((choice.model_extra or {})["token_ids"]),
        text=choice.message.content or "",
        logprobs=[step.logprob for step in steps],
        alternatives=[{int(top.token.split(":")[1]): top.logprob for top in step.top_logprobs} for step in steps],
    )


def in_process(model_id: str, messages: list[dict[str, str]], max_tokens: int) -> Answer:
    """The same from transformers + PEFT here, with the model and chat template the provider uses."""
    import torch

    from training.providers.openweights import artifacts, serving

    manifest = artifacts.adapter_manifest(model_id)
    adapter = artifacts.adapter_local_dir(model_id)
    model, tokenizer = serving.local_model(str(manifest["base_model"]), adapter, str(manifest["sha256"]))
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=max_tokens,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    prompt = inputs["input_ids"][0].tolist()
    ids = output.sequences[0][len(prompt) :].tolist()
    rows = [torch.log_softmax(step[0].float(), -1).tolist() for step in output.logits]
    logprobs = [row[token] for row, token in zip(rows, ids, strict=True)]
    alternatives = [dict(enumerate(row)) for row in rows]
    return Answer(prompt, ids, str(tokenizer.decode(ids, skip_special_tokens=True)), logprobs, alternatives)


def complete_both_ways(model_id: str, system: str, user: str) -> tuple[str, str]:
    """The provider's ``complete()`` through the server, then in-process (no serving URL)."""
    from django.test import override_settings

    from training.providers import get_provider

    provider = get_provider("openweights")
    through_server = provider.complete(model_id, system, user)
    with override_settings(OPENWEIGHTS_SERVING_URL=""):
        local = provider.complete(model_id, system, user)
    return through_server, local


def largest_gap(first: list[float], second: list[float]) -> float:
    """The largest difference between two answers' log-probabilities, step by step."""
    if len(first) != len(second) or not first:
        return math.inf
    return max(abs(a - b) for a, b in zip(first, second, strict=True))


def alternatives_gap(served: Answer, local: Answer) -> float:
    """The largest difference over every step's top alternatives that vLLM names."""
    if len(served.alternatives) != len(local.alternatives):
        return math.inf
    pairs = zip(served.alternatives, local.alternatives, strict=True)
    return max((abs(lp - row.get(token, math.inf)) for top, row in pairs for token, lp in top.items()), default=0.0)


def compare(base_url: str, model_id: str, base_name: str, user: str) -> bool:
    """Compare one prompt's answers through vLLM and PEFT; print both. True when they agree."""
    from django.conf import settings

    system = settings.TRAINING_SYSTEM_PROMPT
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    max_tokens = int(settings.OPENWEIGHTS_MAX_NEW_TOKENS)
    vllm, peft = served(base_url, model_id, messages, max_tokens), in_process(model_id, messages, max_tokens)
    base = served(base_url, base_name, messages, max_tokens)
    through_server, local = complete_both_ways(model_id, system, user)
    gap = max(largest_gap(vllm.logprobs, peft.logprobs), alternatives_gap(vllm, peft))
    adapter_effect = largest_gap(vllm.logprobs, base.logprobs)
    same_prompt = vllm.prompt == peft.prompt
    print(f"prompt {user!r}: {len(peft.prompt)} prompt tokens, {'the same' if same_prompt else 'DIFFERENT'} ids")
    print(f"  vLLM ids {vllm.ids}\n  PEFT ids {peft.ids}\n  base model without the adapter {base.ids}")
    print(f"  vLLM text {vllm.text!r}\n  PEFT text {peft.text!r}")
    print(f"  log-probabilities (top {TOP_LOGPROBS} at each step): vLLM and PEFT differ by {gap:.2e} at most")
    print(f"  the adapter moves vLLM's log-probabilities by up to {adapter_effect:.2e} from the base model's")
    print(f"  complete() through vLLM and in-process: {'equal' if through_server == local else 'DIFFERENT'}")
    applied = vllm.ids != base.ids or adapter_effect > ADAPTER_EFFECT
    if not applied:
        print("  the adapter changes nothing: vLLM may have answered with the base model")
    agree = same_prompt and vllm.ids == peft.ids and vllm.text == peft.text and gap <= LOGPROB_TOLERANCE
    return agree and applied and through_server == local == peft.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organization", default="demo")
    parser.add_argument("--prompts", type=int, default=len(USER_PROMPTS), choices=range(1, len(USER_PROMPTS) + 1))
    args = parser.parse_args()
    setup_django()
    from training.providers.openweights import artifacts

    model = newest_model(args.organization)
    deploy(model)
    name, base_url = route(os.environ["FLYWHEEL_API_KEY"])
    if (name, base_url) != (model.model_id, os.environ["OPENWEIGHTS_SERVING_URL"]):
        raise SystemExit("FAIL: /api/route does not name the deployed adapter and the vLLM server.")
    base_name = str(artifacts.adapter_manifest(name)["base_model"])  # vLLM serves the base under its path
    results = [compare(base_url, name, base_name, user) for user in USER_PROMPTS[: args.prompts]]
    same = sum(results)
    print(f"{same} of {len(results)} prompts: vLLM's greedy tokens equal PEFT's: {'PASS' if all(results) else 'FAIL'}")
    if not all(results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
