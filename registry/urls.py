"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import path

from registry.api import LeaderboardApi, ModelDeployApi, ModelListApi, PromoteWinnerApi, RouteApi

urlpatterns = [
    path("api/route", RouteApi.as_view(), name="route"),
    path("training/models", ModelListApi.as_view(), name="training-models"),
    path("training/leaderboard", LeaderboardApi.as_view(), name="training-leaderboard"),
    # ``path``, not ``uuid``: a malformed id answers the API's 404, not Django's HTML page.
    path("training/deploy/<path:registry_id>", ModelDeployApi.as_view(), name="training-deploy"),
    path("training/promote-winner", PromoteWinnerApi.as_view(), name="training-promote-winner"),
]
