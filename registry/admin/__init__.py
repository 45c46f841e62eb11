"""Admin for the registry: models with their audit trail, traffic actions, the leaderboard.

Every traffic-moving action needs the ``registry.deploy_model`` permission and first shows a
confirmation page listing the audit rows the change would write, computed by running the very
service inside a rolled-back transaction (:func:`registry.services.dry_run`), so what is
confirmed is what happens. Domain errors become admin messages.
"""

from registry.admin.events import ModelEventAdmin, ModelEventInline
from registry.admin.registered_model import RegisteredModelAdmin
from registry.admin.traffic import ACTIONS, TrafficAction, TrafficForm

__all__ = [
    "ACTIONS",
    "ModelEventAdmin",
    "ModelEventInline",
    "RegisteredModelAdmin",
    "TrafficAction",
    "TrafficForm",
]
