"""Personal-data scrubbing for message text before it trains a model.

:func:`scrub` replaces links, email addresses, the prospect's names and company, and phone
numbers by ``{{placeholders}}``, leaving prices, dates and existing placeholders alone.
:func:`may_hold_personal_data` is its cheap prefilter: a superset of what ``scrub`` could
replace, so a text it clears may skip ``scrub``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

MIN_VALUE_LENGTH = 2
MIN_PHONE_DIGITS = 7
MAX_PHONE_DIGITS = 15  # E.164
MANY_OCCURRENCES = 32  # above it, names are replaced by one compiled pattern

FIRST_NAME = "{{first_name}}"
LAST_NAME = "{{last_name}}"
COMPANY = "{{company}}"
EMAIL = "{{email}}"
PHONE = "{{phone}}"
LINK = "{{link}}"

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")

# A link ends on a character that is not sentence punctuation, so "see https://x.io/a." keeps its dot.
_URL_CHAR = r"[^\s<>\"'{}|\\^`\[\]]"
_URL_END = r"[^\s<>\"'{}|\\^`\[\].,;:!?)]"
# Patterns start with a literal or a character class, never a lookbehind, so that `re` can skip
# ahead to candidate positions instead of trying every character; boundaries are checked after.
_SCHEME_LINK = re.compile(rf"[hHwW](?:(?<=[hH])[tT][tT][pP][sS]?://|(?<=[wW])[wW][wW]\.){_URL_CHAR}*{_URL_END}")
# Bare links need a path and a common top-level domain, so "Node.js/React" is not taken for one.
_TLDS = (
    "com|net|org|io|co|ai|app|dev|me|ly|us|uk|de|fr|es|it|nl|be|ch|at|se|no|dk|fi|pl|eu|ca|au|nz|in|"
    "info|biz|link|page|site|xyz|so|gg|to|tv|cc|sh|vc|gl|gle|club|online|tech|store|cloud|email"
)
_BARE_LINK_TLD = re.compile(rf"\.(?:{_TLDS})/", re.IGNORECASE)
_URL_TAIL = re.compile(rf"(?:{_URL_CHAR}*{_URL_END})?")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")
_NOT_BEFORE_LINK = frozenset("@/_")  # part of an address, a longer path or a handle
_EMAIL_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
# RFC 5322 allows these in a local part ("o'neil", "first_last"); braces, "|" and "/" are left out
# so that a placeholder or link next to an address is not swallowed.
_EMAIL_LOCAL_SYMBOLS = frozenset("._%+-'!#$&*=?^`~")

# Phone candidates are maximal runs of a phone's alphabet that start with "+", "(" or a digit and
# are at least 7 characters long: one flat character class, which `re` scans quickly. Whether a
# run is a phone (7 to 15 digits, not a date, year range, amount or part of a longer token) is
# then decided in Python, only for the few runs found.
_PHONE_CANDIDATE = re.compile(rf"[+(\d][\d+ \t\u00a0().\-]{{{MIN_PHONE_DIGITS - 1},}}")
_PHONE_TRAILING = " \t\u00a0().-+"
_NOT_BEFORE_PHONE = frozenset("$€£¥+.,/%-_")
_DATE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4}")
_YEARS = re.compile(r"(?:19|20)\d\d(?:\s*[-\u2013.]?\s*(?:19|20)\d\d)+")
_MONEY_AFTER = re.compile(r"\s?(?:[%€$£¥]|(?:USD|EUR|GBP|CHF|dollars?|euros?)\b)", re.IGNORECASE)
_CURRENCY_SYMBOLS = "$€£¥"

_LEGAL_SUFFIX = re.compile(
    r"[\s,]+(?:inc|llc|ltd|limited|gmbh|ag|sa|sas|sarl|bv|nv|plc|corp|corporation|co|company|pty|srl|oy|ab)\.?$",
    re.IGNORECASE,
)


def scrub(text: str, *, first_name: str = "", last_name: str = "", company: str = "") -> str:
    """Return ``text`` with the prospect's personal data replaced by placeholders.

    Links and emails go first, so that a name inside them leaves no half address behind; then
    the names and company (whole words, any case, longest first), then phone numbers.
    """
    if not text:
        return text
    if "://" in text or "ww." in text or "WW." in text:
        text = _SCHEME_LINK.sub(LINK, text)
    if "/" in text:
        text = _replace_bare_links(text)
    if "@" in text:
        text = _replace_emails(text)
    values = _name_values(first_name, last_name, company) if first_name or last_name or company else ()
    if values:
        text = _replace_values(text, values)
    if any(digit in text for digit in "0123456789"):
        text = _replace_phones(text)
    return text


# --- Links and emails ----------------------------------------------------------------------------


def _replace_bare_links(text: str) -> str:
    """Replace ``domain.tld/path`` links, found from their ``.tld/`` and widened both ways."""
    pieces: list[str] = []
    position = 0
    for match in _BARE_LINK_TLD.finditer(text):
        start = _scan_back(text, match.start(), position, _DOMAIN_CHARS.__contains__)
        while start < match.start() and not text[start].isalnum():
            start += 1  # a domain starts with a letter or digit
        before = text[start - 1] if start else ""
        if start == match.start() or before.isalnum() or before in _NOT_BEFORE_LINK:
            continue
        end = _URL_TAIL.match(text, match.end())
        pieces += [text[position:start], LINK]
        position = end.end() if end else match.end()
    return "".join([*pieces, text[position:]]) if pieces else text


def _replace_emails(text: str) -> str:
    """Replace email addresses, found from their ``@domain`` and widened back over the local part."""
    pieces: list[str] = []
    position = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        local_start = _scan_back(text, start, position, _is_email_local_char)
        if local_start == start:
            continue  # "@handle" has no local part: not an address
        pieces += [text[position:local_start], EMAIL]
        position = match.end()
    return "".join([*pieces, text[position:]]) if pieces else text


def _scan_back(text: str, index: int, floor: int, accepts: Callable[[str], bool]) -> int:
    """Move ``index`` left, not past ``floor``, while the character before it is accepted."""
    while index > floor and accepts(text[index - 1]):
        index -= 1
    return index


def _is_email_local_char(char: str) -> bool:
    return char.isalnum() or char in _EMAIL_LOCAL_SYMBOLS


# --- Names ---------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _name_values(first_name: str, last_name: str, company: str) -> tuple[tuple[str, str], ...]:
    """Lower-cased values to look for with their placeholders, longest first, duplicates dropped.

    Cached because a row's subject and body are scrubbed with the same prospect.
    """
    company = company.strip()
    pairs = [(first_name, FIRST_NAME), (last_name, LAST_NAME), (company, COMPANY)]
    if " " in company or "," in company:
        pairs.append((_LEGAL_SUFFIX.sub("", company), COMPANY))
    found: dict[str, str] = {}
    for value, placeholder in pairs:
        key = " ".join(value.split()).lower()
        if len(key) >= MIN_VALUE_LENGTH:
            found.setdefault(key, placeholder)
    return tuple(sorted(found.items(), key=lambda item: len(item[0]), reverse=True))


def _replace_values(text: str, values: tuple[tuple[str, str], ...]) -> str:
    """Replace whole-word, case-insensitive occurrences of each value, skipping placeholders."""
    lowered = text.lower()
    values = tuple(item for item in values if item[0] in lowered)
    if not values:
        return text
    if len(lowered) != len(text) or sum(lowered.count(value) for value, _ in values) > MANY_OCCURRENCES:
        # A few characters (e.g. "İ") change length when lower-cased, so offsets would drift; and
        # a name found very often is cheaper to replace in one compiled pass.
        return _replace_values_with_regex(text, values)
    # One mark per character already claimed (by a placeholder or a longer value): checking a
    # candidate costs its own length, so the pass stays linear in the text however often a name
    # occurs.
    claimed = bytearray(len(text))
    if "{{" in text:
        for match in _PLACEHOLDER.finditer(text):
            claimed[match.start() : match.end()] = b"\x01" * (match.end() - match.start())
    found: list[tuple[int, int, str]] = []
    for value, placeholder in values:
        start = lowered.find(value)
        while start != -1:
            end = start + len(value)
            if _is_whole_word(lowered, start, end) and 1 not in claimed[start:end]:
                claimed[start:end] = b"\x01" * len(value)
                found.append((start, end, placeholder))
            start = lowered.find(value, start + 1)
    return _splice(text, found) if found else text


def _is_word_char(char: str) -> bool:
    # "_" counts as a separator, so handles such as "jane_doe" lose the name too.
    return char.isalnum()


def _is_whole_word(text: str, start: int, end: int) -> bool:
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    return not (before and _is_word_char(before)) and not (after and _is_word_char(after))


def _splice(text: str, found: list[tuple[int, int, str]]) -> str:
    pieces: list[str] = []
    position = 0
    for start, end, placeholder in sorted(found):
        pieces += [text[position:start], placeholder]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _replace_values_with_regex(text: str, values: tuple[tuple[str, str], ...]) -> str:
    """One compiled alternation: for text whose lower-case form has another length, or many names."""
    placeholders = dict(values)
    alternatives = "|".join(r"\s+".join(map(re.escape, value.split())) for value, _ in values)
    pattern = re.compile(rf"({_PLACEHOLDER.pattern})|(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return match.group(1)  # an existing placeholder stays as it is
        return placeholders.get(" ".join(match.group(0).split()).lower(), match.group(0))

    return pattern.sub(replace, text)


# --- Phones --------------------------------------------------------------------------------------


def _replace_phones(text: str) -> str:
    """Replace the candidate runs that :func:`_is_phone` accepts, trimmed to their last digit."""
    pieces: list[str] = []
    position = 0
    for match in _PHONE_CANDIDATE.finditer(text):
        start = match.start()
        end = start + len(match.group(0).rstrip(_PHONE_TRAILING))
        if _is_phone(text, start, end):
            pieces += [text[position:start], PHONE]
            position = end
    return "".join([*pieces, text[position:]]) if pieces else text


def _is_phone(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a phone number rather than a date, year, amount or code."""
    candidate = text[start:end]
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    if before in _NOT_BEFORE_PHONE or (candidate[0].isdigit() and before.isalnum()):
        return False  # the tail of a longer number, code or amount
    if after.isalnum() or after in ("_", "%"):
        return False
    if not MIN_PHONE_DIGITS <= sum(char.isdigit() for char in candidate) <= MAX_PHONE_DIGITS:
        return False
    if "+" in candidate and (candidate.count("+") > 1 or not candidate.startswith(("+", "(+"))):
        return False
    if _DATE.fullmatch(candidate) or _YEARS.fullmatch(candidate):
        return False
    return not _is_amount(text, start, end)


def _is_amount(text: str, start: int, end: int) -> bool:
    """Whether a currency sign stands just before the number, or a currency or "%" just after."""
    before = text[max(0, start - 2) : start].rstrip()
    if before and before[-1] in _CURRENCY_SYMBOLS:
        return True
    return _MONEY_AFTER.match(text, end) is not None


# --- Prefilter -----------------------------------------------------------------------------------

# A superset of the phone pass: MIN_PHONE_DIGITS digits, at most three other characters apart.
_PHONE_LIKE = re.compile(r"\d(?:\D{0,3}\d){6}")
_DIGIT_MASK = bytes(0x30 if 0x30 <= byte <= 0x39 else 0x20 for byte in range(256))
_NOT_DIGITS = bytes(byte for byte in range(256) if not 0x30 <= byte <= 0x39)
_PHONE_MASK_LIKE = re.compile(rb"0(?: {0,3}0){6}")  # the same on the mask of may_hold_phone


def may_hold_personal_data(text: str, first_name: str, last_name: str, company: str) -> bool:
    """Whether :func:`scrub` could change ``text``: true whenever any of its passes could match.

    Each test is a superset of one pass (links need "/" or "ww.", emails "@", a name its first
    word as a whole word, a phone seven close digits), so a false answer is always safe to skip.
    """
    lowered = text.lower()
    if "@" in lowered or "/" in lowered or "ww." in lowered:
        return True
    for value in (first_name, last_name, company):
        if value:
            word = first_word(value)
            if word in lowered and has_word(lowered, word):  # the cheap test first: most rows stop here
                return True
    return may_hold_phone(text)


def has_word(lowered: str, word: str) -> bool:
    """Whether ``word`` occurs with no letter or digit on either side (scrub's whole-word rule)."""
    if not word:
        return True  # a value that starts with a separator: always let scrub look
    start = lowered.find(word)
    while start != -1:
        end = start + len(word)
        if not (start and lowered[start - 1].isalnum()) and not (end < len(lowered) and lowered[end].isalnum()):
            return True
        start = lowered.find(word, start + 1)
    return False


@lru_cache(maxsize=1024)
def first_word(value: str) -> str:
    """The lower-cased first word of a name, up to the first space or comma ("" if it starts with one).

    Names repeat (first names, companies), so answers are cached; the cache is bounded.
    """
    words = value.split(None, 1)
    return words[0].split(",", 1)[0].lower() if words else ""


def may_hold_phone(text: str) -> bool:
    """Whether ``text`` has seven digits each at most three characters from the next.

    ASCII text is reduced to a mask of "0" (digit) and " " (anything else) and searched with a
    pattern whose literal first byte the regex engine scans for quickly; other scripts have
    digits of their own, which the phone pass matches, so their text takes the plain pattern.
    """
    if not text.isascii():
        return _PHONE_LIKE.search(text) is not None
    data = text.encode("ascii")
    if len(data.translate(None, _NOT_DIGITS)) < MIN_PHONE_DIGITS:
        return False
    return _PHONE_MASK_LIKE.search(data.translate(_DIGIT_MASK)) is not None
