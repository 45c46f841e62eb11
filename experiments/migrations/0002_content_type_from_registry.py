"""The experiment's content type moves from the registry's app label to this app's.

Renaming the row (rather than letting Django create a new one) keeps the permissions attached to
it, and so every user's and group's grant of them, and the admin log entries that point at it.
"""

from django.apps.registry import Apps
from django.db import migrations
from django.db.backends.base.schema import BaseDatabaseSchemaEditor


def relabel(apps: Apps, old: str, new: str) -> None:
    """Give the ``experiment`` content type of app ``old`` the label ``new``, unless ``new`` has one."""
    content_types = apps.get_model("contenttypes", "ContentType").objects
    if not content_types.filter(app_label=new, model="experiment").exists():
        content_types.filter(app_label=old, model="experiment").update(app_label=new)


def forwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    relabel(apps, "registry", "experiments")


def backwards(apps: Apps, schema_editor: BaseDatabaseSchemaEditor) -> None:
    relabel(apps, "experiments", "registry")


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("experiments", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
