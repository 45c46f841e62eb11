"""Traffic arithmetic for a pool of deployed models, free of the database.

A *configuration* maps each deployed model's id to its traffic percentage. Every plan returned
here either is empty (nothing deployed) or sums to 100 within :data:`TOLERANCE`: percentages
are kept to :data:`PLACES` decimals (a hundredth of a routing bucket) and the rounding remainder
goes to the largest share, so the stored values add up exactly. The services apply these plans
under row locks; the admin uses the same functions to preview a change before it is confirmed.
"""

from collections.abc import Hashable, Mapping
from typing import TypeVar

from flywheel.errors import ApplicationError

K = TypeVar("K", bound=Hashable)

PLACES = 4
TOLERANCE = 1e-6
FULL = 100.0
MIN_SHARE = 0.01  # one routing bucket in 10,000: a deployed model never serves less


def clean_percentage(value: float, *, allow_full: bool = True) -> float:
    """A traffic percentage rounded to :data:`PLACES`, refused unless ``MIN_SHARE <= value <= 100``.

    Less is refused because a deployed model without traffic would be invisible to routing yet
    still count as deployed; archive it instead.
    """
    rounded = round(float(value), PLACES)
    if not MIN_SHARE <= rounded <= FULL or (rounded == FULL and not allow_full):
        upper = "100" if allow_full else "below 100"
        raise ApplicationError(
            f"Traffic must be at least {MIN_SHARE} and at most {upper} %, not {value}.", code="invalid_traffic"
        )
    return rounded


def rescale(shares: Mapping[K, float], total: float) -> dict[K, float]:
    """Scale ``shares`` to sum to ``total``, keeping their proportions.

    Equal shares when they are all zero. The remainder left by rounding goes to the largest
    share (the first by key order among equals), so the result sums to ``total`` exactly.
    """
    if not shares:
        return {}
    current = sum(shares.values())
    if current <= 0:
        scaled = {key: round(total / len(shares), PLACES) for key in shares}
    else:
        scaled = {key: round(share * total / current, PLACES) for key, share in shares.items()}
    largest = max(scaled, key=lambda key: scaled[key])
    rest = sum(share for key, share in scaled.items() if key != largest)
    scaled[largest] = round(total - rest, PLACES)
    return scaled


def plan_deploy(current: Mapping[K, float], target: K, traffic: float) -> dict[K, float]:
    """The configuration after ``target`` takes ``traffic`` % (whether or not it is deployed yet).

    At 100 % it replaces every other model; below, the others share the rest in their current
    proportions. A pool with no other deployed model cannot give a model less than 100 %.
    """
    traffic = clean_percentage(traffic)
    if traffic == FULL:
        return {target: FULL}
    others = {key: share for key, share in current.items() if key != target}
    if not others:
        raise ApplicationError(
            f"Nothing else is deployed in this pool, so this model must take 100 % of its traffic, not {traffic} %.",
            code="pool_needs_full_traffic",
        )
    plan = {**rescale(others, FULL - traffic), target: traffic}
    starved = sorted(str(key) for key, share in plan.items() if share < MIN_SHARE)
    if starved:
        raise ApplicationError(
            f"This change would leave {', '.join(starved)} with less than {MIN_SHARE} % of the traffic; "
            "archive it first, or choose a smaller share.",
            code="share_too_small",
        )
    return plan


def plan_remove(current: Mapping[K, float], target: K) -> dict[K, float]:
    """The configuration after ``target`` leaves the pool: the others share its traffic.

    Empty when it was the last deployed model.
    """
    others = {key: share for key, share in current.items() if key != target}
    return rescale(others, FULL)


def is_complete(configuration: Mapping[K, float]) -> bool:
    """Whether ``configuration`` honours the invariant: empty, or summing to 100."""
    return not configuration or abs(sum(configuration.values()) - FULL) < TOLERANCE
