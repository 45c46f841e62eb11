"""One control per deployed pool, groups only on deployed models, and the leaderboard ranked per pool.

The data step first gives every pool exactly one deployed control (the control with the most
traffic, else the model with the most) and clears the group of models that are not deployed.

``model_leaderboard`` used to partition by ``COALESCE(CAST(organization_id AS TEXT), 'global')``,
an expression PostgreSQL cannot push a pool filter through, so one pool's query ranked every
tenant's models. It now partitions by ``organization_id`` itself: window partitions put NULLs
together, so the global pool is still one partition, the ranks are the same, and a filter on
``organization_id`` (``= x`` or ``IS NULL``) reaches the ``model_registry_org_status`` index.
SQLite rebuilds ``model_registry`` to add the check constraint, so both views are dropped first
and created again last (see 0002_views).
"""

from typing import Any

from django.db import migrations, models

ACTIVE_MODELS = """
CREATE VIEW active_models AS
SELECT id, organization_id, model_id, model_version, base_model, status, deployed_at,
       traffic_percentage, ab_test_group, is_baseline, total_messages_sent,
       reply_rate, meeting_rate, close_rate, created_at
FROM model_registry
WHERE status IN ('deployed', 'ready')
"""


def leaderboard(pool: str) -> str:
    return f"""
CREATE VIEW model_leaderboard AS
SELECT id, organization_id, model_id, model_version, base_model, status,
       traffic_percentage, ab_test_group,
       total_messages_sent, total_replies, total_meetings_booked, total_deals_closed, total_revenue,
       reply_rate, meeting_rate, close_rate,
       reply_rate_vs_baseline, meeting_rate_vs_baseline, close_rate_vs_baseline,
       RANK() OVER (PARTITION BY {pool} ORDER BY close_rate DESC) AS close_rate_rank,
       RANK() OVER (PARTITION BY {pool} ORDER BY reply_rate DESC) AS reply_rate_rank,
       RANK() OVER (PARTITION BY {pool} ORDER BY total_revenue DESC) AS revenue_rank
FROM model_registry
"""


DROP_VIEWS = ["DROP VIEW IF EXISTS active_models", "DROP VIEW IF EXISTS model_leaderboard"]
CREATE_VIEWS_BEFORE = [ACTIVE_MODELS, leaderboard("COALESCE(CAST(organization_id AS TEXT), 'global')")]
CREATE_VIEWS = [ACTIVE_MODELS, leaderboard("organization_id")]


def settle_groups(apps: Any, schema_editor: Any) -> None:
    """Clear the group of models not deployed; leave each pool with one deployed control."""
    registered_model = apps.get_model("registry", "RegisteredModel")
    registered_model.objects.exclude(status="deployed").exclude(ab_test_group="").update(ab_test_group="")
    deployed = registered_model.objects.filter(status="deployed").order_by("organization_id", "id")
    pools: dict[Any, list[Any]] = {}
    for row in deployed:
        pools.setdefault(row.organization_id, []).append(row)
    for rows in pools.values():
        candidates = [row for row in rows if row.ab_test_group == "control"] or rows
        control = max(candidates, key=lambda row: row.traffic_percentage)
        for row in rows:
            group = "control" if row.pk == control.pk else "" if row.ab_test_group == "control" else None
            if group is not None and group != row.ab_test_group:
                registered_model.objects.filter(pk=row.pk).update(ab_test_group=group)


class Migration(migrations.Migration):
    dependencies = [
        ("flywheel", "0001_initial"),
        ("registry", "0006_adapter_lineage_and_serving"),
    ]

    operations = [
        migrations.RunSQL(DROP_VIEWS, CREATE_VIEWS_BEFORE),
        migrations.RunPython(settle_groups, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="modelevent",
            name="action",
            field=models.CharField(
                choices=[
                    ("registered", "Registered"),
                    ("deployed", "Deployed"),
                    ("traffic_changed", "Traffic changed"),
                    ("promoted", "Promoted"),
                    ("archived", "Archived"),
                    ("rolled_back", "Rolled back"),
                    ("failed", "Failed"),
                    ("baseline_set", "Baseline set"),
                    ("test_ended", "A/B test ended"),
                ],
                max_length=20,
            ),
        ),
        migrations.AddConstraint(
            model_name="registeredmodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("status", "deployed"), ("ab_test_group", ""), _connector="OR"),
                name="model_registry_group_only_when_deployed",
            ),
        ),
        migrations.AddConstraint(
            model_name="registeredmodel",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("ab_test_group", "control"), ("organization__isnull", False), ("status", "deployed")
                ),
                fields=("organization",),
                name="model_registry_one_control_per_org",
            ),
        ),
        migrations.AddConstraint(
            model_name="registeredmodel",
            constraint=models.UniqueConstraint(
                condition=models.Q(
                    ("ab_test_group", "control"), ("organization__isnull", True), ("status", "deployed")
                ),
                fields=("ab_test_group",),
                name="model_registry_one_global_control",
            ),
        ),
        migrations.RunSQL(CREATE_VIEWS, DROP_VIEWS),
    ]
