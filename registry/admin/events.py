"""The registry's audit trail in the admin: on each model's page, and across models."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from flywheel import formatting
from flywheel.admin_helpers import PoolFilter
from registry.models import ModelEvent, RegisteredModel

AUDIT_PAGE = ("created_at", "action", "model", "pool", "actor", "status_before", "status_after", "traffic", "reason")
EVENT_COLUMNS = ("created_at", "action", "actor", "status_change", "traffic", "reason")


class ModelEventInline(admin.TabularInline[ModelEvent, RegisteredModel]):
    """The model's audit trail, newest first: append-only, so nothing to add, change or delete."""

    model = ModelEvent
    fk_name = "model"
    fields = EVENT_COLUMNS
    readonly_fields = EVENT_COLUMNS
    ordering = ["-id"]
    extra = 0
    can_delete = False
    show_change_link = False

    @admin.display(description="actor")
    def actor(self, event: ModelEvent) -> str:
        return actor_name(event)

    @admin.display(description="status")
    def status_change(self, event: ModelEvent) -> str:
        before, after = event.status_before or "-", event.status_after or "-"
        return after if before == after else f"{before} → {after}"

    @admin.display(description="traffic")
    def traffic(self, event: ModelEvent) -> str:
        return traffic_change(event)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The trail is part of the model's page: whoever may see the model sees its history.
        return request.user.has_perm("registry.view_registeredmodel") or super().has_view_permission(request, obj)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ModelEvent)
class ModelEventAdmin(admin.ModelAdmin[ModelEvent]):
    """The registry's audit trail across models: read-only, as it is append-only."""

    # The columns a person scans: when, what, which model of which pool, who and why.
    list_display = ["created_at", "action", "model_version", "pool", "actor", "traffic", "reason"]
    list_filter = ["action", ("organization", PoolFilter)]
    search_fields = ["model__model_version", "model__model_id", "actor_label", "reason", "batch"]
    list_select_related = ["model", "organization", "actor_user"]
    fields = readonly_fields = AUDIT_PAGE
    show_full_result_count = False
    date_hierarchy = "created_at"

    @admin.display(description="model", ordering="model__model_version")
    def model_version(self, event: ModelEvent) -> str:
        return event.model.model_version

    @admin.display(description="pool", ordering="organization__name")
    def pool(self, event: ModelEvent) -> str:
        return formatting.pool_name(event.organization)

    @admin.display(description="actor", ordering="actor_label")
    def actor(self, event: ModelEvent) -> str:
        return actor_name(event)

    @admin.display(description="traffic")
    def traffic(self, event: ModelEvent) -> str:
        return traffic_change(event)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def actor_name(event: ModelEvent) -> str:
    """Who acted: the API key or system label, else the signed-in user."""
    return event.actor_label or str(event.actor_user or "-")


def traffic_change(event: ModelEvent) -> str:
    """The traffic share before and after, ``10 % → 100 %``; one share when it did not move."""
    before, after = formatting.percentage(event.traffic_before), formatting.percentage(event.traffic_after)
    return after if before == after else f"{before} → {after}"
