"""The run's admin page while it lives: its status as JSON for the page's refresh, and its dataset.

A run's page polls ``<run>/status.json`` every few seconds while the run is active. The answer
carries the run's status and every field of the page rendered by the admin itself (the same
display methods and the same escaping as the page), so the page's script only swaps each
field's HTML in place and stops once the run has ended. The dataset's preview and download
links sit below the fields (see :mod:`training.admin_datasets`).
"""

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse

from training.admin_datasets import dataset_download, dataset_files, may_download
from training.models import TrainingRun

if TYPE_CHECKING:
    _Base = admin.ModelAdmin[TrainingRun]
else:
    _Base = object

DATASET_PANEL = "admin/training/trainingrun/dataset_panel.html"
# How often an active run's page asks for its status, in milliseconds.
REFRESH_EVERY_MS = 3000


class RunPageMixin(_Base):
    """The run page's JSON status, dataset panel and download, for :class:`TrainingRunAdmin`."""

    def run_page_urls(self) -> list[URLPattern]:
        status = self.admin_site.admin_view(self.status_view)
        download = self.admin_site.admin_view(self.dataset_view)
        return [
            path("<path:object_id>/status.json", status, name="training_trainingrun_status"),
            path("<path:object_id>/dataset/<str:which>/", download, name="training_trainingrun_dataset"),
        ]

    def viewable_run(self, request: HttpRequest, object_id: str) -> TrainingRun:
        """The run ``object_id`` if the person may see it: 404 if there is none, 403 if not theirs to see."""
        run = self.get_object(request, object_id)
        if run is None:
            raise Http404("No such training run.")
        if not self.has_view_permission(request, run):
            raise PermissionDenied
        return run

    def status_view(self, request: HttpRequest, object_id: str) -> JsonResponse:
        """The run's status and its page's fields rendered as HTML, for the page's refresh."""
        run = self.viewable_run(request, object_id)
        answer: dict[str, Any] = {
            "id": str(run.pk),
            "status": run.status,
            "status_label": run.get_status_display(),
            "subtitle": str(run),
            "active": run.is_active,
            "refresh_ms": REFRESH_EVERY_MS,
            "dataset_sha256": run.dataset_sha256,
            "fields": self.rendered_fields(request, run),
        }
        if request.GET.get("dataset_sha256", run.dataset_sha256) != run.dataset_sha256:
            answer["dataset_panel"] = self.dataset_panel(request, run)
        return JsonResponse(answer)

    def rendered_fields(self, request: HttpRequest, run: TrainingRun) -> dict[str, str]:
        """Each read-only field of the run page as the page shows it (the admin's own rendering)."""
        form = self.get_form(request, run, fields=[])(instance=run)
        names = flatten_fieldsets(self.get_fieldsets(request, run))
        return {name: str(helpers.AdminReadonlyField(form, name, False, model_admin=self).contents()) for name in names}

    def dataset_panel(self, request: HttpRequest, run: TrainingRun) -> str:
        """The dataset section of the run page: the files' previews and links, or why there are none."""
        context = {"run": run, "may_download": may_download(request)}
        if context["may_download"]:
            context["files"] = dataset_files(run)
        return render_to_string(DATASET_PANEL, context, request=request)

    def dataset_view(self, request: HttpRequest, object_id: str, which: str) -> HttpResponseBase:
        return dataset_download(request, self.viewable_run(request, object_id), which)

    def run_page_context(self, request: HttpRequest, object_id: str) -> dict[str, Any]:
        """What the run page's template adds: the status address while active, the dataset panel."""
        run = self.get_object(request, object_id)
        if run is None or not self.has_view_permission(request, run):
            return {}
        status_url = reverse("admin:training_trainingrun_status", args=[run.pk])
        return {
            "run_status_url": status_url if run.is_active else "",
            "run_refresh_ms": REFRESH_EVERY_MS,
            "run_dataset_sha256": run.dataset_sha256,
            "dataset_panel": self.dataset_panel(request, run),
        }

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), **self.run_page_context(request, object_id)}
        return super().change_view(request, object_id, form_url, context)


def started_message(run: TrainingRun) -> str:
    """What "Run training cycle now" started, for the admin's log."""
    pool = str(run.organization) if run.organization else "the global pool"
    version = run.model_version or "the next version"
    forced = ", forced on unchanged data" if run.force else ""
    method, quality = run.get_method_display(), f"{run.min_quality_score:g}"
    return f"Started a training run for {pool}: {version}, {method}, quality >= {quality}{forced}"
