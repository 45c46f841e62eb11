"""How Flywheel writes numbers, money, dates and pools for a person: one way, everywhere.

The admin's list columns, detail pages, confirmation pages and dashboard all format through
these functions (templates through the ``flywheel_format`` filters), so a rate reads "12.3 %",
an amount "$1,234.50", a day "2026-12-05" and a pool its organization's name wherever it appears.
A value that is not there reads "-".
"""

import datetime as dt
from decimal import Decimal
from typing import Any

from django.utils import timezone

MISSING = "-"
GLOBAL_POOL = "Global model"
DATE_FORMAT = "Y-m-d"  # Django's date-format syntax, for the admin's own date columns
DATETIME_FORMAT = "Y-m-d H:i"
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}

Number = int | float | Decimal


def _trimmed(number: Number, places: int) -> str:
    """``number`` with thousands separators and at most ``places`` decimals, trailing zeros dropped."""
    text = f"{number:,.{places}f}"
    if "." in text:
        text = text.rstrip("0").removesuffix(".")
    return "0" if text == "-0" else text


def count(value: int | None) -> str:
    """A whole number with thousands separators: ``12345`` reads ``12,345``."""
    return MISSING if value is None else f"{value:,}"


def percentage(value: Number | None) -> str:
    """A number already in percent (a traffic share of 10.0) as ``10 %``.

    One decimal, two below 1 %, trailing zeros dropped; a value that is not zero but rounds to
    zero reads ``< 0.01 %`` rather than a false zero.
    """
    if value is None:
        return MISSING
    number = float(value)
    if number and abs(number) < 0.005:
        return "< 0.01 %"
    return f"{_trimmed(number, 1 if abs(number) >= 1 else 2)} %"


def percent(fraction: Number | None) -> str:
    """A fraction (a rate, a share) in percent: ``0.123`` reads ``12.3 %``, ``0.1`` reads ``10 %``."""
    return MISSING if fraction is None else percentage(fraction * 100)


def signed_percent(value: Number | None) -> str:
    """A change already in percent, with its sign: ``12.34`` reads ``+12.3 %``, ``-4`` reads ``-4 %``."""
    if value is None:
        return MISSING
    text = percentage(value)
    return text if text.startswith(("-", "0 ", "<")) else f"+{text}"


def percent_interval(number: dict[str, Any] | None) -> str:
    """A fraction with its 95 % interval: ``12.5 % (9.1 to 15.9 %)``; a dash when unknown."""
    if not number or number.get("value") is None:
        return MISSING
    return f"{percent(number['value'])} ({percent_range(number['low'], number['high'])})"


def percent_range(low: Number, high: Number) -> str:
    """Two fractions as a range in percent: ``0.091, 0.159`` reads ``9.1 to 15.9 %``."""
    return f"{percent(low).removesuffix(' %')} to {percent(high)}"


def money(value: Number | None, currency: str = "USD") -> str:
    """An amount with its currency, separators and cents: ``$1,234.50``; under a cent reads ``< $0.01``."""
    if value is None:
        return MISSING
    amount = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    symbol = CURRENCY_SYMBOLS.get(currency)
    sign = "-" if amount < 0 else ""
    if amount and abs(amount) < Decimal("0.005"):
        return f"< {symbol or ''}0.01{'' if symbol else f' {currency}'}"
    digits = f"{abs(amount):,.2f}"
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {currency}"


def decimal(value: object, places: int = 2) -> str:
    """A plain measure (a score, a loss) with ``places`` decimals: ``0.71234`` reads ``0.71``.

    Anything but a number (a provider's metric may be missing or text) reads "-".
    """
    if not isinstance(value, int | float | Decimal) or isinstance(value, bool):
        return MISSING
    return f"{value:,.{places}f}"


def date(value: dt.date | dt.datetime | None) -> str:
    """A day: ``2026-12-05`` (a moment is first put in the current time zone)."""
    if value is None:
        return MISSING
    if isinstance(value, dt.datetime):
        value = timezone.localtime(value) if timezone.is_aware(value) else value
        return value.strftime("%Y-%m-%d")
    return value.strftime("%Y-%m-%d")


def datetime(value: dt.datetime | int | float | None, *, seconds: bool = False) -> str:
    """A moment to the minute in the current time zone: ``2026-12-05 16:35``; a Unix time is read as UTC.

    ``seconds`` adds them (``16:35:07``), for events that follow each other within a minute.
    """
    if not isinstance(value, dt.datetime | int | float) or isinstance(value, bool):
        return MISSING
    if isinstance(value, int | float):
        value = dt.datetime.fromtimestamp(value, tz=dt.UTC)
    moment = timezone.localtime(value) if timezone.is_aware(value) else value
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def pool_name(organization: Any) -> str:
    """A pool as a person knows it: its organization's name, or ``Global model`` for the global pool."""
    return str(getattr(organization, "name", organization)) if organization else GLOBAL_POOL
