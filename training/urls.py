"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import URLPattern, path, re_path

from training.api import TrainingJobStatusApi, TrainingRunDetailApi, TrainingRunStartApi
from training.webhooks import openai_webhook

urlpatterns: list[URLPattern] = [
    path("training/webhooks/openai", openai_webhook, name="training-webhook-openai"),
    path("training/run", TrainingRunStartApi.as_view(), name="training-run-start"),
    # Any id at all, even with a slash or a line break: a malformed one answers the API's 404, not
    # Django's HTML page.
    re_path(r"^training/runs/(?P<run_id>[\s\S]*)\Z", TrainingRunDetailApi.as_view(), name="training-run"),
    re_path(r"^training/status/(?P<job_id>[\s\S]*)\Z", TrainingJobStatusApi.as_view(), name="training-job-status"),
]
