"""A label's training text as every export writes it, and its exact token count, stored at write time.

The training text is the assistant message of a label's example: ``Subject: ...`` and the
reviewer's ideal body (else the body), with the prospect's personal data replaced by
placeholders. :func:`training_tokens_of` counts it once, when the label is written or its text
changes, so that an export sums stored counts instead of encoding every message again.
"""

from collections.abc import Sequence

from outcomes.encodings import STORED_ENCODING, encoding_named
from outcomes.scrubbing import may_hold_personal_data, scrub


def scrubbed(first_name: str, last_name: str, company: str, *texts: str) -> Sequence[str]:
    """The texts with the prospect's personal data replaced by placeholders.

    ``scrub`` runs only when :func:`outcomes.scrubbing.may_hold_personal_data` says it could
    change something; one test covers all the texts of a row, joined, so a clean row is cheap.
    """
    if not may_hold_personal_data("\n".join(texts), first_name, last_name, company):
        return texts
    return [scrub(text, first_name=first_name, last_name=last_name, company=company) for text in texts]


# How every reserved token starts ("<|endoftext|>", "<|im_start|>", ...): an export refuses them.
RESERVED_MARK = "<|"


def ready_as_stored(*, prompt: str, subject: str, target: str, segment: Sequence[str]) -> bool:
    """Whether an export may write a label's stored texts as they are (``OutcomeLabel.texts_ready``).

    The texts must already be scrubbed; this checks the rest of what the export's exact path
    looks at: no reserved token in the prompt, the segment's values, the subject or the training
    text, a prompt that is not blank when there is one, and a message that is not blank. The
    export's database path also carries the segment's values tab-separated, so none may hold a tab.
    """
    if any(RESERVED_MARK in text for text in (prompt, subject, target, *segment)):
        return False
    if any("\t" in value for value in segment):
        return False
    if prompt and not prompt.strip():
        return False
    return bool(subject.strip() or target.strip())


def assistant_text(subject: str, body: str) -> str:
    """The training target: "Subject: ...\\n\\n" + body, or the body alone when there is no subject."""
    return f"Subject: {subject}\n\n{body}" if subject.strip() else body


def training_text(
    *, first_name: str, last_name: str, company: str, prompt: str, subject: str, body: str, ideal_body: str
) -> str:
    """The assistant message an SFT export writes for a label with these fields.

    Scrubbed exactly as the export scrubs a row (the subject, the target and the prompt, tested
    together), so the count stored from it is the export's own.
    """
    target = ideal_body or body
    subject, target, _ = scrubbed(first_name, last_name, company, subject, target, prompt)
    return assistant_text(subject, target)


def training_tokens_of(
    *, first_name: str, last_name: str, company: str, prompt: str, subject: str, body: str, ideal_body: str
) -> int:
    """Tokens of the label's training text in :data:`~outcomes.encodings.STORED_ENCODING`."""
    text = training_text(
        first_name=first_name,
        last_name=last_name,
        company=company,
        prompt=prompt,
        subject=subject,
        body=body,
        ideal_body=ideal_body,
    )
    return len(encoding_named(STORED_ENCODING).encode_ordinary(text))
