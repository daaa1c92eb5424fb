"""The package's layout rules (issue #23), checked on the source with `ast`, without importing it.

* Nothing in `treadmill/` outside `treadmill/cli/` imports `treadmill.cli`: the library never
  depends on the command line.
* No cycle among the module-level runtime imports inside `treadmill` (imports inside functions
  and under `if TYPE_CHECKING:` do not count; importing `treadmill.a.b` also runs `treadmill.a`).
* Every file is at most 400 lines and every function at most 60, unless it says at its top why
  ("Long because: ...").

Each checker is a plain function over source text or a graph, tested on a small fake input first
so that a pass over the real package means something.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "treadmill"

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
REASON = "Long because:"

# ---------------------------------------------------------------------- reading the package


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """`treadmill.a.b` for root/a/b.py, `treadmill.a` for root/a/__init__.py."""
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_sources(root: Path = PACKAGE) -> dict[str, tuple[Path, str]]:
    """Every module of the package by name: (path, source)."""
    return {module_name(path, root): (path, path.read_text(encoding="utf-8")) for path in sorted(root.rglob("*.py"))}


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of `from <level dots><target> import ...` written in `module`."""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, target] if target else base)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, module: str, is_package: bool, module_level_only: bool) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names taken from it) for each import under `node`.

    With `module_level_only`, imports inside functions and under `if TYPE_CHECKING:` are left out:
    they do not run when the module is imported. Class bodies do run, so their imports count.
    """
    found: list[tuple[int, str, list[str]]] = []
    for child in ast.iter_child_nodes(node):
        if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, ast.Import):
            found.extend((child.lineno, alias.name, []) for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            target = child.module or ""
            if child.level:
                target = _resolve_relative(module, is_package, child.level, child.module)
            found.append((child.lineno, target, [alias.name for alias in child.names]))
        elif module_level_only and isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.orelse:  # the `else:` of `if TYPE_CHECKING:` runs
                found.extend(_imports(ast.Module(body=[stmt], type_ignores=[]), module, is_package, True))
        else:
            found.extend(_imports(child, module, is_package, module_level_only))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# ---------------------------------------------------------------------- rule 1: nothing imports treadmill.cli


def cli_imports(source: str, module: str, is_package: bool = False, cli: str = "treadmill.cli") -> list[str]:
    """The imports of `cli` (anywhere in the source, functions included) as 'line N: name'."""
    hits = []
    for line, target, names in _imports(ast.parse(source), module, is_package, module_level_only=False):
        if _within(target, cli) or any(_within(f"{target}.{name}", cli) for name in names):
            hits.append(f"line {line}: {target}{' import ' + ', '.join(names) if names else ''}")
    return hits


def test_cli_import_checker_finds_every_form():
    source = (
        "import os\n"
        "from treadmill.client import x\n"  # a different module that merely starts the same
        "def f():\n"
        "    from treadmill.cli import main\n"
        "    import treadmill.cli.train\n"
        "from treadmill import cli\n"
        "from . import cli as c\n"
    )
    hits = cli_imports(source, "treadmill.trainer")
    assert [hit.split(":")[0] for hit in hits] == ["line 4", "line 5", "line 6", "line 7"], hits
    assert cli_imports("from treadmill.config import TrainingConfig\n", "treadmill.trainer") == []


def test_no_library_module_imports_the_cli():
    offenders = [
        f"{module} ({path.relative_to(PACKAGE.parent)}) {hit}"
        for module, (path, source) in package_sources().items()
        if not _within(module, "treadmill.cli")
        for hit in cli_imports(source, module, _is_package(path))
    ]
    assert not offenders, "Modules outside treadmill/cli/ import treadmill.cli:\n  " + "\n  ".join(offenders)


# ---------------------------------------------------------------------- rule 2: no runtime import cycle


def import_graph(sources: dict[str, tuple[Path, str]]) -> dict[str, set[str]]:
    """Module -> the package's modules its import runs at module level.

    `from a import b` imports `a.b` when that is a module; importing `a.b` also runs the package
    `a` (its `__init__`), except where `a` contains the importer, whose import has begun it already.
    """
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for module, (path, source) in sources.items():
        for _line, target, names in _imports(ast.parse(source), module, _is_package(path), module_level_only=True):
            targets = [target, *(f"{target}.{name}" for name in names)]
            for name in (t for t in targets if t in sources):
                parts = name.split(".")
                for depth in range(1, len(parts) + 1):
                    ancestor = ".".join(parts[:depth])
                    if ancestor in sources and ancestor != module and not _within(module, ancestor):
                        graph[module].add(ancestor)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every group of modules that import each other in a circle (strongly connected components of
    more than one module, or a module importing itself), each sorted, the groups sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_cycle_finder_on_a_fake_graph():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "e"}, "e": set(), "f": {"f"}, "g": {"h"}, "h": {"g"}}
    assert find_cycles(graph) == [["a", "b", "c"], ["f"], ["g", "h"]]
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_import_graph_reads_runtime_imports_only(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "loop.py": "from pkg.sub.base import Base\nfrom pkg import helpers\n",
        "helpers.py": (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from pkg.loop import Loop\n"
            "def late():\n    from pkg.loop import Loop\n"
        ),
        "sub/__init__.py": "from pkg.sub.base import Base\nfrom pkg.sub.plugin import Plugin\n",
        "sub/base.py": "",
        "sub/plugin.py": "from pkg.loop import Loop\n",  # the loop imports plugins that import the loop
    }
    for name, text in files.items():
        (root / name).write_text(text)
    graph = import_graph(package_sources(root))
    assert graph["pkg.loop"] == {"pkg.sub", "pkg.sub.base", "pkg.helpers"}
    assert graph["pkg.helpers"] == set()  # TYPE_CHECKING and function-level imports do not run
    assert graph["pkg.sub"] == {"pkg.sub.base", "pkg.sub.plugin"}  # not back to itself
    assert find_cycles(graph) == [["pkg.loop", "pkg.sub", "pkg.sub.plugin"]]
    (root / "sub/plugin.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.loop import Loop\n")
    assert find_cycles(import_graph(package_sources(root))) == []


def test_no_runtime_import_cycle_in_treadmill():
    cycles = find_cycles(import_graph(package_sources()))
    assert not cycles, "Runtime import cycles:\n  " + "\n  ".join(" <-> ".join(c) for c in cycles)


# ---------------------------------------------------------------------- rule 3: sizes


def oversized(source: str, name: str, exempt_functions: frozenset[str] = frozenset()) -> list[str]:
    """The file (over MAX_FILE_LINES) and functions (over MAX_FUNCTION_LINES, other than those named
    in `exempt_functions`) of `source` that are too long without "Long because:" in the file's first
    40 lines / the function's header and first 3 body lines."""
    lines = source.splitlines()
    problems = []
    if len(lines) > MAX_FILE_LINES and REASON not in "\n".join(lines[:40]):
        problems.append(f"{name}: {len(lines)} lines (limit {MAX_FILE_LINES}, or '{REASON}' in its first 40 lines)")
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name in exempt_functions:
            continue
        length = node.end_lineno - node.lineno + 1  # type: ignore[operator]
        top = "\n".join(lines[node.lineno - 1 : node.body[0].lineno + 2])  # header + first 3 body lines
        if length > MAX_FUNCTION_LINES and REASON not in top:
            problems.append(f"{name}:{node.lineno} {node.name}(): {length} lines (limit {MAX_FUNCTION_LINES})")
    return problems


def test_size_checker_on_fake_sources():
    def function(name: str, body_lines: int, first: str = "x = 0") -> str:
        return f"def {name}(\n    a,\n):\n    {first}\n" + "    x = 1\n" * (body_lines - 1)

    short, long_ = function("short", 10), function("long_", 70)
    explained = function("explained", 70, first='"""Long because: one table of cases."""')
    commented = function("commented", 70, first="# Long because: one table of cases.\n    x = 0")
    problems = oversized("\n".join([short, long_, explained, commented]), "fake.py")
    assert problems == ["fake.py:15 long_(): 73 lines (limit 60)"], problems
    assert oversized(long_, "fake.py", frozenset({"long_"})) == []
    assert oversized("x = 1\n" * 401, "big.py") == ["big.py: 401 lines (limit 400, or 'Long because:' in its first 40 lines)"]
    assert oversized('"""Long because: generated."""\n' + "x = 1\n" * 401, "big.py") == []


def test_no_file_or_function_too_long_without_a_reason():
    problems = []
    for _module, (path, source) in package_sources().items():
        relative = path.relative_to(PACKAGE).as_posix()
        problems.extend(oversized(source, f"treadmill/{relative}"))
    assert not problems, "Too long without 'Long because:' at the top:\n  " + "\n  ".join(problems)
