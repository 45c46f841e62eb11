"""The ``{% flywheel_dashboard %}`` tag: the admin index's dashboard, for the pool in ``?pool=``.

The admin's own index view renders the page (so the app list, the sidebar and the staff-only
guard stay Django's); this tag adds the panels the signed-in user may view. The panels write
their numbers with the ``flywheel_format`` filters, as every admin page does.
"""

from typing import Any

from django import template

from training.dashboard import dashboard_context

register = template.Library()


@register.inclusion_tag("admin/dashboard/panels.html", takes_context=True)
def flywheel_dashboard(context: template.Context) -> dict[str, Any]:
    """The dashboard's panels for the request's user and chosen pool."""
    request = context["request"]
    return {"request": request, **dashboard_context(user=request.user, choice=request.GET.get("pool"))}
