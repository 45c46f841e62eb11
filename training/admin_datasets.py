"""A run's dataset on its admin page: a preview of its first examples and the download of its files.

Both need the ``training.download_dataset`` permission, since a dataset holds the messages of
real leads. The preview reads only the head of the stored file (a bounded number of bytes and
lines) and shows each example's messages with their roles, whatever its method: SFT messages,
DPO's prompt with its preferred and non-preferred replies, KTO's prompt and labelled completion.
The download streams the stored file as an attachment, with its sha256 in a header.
"""

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpRequest, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.urls import reverse

from training.datasets.storage import dataset_head, dataset_open
from training.models import TrainingRun

DOWNLOAD_PERMISSION = "training.download_dataset"
PREVIEW_EXAMPLES = 5
JSONL_CONTENT_TYPE = "application/jsonl"
SHA256_HEADER = "X-Dataset-SHA256"
Which = Literal["training", "validation"]


@dataclass
class Part:
    """One labelled group of an example's messages (the conversation, a preferred reply...)."""

    title: str
    messages: list[dict[str, str]]


@dataclass
class Example:
    """One previewed line: its parts, or why it cannot be shown."""

    number: int
    parts: list[Part] = field(default_factory=list)
    problem: str = ""


@dataclass
class DatasetFile:
    """One of a run's files as its page shows it: where to download it and its first examples."""

    which: Which
    name: str
    sha256: str
    url: str
    examples: list[Example]
    problem: str = ""


def may_download(request: HttpRequest) -> bool:
    return request.user.has_perm(DOWNLOAD_PERMISSION)


def stored_name(run: TrainingRun, which: Which) -> str:
    return run.dataset_path if which == "training" else run.validation_path


def dataset_files(run: TrainingRun, *, examples: int = PREVIEW_EXAMPLES) -> list[DatasetFile]:
    """The run's training and validation files (those it has), each with a preview of its head."""
    files = []
    for which in ("training", "validation"):
        name = stored_name(run, which)
        if not name:
            continue
        url = reverse("admin:training_trainingrun_dataset", args=[run.pk, which])
        sha256 = run.dataset_sha256 if which == "training" else ""
        try:
            lines = dataset_head(name, lines=examples)
        except OSError:
            missing = f"The file {name} is missing from the dataset storage: it cannot be previewed or downloaded."
            files.append(DatasetFile(which, name, sha256, url, [], problem=missing))
            continue
        shown = [example_of(number, line) for number, line in enumerate(lines, start=1)]
        files.append(DatasetFile(which, name, sha256, url, shown))
    return files


def example_of(number: int, line: bytes) -> Example:
    """The parts of one JSONL line, by the shape of its method (SFT, DPO or KTO)."""
    try:
        data = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return Example(number, problem="not valid JSON")
    if not isinstance(data, dict):
        return Example(number, problem="not a JSON object")
    if "messages" in data:
        return Example(number, [Part("conversation", messages_of(data["messages"]))])
    if "preferred_output" in data:
        given = data.get("input")
        prompt = messages_of(given.get("messages") if isinstance(given, dict) else None)
        preferred = Part("preferred reply", messages_of(data["preferred_output"]))
        return Example(
            number,
            [
                Part("prompt", prompt),
                preferred,
                Part("non-preferred reply", messages_of(data.get("non_preferred_output"))),
            ],
        )
    if "completion" in data:
        label = "desirable" if data.get("label") else "undesirable"
        return Example(
            number,
            [
                Part("prompt", messages_of(data.get("prompt"))),
                Part(f"completion ({label})", messages_of(data["completion"])),
            ],
        )
    return Example(number, problem=f"an unknown shape (keys: {', '.join(sorted(data))})")


def messages_of(value: Any) -> list[dict[str, str]]:
    """The ``role``/``content`` pairs of a list of chat messages; anything else is left out."""
    if not isinstance(value, list):
        return []
    return [
        {"role": str(message.get("role", "")), "content": str(message.get("content", ""))}
        for message in value
        if isinstance(message, dict)
    ]


def dataset_download(request: HttpRequest, run: TrainingRun, which: str) -> HttpResponseBase:
    """Stream one of the run's files as an attachment, with its sha256 in a header.

    403 without the permission, 404 for a file the run does not have; a file missing from the
    storage leads back to the run's page with a message saying so.
    """
    if not may_download(request):
        raise PermissionDenied
    name = stored_name(run, "training") if which == "training" else stored_name(run, "validation")
    if which not in ("training", "validation") or not name:
        raise Http404(f"This run has no {which} dataset.")
    try:
        handle = dataset_open(name)
    except OSError:
        messages.error(request, f"The file {name} is missing from the dataset storage: it cannot be downloaded.")
        return HttpResponseRedirect(reverse("admin:training_trainingrun_change", args=[run.pk]))
    suffix = "" if which == "training" else ".validation"
    response = FileResponse(
        handle, as_attachment=True, filename=f"run-{run.pk}{suffix}.jsonl", content_type=JSONL_CONTENT_TYPE
    )
    if which == "training" and run.dataset_sha256:
        response[SHA256_HEADER] = run.dataset_sha256
    return response
