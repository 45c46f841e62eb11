"""HTTP routes of this app, mounted at the site's root by flywheel/urls.py."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
