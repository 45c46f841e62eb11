"""How registered models and leaderboard rows look in the API (the seed's fields, and a few more)."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from registry.models import LeaderboardEntry, RegisteredModel
from registry.selectors import wilson_interval

# Only deployed models have a group: the column is blank otherwise, which no enum would allow.
AB_TEST_GROUP_HELP = (
    "control (one per pool), variant_a or variant_b (while an A/B test runs); empty for a model not deployed, "
    "or deployed beside the control outside a test."
)


class RegisteredModelSerializer(serializers.ModelSerializer[RegisteredModel]):
    """A model of the registry: the seed's ``model_registry`` columns, lineage and audit times."""

    organization_id = serializers.UUIDField(read_only=True, allow_null=True, help_text="Empty for a global model.")
    total_revenue = serializers.DecimalField(max_digits=21, decimal_places=2, coerce_to_string=False, read_only=True)
    ab_test_group = serializers.CharField(read_only=True, help_text=AB_TEST_GROUP_HELP)
    serving_status = serializers.CharField(
        read_only=True,
        help_text="Its adapter on the serving server: loaded, unloaded or unload_failed; "
        "empty for a model no server loads (openai, local) or never deployed.",
    )
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
    """A leaderboard row: the seed's fields, every counter, all three ranks and each rate's 95 % interval.

    Rates and their intervals are fractions (0.14 is 14 %), as the seed's answer has them.
    """

    organization_id = serializers.UUIDField(read_only=True, allow_null=True)
    reply_rate_interval = serializers.SerializerMethodField(help_text="95 % Wilson interval [low, high].")
    meeting_rate_interval = serializers.SerializerMethodField(help_text="95 % Wilson interval [low, high].")
    close_rate_interval = serializers.SerializerMethodField(help_text="95 % Wilson interval [low, high].")
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
            "reply_rate_interval",
            "meeting_rate_interval",
            "close_rate_interval",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.FloatField(), allow_null=True))
    def get_reply_rate_interval(self, entry: Any) -> list[float] | None:
        return _interval(entry.total_replies, entry.total_messages_sent)

    @extend_schema_field(serializers.ListField(child=serializers.FloatField(), allow_null=True))
    def get_meeting_rate_interval(self, entry: Any) -> list[float] | None:
        return _interval(entry.total_meetings_booked, entry.total_messages_sent)

    @extend_schema_field(serializers.ListField(child=serializers.FloatField(), allow_null=True))
    def get_close_rate_interval(self, entry: Any) -> list[float] | None:
        return _interval(entry.total_deals_closed, entry.total_messages_sent)


def _interval(successes: int, trials: int) -> list[float] | None:
    bounds = wilson_interval(successes, trials)
    return None if bounds is None else [round(bounds[0], 6), round(bounds[1], 6)]
