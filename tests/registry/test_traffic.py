"""Traffic plans never leave a deployed model with a share that rounds to nothing."""

import pytest

from flywheel.errors import ApplicationError
from registry import traffic


def test_a_share_below_one_routing_bucket_is_refused() -> None:
    with pytest.raises(ApplicationError) as caught:
        traffic.clean_percentage(0.001)
    assert caught.value.code == "invalid_traffic"


def test_the_smallest_share_is_one_routing_bucket() -> None:
    assert traffic.clean_percentage(traffic.MIN_SHARE) == traffic.MIN_SHARE


def test_a_deploy_that_would_squeeze_another_model_below_the_minimum_is_refused() -> None:
    current = {"control": 99.99, "small": 0.01}
    with pytest.raises(ApplicationError) as caught:
        traffic.plan_deploy(current, "new", 50.0)
    assert caught.value.code == "share_too_small"
    assert "small" in caught.value.message


def test_a_deploy_that_keeps_every_share_above_the_minimum_sums_to_one_hundred() -> None:
    plan = traffic.plan_deploy({"control": 90.0, "variant": 10.0}, "new", 50.0)
    assert plan == {"control": 45.0, "variant": 5.0, "new": 50.0}
    assert traffic.is_complete(plan)


def test_removing_a_model_never_starves_the_others() -> None:
    plan = traffic.plan_remove({"a": 99.98, "b": 0.01, "c": 0.01}, "a")
    assert plan == {"b": 50.0, "c": 50.0}
