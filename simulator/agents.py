"""The agents' side of the loop: route a lead, report what was sent, report events as they happen.

Two gateways with one interface. :class:`ServiceGateway` calls the services the API views call
(``choose_model``, ``outcome_upsert_bulk``, ``outcome_event_record_bulk``) in this process;
:class:`HttpGateway` calls the REST API (``GET /api/route``, ``POST /api/outcomes``, ``POST
/api/outcomes/events``) with an agent's API key over one kept-alive connection. Either refuses to
go on when an item is refused: a simulation that loses reports would measure nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import http.client
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from flywheel.models import Organization
from outcomes.leads import lead_key_hash
from outcomes.serializers import OutcomeItemSerializer
from outcomes.services import BulkResult, EventItem, OutcomeItem, outcome_event_record_bulk, outcome_upsert_bulk
from registry.routing import choose_model

BATCH = 1_000  # the API's largest batch
# Labels carry their lead (as a keyed hash) where the services take one, for the per-lead A/B
# statistics; until then the lead is left out. The API's field is "lead", the item's "lead_hash".
API_TAKES_LEAD = "lead" in OutcomeItemSerializer._declared_fields


@dataclass(frozen=True)
class Route:
    """The model the router chose for a lead."""

    registry_id: str
    model_version: str
    ab_test_group: str


@dataclass(frozen=True)
class Report:
    """One sent message as an agent reports it: the item, and the lead it went to."""

    item: OutcomeItem
    lead_key: str


class Gateway(Protocol):
    def begin_day(self) -> None: ...

    def route(self, lead_key: str) -> Route: ...

    def report(self, reports: Sequence[Report]) -> None: ...

    def events(self, items: Sequence[EventItem]) -> None: ...


class SimulationError(Exception):
    """The loop cannot go on (a refused report, an unreachable server)."""


def outcome_report(*, lead_key: str, **values: Any) -> Report:
    """A message's report: its :class:`OutcomeItem` (with the lead's hash) and lead key."""
    return Report(OutcomeItem(**values, lead_hash=lead_key_hash(lead_key)), lead_key)


def _check(result: BulkResult, what: str) -> None:
    failed = [r for r in result.results if not r.ok]
    if failed:
        raise SimulationError(f"{len(failed)} {what} refused, e.g. {failed[0].external_id}: {failed[0].errors}")


class ServiceGateway:
    """The agents' calls as the API views make them, in this process."""

    def __init__(self, organization: Organization) -> None:
        self.organization = organization

    def begin_day(self) -> None:
        """Reload the organization's routing version, as each API request's authentication does."""
        self.organization.refresh_from_db(fields=["routing_version"])

    def route(self, lead_key: str) -> Route:
        model = choose_model(self.organization, lead_key)
        return Route(str(model.pk), model.model_version, model.ab_test_group)

    def report(self, reports: Sequence[Report]) -> None:
        items = [report.item for report in reports]
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            _check(outcome_upsert_bulk(organization=self.organization, items=chunk), "outcome reports")

    def events(self, items: Sequence[EventItem]) -> None:
        for start in range(0, len(items), BATCH):
            chunk = items[start : start + BATCH]
            _check(outcome_event_record_bulk(organization=self.organization, events=chunk), "events")


class HttpGateway:
    """The agents' calls over HTTP to a Flywheel server at ``base_url``, with an agent's API key."""

    def __init__(self, base_url: str, api_key: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        connection = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
        self._connection = connection(parts.netloc, timeout=60)
        self._prefix = parts.path.rstrip("/")
        self._headers = {"Authorization": f"Api-Key {api_key}", "Content-Type": "application/json"}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        payload = json.dumps(body, default=_json_value) if body is not None else None
        try:
            self._connection.request(method, self._prefix + path, body=payload, headers=self._headers)
            response = self._connection.getresponse()
            data = response.read()
        except OSError as exc:
            raise SimulationError(f"{method} {path} failed: {exc}") from exc
        if response.status >= 300 and response.status != 207:
            raise SimulationError(f"{method} {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data)

    def begin_day(self) -> None:
        pass

    def route(self, lead_key: str) -> Route:
        answer = self._call("GET", "/api/route?" + urllib.parse.urlencode({"lead": lead_key}))
        return Route(answer["registry_id"], answer["model_version"], answer["ab_test_group"])

    def report(self, reports: Sequence[Report]) -> None:
        rows = []
        for report in reports:
            row = {k: v for k, v in report.item.values().items() if k != "lead_hash"}
            row.update(external_id=report.item.external_id, model=report.item.model_id)
            if API_TAKES_LEAD:
                row["lead"] = report.lead_key
            rows.append(row)
        self._post("/api/outcomes", rows, "outcome reports")

    def events(self, items: Sequence[EventItem]) -> None:
        rows = [{k: v for k, v in dataclasses.asdict(item).items() if v is not None} for item in items]
        self._post("/api/outcomes/events", rows, "events")

    def _post(self, path: str, rows: list[dict[str, Any]], what: str) -> None:
        for start in range(0, len(rows), BATCH):
            answer = self._call("POST", path, rows[start : start + BATCH])
            failed = [r for r in answer.get("results", []) if not r.get("ok")]
            if failed:
                raise SimulationError(f"{len(failed)} {what} refused, e.g. {failed[0]}")

    def close(self) -> None:
        self._connection.close()


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)  # UUIDs
