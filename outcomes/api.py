"""The agents' outcome endpoints and the seed's training-data statistics.

``POST /api/outcomes`` and ``POST /api/outcomes/events`` take one object or a list of up to
:data:`~outcomes.serializers.MAX_ITEMS`, checked item by item at this edge: a bad item gets its
errors in its own result and the others are still written (200); a single object that is not
valid answers 400.
"""

from collections.abc import Callable
from functools import partial
from typing import Any

from drf_spectacular.utils import OpenApiExample, PolymorphicProxySerializer, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flywheel.auth import OrganizationScopeSerializer, organization_required, organization_scope
from flywheel.errors import ApplicationError, error_responses
from flywheel.fields import FiniteFloatField
from flywheel.models import Organization
from outcomes.selectors import training_data_stats
from outcomes.serializers import (
    MAX_ITEMS,
    BulkResultSerializer,
    EventItemSerializer,
    OutcomeItemSerializer,
    StrictSerializer,
    check_batch,
)
from outcomes.services import BulkResult, EventItem, OutcomeItem, outcome_event_record_bulk, outcome_upsert_bulk


def batch_items(data: Any) -> tuple[list[Any], bool]:
    """The items of a body that is one object or a list of objects; whether it was one object."""
    if isinstance(data, dict):
        return [data], True
    if not isinstance(data, list):
        raise ApplicationError("Send one object or a list of objects.", code="invalid_body")
    if not data:
        raise ApplicationError("The list is empty: send at least one item.", code="empty_batch")
    if len(data) > MAX_ITEMS:
        raise ApplicationError(
            f"At most {MAX_ITEMS} items per request, not {len(data)}: split the batch.",
            code="too_many_items",
            details={"max_items": MAX_ITEMS, "items": len(data)},
        )
    return data, False


def run_batch(
    data: Any, check: Callable[[Any], Any], write: Callable[[list[Any]], BulkResult]
) -> tuple[BulkResult, bool]:
    """Check each item with ``check``, hand the valid ones to ``write`` (one service call), merge the results.

    Results keep the request's order and indices; whether the body was a single object comes second.
    """
    items, single = batch_items(data)
    return check_batch(items, check).write_with(write), single


def batch_response(outcome: BulkResult, single: bool) -> Response:
    """200 with the per-item results; 400 when the body was a single object that failed.

    The body is built as ``BulkResultSerializer`` describes it: serializing a batch of 1,000
    results through it cost more than the service's own statements.
    """
    if single and outcome.failed:
        result = outcome.results[0]
        raise ApplicationError("The item is not valid.", details=result.errors)
    results = [
        {
            "index": r.index,
            "external_id": r.external_id,
            "ok": r.ok,
            "id": r.id,
            "created": r.created,
            "changed": r.changed,
            "errors": r.errors,
        }
        for r in outcome.results
    ]
    body = {"total": len(results), "succeeded": outcome.succeeded, "failed": outcome.failed, "results": results}
    return Response(body)


def batch_body(name: str, item: type[serializers.Serializer]) -> PolymorphicProxySerializer:
    """The request schema of a batch endpoint: one item, or a list (sizes added by :func:`batch_limits_hook`)."""
    return PolymorphicProxySerializer(
        component_name=name,
        serializers=[item(), item(many=True)],
        resource_type_field_name=None,
        many=False,
    )


def batch_limits_hook(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular post-processing: state the list sizes of the batch bodies in the schema.

    ``PolymorphicProxySerializer`` drops ``min_length``/``max_length`` of a list serializer.
    """
    schemas = result.get("components", {}).get("schemas", {})
    for name in ("OutcomeBatchRequest", "EventBatchRequest"):
        for variant in schemas.get(name, {}).get("oneOf", []):
            if variant.get("type") == "array":
                variant.update(minItems=1, maxItems=MAX_ITEMS)
    return result


OUTCOME_EXAMPLE = {
    "external_id": "msg-000123",
    "model": None,
    "industry": "SaaS",
    "role": "VP Sales",
    "framework": "PAS",
    "tone": "professional",
    "channel": "email",
    "icp_match_score": 0.9,
    "first_name": "Maya",
    "company": "Northwind",
    "subject": "Transform your sales process",
    "body": "Hi {{first_name}}, ...",
    "sent_at": "2025-01-20T09:30:00Z",
}


class BatchApi(APIView):
    """A bulk write: one object or a list of items, checked one by one here, handed to one service."""

    class FilterSerializer(OrganizationScopeSerializer):
        pass

    item_serializer: type[StrictSerializer]

    def write(self, organization: Organization, items: list[Any]) -> BulkResult:
        raise NotImplementedError

    def post(self, request: Request) -> Response:
        scope = self.FilterSerializer(data=request.query_params)
        scope.is_valid(raise_exception=True)
        organization = organization_required(request, scope.validated_data.get("organization_id"))
        outcome, single = run_batch(request.data, self.item_serializer.check, partial(self.write, organization))
        return batch_response(outcome, single)


class OutcomeUpsertApi(BatchApi):
    """``POST /api/outcomes``: create or update sent messages by ``external_id``."""

    staff_permissions = {"POST": ("outcomes.add_outcomelabel", "outcomes.change_outcomelabel")}
    item_serializer = OutcomeItemSerializer

    @extend_schema(
        operation_id="outcomes_upsert",
        parameters=[BatchApi.FilterSerializer],
        request=batch_body("OutcomeBatch", OutcomeItemSerializer),
        responses={200: BulkResultSerializer, **error_responses(404, 413, 415)},
        examples=[OpenApiExample("One message", value=OUTCOME_EXAMPLE, request_only=True)],
        summary="Report sent messages (one or up to 1,000)",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def write(self, organization: Organization, items: list[OutcomeItem]) -> BulkResult:
        return outcome_upsert_bulk(organization=organization, items=items)


class OutcomeEventsApi(BatchApi):
    """``POST /api/outcomes/events``: funnel events; a retried batch changes nothing."""

    staff_permissions = {"POST": ("outcomes.change_outcomelabel",)}
    item_serializer = EventItemSerializer

    @extend_schema(
        operation_id="outcomes_events_record",
        parameters=[BatchApi.FilterSerializer],
        request=batch_body("EventBatch", EventItemSerializer),
        responses={200: BulkResultSerializer, **error_responses(404, 413, 415)},
        examples=[
            OpenApiExample(
                "A reply and a deal",
                value=[
                    {
                        "external_id": "msg-000123",
                        "type": "replied",
                        "occurred_at": "2025-01-21T10:00:00Z",
                        "sentiment": 0.8,
                    },
                    {"external_id": "msg-000123", "type": "deal_closed", "deal_value": 15000},
                ],
                request_only=True,
            )
        ],
        summary="Record funnel events (one or up to 1,000)",
    )
    def post(self, request: Request) -> Response:
        return super().post(request)

    def write(self, organization: Organization, items: list[EventItem]) -> BulkResult:
        return outcome_event_record_bulk(organization=organization, events=items)


class TrainingStatsApi(APIView):
    """``GET /training/stats``: the seed's counts over the pool a training run would export."""

    staff_permissions = {"GET": ("outcomes.view_outcomelabel",)}

    class FilterSerializer(OrganizationScopeSerializer):
        min_quality_score = FiniteFloatField(required=False, default=0.6, min_value=0.0, max_value=1.0)

    @extend_schema_serializer(component_name="TrainingStats")
    class OutputSerializer(serializers.Serializer):
        total_examples = serializers.IntegerField()
        positive_examples = serializers.IntegerField()
        negative_examples = serializers.IntegerField()
        neutral_examples = serializers.IntegerField()
        deals_closed = serializers.IntegerField()
        meetings_booked = serializers.IntegerField()
        replies = serializers.IntegerField()

    @extend_schema(
        operation_id="training_stats",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses(404)},
        summary="Training data statistics",
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        organization = organization_scope(request, query.validated_data.get("organization_id"))
        stats = training_data_stats(
            organization_id=organization.pk if organization is not None else None,
            min_quality_score=query.validated_data["min_quality_score"],
        )
        return Response(self.OutputSerializer(stats).data)
