"""Admin for training runs (the list and the run page, cancelling, "Run training cycle now") and pools' providers.

Runs are read-only here: they change only through :mod:`training.services`. Starting and
cancelling need the ``training.run_training`` permission and go through a confirmation page;
domain errors become admin messages. The organization page gains its pool's training provider,
chosen from the registered ones, with OpenAI's wind-down dates on a pool still on ``openai``.
"""

import datetime
from collections.abc import Iterable, Sequence
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.models import ADDITION
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from flywheel import formatting
from flywheel.admin import OrganizationAdmin as TenancyOrganizationAdmin
from flywheel.admin_helpers import PoolFilter, acting_user, confirmation_page, error_text, log_admin_action
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry.models import pool_key
from registry.services import VERSION_PATTERN
from training.admin_run_page import RunPageMixin, started_message
from training.datasets import dataset_counts
from training.models import TrainingRun
from training.providers import default_provider_name, provider_names
from training.selectors import (
    METHOD_COUNTS,
    base_model_shutdown_text,
    pool_provider_name,
    provider_methods,
    provider_reports_loss,
    provider_wind_down_notice,
    training_default_organization,
    version_taken,
)
from training.services import training_run_cancel, training_run_start

RUN_NOW_TEMPLATE = "admin/training/trainingrun/run_now.html"
CANCEL_TEMPLATE = "admin/training/trainingrun/confirm_cancel.html"
PERMISSION = "training.run_training"


def html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> SafeString:
    """A small HTML table, every cell escaped."""
    head = format_html_join("", "<th>{}</th>", ((header,) for header in headers))
    cells = (format_html_join("", "<td>{}</td>", ((cell,) for cell in row)) for row in rows)
    body = format_html_join("", "<tr>{}</tr>", ((row,) for row in cells))
    return format_html("<table><tr>{}</tr>{}</table>", head, body)


@admin.register(TrainingRun)
class TrainingRunAdmin(RunPageMixin, admin.ModelAdmin[TrainingRun]):
    change_list_template = "admin/training/trainingrun/change_list.html"
    # The columns a person scans; parameters, tokens and provider details are on the run's page.
    list_display = [
        "run",
        "pool_name",
        "status",
        "created_at",
        "duration",
        "examples",
        "cost",
        "resulting_model",
        "base_model_shutdown_date",
    ]
    list_filter = ["status", "provider", "triggered_by", "method", ("organization", PoolFilter)]
    search_fields = ["id", "model_version", "provider_job_id", "fine_tuned_model", "organization__name"]
    list_select_related = ["organization", "registered_model"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs"]
    fieldsets = [
        (None, {"fields": ["id", "pool_name", "status", "error", "triggered_by", "actor_label"]}),
        (
            "Parameters",
            {
                "fields": [
                    "model_version",
                    "base_model",
                    "base_model_shutdown_date",
                    "method",
                    "min_quality_score",
                    "validation_percent",
                    "deploy_immediately",
                    "ab_test_percentage",
                    "force",
                ]
            },
        ),
        (
            "Dataset",
            {
                "fields": [
                    "dataset_path",
                    "dataset_sha256",
                    "examples_count",
                    "validation_path",
                    "validation_examples_count",
                    "positive_examples",
                    "deals_in_training",
                    "total_tokens",
                    "billed_tokens",
                    "cost",
                ]
            },
        ),
        (
            "Provider",
            {
                "fields": [
                    "provider",
                    "provider_file_id",
                    "provider_validation_file_id",
                    "provider_job_id",
                    "provider_status",
                    "fine_tuned_model",
                    "trained_tokens",
                    "provider_notice",
                    "poll_count",
                    "events_table",
                    "checkpoints_table",
                    "metrics_table",
                ]
            },
        ),
        ("Result", {"fields": ["resulting_model", "test_output_text", "deployed"]}),
        (
            "Timings",
            {
                "fields": [
                    "created_at",
                    "started_at",
                    "training_started_at",
                    "finished_at",
                    "duration",
                    "claimed_at",
                    "heartbeat_at",
                    "step_retries",
                    "retry_at",
                ]
            },
        ),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: TrainingRun | None = None) -> list[str]:
        return flatten_fieldsets(self.fieldsets)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # runs start from "Run training cycle now", the API, a command or the schedule

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_run_training_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERMISSION)

    # --- Columns and run page ------------------------------------------------------------------

    @admin.display(description="run", ordering="created_at")
    def run(self, run: TrainingRun) -> str:
        return run.model_version or str(run.pk)[:8]

    @admin.display(description="pool", ordering="organization__name")
    def pool_name(self, run: TrainingRun) -> str:
        return formatting.pool_name(run.organization)

    @admin.display(description="examples", ordering="examples_count")
    def examples(self, run: TrainingRun) -> str:
        return formatting.count(run.examples_count)

    @admin.display(description="cost", ordering="estimated_cost")
    def cost(self, run: TrainingRun) -> str:
        return formatting.money(run.estimated_cost)

    @admin.display(description="duration")
    def duration(self, run: TrainingRun) -> str:
        if run.started_at is None:
            return "-"
        seconds = int(((run.finished_at or timezone.now()) - run.started_at).total_seconds())
        return str(datetime.timedelta(seconds=seconds))

    @admin.display(description="resulting model")
    def resulting_model(self, run: TrainingRun) -> SafeString | str:
        model = run.registered_model
        if model is None:
            return "-"
        url = reverse("admin:registry_registeredmodel_change", args=[model.pk])
        return format_html('<a href="{}">{}</a> ({})', url, model.model_version, model.status)

    @admin.display(description="base model ends")
    def base_model_shutdown_date(self, run: TrainingRun) -> str:
        if run.provider != "openai" or not run.base_model:
            return "-"
        return base_model_shutdown_text(provider=run.provider, model=run.base_model)

    @admin.display(description="provider events")
    def events_table(self, run: TrainingRun) -> SafeString | str:
        if not run.events:
            return "-"
        rows = [
            (formatting.datetime(e.get("created_at"), seconds=True), e.get("level", ""), e.get("message", ""))
            for e in run.events
        ]
        return html_table(("time (UTC)", "level", "message"), rows)

    @admin.display(description="provider notice")
    def provider_notice(self, run: TrainingRun) -> str:
        return provider_wind_down_notice(provider=run.provider) or "-"

    @admin.display(description="checkpoint metrics")
    def checkpoints_table(self, run: TrainingRun) -> SafeString | str:
        if not run.checkpoints:
            if not provider_reports_loss(provider=run.provider):
                return f"None: the {run.provider} provider trains no network, so it has no loss to report."
            return "-"
        keys = ("train_loss", "valid_loss", "train_mean_token_accuracy", "valid_mean_token_accuracy")
        rows = [(c.get("step"), *(formatting.decimal(c.get(key), 4) for key in keys)) for c in run.checkpoints]
        return html_table(("step", "train loss", "valid loss", "train accuracy", "valid accuracy"), rows)

    @admin.display(description="measured metrics")
    def metrics_table(self, run: TrainingRun) -> SafeString | str:
        if not run.metrics:
            return "-"
        return html_table(("metric", "value"), sorted(run.metrics.items()))

    @admin.display(description="test output")
    def test_output_text(self, run: TrainingRun) -> SafeString | str:
        if not run.test_output:
            return "-"
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', run.test_output)

    # --- Cancelling ----------------------------------------------------------------------------

    @admin.action(description="Cancel the selected training runs", permissions=["run_training"])
    def cancel_runs(self, request: HttpRequest, queryset: QuerySet[TrainingRun]) -> TemplateResponse | None:
        """Ask for confirmation, then cancel each run (and its provider job)."""
        runs = list(queryset.select_related("organization"))
        if "confirm" not in request.POST:
            active = [run for run in runs if run.is_active]
            return confirmation_page(
                self, request, template=CANCEL_TEMPLATE, title="Cancel training runs", runs=runs, active=active
            )
        cancelled, reason = 0, request.POST.get("reason", "")
        for run in runs:
            try:
                training_run_cancel(run=run, actor=acting_user(request), reason=reason)
                cancelled += 1
            except ApplicationError as error:
                self.message_user(request, f"{run}: {error_text(error)}", messages.ERROR)
                continue
            log_admin_action(request, run, f"Cancelled (reason: {reason})" if reason else "Cancelled")
        self.message_user(request, f"{cancelled} training run(s) cancelled.", messages.SUCCESS)
        return None

    # --- Run training cycle now ----------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        run_now = self.admin_site.admin_view(self.run_now_view)
        run_now_url = path("run-now/", run_now, name="training_trainingrun_run_now")
        return [run_now_url, *self.run_page_urls(), *super().get_urls()]

    def run_now_view(self, request: HttpRequest) -> HttpResponse:
        """Ask for the pool and parameters, show what would train, then start the run on confirmation."""
        if not self.has_run_training_permission(request):
            raise PermissionDenied
        chosen = request.GET.get("organization") or training_default_organization(user=request.user)
        form = RunNowForm(request.POST or None, initial={"organization": getattr(chosen, "pk", chosen)})
        if request.method != "POST" or not form.is_valid():
            return self.run_now_page(request, form, confirming=False)
        if "confirm" not in request.POST:
            return self.run_now_page(request, form, confirming=True)
        try:
            actor = acting_user(request)
            run = training_run_start(**form.cleaned_data, triggered_by=TrainingRun.Trigger.ADMIN, actor=actor)
        except (ApplicationError, ValidationError) as error:
            self.message_user(request, error_text(error), messages.ERROR)
            return self.run_now_page(request, form, confirming=False)
        log_admin_action(request, run, started_message(run), flag=ADDITION)
        self.message_user(request, f"Training run {run.pk} started for {run.organization or 'the global pool'}.")
        return HttpResponseRedirect(reverse("admin:training_trainingrun_change", args=[run.pk]))

    def run_now_page(self, request: HttpRequest, form: "RunNowForm", *, confirming: bool) -> TemplateResponse:
        """The form, or (``confirming``) the summary of what would train with a start button."""
        context: dict[str, Any] = {
            "form": form,
            "confirming": confirming,
            "provider": form.provider,
            "provider_notice": provider_wind_down_notice(provider=form.provider),
            "base_model": settings.TRAINING_BASE_MODEL,
            "min_examples": settings.TRAINING_MIN_EXAMPLES,
        }
        if confirming:
            organization = form.cleaned_data["organization"]
            context["eligible"] = form.eligible
            context["pool"] = str(organization) if organization else "the global pool (every organization)"
        return confirmation_page(self, request, template=RUN_NOW_TEMPLATE, title="Run training cycle now", **context)


class RunNowForm(forms.Form):
    """The parameters of ``training_run_start`` that a person chooses.

    The methods offered are those of the pool's provider: the pool sent with the form, else the
    initial one (the address's ``?organization=``, else the person's usual organization). Every
    check the start would make runs here, before the confirmation page: the version's format and
    that it is free, the method, the ranges, an active run in the pool and enough eligible examples.
    """

    organization = forms.ModelChoiceField(
        queryset=Organization.objects.all(), required=False, empty_label="Global model (every organization)"
    )
    model_version = forms.CharField(required=False, help_text="Like v2.5.0; empty for the pool's next version.")
    min_quality_score = forms.FloatField(initial=0.6, min_value=0, max_value=1)
    method = forms.ChoiceField(choices=TrainingRun.Method.choices, initial=TrainingRun.Method.SFT)
    validation_percent = forms.FloatField(initial=0, min_value=0, max_value=99, help_text="Held-out share (%).")
    deploy_immediately = forms.BooleanField(required=False, help_text="Start an A/B test of the new model.")
    ab_test_percentage = forms.FloatField(initial=10.0, min_value=0.1, max_value=100)
    force = forms.BooleanField(
        required=False,
        label="Train even on unchanged data",
        help_text="Else a run whose dataset equals the pool's last successful run's ends as skipped.",
    )
    eligible = 0

    def clean_model_version(self) -> str:
        version = str(self.cleaned_data.get("model_version") or "").strip()
        if version and not VERSION_PATTERN.match(version):
            raise ValidationError(f"{version!r} is not a version like v2.5.0.")
        return version

    def clean(self) -> dict[str, Any]:
        """The checks that need several fields: the pool's version, active run and eligible examples."""
        data = super().clean() or {}
        if self.errors:
            return data
        organization = data.get("organization")
        pool_id = organization.pk if organization else None
        if data.get("model_version") and version_taken(organization_id=pool_id, version=data["model_version"]):
            self.add_error("model_version", f"{data['model_version']} is already taken in this pool.")
        active = TrainingRun.objects.active().filter(pool=pool_key(pool_id)).first()
        if active is not None:
            raise ValidationError(f"A training run is already {active.status} for this pool; wait for it or cancel it.")
        counts = dataset_counts(pool_id, data["min_quality_score"])
        self.eligible = counts[METHOD_COUNTS.get(data["method"], "sft")]
        if self.eligible < settings.TRAINING_MIN_EXAMPLES:
            raise ValidationError(
                f"Only {self.eligible} eligible examples at quality >= {data['min_quality_score']}; a run needs at "
                f"least {settings.TRAINING_MIN_EXAMPLES} (TRAINING_MIN_EXAMPLES). Lower the minimum score or wait "
                "for more labels."
            )
        return data

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.pool()
        self.provider = pool_provider_name(organization=pool)
        try:
            methods = provider_methods(provider=self.provider)
        except ApplicationError:  # a provider that cannot load: the start says why
            methods = list(TrainingRun.Method.values)
        labels = dict(TrainingRun.Method.choices)
        field = cast(forms.ChoiceField, self.fields["method"])
        field.choices = [(method, labels[method]) for method in methods]
        field.help_text = f"The methods of this pool's provider ({self.provider})."
        field.error_messages["invalid_choice"] = (
            f"%(value)s is not offered for this pool: its provider, {self.provider}, trains with "
            f"{', '.join(methods)} only. KTO needs a pool on openweights (the organization's training provider)."
        )

    def pool(self) -> Organization | None:
        """The organization whose pool the form is for (None: the global pool)."""
        value = self.data.get("organization") if self.is_bound else self.initial.get("organization")
        if not value:
            return None
        try:
            return Organization.objects.filter(pk=value).first()
        except (ValidationError, ValueError):
            return None


# --- The organization page: its pool's training provider ------------------------------------------


def provider_choices() -> list[tuple[str, str]]:
    """The registered providers, after the blank choice that follows the setting."""
    default = ("", f"Default: {default_provider_name()} (FINE_TUNING_PROVIDER)")
    return [default, *((name, name) for name in provider_names())]


admin.site.unregister(Organization)


@admin.register(Organization)
class OrganizationAdmin(TenancyOrganizationAdmin):
    """The tenancy admin, plus the pool's training provider (a registered one) and its notice."""

    list_display = [*TenancyOrganizationAdmin.list_display, "pool_provider", "provider_notice"]
    list_filter = ["training_provider"]
    readonly_fields = [*TenancyOrganizationAdmin.readonly_fields, "provider_notice"]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "training_provider":
            return forms.ChoiceField(
                choices=provider_choices(), required=False, label="Training provider", help_text=db_field.help_text
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    @admin.display(description="provider", ordering="training_provider")
    def pool_provider(self, organization: Organization) -> str:
        name = pool_provider_name(organization=organization)
        return name if organization.training_provider else f"{name} (default)"

    @admin.display(description="provider notice")
    def provider_notice(self, organization: Organization) -> str:
        return provider_wind_down_notice(provider=pool_provider_name(organization=organization)) or "-"


# "View site" leads to the API's documentation: Flywheel has no public site, and "/" is a 404.
admin.site.site_url = "/api/docs/"
