"""``texts_scrubbed`` becomes ``texts_ready``: scrubbed, and holding nothing an export must write apart.

A row marked before held scrubbed texts but could hold a reserved token or a blank message, which
the export checked on every row. Such rows lose the mark here, found by a test that errs on the
safe side (a text with no letter or digit counts as blank); the export's in-place scrub then
checks each exactly and marks the ones that are ready.

From now on the database takes the mark off a row whose texts (or segment) change, unless the same
statement turns it on (as the in-place scrub does): a row edited by any writer, the API or SQL,
is checked again before an export trusts it.
"""

from django.db import migrations, models

TARGET = "COALESCE(NULLIF(ideal_body, ''), body)"
WATCHED = ("prompt", "subject", "body", "ideal_body", "industry", "role", "company_size", "framework", "tone", "channel")
CHANGED = " OR ".join(f"OLD.{name} IS DISTINCT FROM NEW.{name}" for name in WATCHED)
POSTGRES = f"""
CREATE FUNCTION outcome_labels_texts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.texts_ready := false;
    RETURN NEW;
END
$$;
CREATE TRIGGER outcome_labels_texts_changed BEFORE UPDATE OF {", ".join(WATCHED)} ON outcome_labels
    FOR EACH ROW WHEN (({CHANGED}) AND NOT (NEW.texts_ready AND NOT OLD.texts_ready))
    EXECUTE FUNCTION outcome_labels_texts_changed();
"""
POSTGRES_DROP = """
DROP TRIGGER IF EXISTS outcome_labels_texts_changed ON outcome_labels;
DROP FUNCTION IF EXISTS outcome_labels_texts_changed();
"""
SQLITE = f"""
CREATE TRIGGER outcome_labels_texts_changed AFTER UPDATE ON outcome_labels
WHEN ({CHANGED.replace("IS DISTINCT FROM", "IS NOT")}) AND NOT (NEW.texts_ready AND NOT OLD.texts_ready)
BEGIN
    UPDATE outcome_labels SET texts_ready = 0 WHERE id = NEW.id;
END;
"""
SQLITE_DROP = "DROP TRIGGER IF EXISTS outcome_labels_texts_changed"
TEXTS = ("prompt", "subject", TARGET, "industry", "role", "company_size", "framework", "tone", "channel")
NOT_READY = " OR ".join(
    [
        *(f"strpos({text}, '<|') > 0" for text in TEXTS),
        *(f"strpos({column}, E'\\t') > 0" for column in TEXTS[3:]),
        "(prompt <> '' AND NOT prompt ~ '[[:alnum:]]')",
        f"(NOT subject ~ '[[:alnum:]]' AND NOT {TARGET} ~ '[[:alnum:]]')",
    ]
)


def watch_texts(apps, schema_editor):
    schema_editor.execute(POSTGRES if schema_editor.connection.vendor == "postgresql" else SQLITE)


def unwatch_texts(apps, schema_editor):
    schema_editor.execute(POSTGRES_DROP if schema_editor.connection.vendor == "postgresql" else SQLITE_DROP)


def unmark_rows_that_may_not_be_ready(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        # SQLite has no POSIX classes: every row is checked again by the next export's in-place scrub.
        schema_editor.execute("UPDATE outcome_labels SET texts_ready = 0 WHERE texts_ready")
        return
    schema_editor.execute(f"UPDATE outcome_labels SET texts_ready = false WHERE texts_ready AND ({NOT_READY})")


class Migration(migrations.Migration):

    dependencies = [
        ("outcomes", "0006_training_texts"),
    ]

    operations = [
        migrations.RemoveIndex(model_name="outcomelabel", name="outcome_labels_raw_texts"),
        migrations.RenameField(model_name="outcomelabel", old_name="texts_scrubbed", new_name="texts_ready"),
        migrations.AlterField(
            model_name="outcomelabel",
            name="texts_ready",
            field=models.BooleanField(
                db_default=False,
                default=False,
                editable=False,
                help_text="Whether an export may write the stored texts as they are: the prompt, subject, body and "
                "ideal body are stored scrubbed, as the API stores them, and hold no reserved token and no blank "
                "message. Rows written straight to the table are not, until an export scrubs them in place.",
            ),
        ),
        migrations.AddIndex(
            model_name="outcomelabel",
            index=models.Index(
                condition=models.Q(("texts_ready", False)), fields=["organization"], name="outcome_labels_raw_texts"
            ),
        ),
        migrations.RunPython(unmark_rows_that_may_not_be_ready, migrations.RunPython.noop),
        migrations.RunPython(watch_texts, unwatch_texts),
    ]
