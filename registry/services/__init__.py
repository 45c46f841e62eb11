"""Every write to the model registry: registration, deployment and traffic, rollback, counters.

Each service is atomic and audited with :class:`~registry.models.ModelEvent` rows; the actor is a
staff user, an API key principal or ``None`` for the system. The modules of this package hold one
concern each; their services are importable from here.
"""

from registry.services.deployment import (
    model_archive,
    model_deploy,
    model_mark_failed,
    model_promote,
    model_set_traffic,
    model_start_ab_test,
)
from registry.services.performance import (
    Counts,
    baseline_refresh,
    model_counters_add,
    model_performance_update,
    model_set_baseline,
)
from registry.services.pool import (
    Actor,
    actor_fields,
    bump_routing_version,
    collect_events,
    configuration,
    dry_run,
    lock_pool,
    model_record_test_end,
    recorded,
)
from registry.services.registration import VERSION_PATTERN, model_mark_ready, model_register
from registry.services.rollback import last_traffic_step, model_rollback
from registry.services.serving import SyncCounts, model_unload_adapter, serving_sync

__all__ = [
    "VERSION_PATTERN",
    "Actor",
    "Counts",
    "SyncCounts",
    "actor_fields",
    "baseline_refresh",
    "bump_routing_version",
    "collect_events",
    "configuration",
    "dry_run",
    "last_traffic_step",
    "lock_pool",
    "model_archive",
    "model_counters_add",
    "model_deploy",
    "model_mark_failed",
    "model_mark_ready",
    "model_performance_update",
    "model_promote",
    "model_record_test_end",
    "model_register",
    "model_rollback",
    "model_set_baseline",
    "model_set_traffic",
    "model_start_ab_test",
    "model_unload_adapter",
    "recorded",
    "serving_sync",
]
