"""pydantic's validation errors -> our one-line problems ("must be >= 0, got -2"),
never pydantic's default text: a table of message templates by pydantic error type.
"""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from supervisor_q.config.schema import KeyedError, WorkerProgram

short = reprlib.Repr()  # values quoted in a problem stay short
short.maxstring = short.maxother = 60
short.maxlist = short.maxtuple = short.maxdict = short.maxset = 4
short.maxlevel = 2


def translate(error: ValidationError, model: type) -> list[tuple[str, str]]:
    """pydantic errors -> (dotted key, problem) pairs, never pydantic's default text."""
    out = []
    items = error.errors(include_url=False)
    for item in items:
        if _follows_item_errors(item, items):
            continue
        loc = [str(part) for part in item["loc"] if part != "[key]"]
        key = ".".join(loc) or "(program)"
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, KeyedError):
            key = cause.key
        out.append((key, _problem(item, model)))
    return out


def _follows_item_errors(item: Mapping[str, Any], items: list[Any]) -> bool:
    """A list whose every item failed is also "too short" to pydantic (it counts the items
    that passed): a follow-up of the item errors, not a problem of its own."""
    loc = tuple(item["loc"])
    return item["type"] == "too_short" and any(
        len(other["loc"]) > len(loc) and tuple(other["loc"][:len(loc)]) == loc
        for other in items)


_FIXED = {
    "extra_forbidden": "unknown key",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
}
_BOUNDS = {
    "greater_than_equal": "must be >= {ge}",
    "greater_than": "must be > {gt}",
    "less_than_equal": "must be <= {le}",
    "less_than": "must be < {lt}",
}
_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "string_type": "a string (quote it)",
    "bool_type": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "none_required": "absent",
}


def _problem(item: Mapping[str, Any], model: type) -> str:
    kind, ctx, value = item["type"], item.get("ctx") or {}, item.get("input")
    got = f", got {short.repr(value)}" if not isinstance(value, dict | list) else ""
    if kind in _FIXED:
        return _FIXED[kind]
    if kind == "missing":
        if item["loc"] == ("queues",) and model is WorkerProgram:
            return "required (or command: for a plain program)"
        return "required"
    if kind == "value_error":
        return str(ctx.get("error", item["msg"]))
    if kind in _BOUNDS:
        # ctx holds the bound as declared (0.0 for float fields); print it as people write it
        plain = {k: f"{v:g}" if isinstance(v, float) else v for k, v in ctx.items()}
        return _BOUNDS[kind].format(**plain) + got
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern'].strip('^$')}{got}"
    if kind == "literal_error":  # YAML's spelling: false, not Python's False
        expected = str(ctx["expected"]).replace("False", "false").replace("True", "true")
        return f"must be one of {expected}{got.replace('True', 'true')}"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}, got {type_name(value)} {short.repr(value)}"
    return str(item["msg"]).lower()  # fallback: still one line, still our shape


def type_name(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), type(value).__name__)
