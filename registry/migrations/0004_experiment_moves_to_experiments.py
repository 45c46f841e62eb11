"""Experiments move to their own app: the registry forgets the model, the table stays.

State only (``SeparateDatabaseAndState`` with no database operation): ``registry_experiment``
and its rows are kept, and ``experiments.0001_initial`` takes the model over with that table.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0003_one_model_per_training_run"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Experiment")],
            database_operations=[],
        ),
    ]
