"""Settings of the test Django project (DJANGO_SETTINGS_MODULE)."""

import os

SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = ["tests.contrib.djangoapp", "supervisor_q.contrib.django"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("SQ_DJANGO_DB", ":memory:"),
                         "OPTIONS": {"timeout": 10}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
