"""The registry's audit trail in the admin: on each model's page, and across models."""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from registry.models import ModelEvent, RegisteredModel

EVENT_COLUMNS = (
    "created_at",
    "action",
    "actor",
    "status_before",
    "status_after",
    "traffic_before",
    "traffic_after",
    "reason",
)


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
        return event.actor_label or str(event.actor_user or "")

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

    list_display = [
        "created_at",
        "action",
        "model",
        "organization",
        "actor_label",
        "status_before",
        "status_after",
        "traffic_before",
        "traffic_after",
        "reason",
    ]
    list_filter = ["action", "organization"]
    search_fields = ["model__model_version", "model__model_id", "actor_label", "reason", "batch"]
    list_select_related = ["model", "organization", "actor_user"]
    show_full_result_count = False
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
