"""The ``active_models`` and ``model_leaderboard`` views, read through unmanaged models.

The SQL is plain enough for SQLite (3.25+, window functions) and PostgreSQL. ``organization_id``
is a ``uuid`` on PostgreSQL and a ``char(32)`` on SQLite, so the partition expression casts it to
text before putting global models (NULL) in a pool of their own.

A later migration that rebuilds ``model_registry`` must drop both views before and create them
again after (``migrations.RunSQL(DROP_VIEWS, CREATE_VIEWS)`` first, ``RunSQL(CREATE_VIEWS,
DROP_VIEWS)`` last, with copies of the SQL below): SQLite refuses to rename the rebuilt table
while a view names it, and PostgreSQL refuses to drop or retype a column a view selects. The test
database is built from every migration, so forgetting it fails the whole suite at once.
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

DROP_ACTIVE_MODELS = "DROP VIEW IF EXISTS active_models"
DROP_MODEL_LEADERBOARD = "DROP VIEW IF EXISTS model_leaderboard"


class Migration(migrations.Migration):
    dependencies = [
        ("flywheel", "0001_initial"),
        ("registry", "0001_initial"),
    ]

    operations = [
        migrations.RunSQL(CREATE_ACTIVE_MODELS, DROP_ACTIVE_MODELS),
        migrations.RunSQL(CREATE_MODEL_LEADERBOARD, DROP_MODEL_LEADERBOARD),
        migrations.CreateModel(
            name="ActiveModel",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("model_id", models.CharField(max_length=255, verbose_name="model id")),
                ("model_version", models.CharField(max_length=32)),
                ("base_model", models.CharField(max_length=255)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("training", "Training"),
                            ("ready", "Ready"),
                            ("deployed", "Deployed"),
                            ("archived", "Archived"),
                            ("failed", "Failed"),
                        ],
                        max_length=16,
                    ),
                ),
                ("deployed_at", models.DateTimeField(null=True)),
                ("traffic_percentage", models.FloatField()),
                (
                    "ab_test_group",
                    models.CharField(
                        choices=[("control", "Control"), ("variant_a", "Variant A"), ("variant_b", "Variant B")],
                        max_length=16,
                    ),
                ),
                ("is_baseline", models.BooleanField()),
                ("total_messages_sent", models.PositiveIntegerField()),
                ("reply_rate", models.FloatField()),
                ("meeting_rate", models.FloatField()),
                ("close_rate", models.FloatField()),
                ("created_at", models.DateTimeField()),
                (
                    "organization",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="flywheel.organization",
                    ),
                ),
            ],
            options={
                "db_table": "active_models",
                "ordering": ["-traffic_percentage", "-created_at"],
                "managed": False,
            },
        ),
        migrations.CreateModel(
            name="LeaderboardEntry",
            fields=[
                ("id", models.UUIDField(primary_key=True, serialize=False)),
                ("model_id", models.CharField(max_length=255, verbose_name="model id")),
                ("model_version", models.CharField(max_length=32)),
                ("base_model", models.CharField(max_length=255)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("training", "Training"),
                            ("ready", "Ready"),
                            ("deployed", "Deployed"),
                            ("archived", "Archived"),
                            ("failed", "Failed"),
                        ],
                        max_length=16,
                    ),
                ),
                ("traffic_percentage", models.FloatField()),
                (
                    "ab_test_group",
                    models.CharField(
                        choices=[("control", "Control"), ("variant_a", "Variant A"), ("variant_b", "Variant B")],
                        max_length=16,
                    ),
                ),
                ("total_messages_sent", models.PositiveIntegerField()),
                ("total_replies", models.PositiveIntegerField()),
                ("total_meetings_booked", models.PositiveIntegerField()),
                ("total_deals_closed", models.PositiveIntegerField()),
                ("total_revenue", models.DecimalField(decimal_places=2, max_digits=16)),
                ("reply_rate", models.FloatField()),
                ("meeting_rate", models.FloatField()),
                ("close_rate", models.FloatField()),
                ("reply_rate_vs_baseline", models.FloatField(null=True)),
                ("meeting_rate_vs_baseline", models.FloatField(null=True)),
                ("close_rate_vs_baseline", models.FloatField(null=True)),
                ("close_rate_rank", models.PositiveIntegerField()),
                ("reply_rate_rank", models.PositiveIntegerField()),
                ("revenue_rank", models.PositiveIntegerField()),
                (
                    "organization",
                    models.ForeignKey(
                        db_constraint=False,
                        null=True,
                        on_delete=models.deletion.DO_NOTHING,
                        related_name="+",
                        to="flywheel.organization",
                    ),
                ),
            ],
            options={
                "verbose_name_plural": "leaderboard entries",
                "db_table": "model_leaderboard",
                "ordering": ["-close_rate", "-reply_rate", "-total_revenue", "model_version"],
                "managed": False,
            },
        ),
    ]
