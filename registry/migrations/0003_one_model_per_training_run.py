"""A training run registers exactly one model, even when it is resumed and registers again.

A conditional unique index: SQLite adds it without rebuilding ``model_registry`` (which the views
of 0002 would otherwise forbid).
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0002_views"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="registeredmodel",
            constraint=models.UniqueConstraint(
                condition=models.Q(("training_run_id__isnull", False)),
                fields=("training_run_id",),
                name="model_registry_one_model_per_training_run",
            ),
        ),
    ]
