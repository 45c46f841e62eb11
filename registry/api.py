"""The registry's endpoints: routing for agents; models and the leaderboard for ML ops.

Every read is scoped by :func:`flywheel.auth.organization_scope`: a key sees its organization's
models and the global ones; another organization's ids answer 404 like missing ones. Global
models are changed only by staff holding ``registry.deploy_model``.
"""

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flywheel.auth import KeyPrincipal, OrganizationScopeSerializer, organization_required, organization_scope
from flywheel.errors import error_responses
from registry.models import RegisteredModel
from registry.routing import choose_model
from registry.selectors import LEADERBOARD_MIN_SAMPLES, leaderboard, model_get, models_list
from registry.serializers import LeaderboardEntrySerializer, RegisteredModelSerializer
from registry.serving import serving_base_url

DEPLOY_PERMISSION = "registry.deploy_model"
VIEW_PERMISSION = "registry.view_registeredmodel"


class RouteApi(APIView):
    """``GET /api/route?lead=<key>``: the deployed model that writes this lead's next message.

    Sticky per lead while traffic is unchanged; falls back to the global pool. The routing
    table is cached per process and its freshness rides on the authentication query, so routing
    adds no query of its own. ``model`` and ``base_url`` are what an agent gives the ``openai``
    client: where the model answers, read from the settings, not the database.
    """

    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    class FilterSerializer(OrganizationScopeSerializer):
        lead = serializers.CharField(
            required=False, max_length=255, help_text="The lead's key; without it, a random bucket."
        )

    @extend_schema_serializer(component_name="Route")
    class OutputSerializer(serializers.Serializer):
        registry_id = serializers.UUIDField(source="pk")
        model_id = serializers.CharField()
        model_version = serializers.CharField()
        ab_test_group = serializers.CharField(allow_blank=True)
        model = serializers.CharField(help_text="The name to send as the chat completion's ``model``.")
        base_url = serializers.URLField(
            allow_null=True,
            help_text="The OpenAI-compatible base URL to call it at (openweights: the vLLM server; openai: "
            "OpenAI's API or OPENAI_BASE_URL); null when the model has no server agents can call (local).",
        )

    @extend_schema(
        operation_id="route",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses(404)},
        summary="Which model writes the next message to a lead",
    )
    def get(self, request: Request) -> Response:
        # The hot path: the filter's own fields validate the two parameters, and the answer is
        # built as the OutputSerializer describes it. A serializer instance per request (it
        # copies its fields) costs about 100 microseconds, more than routing itself.
        organization_id = query_value(self.FilterSerializer, request, "organization_id")
        organization = organization_required(request, organization_id)
        model = choose_model(organization, query_value(self.FilterSerializer, request, "lead"))
        answer = {
            "registry_id": str(model.pk),
            "model_id": model.model_id,
            "model_version": model.model_version,
            "ab_test_group": model.ab_test_group,
            "model": model.model_id,
            "base_url": serving_base_url(model.provider),
        }
        return Response(answer)


def query_value(serializer_class: type[serializers.Serializer], request: Request, name: str) -> Any:
    """One query parameter validated by the field ``serializer_class`` declares for it (None if absent)."""
    field = serializer_class._declared_fields[name]
    raw = request.query_params.get(name)
    if raw is None or (raw == "" and field.allow_null):  # as a serializer reads an empty parameter
        return None
    try:
        return field.run_validation(raw)
    except serializers.ValidationError as exc:
        raise serializers.ValidationError({name: exc.detail}) from exc


class ModelListApi(APIView):
    """``GET /training/models``: the organization's models and the global ones, newest first."""

    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    class FilterSerializer(OrganizationScopeSerializer):
        status = serializers.ChoiceField(choices=RegisteredModel.Status.choices, required=False)

    @extend_schema_serializer(component_name="ModelList")
    class OutputSerializer(serializers.Serializer):
        total = serializers.IntegerField()
        models = RegisteredModelSerializer(many=True)

    @extend_schema(
        operation_id="training_models_list",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses(404)},
        summary="List models (filter by status and organization)",
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        organization = organization_scope(request, query.validated_data.get("organization_id"))
        models = list(
            models_list(organization=organization, status=query.validated_data.get("status"), include_global=True)
        )
        return Response(self.OutputSerializer({"total": len(models), "models": models}).data)


class LeaderboardApi(APIView):
    """``GET /training/leaderboard``: a pool's models with enough messages, best close rate first.

    Ranks are among the models listed; archived models only with ``include_archived=true``; a
    ``min_samples`` that is not a whole number of at least 0 answers 400.
    """

    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    class FilterSerializer(OrganizationScopeSerializer):
        min_samples = serializers.IntegerField(
            required=False,
            default=LEADERBOARD_MIN_SAMPLES,
            min_value=0,
            max_value=2**31 - 1,
            help_text="Messages sent, at least.",
        )
        include_archived = serializers.BooleanField(required=False, default=False)

    @extend_schema_serializer(component_name="Leaderboard")
    class OutputSerializer(serializers.Serializer):
        total = serializers.IntegerField()
        leaderboard = LeaderboardEntrySerializer(many=True)

    @extend_schema(
        operation_id="training_leaderboard",
        parameters=[FilterSerializer],
        responses={200: OutputSerializer, **error_responses(404)},
        summary="Model performance leaderboard",
    )
    def get(self, request: Request) -> Response:
        query = self.FilterSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        organization = organization_scope(request, query.validated_data.get("organization_id"))
        entries = list(
            leaderboard(
                organization=organization,
                min_samples=query.validated_data["min_samples"],
                include_archived=query.validated_data["include_archived"],
            )
        )
        return Response(self.OutputSerializer({"total": len(entries), "leaderboard": entries}).data)


def deployable_model(request: Request, registry_id: str) -> RegisteredModel:
    """The model a caller may change: its organization's; a global one only for permitted staff."""
    user = request.user
    if isinstance(user, KeyPrincipal):
        model = model_get(registry_id=registry_id, organization=user.organization)
        if model.organization_id is None:
            raise exceptions.PermissionDenied(f"Global models are changed only by staff with {DEPLOY_PERMISSION}.")
        return model
    return model_get(registry_id=registry_id)
