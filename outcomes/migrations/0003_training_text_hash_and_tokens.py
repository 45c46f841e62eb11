"""Each label's training-text hash (kept by the database) and stored token count, and the pool index.

Counts of existing labels are filled by ``manage.py count_training_tokens`` (in batches); an
export counts any label whose count is still empty, so it is exact before the backfill too.
"""

import django.db.models.functions.comparison
import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outcomes', '0002_text_and_deal_limits'),
    ]

    operations = [
        migrations.AddField(
            model_name='outcomelabel',
            name='training_text_hash',
            field=models.GeneratedField(db_persist=True, expression=django.db.models.functions.comparison.Cast(django.db.models.functions.text.MD5(django.db.models.functions.comparison.Coalesce(django.db.models.functions.comparison.NullIf(models.F('ideal_body'), models.Value('')), models.F('body'))), models.UUIDField()), help_text='MD5 of the training text (the ideal body, else the body), kept by the database.', output_field=models.UUIDField()),
        ),
        migrations.AddField(
            model_name='outcomelabel',
            name='training_tokens',
            field=models.PositiveIntegerField(blank=True, editable=False, help_text='Tokens of the training text as exported (subject and text, scrubbed), in o200k_base; empty until counted.', null=True),
        ),
        migrations.AddIndex(
            model_name='outcomelabel',
            index=models.Index(condition=models.Q(('excluded_from_training', False)), fields=['organization', 'training_text_hash', '-quality_score', '-sent_at', '-id'], include=('bounced_at', 'replied_at', 'meeting_booked_at', 'meeting_completed_at', 'deal_closed_at'), name='outcome_labels_pool_text'),
        ),
    ]
