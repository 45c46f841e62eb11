"""The seed's training endpoints: start a run, read it, and ask the provider about its job.

Training is asynchronous: ``POST /training/run`` answers 202 at once with the new run and a
``Location`` to poll; the run's result fields (the seed's ``run_training_cycle`` answer) fill in
as it moves on. Runs and jobs are ops data (agent keys get 403) and scoped like everything else:
another organization's ids answer 404, exactly like ids that do not exist.
"""

import dataclasses

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from flywheel.auth import IsOps, OrganizationScopeSerializer, organization_scope, request_actor
from flywheel.errors import NotFound, error_responses
from flywheel.fields import FiniteFloatField, PercentageField
from registry.services import VERSION_PATTERN
from training.models import TrainingRun
from training.selectors import training_run_answer, training_run_job, training_run_of_job, training_run_visible_get
from training.serializers import JobSerializer, TrainingRunSerializer
from training.services import training_run_start

RUN_PERMISSION = "training.run_training"
VIEW_PERMISSION = "training.view_trainingrun"


class TrainingRunStartApi(APIView):
    """``POST /training/run``: start a training cycle (202; poll the ``Location``).

    400 ``unsupported_method`` when the pool's provider cannot train with ``method`` (OpenAI and
    ``kto``); 409 while a run is active for the same organization (or the global pool). Ops keys train
    their organization's model; staff with ``training.run_training`` any organization's or,
    without one, the global model.
    """

    permission_classes = [IsOps]
    staff_permissions = {"POST": (RUN_PERMISSION,)}

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
        method = serializers.ChoiceField(
            choices=TrainingRun.Method.choices,
            default=TrainingRun.Method.SFT,
            help_text="Only the methods of the pool's provider: kto needs openweights.",
        )
        force = serializers.BooleanField(
            default=False,
            help_text="Train even on the very dataset of the pool's last successful run (else the run is skipped).",
        )

    @extend_schema(
        operation_id="training_run_start",
        request=InputSerializer,
        responses={202: TrainingRunSerializer, **error_responses(403, 404, 409, 413, 415)},
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
        if "organization_id" in values and values["organization_id"] is None and not request.user.is_staff:
            raise exceptions.PermissionDenied(
                "Training the global model (organization_id null) needs staff rights; "
                "omit organization_id to train your organization's model."
            )
        organization = organization_scope(request, values.pop("organization_id", None))
        run = training_run_start(organization=organization, **values, triggered_by="api", actor=request_actor(request))
        location = reverse("training-run", kwargs={"run_id": run.pk})
        body = TrainingRunSerializer(training_run_answer(run=run)).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class TrainingRunDetailApi(APIView):
    """``GET /training/runs/{run_id}``: a run, with the seed's result fields once it has ended.

    Ops keys read their organization's runs; staff need ``training.view_trainingrun``.
    """

    permission_classes = [IsOps]
    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    @extend_schema(
        operation_id="training_run_get",
        parameters=[RUN_ID],
        responses={200: TrainingRunSerializer, **error_responses(403, 404)},
        summary="A training run",
    )
    def get(self, request: Request, run_id: str) -> Response:
        run = training_run_visible_get(user=request.user, run_id=run_id)
        if run is None:
            raise NotFound(f"No training run has the id {run_id}.")
        return Response(TrainingRunSerializer(training_run_answer(run=run)).data)


JOB_ID = OpenApiParameter("job_id", OpenApiTypes.STR, OpenApiParameter.PATH)


class TrainingJobStatusApi(APIView):
    """``GET /training/status/{job_id}``: the provider's fine-tuning job of one of the caller's runs.

    Only jobs that a visible run started are asked about, so a key cannot probe the provider
    for other jobs. The provider's answer is cached for a few seconds (an ended job's for an
    hour); 502 when the provider cannot answer.
    """

    permission_classes = [IsOps]
    staff_permissions = {"GET": (VIEW_PERMISSION,)}

    @extend_schema(
        operation_id="training_job_status",
        parameters=[JOB_ID],
        responses={200: JobSerializer, **error_responses(403, 404, 502)},
        summary="Status of a fine-tuning job",
    )
    def get(self, request: Request, job_id: str) -> Response:
        run = training_run_of_job(user=request.user, job_id=job_id)
        if run is None:
            raise NotFound(f"No training run has the job {job_id}.")
        job = training_run_job(run=run)
        return Response(JobSerializer({**dataclasses.asdict(job), "run_id": run.pk}).data)
