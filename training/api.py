"""The seed's training endpoints: start a run, read it, and ask the provider about its job.

Training is asynchronous: ``POST /training/run`` answers 202 at once with the new run and a
``Location`` to poll; the run's result fields (the seed's ``run_training_cycle`` answer) fill in
as it moves on. Runs and jobs are scoped like everything else: another organization's ids answer
404, exactly like ids that do not exist.
"""

import dataclasses
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flywheel.auth import IsOps, KeyPrincipal, OrganizationScopeSerializer, organization_scope, request_actor
from flywheel.errors import NotFound, error_responses
from flywheel.fields import FiniteFloatField, PercentageField
from registry.services import VERSION_PATTERN
from training.models import TrainingRun
from training.providers import get_provider
from training.serializers import JobSerializer, TrainingRunSerializer
from training.services import training_run_result, training_run_start

RUN_PERMISSION = "training.run_training"


def run_body(run: TrainingRun) -> dict[str, Any]:
    """A run as :class:`TrainingRunSerializer` describes it."""
    return {
        **training_run_result(run),
        "id": run.pk,
        "run_status": run.status,
        "organization_id": run.organization_id,
        "method": run.method,
        "min_quality_score": run.min_quality_score,
        "deploy_immediately": run.deploy_immediately,
        "ab_test_percentage": run.ab_test_percentage,
        "triggered_by": run.triggered_by,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def visible_runs(request: Request) -> QuerySet[TrainingRun]:
    """The runs a caller may see: its organization's for a key, every run for staff."""
    user = request.user
    if isinstance(user, KeyPrincipal):
        return TrainingRun.objects.filter(organization_id=user.organization.pk)
    return TrainingRun.objects.all()


class TrainingRunStartApi(APIView):
    """``POST /training/run``: start a training cycle (202; poll the ``Location``).

    409 while a run is active for the same organization (or the global pool). Ops keys train
    their organization's model; staff with ``training.run_training`` any organization's or,
    without one, the global model.
    """

    permission_classes = [IsOps]
    staff_permission = RUN_PERMISSION

    @extend_schema_serializer(component_name="TrainingRunStart")
    class InputSerializer(OrganizationScopeSerializer):
        model_version = serializers.RegexField(
            VERSION_PATTERN,
            max_length=32,
            required=False,
            allow_null=True,
            help_text="e.g. v2.5.0; empty: the next one.",
        )
        min_quality_score = FiniteFloatField(default=0.6, min_value=0.0, max_value=1.0)
        deploy_immediately = serializers.BooleanField(default=False)
        ab_test_percentage = PercentageField(default=10.0)
        method = serializers.ChoiceField(choices=TrainingRun.Method.choices, default=TrainingRun.Method.SFT)

    @extend_schema(
        operation_id="training_run_start",
        request=InputSerializer,
        responses={202: TrainingRunSerializer, **error_responses(404, 409, 413, 415)},
        examples=[
            OpenApiExample(
                "The seed's request",
                value={
                    "organization_id": None,
                    "model_version": "v2.5.0",
                    "min_quality_score": 0.6,
                    "deploy_immediately": False,
                    "ab_test_percentage": 10.0,
                },
                request_only=True,
            )
        ],
        summary="Trigger a training cycle",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        organization = organization_scope(request, values.pop("organization_id", None))
        run = training_run_start(organization=organization, **values, triggered_by="api", actor=request_actor(request))
        location = reverse("training-run", kwargs={"run_id": run.pk})
        body = TrainingRunSerializer(run_body(run)).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class TrainingRunDetailApi(APIView):
    """``GET /training/runs/{run_id}``: a run, with the seed's result fields once it has ended."""

    @extend_schema(
        operation_id="training_run_get",
        parameters=[RUN_ID],
        responses={200: TrainingRunSerializer, **error_responses(404)},
        summary="A training run",
    )
    def get(self, request: Request, run_id: str) -> Response:
        try:
            run = visible_runs(request).filter(pk=run_id).first()
        except ValidationError:  # not a UUID
            run = None
        if run is None:
            raise NotFound(f"No training run has the id {run_id}.")
        return Response(TrainingRunSerializer(run_body(run)).data)


JOB_ID = OpenApiParameter("job_id", OpenApiTypes.STR, OpenApiParameter.PATH)


class TrainingJobStatusApi(APIView):
    """``GET /training/status/{job_id}``: the provider's fine-tuning job of one of the caller's runs.

    Only jobs that a visible run started are asked about, so a key cannot probe the provider
    for other jobs; 502 when the provider cannot answer.
    """

    @extend_schema(
        operation_id="training_job_status",
        parameters=[JOB_ID],
        responses={200: JobSerializer, **error_responses(404, 502)},
        summary="Status of a fine-tuning job",
    )
    def get(self, request: Request, job_id: str) -> Response:
        run = visible_runs(request).filter(provider_job_id=job_id).exclude(provider_job_id="").first()
        if run is None:
            raise NotFound(f"No training run has the job {job_id}.")
        job = get_provider(run.provider or None).get_job(job_id)
        return Response(JobSerializer({**dataclasses.asdict(job), "run_id": run.pk}).data)
