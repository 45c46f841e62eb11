"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import path

from outcomes.api import OutcomeEventsApi, OutcomeUpsertApi, TrainingStatsApi

urlpatterns = [
    path("api/outcomes", OutcomeUpsertApi.as_view(), name="outcomes-upsert"),
    path("api/outcomes/events", OutcomeEventsApi.as_view(), name="outcomes-events"),
    path("training/stats", TrainingStatsApi.as_view(), name="training-stats"),
]
