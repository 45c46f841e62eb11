"""The longest texts and the largest deal an outcome may carry, stated on the model (no schema change)."""

import django.core.validators
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('outcomes', '0001_initial'),
    ]

    operations = [
        migrations.AlterField(
            model_name='outcomelabel',
            name='body',
            field=models.TextField(validators=[django.core.validators.MaxLengthValidator(20000)]),
        ),
        migrations.AlterField(
            model_name='outcomelabel',
            name='deal_value',
            field=models.DecimalField(blank=True, decimal_places=2, max_digits=14, null=True, validators=[django.core.validators.MinValueValidator(Decimal('0')), django.core.validators.MaxValueValidator(Decimal('1000000000'))]),
        ),
        migrations.AlterField(
            model_name='outcomelabel',
            name='ideal_body',
            field=models.TextField(blank=True, default='', help_text="A reviewer's text that replaces the body as training target.", validators=[django.core.validators.MaxLengthValidator(20000)]),
        ),
        migrations.AlterField(
            model_name='outcomelabel',
            name='prompt',
            field=models.TextField(blank=True, default='', help_text='The request the agent used.', validators=[django.core.validators.MaxLengthValidator(20000)]),
        ),
        migrations.AlterField(
            model_name='outcomelabel',
            name='reviewer_note',
            field=models.TextField(blank=True, default='', validators=[django.core.validators.MaxLengthValidator(5000)]),
        ),
    ]
