"""Admin for tenancy: organizations and their API keys."""

from django.contrib import admin
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from flywheel.models import Organization, OrganizationAPIKey

# Flywheel's keys belong to organizations; the library's unscoped key model stays unused.
admin.site.unregister(APIKey)
# No navigation sidebar: at 1400 px it and a list's filters left a list about 750 px, so the
# numbers scrolled out of sight. The breadcrumbs and the home page lead everywhere it did.
admin.site.enable_nav_sidebar = False


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin[Organization]):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug", "id"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["id", "routing_version", "created_at"]


@admin.register(OrganizationAPIKey)
class OrganizationAPIKeyAdmin(APIKeyModelAdmin):
    # The columns a person scans: which key, whose, with what rights, and whether it still works.
    list_display = ("name", "organization", "role", "prefix", "created", "expiry_date", "revoked")  # type: ignore[assignment]
    list_filter = (*APIKeyModelAdmin.list_filter, "role", "organization")  # type: ignore[assignment]
    search_fields = (*APIKeyModelAdmin.search_fields, "organization__name")  # type: ignore[assignment]
    list_select_related = ["organization"]
    raw_id_fields = ["organization"]
