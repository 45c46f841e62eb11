"""``total_revenue`` grows to ``numeric(21, 2)``: every deal a model can close fits.

The views of 0002 select the column, so they are dropped first and created again last (PostgreSQL
refuses to retype a column a view selects; SQLite to rename the rebuilt table while a view names
it). The SQL is a copy of 0002's, as a migration must not change when later code does.
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
        ("registry", "0004_experiment_moves_to_experiments"),
    ]

    operations = [
        migrations.RunSQL(DROP_VIEWS, CREATE_VIEWS),
        migrations.AlterField(
            model_name="registeredmodel",
            name="total_revenue",
            field=models.DecimalField(decimal_places=2, default=0, max_digits=21),
        ),
        migrations.RunSQL(CREATE_VIEWS, DROP_VIEWS),
    ]
