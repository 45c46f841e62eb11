"""The daily auto-promotion schedule names its task at its new path, ``experiments.tasks``.

django-q2 stores a schedule's task as a dotted path and imports it when the schedule fires, so
existing rows are rewritten; the registry keeps no alias (it must not import the experiments).
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor

OLD = "registry.tasks.auto_promote_experiments"
NEW = "experiments.tasks.auto_promote_experiments"


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(func=OLD).update(func=NEW)


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    apps.get_model("django_q", "Schedule").objects.filter(func=NEW).update(func=OLD)


class Migration(migrations.Migration):
    dependencies = [
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
        ("experiments", "0002_content_type_from_registry"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
