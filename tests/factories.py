"""Factories shared by every app's tests."""

import factory
from django.contrib.auth import get_user_model
from factory.django import DjangoModelFactory

from flywheel.models import Organization, OrganizationAPIKey


class OrganizationFactory(DjangoModelFactory[Organization]):
    class Meta:
        model = Organization
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Acme {n}")
    slug = factory.Sequence(lambda n: f"acme-{n}")


class UserFactory(DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("correct-horse-battery-staple")
    is_staff = True


def make_api_key(organization: Organization, role: str = OrganizationAPIKey.Role.AGENT) -> str:
    """Create a key for ``organization`` and return the secret, as a client would hold it."""
    _, key = OrganizationAPIKey.objects.create_key(name=f"{role} key", organization=organization, role=role)
    return key
