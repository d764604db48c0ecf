"""Warm a `preload: true` zygote: build once what every child would build lazily.

After `setup:` and `import:`, a child's first jobs still import and build things on
first use (json's codecs; Django's template engines and their tag libraries, the
translation catalogs, the locale's formats, a form's validation, each model's field
caches, the URL resolver). Built in each child, they are private copies; built here,
before the fork, the children share them. Every step is optional and best effort: one
that fails leaves that piece lazy, as it was, and never fails the zygote. Nothing here
opens a connection (no database, no Redis: a child must not share a socket).

`SUPERVISOR_Q_PRELOAD_WARM=0` skips it (bench/preload_memory.py measures both).
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
from collections.abc import Callable

WARMED: list[str] = []  # the steps that ran (tests/master/test_preload_memory.py)


def warm_zygote() -> list[str]:
    """Run every warming step that applies; the names of those that ran."""
    steps: list[tuple[str, Callable[[], None]]] = [("json", _json)]
    if _django_ready():
        steps += [("django.templates", _django_templates),
                  ("django.translation", _django_translation),
                  ("django.formats", _django_formats),
                  ("django.forms", _django_forms),
                  ("django.models", _django_models),
                  ("django.urls", _django_urls)]
    for name, step in steps:
        with contextlib.suppress(Exception):
            step()
            WARMED.append(name)
    return list(WARMED)


def tag_types() -> int:
    """Give every class its attribute-cache version tag now; the number of classes.

    CPython tags a class the first time an attribute is looked up on it through its
    method cache, writing the class object (and its bases): done in each child, that
    is a copied page per class its jobs use. A lookup of a name no class has tags
    each, and changes nothing else."""
    tagged = 0
    for obj in gc.get_objects():
        if isinstance(obj, type):
            with contextlib.suppress(Exception):  # a metaclass's __getattr__ may raise
                getattr(obj, "_supervisor_q_version_tag_", None)
                tagged += 1
    return tagged


def _json() -> None:
    """The encoder and decoder a worker uses for every payload and report."""
    json.loads(json.dumps({"id": "x", "args": [1, 2.5, None, True], "kwargs": {"a": "b"}}))


def _django_ready() -> bool:
    apps = getattr(sys.modules.get("django.apps"), "apps", None)
    return bool(apps is not None and apps.ready)


def _django_templates() -> None:
    """Each template engine, with its tag libraries imported and a template compiled."""
    from django.template import engines

    for engine in engines.all():
        engine.from_string("{% if x %}{{ x|default:'' }}{% endif %}").render({"x": 1})


def _django_translation() -> None:
    """The default language's catalogs (gettext reads them from disk on first use)."""
    from django.conf import settings
    from django.utils import translation

    with translation.override(settings.LANGUAGE_CODE):
        translation.gettext("This field is required.")


def _django_formats() -> None:
    """The locale's format module (number and date formats, forms' input formats)."""
    from django.conf import settings
    from django.utils import formats, translation

    with translation.override(settings.LANGUAGE_CODE):
        for name in ("DATE_INPUT_FORMATS", "DATETIME_INPUT_FORMATS", "DECIMAL_SEPARATOR",
                     "THOUSAND_SEPARATOR", "NUMBER_GROUPING"):
            formats.get_format(name)


def _django_forms() -> None:
    """A form's validation: fields, widgets, validators, error messages (lazy text)."""
    from django import forms

    class Warm(forms.Form):
        text = forms.CharField(max_length=10)
        number = forms.DecimalField(max_digits=5, decimal_places=2)
        when = forms.DateTimeField(required=False)
        email = forms.EmailField(required=False)

    form = Warm(data={"text": "x" * 11, "number": "1.5", "when": "2024-01-02 03:04",
                      "email": "a@b.c"})
    form.is_valid()
    str(form.errors)


def _django_models() -> None:
    """Each model's field caches (_meta.get_fields(): relations, forward and reverse)."""
    from django.apps import apps

    for model in apps.get_models(include_auto_created=True):
        model._meta.get_fields()
        model._meta._forward_fields_map  # noqa: B018 - a cached property, built here
        model._meta.fields_map  # noqa: B018


def _django_urls() -> None:
    """The URL resolver, if the project has a URLconf (reverse() builds it lazily)."""
    from django.conf import settings
    from django.urls import get_resolver

    if getattr(settings, "ROOT_URLCONF", None):
        get_resolver().reverse_dict  # noqa: B018 - populates the resolver
