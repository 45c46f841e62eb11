"""Deduplication on the text as it is exported, so that rows stored raw collapse once scrubbed.

The pool's SQL collapses labels whose stored training texts are equal; rows written straight to
the table keep the prospect's data until the export scrubs them, so texts that differ only by a
name collapse here, on the scrubbed text, in the stream's best-first order.
"""

from __future__ import annotations

import hashlib


def text_key(text: str) -> bytes:
    """A 16-byte digest of a scrubbed training text: what is kept per distinct text."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SeenTexts:
    """The digests of the scrubbed training texts already written by one export.

    Memory grows with the number of distinct texts (about 80 bytes each), not with their length.
    """

    def __init__(self) -> None:
        self.keys: set[bytes] = set()

    def first(self, text: str) -> bool:
        """Whether ``text`` is seen for the first time (and remember it)."""
        key = text_key(text)
        if key in self.keys:
            return False
        self.keys.add(key)
        return True

    def __contains__(self, text: str) -> bool:
        return text_key(text) in self.keys
