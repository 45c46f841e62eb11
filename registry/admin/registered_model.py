"""The registered models in the admin: pages with action buttons and a prompt box, traffic actions, the leaderboard."""

import copy
import uuid
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from flywheel import formatting
from flywheel.admin_helpers import PoolFilter, acting_user, confirmation_page, error_text
from flywheel.errors import ApplicationError
from flywheel.models import Organization
from registry import selectors
from registry.admin.audit import log_model_events
from registry.admin.events import ModelEventInline
from registry.admin.model_page import TryForm, page_actions, try_model
from registry.admin.traffic import ACTIONS, TEST_RUNNING, TrafficAction, TrafficForm
from registry.models import ModelEvent, RegisteredModel
from registry.services import dry_run, model_set_baseline, recorded
from registry.serving import serving_can_complete

CONFIRM_TEMPLATE = "admin/registry/registeredmodel/confirm_traffic.html"
LEADERBOARD_TEMPLATE = "admin/registry/registeredmodel/leaderboard.html"


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin[RegisteredModel]):
    # The columns a person scans; everything else is on the model's page.
    list_display = [
        "version",
        "pool",
        "status",
        "traffic",
        "messages",
        "reply",
        "meeting",
        "close",
        "revenue",
        "vs_baseline",
    ]
    list_filter = ["status", "ab_test_group", "is_baseline", "provider", ("organization", PoolFilter)]
    search_fields = ["model_version", "model_id", "base_model", "fine_tuning_job_id", "organization__slug"]
    list_select_related = ["organization"]
    show_full_result_count = False
    list_per_page = 50
    date_hierarchy = "created_at"
    inlines = [ModelEventInline]
    actions = ["deploy_at_full_traffic", "set_traffic", "archive", "rollback", "set_baseline"]
    traffic_actions: dict[str, TrafficAction] = ACTIONS
    # The traffic actions the model's own page offers as buttons, in this order.
    page_actions: tuple[str, ...] = ("deploy_at_full_traffic", "rollback")
    change_form_template = "admin/registry/registeredmodel/change_form.html"
    fieldsets = [
        (None, {"fields": ["id", "pool", "model_id", "model_version", "base_model", "status", "error"]}),
        ("Traffic", {"fields": ["traffic", "ab_test_group", "deployed_at", "is_baseline"]}),
        ("Training", {"fields": ["training_examples_count", "positive_examples", "deals_in_training"]}),
        (
            "Performance",
            {
                "fields": [
                    "total_messages_sent",
                    "total_replies",
                    "total_meetings_booked",
                    "total_deals_closed",
                    "revenue",
                    "reply",
                    "meeting",
                    "close",
                    "reply_rate_vs_baseline_display",
                    "meeting_rate_vs_baseline_display",
                    "close_rate_vs_baseline_display",
                ]
            },
        ),
        (
            "Lineage",
            {
                "fields": [
                    "provider",
                    "fine_tuning_job_id",
                    "training_run_id",
                    "dataset_sha256",
                    "adapter_sha256",
                    "base_model_config_sha256",
                    "base_model_shutdown_date",
                ]
            },
        ),
        ("Serving", {"fields": ["serving_status", "serving_error"]}),
        (None, {"fields": ["created_at", "updated_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: RegisteredModel | None = None) -> list[str]:
        """Everything: statuses, traffic and counters change only through the services (actions)."""
        return [str(name) for _, options in self.fieldsets for name in options["fields"]]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # models are registered by training runs, the API and commands (model_register)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # the audit trail and outcome labels point at models: archive instead

    def has_deploy_permission(self, request: HttpRequest) -> bool:
        """The ``registry.deploy_model`` permission: ML ops staff who may move traffic."""
        return request.user.has_perm(f"{self.opts.app_label}.deploy_model")

    @admin.display(description="version", ordering="model_version")
    def version(self, model: RegisteredModel) -> str:
        return model.model_version

    @admin.display(description="pool", ordering="organization__name")
    def pool(self, model: RegisteredModel) -> str:
        return formatting.pool_name(model.organization)

    @admin.display(description="traffic", ordering="traffic_percentage")
    def traffic(self, model: RegisteredModel) -> str:
        return formatting.percentage(model.traffic_percentage)

    @admin.display(description="messages", ordering="total_messages_sent")
    def messages(self, model: RegisteredModel) -> str:
        return formatting.count(model.total_messages_sent)

    @admin.display(description="reply", ordering="reply_rate")
    def reply(self, model: RegisteredModel) -> str:
        return formatting.percent(model.reply_rate)

    @admin.display(description="meeting", ordering="meeting_rate")
    def meeting(self, model: RegisteredModel) -> str:
        return formatting.percent(model.meeting_rate)

    @admin.display(description="close", ordering="close_rate")
    def close(self, model: RegisteredModel) -> str:
        return formatting.percent(model.close_rate)

    @admin.display(description="revenue", ordering="total_revenue")
    def revenue(self, model: RegisteredModel) -> str:
        return formatting.money(model.total_revenue)

    @admin.display(description="reply vs base", ordering="reply_rate_vs_baseline")
    def vs_baseline(self, model: RegisteredModel) -> str:
        """The stored comparison the leaderboard reads: reply rate, % better than the pool's baseline."""
        return formatting.signed_percent(model.reply_rate_vs_baseline)

    @admin.display(description="reply rate vs baseline")
    def reply_rate_vs_baseline_display(self, model: RegisteredModel) -> str:
        return formatting.signed_percent(model.reply_rate_vs_baseline)

    @admin.display(description="meeting rate vs baseline")
    def meeting_rate_vs_baseline_display(self, model: RegisteredModel) -> str:
        return formatting.signed_percent(model.meeting_rate_vs_baseline)

    @admin.display(description="close rate vs baseline")
    def close_rate_vs_baseline_display(self, model: RegisteredModel) -> str:
        return formatting.signed_percent(model.close_rate_vs_baseline)

    # --- Traffic actions -----------------------------------------------------------------------

    @admin.action(description="Deploy at 100 %% (archives the deployed)", permissions=["deploy"])
    def deploy_at_full_traffic(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        return self.run_traffic_action(request, queryset, self.traffic_actions["deploy_at_full_traffic"])

    @admin.action(description="Set traffic of the selected model", permissions=["deploy"])
    def set_traffic(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        return self.run_traffic_action(request, queryset, self.traffic_actions["set_traffic"])

    @admin.action(description="Archive selected models", permissions=["deploy"])
    def archive(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        return self.run_traffic_action(request, queryset, self.traffic_actions["archive"])

    @admin.action(description="Roll back the pool of the selected models", permissions=["deploy"])
    def rollback(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> HttpResponse | None:
        return self.run_traffic_action(request, queryset, self.traffic_actions["rollback"])

    @admin.action(description="Make the selected model its pool's baseline", permissions=["deploy"])
    def set_baseline(self, request: HttpRequest, queryset: QuerySet[RegisteredModel]) -> None:
        models = list(queryset)
        if len(models) != 1:
            self.message_user(request, "Select exactly one model to make the baseline.", messages.ERROR)
            return
        try:
            events = recorded(lambda: model_set_baseline(model=models[0], actor=acting_user(request)))
        except (ApplicationError, ValidationError) as error:
            self.message_user(request, error_text(error), messages.ERROR)
            return
        log_model_events(request, events)
        self.message_user(request, f"{models[0].model_version} is now the baseline of its pool.", messages.SUCCESS)

    def run_traffic_action(
        self, request: HttpRequest, queryset: QuerySet[RegisteredModel], action: TrafficAction
    ) -> HttpResponse | None:
        """Show the confirmation page; when what it showed is confirmed, apply the change.

        A change refused because it touches a running A/B test shows the page again with the
        refusal and an override box; checked, with a reason, the preview shows the test's end.
        """
        models = list(queryset.select_related("organization").order_by("id"))
        if action.single and len(models) != 1:
            self.message_user(request, f"{action.title}: select exactly one model.", messages.ERROR)
            return None
        confirming = "confirm_step" in request.POST
        form = TrafficForm(request.POST if confirming else None)
        if confirming and not form.is_valid():
            return self.confirmation(request, models, action, form, events=[])
        submitted = form.cleaned_data if confirming else {}
        share = submitted.get("traffic_percentage") if action.percentage else None
        if action.percentage and share is None:
            share = action.percentage(models[0])
        reason, override = submitted.get("reason") or "", bool(submitted.get("override_experiment"))
        shown = submitted.get("previewed") == share and submitted.get("previewed_override", False) == override
        actor = acting_user(request)
        initial = {"traffic_percentage": share, "reason": reason, "previewed": share}
        try:
            if confirming and "apply" in request.POST and shown:
                log_model_events(request, recorded(lambda: action.call(models, share, actor, reason, override)))
                self.message_user(request, action.count(models), messages.SUCCESS)
                return None
            events = dry_run(lambda: action.call(models, share, actor, reason, override))
        except (ApplicationError, ValidationError) as error:
            if getattr(error, "code", "") == TEST_RUNNING:
                form = TrafficForm(initial={**initial, "previewed_override": override})
                return self.confirmation(request, models, action, form, events=[], refusal=error_text(error))
            self.message_user(request, f"{action.title}: {error_text(error)}", messages.ERROR)
            return None
        form = TrafficForm(initial={**initial, "override_experiment": override, "previewed_override": override})
        return self.confirmation(request, models, action, form, events=events)

    def confirmation(
        self,
        request: HttpRequest,
        models: list[RegisteredModel],
        action: TrafficAction,
        form: TrafficForm,
        *,
        events: list[ModelEvent],
        refusal: str = "",
    ) -> TemplateResponse:
        """The page listing each model's status and traffic before and after, with the confirm button."""
        return confirmation_page(
            self,
            request,
            template=CONFIRM_TEMPLATE,
            title=f"{action.title}: confirm the traffic change",
            action=action,
            asks_percentage=action.percentage is not None,
            models=models,
            events=events,
            form=form,
            refusal=refusal,
            media=self.media,
        )

    # --- The model's page: action buttons and "Try this model" -----------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The model's page, with the buttons of the actions the user may take and the services would take now."""
        model = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if model is not None:
            allowed = self.get_actions(request)
            actions = [self.traffic_actions[name] for name in self.page_actions if name in allowed]
            offered = page_actions(model, actions, actor=acting_user(request))
            can_try = self.has_deploy_permission(request) and serving_can_complete(model.provider)
            context.update(page_actions=offered, can_try=can_try)
            context.setdefault("try_form", TryForm.blank())
            context["try_url"] = reverse("admin:registry_registeredmodel_try", args=[model.pk])
        return super().change_view(request, object_id, form_url, context)

    def page_action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """A button of the model's page: the list's action ``action`` for this one model.

        The same action method, so the same confirmation page, services and permission: an action
        the user may not take answers 403. Done or refused, it lands back on the model's page.
        """
        if action not in self.page_actions:
            raise Http404(f"The model's page offers no action {action!r}.")
        chosen = self.get_actions(request).get(action)
        if chosen is None:
            raise PermissionDenied
        model = self.get_object(request, unquote(object_id))
        if model is None:
            raise Http404("No such model.")
        response = chosen[0](self, request, self.get_queryset(request).filter(pk=model.pk))
        if isinstance(response, HttpResponse):
            return response
        return HttpResponseRedirect(reverse("admin:registry_registeredmodel_change", args=[model.pk]))

    def try_model_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Put the posted prompt to the model and show its answer (or the provider's error) on its page."""
        if not self.has_deploy_permission(request):
            raise PermissionDenied
        model = self.get_object(request, unquote(object_id))
        if model is None:
            raise Http404("No such model.")
        page = reverse("admin:registry_registeredmodel_change", args=[model.pk])
        if request.method != "POST":
            return HttpResponseRedirect(f"{page}#try-model")
        form = TryForm(request.POST)
        answer = None
        if form.is_valid():
            answer, failure = try_model(model=model, form=form, user=request.user)
            if failure:
                self.message_user(request, failure, messages.ERROR)
        # The page shown again around the answer, as a GET: the change form is never submitted.
        shown = copy.copy(request)
        shown.method = "GET"
        return self.change_view(shown, object_id, extra_context={"try_form": form, "try_answer": answer})

    # --- Leaderboard ---------------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        leaderboard = path(
            "leaderboard/",
            self.admin_site.admin_view(self.leaderboard_view),
            name="registry_registeredmodel_leaderboard",
        )
        page_action = path(
            "<path:object_id>/act/<str:action>/",
            self.admin_site.admin_view(self.page_action_view),
            name="registry_registeredmodel_page_action",
        )
        try_it = path(
            "<path:object_id>/try/",
            self.admin_site.admin_view(self.try_model_view),
            name="registry_registeredmodel_try",
        )
        return [leaderboard, page_action, try_it, *super().get_urls()]

    def leaderboard_view(self, request: HttpRequest) -> TemplateResponse:
        """One pool's leaderboard (``?pool=global`` or an organization id); without a pool, a pool picker.

        Staff belong to no organization, so the page opens on the pools that have models rather
        than on an empty global pool. Rates are percentages with their 95 % intervals; models
        below the minimum are listed apart, unranked, as "too few messages". A ``min_samples``
        that is not a whole number of at least 0 answers 400.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        pools = selectors.pools_with_models()
        context = {**self.admin_site.each_context(request), "title": "Model leaderboard", "opts": self.opts}
        context.update(pools=[{"id": str(p.pk) if p else "global", "name": formatting.pool_name(p)} for p in pools])
        raw = request.GET.get("min_samples", str(selectors.LEADERBOARD_MIN_SAMPLES))
        min_samples = int(raw) if raw.isdigit() else None
        context.update(min_samples=raw, include_archived=request.GET.get("include_archived") == "true")
        if min_samples is None:
            context["error"] = f"min_samples must be a whole number of at least 0, not {raw!r}."
            return TemplateResponse(request, LEADERBOARD_TEMPLATE, context, status=400)
        if "pool" not in request.GET:
            return TemplateResponse(request, LEADERBOARD_TEMPLATE, context)
        organization = _organization_or_none(request.GET["pool"])
        options = {"organization": organization, "include_archived": context["include_archived"]}
        context.update(
            pool=str(organization.pk) if organization else "global",
            organization=organization,
            entries=[_with_rates(entry) for entry in selectors.leaderboard(min_samples=min_samples, **options)],
            too_few=[_with_rates(e) for e in selectors.leaderboard_below_minimum(min_samples=min_samples, **options)],
        )
        return TemplateResponse(request, LEADERBOARD_TEMPLATE, context)


def _with_rates(model: RegisteredModel) -> RegisteredModel:
    """``model`` with ``rates``: each rate and its 95 % interval as percentages, for a person to read."""
    counts = (model.total_replies, model.total_meetings_booked, model.total_deals_closed)
    rates = []
    for successes in counts:
        bounds = selectors.wilson_interval(successes, model.total_messages_sent)
        share = formatting.percent(successes / model.total_messages_sent) if model.total_messages_sent else "-"
        rates.append({"rate": share, "interval": "" if bounds is None else formatting.percent_range(*bounds)})
    model.rates = rates  # type: ignore[attr-defined]
    return model


def _organization_or_none(pool: str) -> Organization | None:
    """The organization whose id is ``pool``; ``None`` (the global pool) for anything else."""
    try:
        return Organization.objects.filter(pk=uuid.UUID(pool)).first()
    except ValueError:
        return None
