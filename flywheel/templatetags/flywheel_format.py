"""Template filters for :mod:`flywheel.formatting`: ``{% load flywheel_format %}``, then ``{{ rate|percent }}``.

Each filter is the formatting function of the same name (dates are ``short_date`` and
``short_datetime``, as ``date`` is Django's own), so a template writes a value exactly as a
list column or an admin page written in Python does. A variable the template does not have
(Django gives an empty string) reads "-" like a missing value.
"""

import functools
from collections.abc import Callable
from typing import Any

from django import template

from flywheel import formatting

register = template.Library()


def _filter(name: str, function: Callable[..., str]) -> None:
    @functools.wraps(function)
    def safe(value: Any, *args: Any) -> str:
        return formatting.MISSING if value is None or value == "" else function(value, *args)

    register.filter(name, safe)


for _name in ("count", "percent", "percentage", "signed_percent", "percent_interval", "money", "decimal"):
    _filter(_name, getattr(formatting, _name))
_filter("short_date", formatting.date)
_filter("short_datetime", formatting.datetime)
register.filter("pool_name", formatting.pool_name)
