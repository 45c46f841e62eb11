"""The experiments' read endpoints: ``GET /api/experiments`` and ``GET /api/experiments/{id}``.

Any API key of an organization reads its own organization's experiments (an agent may want to
know what it is taking part in); staff sessions holding ``experiments.view_experiment`` read
every one, or one organization's with ``organization_id``. Another organization's experiment
answers 404, exactly like one that does not exist. The detail is the live progress of
:mod:`experiments.progress`; the list is paginated (``limit``, ``offset``).
"""

import uuid
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments.models import Experiment
from experiments.progress import earliest_decision_at, experiment_progress
from flywheel.auth import IsOrganizationMember, KeyPrincipal, OrganizationScopeSerializer, organization_scope
from flywheel.errors import NotFound, error_responses

VIEW_PERMISSION = "experiments.view_experiment"
MAX_LIMIT = 100
EXPERIMENT_ID = OpenApiParameter("experiment_id", OpenApiTypes.STR, OpenApiParameter.PATH)


def visible_experiments(request: Request, organization_id: uuid.UUID | None = None) -> Any:
    """The experiments a caller may read: its organization's for a key; all (or one organization's) for staff."""
    experiments = Experiment.objects.select_related("control", "variant", "organization")
    if isinstance(request.user, KeyPrincipal):
        return experiments.filter(organization=organization_scope(request, organization_id))
    if organization_id is not None:
        return experiments.filter(organization=organization_scope(request, organization_id))
    return experiments


# --- Serializers (the OpenAPI schema of the answers) ---------------------------------------------


class IntervalSerializer(serializers.Serializer):
    value = serializers.FloatField()
    low = serializers.FloatField()
    high = serializers.FloatField()


class ArmNumbersSerializer(serializers.Serializer):
    leads = serializers.IntegerField()
    messages = serializers.IntegerField()
    leads_without_key = serializers.IntegerField(help_text="Messages reported without a lead key: one-message leads.")
    provisional = serializers.BooleanField(help_text="True when outcomes may still arrive for these messages.")
    reply_rate = IntervalSerializer(allow_null=True, help_text="Per message, with a cluster-robust 95 % interval.")
    meeting_rate = IntervalSerializer(allow_null=True)
    close_rate = IntervalSerializer(allow_null=True)
    value = IntervalSerializer(allow_null=True, help_text="Per-message value 0.2 reply + 0.3 meeting + 0.5 deal.")


class ArmSerializer(serializers.Serializer):
    arm = serializers.CharField(help_text="control or variant")
    model_id = serializers.UUIDField()
    model_version = serializers.CharField()
    all = ArmNumbersSerializer(help_text="Every message so far (provisional).")
    matured = ArmNumbersSerializer(help_text="Messages whose outcome window has passed.")


class LiftSerializer(IntervalSerializer):
    z = serializers.FloatField(allow_null=True)
    provisional = serializers.BooleanField()


class LiftsSerializer(serializers.Serializer):
    all = LiftSerializer(allow_null=True)
    matured = LiftSerializer(allow_null=True)


class LookDateSerializer(serializers.Serializer):
    look = serializers.IntegerField()
    data_until = serializers.DateTimeField(help_text="The look counts messages sent before this.")
    at = serializers.DateTimeField(help_text="When the look is taken (its messages have matured).")


class LooksSerializer(serializers.Serializer):
    current = LookDateSerializer(allow_null=True)
    next = LookDateSerializer(allow_null=True)
    schedule = LookDateSerializer(many=True)
    earliest_decision_at = serializers.DateTimeField()


class PlanSerializer(serializers.Serializer):
    planned_leads = serializers.IntegerField()
    minimum_effect = serializers.FloatField(help_text="The relative lift in value the test is powered to detect.")
    leads_needed = serializers.IntegerField(allow_null=True, help_text="More leads for 80 % power (provisional).")
    leads_needed_provisional = serializers.BooleanField()
    estimated_decision_at = serializers.DateTimeField(allow_null=True)
    progress_percent = serializers.FloatField()


class DailyPointSerializer(serializers.Serializer):
    day = serializers.DateField()
    arm = serializers.CharField(help_text="control or variant")
    messages = serializers.IntegerField(help_text="Cumulative messages of the arm up to this day.")
    reply_rate = serializers.FloatField()
    meeting_rate = serializers.FloatField()
    close_rate = serializers.FloatField()
    provisional = serializers.BooleanField()


class LookPointSerializer(serializers.Serializer):
    look = serializers.IntegerField()
    information_fraction = serializers.FloatField()
    z = serializers.FloatField(allow_null=True)
    boundary = serializers.FloatField(allow_null=True)
    leads = serializers.IntegerField()


class SeriesSerializer(serializers.Serializer):
    daily = DailyPointSerializer(many=True, help_text="Cumulative rates per arm per day of sending.")
    looks = LookPointSerializer(many=True, help_text="The statistic against its boundary at each look.")


class ExperimentSummarySerializer(serializers.Serializer):
    id = serializers.UUIDField()
    organization_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField()
    control_id = serializers.UUIDField()
    variant_id = serializers.UUIDField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    earliest_decision_at = serializers.DateTimeField()
    planned_looks = serializers.IntegerField()
    last_look = serializers.IntegerField(allow_null=True, help_text="The look of the last recorded evaluation.")


@extend_schema_serializer(component_name="ExperimentProgress")
class ExperimentProgressSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    organization_id = serializers.UUIDField(allow_null=True)
    status = serializers.CharField()
    started_at = serializers.DateTimeField()
    ended_at = serializers.DateTimeField(allow_null=True)
    planned_variant_share = serializers.FloatField()
    planned_looks = serializers.IntegerField()
    look_interval_days = serializers.IntegerField()
    arms = ArmSerializer(many=True)
    lift = LiftsSerializer()
    leads_without_key = serializers.IntegerField()
    looks = LooksSerializer()
    plan = PlanSerializer()
    decision = serializers.DictField(help_text="The test's decision on matured looks (only this decides).")
    series = SeriesSerializer()


def summary(experiment: Experiment) -> dict[str, Any]:
    """One row of the list: no statistics, so the page costs one query."""
    return {
        "id": experiment.pk,
        "organization_id": experiment.organization_id,
        "status": experiment.status,
        "control_id": experiment.control_id,
        "variant_id": experiment.variant_id,
        "started_at": experiment.started_at,
        "ended_at": experiment.ended_at,
        "earliest_decision_at": earliest_decision_at(experiment),
        "planned_looks": experiment.planned_looks,
        "last_look": experiment.decision.get("look"),
    }


# --- Endpoints ----------------------------------------------------------------------------------


class ExperimentListApi(APIView):
    """``GET /api/experiments``: the experiments a caller may read, newest first, a page at a time."""

    permission_classes = [IsOrganizationMember]
    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    class FilterSerializer(OrganizationScopeSerializer):
        status = serializers.ChoiceField(choices=Experiment.Status.choices, required=False)
        limit = serializers.IntegerField(required=False, default=20, min_value=1, max_value=MAX_LIMIT)
        offset = serializers.IntegerField(required=False, default=0, min_value=0, max_value=2**31 - 1)

    @extend_schema_serializer(component_name="ExperimentList")
    class OutputSerializer(serializers.Serializer):
        total = serializers.IntegerField()
        limit = serializers.IntegerField()
        offset = serializers.IntegerField()
        experiments = ExperimentSummarySerializer(many=True)

    @extend_schema(
        operation_id="experiments_list",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses(404)},
        summary="List A/B experiments (paginated)",
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        experiments = visible_experiments(request, data.get("organization_id"))
        if data.get("status"):
            experiments = experiments.filter(status=data["status"])
        page = experiments.order_by("-started_at", "-id")[data["offset"] : data["offset"] + data["limit"]]
        answer = {"total": experiments.count(), "limit": data["limit"], "offset": data["offset"]}
        answer["experiments"] = [summary(experiment) for experiment in page]
        return Response(self.OutputSerializer(answer).data)


class ExperimentDetailApi(APIView):
    """``GET /api/experiments/{experiment_id}``: one experiment's live progress."""

    permission_classes = [IsOrganizationMember]
    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    @extend_schema(
        operation_id="experiments_detail",
        parameters=[EXPERIMENT_ID],
        responses={200: ExperimentProgressSerializer, **error_responses(404)},
        summary="An A/B experiment's live progress",
    )
    def get(self, request: Request, experiment_id: str) -> Response:
        try:
            key = uuid.UUID(experiment_id)
        except ValueError:
            key = None
        experiment = visible_experiments(request).filter(pk=key).first() if key else None
        if experiment is None:
            raise NotFound(f"No experiment has the id {experiment_id}.")
        return Response(ExperimentProgressSerializer(experiment_progress(experiment)).data)
