"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import path, re_path

from experiments.api import ModelDeployApi, PromoteWinnerApi
from experiments.progress_api import ExperimentDetailApi, ExperimentListApi

urlpatterns = [
    # Any id at all, even with a slash or a line break: a malformed one answers the API's 404, not
    # Django's HTML page.
    re_path(r"^training/deploy/(?P<registry_id>[\s\S]*)\Z", ModelDeployApi.as_view(), name="training-deploy"),
    path("training/promote-winner", PromoteWinnerApi.as_view(), name="training-promote-winner"),
    # The experiments' live progress.
    path("api/experiments", ExperimentListApi.as_view(), name="experiments-list"),
    re_path(r"^api/experiments/(?P<experiment_id>[\s\S]*)\Z", ExperimentDetailApi.as_view(), name="experiments-detail"),
]
