"""Which deployed model writes an agent's next message: weighted, sticky per lead, cached.

Each lead falls in one of :data:`BUCKETS` buckets by a hash of its pool and key; the deployed
models of the pool cover consecutive runs of buckets in proportion to their traffic, in a stable
order (by id). The same lead therefore gets the same model for as long as the traffic stays the
same, and a 90/10 split sends 90 % of leads to the first model.

This is the hot path: the routing table of each organization is kept in a process-local dict,
together with the ``Organization.routing_version`` it was loaded at. Every service that moves
traffic bumps that version in the same transaction, and authentication loads the organization
anyway, so checking freshness costs no query; a different version reloads the table.
"""

import hashlib
import random
import uuid
from bisect import bisect_right
from dataclasses import dataclass

from django.db.models import Q

from flywheel.errors import NotFound
from flywheel.models import Organization
from registry.models import RegisteredModel, pool_key

BUCKETS = 10_000


class NoModelDeployed(NotFound):
    """Nothing is deployed for the organization, nor in the global pool."""

    code = "no_model_deployed"


@dataclass(frozen=True)
class RoutingTable:
    """A pool's deployed models and the upper bucket bound of each, ready to answer without a query.

    The model instances are shared by every request of the process: treat them as read-only.
    """

    pool: str
    bounds: tuple[float, ...]
    models: tuple[RegisteredModel, ...]

    def pick(self, bucket: int) -> RegisteredModel:
        """The model whose run of buckets holds ``bucket``."""
        # min() keeps a float sum a hair under 100 % from running past the last model.
        return self.models[min(bisect_right(self.bounds, bucket), len(self.models) - 1)]


_tables: dict[uuid.UUID, tuple[int, RoutingTable | None]] = {}


def bucket_of(pool: str, lead_key: str) -> int:
    """The lead's bucket in a pool: stable across processes and releases (not Python's ``hash``)."""
    digest = hashlib.blake2b(f"{pool}:{lead_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def build_table(pool: str, models: list[RegisteredModel]) -> RoutingTable | None:
    """A routing table over ``models`` (already in a stable order), or ``None`` when empty."""
    if not models:
        return None
    bounds: list[float] = []
    cumulative = 0.0
    for model in models:
        cumulative += model.traffic_percentage * BUCKETS / 100
        bounds.append(cumulative)
    bounds[-1] = float(BUCKETS)
    return RoutingTable(pool=pool, bounds=tuple(bounds), models=tuple(models))


def load_table(organization: Organization) -> RoutingTable | None:
    """The organization's routing table, or the global pool's when it has nothing deployed.

    One query reads both pools' deployed rows.
    """
    rows = list(
        RegisteredModel.objects.deployed()
        .filter(Q(organization_id=organization.pk) | Q(organization__isnull=True))
        .order_by("id")
    )
    own = [row for row in rows if row.organization_id is not None]
    if own:
        return build_table(pool_key(organization.pk), own)
    return build_table(pool_key(None), rows)


def routing_table(organization: Organization) -> RoutingTable | None:
    """The cached table for ``organization``, reloaded when its routing version moved on."""
    cached = _tables.get(organization.pk)
    if cached is None or cached[0] != organization.routing_version:
        cached = (organization.routing_version, load_table(organization))
        _tables[organization.pk] = cached
    return cached[1]


def choose_model(organization: Organization, lead_key: str | None) -> RegisteredModel:
    """The deployed model that should write the next message to ``lead_key``.

    Deterministic for a lead while the traffic is unchanged; without a lead key, a random
    bucket. Falls back to the global pool; raises :class:`NoModelDeployed` when nothing is
    deployed there either.
    """
    table = routing_table(organization)
    if table is None:
        raise NoModelDeployed(
            f"No model is deployed for {organization.slug}, nor in the global pool: deploy one first."
        )
    bucket = random.randrange(BUCKETS) if lead_key is None else bucket_of(table.pool, lead_key)
    return table.pick(bucket)


def clear_cache() -> None:
    """Forget every cached routing table (tests; a process that wants a cold start)."""
    _tables.clear()
