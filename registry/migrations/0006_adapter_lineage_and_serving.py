"""Registered models record their adapter's sha256, their base model's config hash, and serving.

Adding the columns rebuilds ``model_registry`` on SQLite, so the views of 0002 are dropped first
and created again last, as in 0005 (the SQL is a copy of it, as a migration must not change when
later code does).
"""

from django.db import migrations, models

POOL = "COALESCE(CAST(organization_id AS TEXT), 'global')"

CREATE_ACTIVE_MODELS = """
CREATE VIEW active_models AS
SELECT id, organization_id, model_id, model_version, base_model, status, deployed_at,
       traffic_percentage, ab_test_group, is_baseline, total_messages_sent,
       reply_rate, meeting_rate, close_rate, created_at
FROM model_registry
WHERE status IN ('deployed', 'ready')
"""

CREATE_MODEL_LEADERBOARD = f"""
CREATE VIEW model_leaderboard AS
SELECT id, organization_id, model_id, model_version, base_model, status,
       traffic_percentage, ab_test_group,
       total_messages_sent, total_replies, total_meetings_booked, total_deals_closed, total_revenue,
       reply_rate, meeting_rate, close_rate,
       reply_rate_vs_baseline, meeting_rate_vs_baseline, close_rate_vs_baseline,
       RANK() OVER (PARTITION BY {POOL} ORDER BY close_rate DESC) AS close_rate_rank,
       RANK() OVER (PARTITION BY {POOL} ORDER BY reply_rate DESC) AS reply_rate_rank,
       RANK() OVER (PARTITION BY {POOL} ORDER BY total_revenue DESC) AS revenue_rank
FROM model_registry
"""

DROP_VIEWS = ["DROP VIEW IF EXISTS model_leaderboard", "DROP VIEW IF EXISTS active_models"]
CREATE_VIEWS = [CREATE_ACTIVE_MODELS, CREATE_MODEL_LEADERBOARD]


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0005_widen_total_revenue"),
    ]

    operations = [
        migrations.RunSQL(DROP_VIEWS, CREATE_VIEWS),
        migrations.AddField(
            model_name="registeredmodel",
            name="adapter_sha256",
            field=models.CharField(
                blank=True,
                default="",
                help_text="sha256 of the adapter's weights.",
                max_length=64,
                verbose_name="adapter sha256",
            ),
        ),
        migrations.AddField(
            model_name="registeredmodel",
            name="base_model_config_sha256",
            field=models.CharField(
                blank=True,
                default="",
                help_text="sha256 of its config.json.",
                max_length=64,
                verbose_name="base model config sha256",
            ),
        ),
        migrations.AddField(
            model_name="registeredmodel",
            name="serving_error",
            field=models.TextField(blank=True, default="", help_text="Why the last unload failed."),
        ),
        migrations.AddField(
            model_name="registeredmodel",
            name="serving_status",
            field=models.CharField(
                blank=True,
                choices=[("loaded", "Loaded"), ("unloaded", "Unloaded"), ("unload_failed", "Unload failed")],
                default="",
                max_length=16,
            ),
        ),
        migrations.RunSQL(CREATE_VIEWS, DROP_VIEWS),
    ]
