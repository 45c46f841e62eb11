"""The ``{% flywheel_dashboard %}`` tag: the admin index's dashboard, for the pool in ``?pool=``.

The admin's own index view renders the page (so the app list, the sidebar and the staff-only
guard stay Django's); this tag adds the panels the signed-in user may view.
"""

from decimal import Decimal
from typing import Any

from django import template

from training.dashboard import dashboard_context

register = template.Library()


@register.inclusion_tag("admin/dashboard/panels.html", takes_context=True)
def flywheel_dashboard(context: template.Context) -> dict[str, Any]:
    """The dashboard's panels for the request's user and chosen pool."""
    request = context["request"]
    return {"request": request, **dashboard_context(user=request.user, choice=request.GET.get("pool"))}


@register.filter
def percent_interval(number: dict[str, float] | None) -> str:
    """A rate with its 95 % interval, in percent: ``12.50 % (9.10 to 15.90 %)``; a dash when unknown."""
    if not number:
        return "-"
    return f"{number['value'] * 100:.2f} % ({number['low'] * 100:.2f} to {number['high'] * 100:.2f} %)"


@register.filter
def percent(fraction: float | None) -> str:
    """A fraction in percent with up to one decimal: ``0.1`` reads ``10 %``."""
    return "-" if fraction is None else f"{fraction * 100:.1f}".removesuffix(".0") + " %"


@register.filter
def usd(amount: Decimal | float | None) -> str:
    """An amount in US dollars with separators and cents: ``$1,234.50``."""
    return "-" if amount is None else f"${Decimal(amount):,.2f}"
