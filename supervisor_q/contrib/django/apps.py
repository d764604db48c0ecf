"""The Django app of supervisor_q.contrib.django: installs the after_commit hook."""

from __future__ import annotations

from django.apps import AppConfig

from supervisor_q.contrib.django import install


class SupervisorQConfig(AppConfig):
    name = "supervisor_q.contrib.django"
    label = "supervisor_q"
    verbose_name = "supervisor-q"

    def ready(self) -> None:
        install()
