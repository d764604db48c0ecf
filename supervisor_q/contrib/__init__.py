"""Integrations with web frameworks, built on the public dispatch API only.

django/       after_commit through transaction.on_commit (an app for INSTALLED_APPS)
sqlalchemy.py after_commit through a Session's commit (session_dispatches)

Each imports its framework, which supervisor-q does not depend on: import the one your
application uses.
"""
