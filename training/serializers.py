"""How training runs and provider jobs look in the API: the seed's result fields, and the run's own."""

from rest_framework import serializers

from training.models import TrainingRun


class RunTrainingStatsSerializer(serializers.Serializer):
    training_examples_count = serializers.IntegerField()
    validation_examples_count = serializers.IntegerField()
    positive_examples = serializers.IntegerField()
    deals_in_training = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    trained_tokens = serializers.IntegerField(allow_null=True)
    estimated_cost = serializers.CharField(help_text="USD, as a decimal string.")


class TrainingRunSerializer(serializers.Serializer):
    """A run as :func:`training.selectors.training_run_answer` builds it: the seed's result plus the run's own fields.

    ``status`` is the seed's: "success" once the run succeeded, else the run's own status
    (pending, exporting, ..., failed, cancelled, skipped); ``run_status`` is always the latter.
    """

    id = serializers.UUIDField()
    status = serializers.CharField(help_text='"success", or the run\'s status while it is not a success.')
    run_status = serializers.ChoiceField(choices=TrainingRun.Status.choices)
    model_id = serializers.CharField(allow_null=True, help_text="The fine-tuned model, once trained.")
    model_version = serializers.CharField(allow_null=True)
    registry_id = serializers.UUIDField(allow_null=True, help_text="The registered model, once registered.")
    job_id = serializers.CharField(allow_null=True, help_text="The provider's fine-tuning job.")
    training_stats = RunTrainingStatsSerializer()
    training_duration_seconds = serializers.FloatField(allow_null=True)
    deployed = serializers.BooleanField()
    error = serializers.CharField(allow_null=True)
    organization_id = serializers.UUIDField(allow_null=True, help_text="Empty for the global model.")
    method = serializers.CharField()
    provider = serializers.CharField(help_text="The provider the run trains on, chosen by its pool at its start.")
    metrics = serializers.DictField(
        help_text="Figures the provider measured beyond loss checkpoints (the local provider: examples, "
        "segments, validation coverage); empty when it reports none."
    )
    min_quality_score = serializers.FloatField()
    force = serializers.BooleanField(help_text="Whether the run trains even on an unchanged dataset.")
    deploy_immediately = serializers.BooleanField()
    ab_test_percentage = serializers.FloatField()
    triggered_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class JobSerializer(serializers.Serializer):
    """A fine-tuning job as the provider reports it now (the seed's fields, times in unix seconds)."""

    id = serializers.CharField()
    status = serializers.CharField(help_text="validating_files, queued, running, succeeded, failed or cancelled.")
    model = serializers.CharField(help_text="The base model.")
    fine_tuned_model = serializers.CharField(allow_null=True)
    trained_tokens = serializers.IntegerField(allow_null=True)
    finished_at = serializers.IntegerField(allow_null=True)
    created_at = serializers.IntegerField(allow_null=True)
    estimated_finish = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    run_id = serializers.UUIDField(help_text="The training run that started the job.")
