"""Fixtures for the training app's tests: the fake OpenAI API over real HTTP, run settings, a pool."""

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from flywheel.models import Organization
from tests.factories import OrganizationFactory
from tests.training.fake_openai import FakeOpenAI
from training.providers.openai import clear_shutdown_cache

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"flywheel-test-webhook-secret").decode()


@pytest.fixture
def fake_openai(settings: Any) -> Iterator[FakeOpenAI]:
    """Start the fake OpenAI API on loopback and point the openai provider's settings at it.

    Retries are few and the timeout short so fault tests stay fast; the fake's 429 and 5xx
    answers carry ``retry-after-ms: 1`` so the client's backoff costs a millisecond.
    """
    clear_shutdown_cache()  # a reused loopback port must not inherit an earlier test's dates
    fake = FakeOpenAI(api_key="sk-test").start()
    settings.OPENAI_BASE_URL = fake.base_url
    settings.OPENAI_API_KEY = "sk-test"
    settings.OPENAI_MAX_RETRIES = 2
    settings.OPENAI_TIMEOUT = 5.0
    settings.OPENAI_WEBHOOK_SECRET = WEBHOOK_SECRET
    yield fake
    fake.stop()


@pytest.fixture
def run_settings(settings: Any) -> None:
    """Runs on the offline provider, with a small minimum of examples and the default polling."""
    settings.FINE_TUNING_PROVIDER = "local"
    settings.TRAINING_MIN_EXAMPLES = 10
    settings.TRAINING_POLL_INTERVAL = 60
    settings.TRAINING_MAX_WAIT = 86400


@pytest.fixture
def organization() -> Organization:
    return OrganizationFactory.create(slug="acme")
