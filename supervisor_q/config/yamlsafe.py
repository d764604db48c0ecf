"""Program-file YAML -> Python values in bounded time and memory, whatever the input.

libyaml (PyYAML's C parser, when installed; else the pure-Python one) turns the text into
events; an explicit stack, never recursion, builds the node tree from them and refuses,
naming the key: aliases (nine nested aliases in 352 bytes expand to a billion values),
duplicate keys (YAML silently keeps the last one, hiding an edit), nesting deeper than
MAX_DEPTH, integers longer than MAX_INT_CHARS (Python refuses to print one of more than
4300 digits) and more than MAX_NODES values. Only that small, shallow, alias-free tree
reaches PyYAML's SafeConstructor. A program file holds a few dozen values, three deep.

This module imports nothing from the supervisor_q package except config/messages.py.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import SafeConstructor

from supervisor_q.config.messages import short

MAX_DEPTH = 20
MAX_INT_CHARS = 100
MAX_NODES = 2_000  # in one file
INT_TAG = "tag:yaml.org,2002:int"
STR_TAG = "tag:yaml.org,2002:str"
# Keys whose number is kept as written: a umask is octal digits, as Supervisor reads it,
# so `umask: 22` and `umask: 022` both mean 0o22 (YAML would read 22 and 18).
AS_WRITTEN = {("umask",)}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~50x faster


class Refused(yaml.YAMLError):
    """YAML that parses but is not accepted in a program file; names the key."""

    def __init__(self, key: list[str], problem: str) -> None:
        super().__init__(problem)
        self.key, self.problem = ".".join(key) or "(program)", problem


class Budget:
    """Values and bytes left to read in the whole config dir (shared by its files)."""

    def __init__(self, nodes: int, size: int = 0) -> None:
        self.nodes, self.bytes = nodes, size


def safe_load(text: str, budget: Budget | None = None) -> Any:
    """yaml.safe_load with the refusals above; raises yaml.YAMLError (or Refused)."""
    loader = Loader(text)
    try:
        node = _compose(loader, budget or Budget(MAX_NODES))
    finally:
        loader.dispose()
    if node is None:
        return None
    try:
        return SafeConstructor().construct_document(node)
    except ValueError as error:  # a scalar the resolver accepted but cannot convert
        raise Refused([], f"invalid value: {error}") from None  # (2001-13-01)


def _compose(loader: Any, budget: Budget) -> yaml.Node | None:
    loader.get_event()  # StreamStartEvent
    if loader.check_event(yaml.StreamEndEvent):
        return None
    loader.get_event()  # DocumentStartEvent
    root = _compose_document(loader, budget)
    loader.get_event()  # DocumentEndEvent
    if not loader.check_event(yaml.StreamEndEvent):
        raise ComposerError("expected a single document in the stream", root.start_mark,
                            "but found another document", loader.get_event().start_mark)
    return root


class _Open:
    """A collection being composed: its node, dotted path and (mapping) pending key."""

    def __init__(self, node: yaml.Node, path: list[str]) -> None:
        self.node, self.path = node, path
        self.key: yaml.Node | None = None
        self.seen: dict[tuple[str, str], yaml.Node] = {}

    def child_path(self) -> list[str]:
        if isinstance(self.node, yaml.SequenceNode):
            return [*self.path, str(len(self.node.value))]
        if self.key is None:
            return self.path  # a mapping key: named by its mapping, as PyYAML does
        key = self.key.value if isinstance(self.key, yaml.ScalarNode) else "?"
        return [*self.path, str(key)]

    def add(self, child: yaml.Node) -> None:
        if isinstance(self.node, yaml.SequenceNode):
            self.node.value.append(child)
        elif self.key is None:
            if isinstance(child, yaml.ScalarNode):
                self._refuse_duplicate(child)
            self.key = child
        else:
            self.node.value.append((self.key, child))
            self.key = None

    def _refuse_duplicate(self, key: yaml.ScalarNode) -> None:
        first = self.seen.setdefault((key.tag, key.value), key)
        if first is not key:
            raise Refused([*self.path, key.value],
                          f"duplicate key at {_where(key.start_mark)} (first at "
                          f"{_where(first.start_mark)}); YAML would silently keep only "
                          f"the last one")


def _compose_document(loader: Any, budget: Budget) -> yaml.Node:
    stack: list[_Open] = []
    root, count = None, 0
    while True:
        event = loader.get_event()
        if isinstance(event, yaml.CollectionEndEvent):
            stack.pop().node.end_mark = event.end_mark
            if not stack:
                return root
            continue
        here = stack[-1].child_path() if stack else []
        count, budget.nodes = count + 1, budget.nodes - 1
        _check(event, here, count, budget, len(stack))
        node = _node(loader, event, here)
        if stack:
            stack[-1].add(node)
        else:
            root = node
        if not isinstance(node, yaml.ScalarNode):
            stack.append(_Open(node, here))
        elif not stack:
            return root


def _check(event: yaml.Event, here: list[str], count: int, budget: Budget,
           depth: int) -> None:
    if isinstance(event, yaml.AliasEvent):
        raise Refused(here, f"YAML aliases (*{short.repr(event.anchor)[1:-1]}) are not "
                            f"allowed in program files ({_where(event.start_mark)}); write "
                            f"the value out")
    if count > MAX_NODES:
        raise Refused(here, f"more than {MAX_NODES} values in one file "
                            f"({_where(event.start_mark)}); a program needs a few dozen")
    if budget.nodes < 0:
        raise Refused(here, "the config directory's program files hold too many values "
                            "in all; a program needs a few dozen")
    if isinstance(event, yaml.CollectionStartEvent) and depth >= MAX_DEPTH:
        raise Refused(here, f"nested more than {MAX_DEPTH} levels deep "
                            f"({_where(event.start_mark)})")


def _node(loader: Any, event: yaml.Event, here: list[str]) -> yaml.Node:
    kind = {yaml.ScalarEvent: yaml.ScalarNode, yaml.SequenceStartEvent: yaml.SequenceNode,
            yaml.MappingStartEvent: yaml.MappingNode}[type(event)]
    tag = event.tag
    if kind is yaml.ScalarNode:
        if tag is None or tag == "!":
            tag = loader.resolve(kind, event.value, event.implicit)
        if tag == INT_TAG and len(event.value) > MAX_INT_CHARS:
            raise Refused(here, f"an integer of {len(event.value)} characters is too long "
                                f"({_where(event.start_mark)}; at most {MAX_INT_CHARS})")
        if tag == INT_TAG and tuple(here) in AS_WRITTEN:
            tag = STR_TAG
        return kind(tag, event.value, event.start_mark, event.end_mark, style=event.style)
    if tag is None or tag == "!":
        tag = loader.resolve(kind, None, event.implicit)
    return kind(tag, [], event.start_mark, None, flow_style=event.flow_style)


def _where(mark: yaml.Mark) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}"  # PyYAML counts from 0
