"""How registered models and leaderboard rows look in the API (the seed's fields, and a few more)."""

from rest_framework import serializers

from registry.models import LeaderboardEntry, RegisteredModel

# A model that was never deployed has no group: the column is blank, which no enum would allow.
AB_TEST_GROUP_HELP = "control, variant_a or variant_b; empty for a model that was never deployed."


class RegisteredModelSerializer(serializers.ModelSerializer[RegisteredModel]):
    """A model of the registry: the seed's ``model_registry`` columns, lineage and audit times."""

    organization_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="Empty for a global model.")
    total_revenue = serializers.DecimalField(max_digits=21, decimal_places=2, coerce_to_string=False, read_only=True)
    ab_test_group = serializers.CharField(read_only=True, help_text=AB_TEST_GROUP_HELP)
    reply_rate = serializers.FloatField(read_only=True)
    meeting_rate = serializers.FloatField(read_only=True)
    close_rate = serializers.FloatField(read_only=True)

    class Meta:
        model = RegisteredModel
        fields = [
            "id",
            "model_id",
            "model_version",
            "base_model",
            "status",
            "organization_id",
            "deployed_at",
            "traffic_percentage",
            "ab_test_group",
            "is_baseline",
            "training_examples_count",
            "positive_examples",
            "deals_in_training",
            "total_messages_sent",
            "total_replies",
            "total_meetings_booked",
            "total_deals_closed",
            "total_revenue",
            "reply_rate",
            "meeting_rate",
            "close_rate",
            "reply_rate_vs_baseline",
            "meeting_rate_vs_baseline",
            "close_rate_vs_baseline",
            "provider",
            "fine_tuning_job_id",
            "training_run_id",
            "dataset_sha256",
            "adapter_sha256",
            "base_model_config_sha256",
            "serving_status",
            "serving_error",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class LeaderboardEntrySerializer(serializers.ModelSerializer[LeaderboardEntry]):
    """A row of the ``model_leaderboard`` view: the seed's fields, every counter and all three ranks."""

    organization_id = serializers.UUIDField(read_only=True, allow_null=True)
    total_revenue = serializers.DecimalField(max_digits=21, decimal_places=2, coerce_to_string=False, read_only=True)
    ab_test_group = serializers.CharField(read_only=True, help_text=AB_TEST_GROUP_HELP)

    class Meta:
        model = LeaderboardEntry
        fields = [
            "id",
            "model_id",
            "model_version",
            "organization_id",
            "status",
            "traffic_percentage",
            "ab_test_group",
            "total_messages_sent",
            "total_replies",
            "total_meetings_booked",
            "total_deals_closed",
            "total_revenue",
            "reply_rate",
            "meeting_rate",
            "close_rate",
            "reply_rate_vs_baseline",
            "meeting_rate_vs_baseline",
            "close_rate_vs_baseline",
            "close_rate_rank",
            "reply_rate_rank",
            "revenue_rank",
        ]
        read_only_fields = fields
