"""A minimal Django project and app for tests/contrib/test_django.py: SQLite file db
named by SQ_DJANGO_DB, one model, one job module that imports it."""
