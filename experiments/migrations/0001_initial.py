"""The Experiment model, taken over from the registry with its table (``registry_experiment``).

State only: the table, its rows, indexes and constraints were created by ``registry.0001_initial``
and stay as they are; no data is copied.
"""

import uuid

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("flywheel", "0001_initial"),
        ("registry", "0004_experiment_moves_to_experiments"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[],
            state_operations=[
                migrations.CreateModel(
                    name="Experiment",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("pool", models.CharField(editable=False, max_length=64)),
                        ("planned_variant_share", models.FloatField(default=0.1)),
                        ("planned_looks", models.PositiveSmallIntegerField(default=8)),
                        ("look_interval_days", models.PositiveSmallIntegerField(default=7)),
                        (
                            "status",
                            models.CharField(
                                choices=[("running", "Running"), ("decided", "Decided"), ("stopped", "Stopped")],
                                db_index=True,
                                default="running",
                                max_length=16,
                            ),
                        ),
                        ("started_at", models.DateTimeField(auto_now_add=True)),
                        ("ended_at", models.DateTimeField(blank=True, null=True)),
                        ("decision", models.JSONField(blank=True, default=dict)),
                        ("looks", models.JSONField(blank=True, default=list)),
                        (
                            "control",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="experiments_as_control",
                                to="registry.registeredmodel",
                            ),
                        ),
                        (
                            "organization",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="experiments",
                                to="flywheel.organization",
                            ),
                        ),
                        (
                            "variant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="experiments_as_variant",
                                to="registry.registeredmodel",
                            ),
                        ),
                        (
                            "winner",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="experiments_won",
                                to="registry.registeredmodel",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "registry_experiment",
                        "ordering": ["-started_at"],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("status", "running")),
                                fields=("pool",),
                                name="experiment_one_running_per_pool",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("planned_variant_share__gt", 0), ("planned_variant_share__lt", 1)),
                                name="experiment_share_between_0_and_1",
                            ),
                            models.CheckConstraint(
                                condition=models.Q(("control", models.F("variant")), _negated=True),
                                name="experiment_arms_differ",
                            ),
                        ],
                    },
                ),
            ],
        ),
    ]
