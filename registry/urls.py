"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import path

from registry.api import LeaderboardApi, ModelListApi, RouteApi

urlpatterns = [
    path("api/route", RouteApi.as_view(), name="route"),
    path("training/models", ModelListApi.as_view(), name="training-models"),
    path("training/leaderboard", LeaderboardApi.as_view(), name="training-leaderboard"),
]
