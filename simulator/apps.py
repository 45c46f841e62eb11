"""The simulator app: a synthetic market that drives the real loop, for measurements and the demo."""

from django.apps import AppConfig


class SimulatorConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "simulator"
