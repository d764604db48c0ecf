"""The architecture, checked: layers, one-way imports, no cycles, size limits (issue 10).

Every module of supervisor_q/ is read with `ast` (nothing is imported), and every import
is collected, function-local ones included; only imports under `if TYPE_CHECKING:` are
left out. A function-local import that only hides a cycle is still a cycle.

Layers, lowest first; a module may import its own layer's modules and lower layers only:

    base       top-level helpers: clock, paths, logs, exitcodes, proctitle, procid, forked
    config     program files               ctl   the control socket (a transport)
    queue      Redis: keys, Lua, backend, payloads, restart signal, embedded server
    jobs       the job API: context, registry, dispatch, unique, middleware/controls,
               encryption, events
    workflows  chains and batches       contrib  framework hooks (Django, SQLAlchemy)
    worker     the child: boot, loop, lifecycle, outcome, handback, timeouts, report pipe,
               sync mode
    fleet      the fleet registry: heartbeats, dead masters, status --all
    observe    metrics: counting, per-minute buckets in Redis, the /metrics endpoint;
               alert conditions and webhook delivery
    master     arbiter, pools, processes, spawn, wakeup, schedule, systemd
    web        the dashboard: Starlette app, pages, actions, security, data sources
    cli        the supervisor-q command
    api        supervisor_q/__init__.py, __main__.py and testing.py: the public surface

`config` and `ctl` share a rank but may not import each other; so do `workflows` and
`contrib`. Besides the layers, no
cycle is allowed between the modules of one subpackage.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "supervisor_q"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

RANK = {"base": 0, "config": 1, "ctl": 1, "queue": 2, "jobs": 3, "workflows": 4,
        "contrib": 4,
        "worker": 5, "fleet": 6, "observe": 7, "master": 8, "web": 9, "cli": 10,
        "api": 11}
API_MODULES = {"__init__", "__main__", "testing"}
# `from supervisor_q import NAME` for a NAME that is not a submodule imports the public
# façade (supervisor_q/__init__.py); only these names may be taken from it by the layers.
ROOT_NAMES_ALLOWED = {"__version__"}

MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40  # the issue: "about 50", and it names 42-45-line functions as over
# Explicit exceptions, each with its reason: {"supervisor_q/x/y.py": "why"} and
# {"supervisor_q/x/y.py::Class.method": "why"}. Keep them empty if at all possible.
MODULE_EXCEPTIONS: dict[str, str] = {}
FUNCTION_EXCEPTIONS: dict[str, str] = {}

SUBPACKAGES = [unit for unit in RANK if unit not in ("base", "api")]


@dataclass(frozen=True)
class Import:
    source: str      # importing module, dotted
    path: str        # its file, relative to the repository root
    line: int
    target: str      # imported module, dotted (a package means its __init__)
    local: bool      # inside a function

    def where(self) -> str:
        return f"{self.path}:{self.line}"


# ---------------------------------------------------------------------------------------
# Reading the package
# ---------------------------------------------------------------------------------------

def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def iter_modules(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" not in path.parts:
            yield module_name(path, root), path


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _walk(node: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node with whether it sits in a function; `if TYPE_CHECKING:` bodies skipped."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for sub in child.orelse:
                yield sub, in_function
                yield from _walk(sub, in_function)
            continue
        local = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef
                                          | ast.Lambda)
        yield child, in_function
        yield from _walk(child, local)


def _exists(dotted: str, root: Path) -> bool:
    rel = Path(*dotted.split(".")[1:]) if "." in dotted else Path()
    base = root / rel
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def imports_of(source: str, path: Path, root: Path, text: str | None = None) -> list[Import]:
    text = path.read_text() if text is None else text
    tree = ast.parse(text, filename=str(path))
    is_package = path.name == "__init__.py"
    rel = str(path.relative_to(root.parent)) if path.is_absolute() else str(path)
    found = []
    for node, local in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = source.split(".") if is_package else source.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                if module.split(".")[0] == PACKAGE and _exists(sub, root):
                    targets.append(sub)
                elif module == PACKAGE and alias.name in ROOT_NAMES_ALLOWED:
                    continue
                else:
                    targets.append(module)
        for target in targets:
            if target.split(".")[0] == PACKAGE:
                found.append(Import(source, rel, node.lineno, target, local))
    return found


def unit_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"                      # supervisor_q/__init__.py
    if len(parts) == 2 and not (ROOT / parts[1]).is_dir():
        return "api" if parts[1] in API_MODULES else "base"
    return parts[1]


def all_imports(root: Path = ROOT) -> list[Import]:
    out = []
    for name, path in iter_modules(root):
        out += imports_of(name, path, root)
    return out


# ---------------------------------------------------------------------------------------
# The rules, as functions returning problems (so they can be tested on made-up code)
# ---------------------------------------------------------------------------------------

def layer_violations(imports: Iterable[Import], unit=unit_of) -> list[str]:  # noqa: ANN001
    problems = []
    for imp in imports:
        src, dst = unit(imp.source), unit(imp.target)
        if src == dst:
            continue
        if src not in RANK or dst not in RANK:
            unknown = src if src not in RANK else dst
            problems.append(f"{imp.where()}: {imp.source} imports {imp.target}: subpackage "
                            f"{unknown!r} has no layer; add it to RANK in this test")
        elif RANK[dst] >= RANK[src]:
            below = sorted((u for u in RANK if RANK[u] < RANK[src]), key=RANK.get)
            kind = "function-local import" if imp.local else "import"
            problems.append(f"{imp.where()}: {kind} of {imp.target} from {imp.source} "
                            f"({src} -> {dst}); {src} may import only {', '.join(below)}")
    return problems


def _cycles(edges: dict[str, dict[str, Import]]) -> list[list[str]]:
    """Strongly connected components with more than one node, or a node with a self-loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in edges.get(v, {}):
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _describe(component: list[str], edges: dict[str, dict[str, Import]]) -> str:
    members = set(component)
    lines = [f"cycle between {', '.join(component)}:"]
    for a in component:
        for b, imp in sorted(edges.get(a, {}).items()):
            if b in members:
                kind = " (function-local)" if imp.local else ""
                lines.append(f"  {imp.where()}: {a} -> {b}{kind}")
    return "\n".join(lines)


def unit_cycles(imports: Iterable[Import], unit=unit_of) -> list[str]:  # noqa: ANN001
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        a, b = unit(imp.source), unit(imp.target)
        if a != b:
            edges.setdefault(a, {}).setdefault(b, imp)
    return [_describe(c, edges) for c in _cycles(edges)]


def module_cycles(imports: Iterable[Import], unit=unit_of) -> list[str]:  # noqa: ANN001
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        if unit(imp.source) == unit(imp.target) and imp.source != imp.target:
            edges.setdefault(imp.source, {}).setdefault(imp.target, imp)
    return [_describe(c, edges) for c in _cycles(edges)]


def size_problems(root: Path = ROOT) -> list[str]:
    problems = []
    for _name, path in iter_modules(root):
        rel = str(path.relative_to(root.parent))
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES and rel not in MODULE_EXCEPTIONS:
            problems.append(f"{rel}: {lines} lines (limit {MAX_MODULE_LINES})")
        for qualname, node in _functions(ast.parse(text)):
            length = node.end_lineno - node.lineno + 1
            key = f"{rel}::{qualname}"
            if length > MAX_FUNCTION_LINES and key not in FUNCTION_EXCEPTIONS:
                problems.append(f"{rel}:{node.lineno}: {qualname} is {length} lines "
                                f"(limit {MAX_FUNCTION_LINES})")
    return problems


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, ast.AST]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + node.name, node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


# ---------------------------------------------------------------------------------------
# The checks on the real package
# ---------------------------------------------------------------------------------------

def test_every_module_belongs_to_a_known_layer() -> None:
    unknown = sorted({unit_of(name) for name, _ in iter_modules(ROOT)} - set(RANK))
    assert not unknown, f"subpackages without a layer (add them to RANK): {unknown}"


def test_imports_point_down_the_layers() -> None:
    problems = layer_violations(all_imports())
    assert not problems, "imports against the layer order:\n" + "\n".join(problems)


def test_no_cycle_between_subpackages() -> None:
    problems = unit_cycles(all_imports())
    assert not problems, "\n".join(problems)


def test_no_cycle_between_modules_of_one_subpackage() -> None:
    problems = module_cycles(all_imports())
    assert not problems, "\n".join(problems)


def test_modules_and_functions_stay_small() -> None:
    problems = size_problems()
    assert not problems, "over the size limits:\n" + "\n".join(problems)


def test_listed_exceptions_still_exist() -> None:
    stale = [key for key in [*MODULE_EXCEPTIONS, *FUNCTION_EXCEPTIONS]
             if not (ROOT.parent / key.split("::")[0]).exists()]
    assert not stale, f"exceptions for files that no longer exist: {stale}"


# ---------------------------------------------------------------------------------------
# The checker itself can fail (runs on any layout)
# ---------------------------------------------------------------------------------------

def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _fake_unit(module: str) -> str:
    parts = module.split(".")
    return "api" if len(parts) == 1 else ("base" if len(parts) == 2 else parts[1])


def _fake_imports(root: Path) -> list[Import]:
    return [imp for name, path in iter_modules(root) for imp in imports_of(name, path, root)]


def test_checker_reports_a_function_local_import_up_the_layers(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "__init__.py": "", "jobs/__init__.py": "", "worker/__init__.py": "",
        "jobs/dispatching.py": "def send():\n    from supervisor_q.worker import sync\n",
        "worker/sync.py": "from supervisor_q.jobs import dispatching\n",
    })
    imports = _fake_imports(root)
    problems = layer_violations(imports, _fake_unit)
    assert problems == [
        "supervisor_q/jobs/dispatching.py:2: function-local import of supervisor_q.worker.sync"
        " from supervisor_q.jobs.dispatching (jobs -> worker); jobs may import only base, "
        "config, ctl, queue"]
    cycles = unit_cycles(imports, _fake_unit)
    assert len(cycles) == 1 and "supervisor_q/jobs/dispatching.py:2" in cycles[0]
    assert "supervisor_q/worker/sync.py:1" in cycles[0]


def test_checker_reports_a_cycle_inside_a_subpackage_and_ignores_type_checking(
        tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "__init__.py": "", "jobs/__init__.py": "",
        "jobs/registry.py": "import supervisor_q.jobs.dispatching\n",
        "jobs/dispatching.py": "def queue():\n    from .registry import queue_for\n",
        "jobs/context.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from supervisor_q.jobs.registry import Job\n"),
        "jobs/unique.py": "from supervisor_q.jobs import context\n",
    })
    cycles = module_cycles(_fake_imports(root), _fake_unit)
    assert len(cycles) == 1, cycles
    assert "supervisor_q/jobs/registry.py:1" in cycles[0]
    assert "supervisor_q/jobs/dispatching.py:2" in cycles[0]
    assert "(function-local)" in cycles[0]
    assert "context" not in cycles[0]


def test_checker_reports_big_modules_and_functions(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(60))
    root = _fake_package(tmp_path, {
        "__init__.py": "",
        "worker/loop.py": f"class Worker:\n    def process(self):\n{body}\n"
                          + "\n" * 400,
    })
    problems = size_problems(root)
    assert any("supervisor_q/worker/loop.py:2: Worker.process is 61 lines" in p
               for p in problems), problems
    assert any(p.startswith("supervisor_q/worker/loop.py: 462 lines") for p in problems)


def test_checker_allows_version_from_the_facade_but_not_other_names(tmp_path: Path) -> None:
    root = _fake_package(tmp_path, {
        "__init__.py": "", "cli/__init__.py": "", "jobs/__init__.py": "",
        "cli/main.py": "from supervisor_q import __version__\n",
        "jobs/registry.py": "from supervisor_q import chain\n",
    })
    problems = layer_violations(_fake_imports(root), _fake_unit)
    assert len(problems) == 1 and problems[0].startswith("supervisor_q/jobs/registry.py:1")


def test_every_subpackage_is_a_regular_package() -> None:
    """A subpackage without __init__.py would still import (as a namespace package)
    while the checks above could no longer see its modules."""
    missing = [sub for sub in SUBPACKAGES if not (ROOT / sub / "__init__.py").is_file()]
    assert not missing, f"subpackages without __init__.py: {missing}"
