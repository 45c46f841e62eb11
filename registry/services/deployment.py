"""Deployment and traffic: deploy, promote, start an A/B split, set traffic, archive, fail.

After any of these services, the deployed models of a pool (an organization, or the global pool)
have traffic summing to exactly 100, or nothing is deployed: each locks the pool, computes the new
configuration with :mod:`registry.traffic` and writes every changed row in one transaction.
"""

from typing import Any

from django.db import transaction

from flywheel.errors import ApplicationError, Conflict
from registry import traffic
from registry.models import RegisteredModel
from registry.services.pool import (
    Action,
    Actor,
    Group,
    PoolStep,
    Status,
    cached_organization,
    check_deployable,
    lock_pool,
    lock_target,
    refresh_routing_version,
)


def _deploy(
    step: PoolStep,
    model: RegisteredModel,
    plan: dict[Any, float],
    *,
    action: str,
    group: str | None,
    others_group: str | None = None,
    keep_variants: bool = False,
) -> None:
    """Apply ``plan`` to the pool: ``model`` joins or changes, the others rescale or leave.

    Models that are deployed but absent from the plan are archived (replaced at 100 %).
    """
    if step.pool_before.get(str(model.pk)) == [plan[model.pk], model.ab_test_group if group is None else group]:
        raise Conflict(f"{model.model_version} already has {plan[model.pk]} % of the traffic.")
    for row in step.deployed:
        if row.pk == model.pk:
            continue
        if row.pk not in plan:
            why = f"replaced by {model.model_version} at 100 %"
            step.change(row, action=Action.ARCHIVED, status=Status.ARCHIVED, traffic=0.0, reason=why)
        elif plan[row.pk] != row.traffic_percentage or others_group not in (None, row.ab_test_group):
            group_value = {"ab_test_group": others_group} if others_group is not None else {}
            step.change(row, action=Action.TRAFFIC_CHANGED, status=Status.DEPLOYED, traffic=plan[row.pk], **group_value)
    group_value = {"ab_test_group": group} if group is not None else {}
    step.change(model, action=action, status=Status.DEPLOYED, traffic=plan[model.pk], **group_value)
    step.commit(moved_traffic=True, keep_variants=keep_variants)


def _check_group(group: str) -> str:
    if group and group not in Group.values:
        raise ApplicationError(f"Unknown A/B test group {group!r}; use one of {', '.join(Group.values)}.")
    return group


@transaction.atomic
def model_deploy(
    *,
    model: RegisteredModel,
    traffic_percentage: float = 100.0,
    ab_test_group: str = Group.CONTROL,
    actor: Actor = None,
    reason: str = "",
) -> RegisteredModel:
    """Deploy ``model`` at ``traffic_percentage`` % of its pool's traffic.

    At 100 % the previously deployed models are archived; below, they keep their proportions of
    the remaining traffic. Failed, archived and still-training models are refused, and so is a
    share below 100 % in a pool where nothing else is deployed. A plain traffic change: A/B tests
    start in the experiments app, which calls this service for every other deploy.
    """
    _check_group(ab_test_group)
    deployed = lock_target(model, lock_pool(model.organization_id))
    check_deployable(model)
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic_percentage)
    action = Action.TRAFFIC_CHANGED if model.status == Status.DEPLOYED else Action.DEPLOYED
    _deploy(PoolStep(deployed, actor, reason), model, plan, action=action, group=ab_test_group)
    refresh_routing_version(cached_organization(model))
    return model


@transaction.atomic
def model_promote(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Give ``model`` 100 % of its pool as the new control (an A/B test's winner); archive the rest."""
    deployed = lock_target(model, lock_pool(model.organization_id))
    check_deployable(model)
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic.FULL)
    _deploy(PoolStep(deployed, actor, reason), model, plan, action=Action.PROMOTED, group=Group.CONTROL)
    refresh_routing_version(cached_organization(model))
    return model


@transaction.atomic
def model_start_ab_test(
    *, variant: RegisteredModel, variant_traffic: float = 10.0, actor: Actor = None, reason: str = ""
) -> RegisteredModel:
    """Split a pool for an A/B test: ``variant`` takes ``variant_traffic`` % as variant A, the rest is control.

    The pool must already serve traffic (the control) and the variant must not be deployed yet.
    The traffic half of starting a test: the experiments app calls it with the experiment's row.
    """
    share = traffic.clean_percentage(variant_traffic, allow_full=False)
    deployed = lock_target(variant, lock_pool(variant.organization_id))
    check_deployable(variant)
    if variant.status == Status.DEPLOYED:
        raise Conflict(f"{variant.model_version} is already deployed; set its traffic instead.")
    if not deployed:
        raise Conflict("Nothing is deployed in this pool, so there is no control to test against.")
    if len(deployed) > 1:
        versions = ", ".join(sorted(row.model_version for row in deployed))
        raise Conflict(f"An A/B test needs exactly one deployed control, and this pool has {versions}.")
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, variant.pk, share)
    step = PoolStep(deployed, actor, reason or f"A/B test at {share} %")
    _deploy(
        step,
        variant,
        plan,
        action=Action.DEPLOYED,
        group=Group.VARIANT_A,
        others_group=Group.CONTROL,
        keep_variants=True,
    )
    refresh_routing_version(cached_organization(variant))
    return variant


@transaction.atomic
def model_set_traffic(
    *, model: RegisteredModel, traffic_percentage: float, actor: Actor = None, reason: str = ""
) -> RegisteredModel:
    """Give a deployed model ``traffic_percentage`` %; the others rescale to the rest.

    The only deployed model cannot go below 100 %, and 100 % archives the others.
    """
    deployed = lock_target(model, lock_pool(model.organization_id))
    if model.status != Status.DEPLOYED:
        raise Conflict(f"{model.model_version} is {model.status}; deploy it first.")
    plan = traffic.plan_deploy({row.pk: row.traffic_percentage for row in deployed}, model.pk, traffic_percentage)
    _deploy(PoolStep(deployed, actor, reason), model, plan, action=Action.TRAFFIC_CHANGED, group=None)
    refresh_routing_version(cached_organization(model))
    return model


# --- Leaving the pool ----------------------------------------------------------------------------


def _retire(model: RegisteredModel, *, status: str, action: str, actor: Actor, reason: str, **values: Any) -> None:
    """Take ``model`` out of service with ``status``; if it served traffic, the others share it."""
    deployed = lock_target(model, lock_pool(model.organization_id))
    if model.status == status:
        raise Conflict(f"{model.model_version} is already {status}.")
    step = PoolStep(deployed, actor, reason)
    was_deployed = model.status == Status.DEPLOYED
    if was_deployed:
        plan = traffic.plan_remove({row.pk: row.traffic_percentage for row in deployed}, model.pk)
        for row in deployed:
            if row.pk != model.pk and plan[row.pk] != row.traffic_percentage:
                why = f"took over the traffic of {model.model_version}"
                step.change(
                    row, action=Action.TRAFFIC_CHANGED, status=Status.DEPLOYED, traffic=plan[row.pk], reason=why
                )
        if not plan:
            reason = f"{reason}; the pool has no deployed model now".lstrip("; ")
    step.change(model, action=action, status=status, traffic=0.0, reason=reason, **values)
    step.commit(moved_traffic=was_deployed)
    if was_deployed:
        refresh_routing_version(cached_organization(model))


@transaction.atomic
def model_archive(*, model: RegisteredModel, actor: Actor = None, reason: str = "") -> RegisteredModel:
    """Archive a model. A deployed one gives its traffic to the others in proportion to theirs.

    Archiving the last deployed model is allowed and leaves its pool with nothing deployed
    (routing falls back to the global pool); the audit reason says so.
    """
    _retire(model, status=Status.ARCHIVED, action=Action.ARCHIVED, actor=actor, reason=reason)
    return model


@transaction.atomic
def model_mark_failed(*, model: RegisteredModel, error: str, actor: Actor = None) -> RegisteredModel:
    """Mark a model failed (its training, or the model itself); a deployed one leaves the pool."""
    _retire(model, status=Status.FAILED, action=Action.FAILED, actor=actor, reason=error, error=error)
    return model
