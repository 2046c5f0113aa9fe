"""The ChatMessage table."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ChatMessage."""

    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="ChatMessage",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("room", models.CharField(db_index=True, max_length=200)),
                ("content", models.TextField()),
                ("created", models.DateTimeField(auto_now_add=True)),
            ],
        ),
    ]
