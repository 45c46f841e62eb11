"""Deploy a trained open-weights model into a vLLM server and compare its answers with PEFT's.

Usage (from the project's root, with the run already trained and registered; see ``.ci/vllm``)::

    OPENWEIGHTS_SERVING_URL=http://127.0.0.1:PORT/v1 .venv/bin/python scripts/vllm_equality.py \
        --organization demo --prompts 3

The organization's newest ready ``openweights`` model is deployed through Flywheel's deploy
service, which loads its adapter into the server; a second load of the same adapter must count as
success. Then, for each prompt, a greedy chat completion through the adapter's name with the
official ``openai`` client (asking vLLM for the token ids) is compared with greedy decoding of the
same messages by transformers + PEFT in this process: the prompt's token ids (so the chat
template is the same on both sides), the generated token ids, and the text that the provider's
``complete()`` returns through either path. Prints each side's ids and PASS or FAIL; exits 1 on
any difference.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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

    model_deploy(model=model, traffic_percentage=100.0, actor=None, reason="CI: serve the adapter with vLLM")
    provider = get_provider("openweights")
    served = provider.serving_server().loaded()
    print(f"deployed {model.model_version} as {model.model_id}; the server answers to {sorted(served)}")
    if model.model_id not in served:
        raise SystemExit("FAIL: deploying the model did not load its adapter into the vLLM server.")
    provider.load_adapter(model.model_id)  # the server answers 400 to this second load: still a success
    print("a second load of the same adapter counted as success")


def served_ids(model_id: str, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int], str]:
    """The prompt's and the completion's token ids and text from vLLM, through ``openai``."""
    import openai

    client = openai.OpenAI(base_url=os.environ["OPENWEIGHTS_SERVING_URL"], api_key="EMPTY", timeout=120)
    completion = client.chat.completions.create(
        model=model_id,
        messages=messages,  # type: ignore[arg-type]
        temperature=0,
        max_tokens=max_tokens,
        extra_body={"return_token_ids": True},
    )
    extra = completion.model_extra or {}
    choice = completion.choices[0]
    choice_extra = choice.model_extra or {}
    return list(extra["prompt_token_ids"]), list(choice_extra["token_ids"]), choice.message.content or ""


def peft_ids(model_id: str, messages: list[dict[str, str]], max_tokens: int) -> tuple[list[int], list[int], str]:
    """The same from transformers + PEFT here, with the model and template the provider uses."""
    import torch

    from training.providers.openweights import artifacts, serving

    manifest = artifacts.adapter_manifest(model_id)
    adapter = artifacts.adapter_local_dir(model_id)
    model, tokenizer = serving.local_model(str(manifest["base_model"]), adapter, str(manifest["sha256"]))
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        output = model.generate(
            **inputs, do_sample=False, max_new_tokens=max_tokens, pad_token_id=tokenizer.pad_token_id
        )
    prompt = inputs["input_ids"][0].tolist()
    generated = output[0][len(prompt) :].tolist()
    return prompt, generated, str(tokenizer.decode(generated, skip_special_tokens=True))


def complete_both_ways(model_id: str, system: str, user: str) -> tuple[str, str]:
    """The provider's ``complete()`` through the server, then in-process (no serving URL)."""
    from django.test import override_settings

    from training.providers import get_provider

    provider = get_provider("openweights")
    served = provider.complete(model_id, system, user)
    with override_settings(OPENWEIGHTS_SERVING_URL=""):
        local = provider.complete(model_id, system, user)
    return served, local


def compare(model_id: str, user: str) -> bool:
    """Compare one prompt's ids and texts; print both sides. True when all are equal."""
    from django.conf import settings

    system = settings.TRAINING_SYSTEM_PROMPT
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    max_tokens = int(settings.OPENWEIGHTS_MAX_NEW_TOKENS)
    vllm_prompt, vllm_out, vllm_text = served_ids(model_id, messages, max_tokens)
    peft_prompt, peft_out, peft_text = peft_ids(model_id, messages, max_tokens)
    served, local = complete_both_ways(model_id, system, user)
    print(f"prompt {user!r}: {len(peft_prompt)} prompt tokens, {'same' if vllm_prompt == peft_prompt else 'DIFFERENT'}")
    if vllm_prompt != peft_prompt:
        print(f"  vLLM prompt ids {vllm_prompt}\n  PEFT prompt ids {peft_prompt}")
    print(f"  vLLM ids {vllm_out}\n  PEFT ids {peft_out}")
    print(f"  vLLM text {vllm_text!r}\n  PEFT text {peft_text!r}")
    equal = vllm_prompt == peft_prompt and vllm_out == peft_out and vllm_text == peft_text
    equal = equal and served == local == peft_text
    print(f"  complete() through vLLM and in-process: {'equal' if served == local else 'DIFFERENT'}")
    return equal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--organization", default="demo")
    parser.add_argument("--prompts", type=int, default=len(USER_PROMPTS), choices=range(1, len(USER_PROMPTS) + 1))
    args = parser.parse_args()
    setup_django()
    model = newest_model(args.organization)
    deploy(model)
    results = [compare(model.model_id, user) for user in USER_PROMPTS[: args.prompts]]
    same = sum(results)
    print(f"{same} of {len(results)} prompts: vLLM's greedy tokens equal PEFT's: {'PASS' if all(results) else 'FAIL'}")
    if not all(results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
