"""The experiments' endpoints: deploying a model (a test when it is one), promoting a winner, stopping a test.

All answer ML ops: ops keys act on their organization; staff holding ``registry.deploy_model`` on
any organization or, without one, the global pool. The paths are the seed's ``/training/...``.
"""

from typing import Any

from django.core.exceptions import ValidationError
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments.models import Experiment
from experiments.services import experiment_stop, model_deploy_or_start_test, promote_ab_test_winner
from flywheel.auth import IsOps, KeyPrincipal, OrganizationScopeSerializer, organization_scope, request_actor
from flywheel.errors import NotFound, error_responses
from flywheel.fields import PercentageField
from registry.api import DEPLOY_PERMISSION, deployable_model
from registry.models import RegisteredModel
from registry.serializers import RegisteredModelSerializer

REGISTRY_ID = OpenApiParameter("registry_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class ModelDeployApi(APIView):
    """``POST /training/deploy/{registry_id}``: deploy a model at a share of its pool's traffic.

    At 100 % the other deployed models are archived; below, they keep their proportions of the
    rest; a new model deployed as a variant beside a single control starts an A/B test. Ops keys
    and staff with ``registry.deploy_model``.
    """

    permission_classes = [IsOps]
    staff_permissions = {"POST": (DEPLOY_PERMISSION,)}

    @extend_schema_serializer(component_name="Deploy")
    class InputSerializer(serializers.Serializer):
        traffic_percentage = PercentageField(default=100.0)
        ab_test_group = serializers.ChoiceField(
            choices=RegisteredModel.ABTestGroup.choices, default=RegisteredModel.ABTestGroup.CONTROL
        )
        reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)
        override_experiment = serializers.BooleanField(
            default=False,
            help_text="Stop the A/B test this deploy touches (with the reason) instead of being refused with 409.",
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs["override_experiment"] and not attrs["reason"].strip():
                raise serializers.ValidationError({"reason": ["An override of a running A/B test needs a reason."]})
            return attrs

    @extend_schema(
        operation_id="training_deploy",
        parameters=[REGISTRY_ID],
        request=InputSerializer,
        responses={200: RegisteredModelSerializer, **error_responses(404, 409, 413, 415, 502, 503)},
        examples=[
            OpenApiExample(
                "Full traffic", value={"traffic_percentage": 100.0, "ab_test_group": "control"}, request_only=True
            )
        ],
        summary="Deploy a model to production",
    )
    def post(self, request: Request, registry_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = deployable_model(request, registry_id)
        model = model_deploy_or_start_test(model=model, actor=request_actor(request), **data.validated_data)
        return Response(RegisteredModelSerializer(model).data)


class PromoteWinnerApi(APIView):
    """``POST /training/promote-winner``: evaluate the pool's running A/B test and apply its decision.

    The variant is promoted to 100 % only when the sequential test says the difference is real;
    when undecided nothing moves and the answer says why. Ops keys act on their organization;
    staff with ``registry.deploy_model`` on any organization or, without one, the global pool.
    """

    permission_classes = [IsOps]
    staff_permissions = {"POST": (DEPLOY_PERMISSION,)}

    @extend_schema_serializer(component_name="PromoteWinner")
    class InputSerializer(OrganizationScopeSerializer):
        pass

    @extend_schema_serializer(component_name="PromotionResult")
    class OutputSerializer(serializers.Serializer):
        winner = serializers.ChoiceField(choices=["variant", "control"], allow_null=True)
        winner_id = serializers.UUIDField(allow_null=True)
        improvement_percentage = serializers.FloatField(allow_null=True)
        control_score = serializers.FloatField()
        variant_score = serializers.FloatField()
        promote = serializers.BooleanField(help_text="Whether the test says the variant is really better.")
        action = serializers.ChoiceField(choices=["promoted", "rolled_back", "stopped", "none"])
        z = serializers.FloatField(allow_null=True)
        boundary = serializers.FloatField(allow_null=True, help_text="The O'Brien-Fleming z boundary at this look.")
        srm_p_value = serializers.FloatField(allow_null=True, help_text="Sample-ratio mismatch check.")
        look = serializers.IntegerField()
        planned_looks = serializers.IntegerField()
        stopped = serializers.BooleanField()
        reasons = serializers.ListField(child=serializers.CharField())
        additional_messages_needed = serializers.IntegerField(allow_null=True)
        experiment_id = serializers.UUIDField()
        experiment_status = serializers.CharField()

    @extend_schema(
        operation_id="training_promote_winner",
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(404, 409, 413, 415, 502, 503)},
        summary="Promote the A/B test winner to 100 % traffic",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        organization = organization_scope(request, data.validated_data.get("organization_id"))
        answer = promote_ab_test_winner(organization=organization, actor=request_actor(request))
        return Response(self.OutputSerializer(answer).data)


# --- Stopping a test ----------------------------------------------------------------------------

EXPERIMENT_ID = OpenApiParameter("experiment_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class ExperimentStopApi(APIView):
    """``POST /api/experiments/{id}/stop``: stop a running A/B test without a winner, with a reason.

    The variant leaves and the control gets its traffic back; the experiment ends ``stopped``
    with the reason and who stopped it. Stopping one that has already ended answers 409 with its
    state in the details (nothing changes). Ops keys act on their organization's experiments;
    staff with ``registry.deploy_model`` on any.
    """

    permission_classes = [IsOps]
    staff_permissions = {"POST": (DEPLOY_PERMISSION,)}

    @extend_schema_serializer(component_name="ExperimentStop")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=1000, help_text="Why, for the audit trail.")

    @extend_schema_serializer(component_name="StoppedExperiment")
    class OutputSerializer(serializers.Serializer):
        experiment_id = serializers.UUIDField(source="pk")
        status = serializers.CharField()
        outcome = serializers.CharField()
        end_reason = serializers.CharField()
        ended_by = serializers.CharField()
        ended_at = serializers.DateTimeField()

    @extend_schema(
        operation_id="experiment_stop",
        parameters=[EXPERIMENT_ID],
        request=InputSerializer,
        responses={200: OutputSerializer, **error_responses(404, 409, 413, 415)},
        summary="Stop a running A/B test",
    )
    def post(self, request: Request, experiment_id: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        experiment = experiment_for(request, experiment_id)
        stopped = experiment_stop(
            experiment=experiment, actor=request_actor(request), reason=data.validated_data["reason"]
        )
        return Response(self.OutputSerializer(stopped).data)


def experiment_for(request: Request, experiment_id: str) -> Experiment:
    """The experiment a caller may act on: its organization's (a key), or any (permitted staff); else 404."""
    experiments = Experiment.objects.select_related("organization")
    user = request.user
    if isinstance(user, KeyPrincipal):
        experiments = experiments.filter(organization_id=user.organization.pk)
    try:
        return experiments.get(pk=experiment_id)
    except (Experiment.DoesNotExist, ValidationError, ValueError):
        raise NotFound(f"No experiment has the id {experiment_id}.") from None
