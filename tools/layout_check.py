"""Measure the code layout of the ``pipeline``, ``workers`` and ``sandbox`` packages.

Run from the repo root: ``python tools/layout_check.py [--root DIR] [--json] [--no-limits]``.
Stdlib only and ``ast``-based (nothing is imported), so it also works on a half-moved tree.

It reports modules and lines and the largest modules and functions (where a restructuring pays
off first); import cycles among project modules, imports inside functions included (a cycle
means neither side can be understood, tested or moved alone, and a function-level import is
often a cycle in hiding); imports of another module's private names (coupling its owner does
not know about); the number of function-level project imports (informational); and imports
from ``workers``/``sandbox`` into ``pipeline`` outside ``pipeline.core`` (the rule: workers and
sandbox depend only on the pipeline's core).

Exit code 1 when a limit is broken (module over 600 lines, function over 100 lines, any cycle,
any private cross-module import, any workers/sandbox import of pipeline outside pipeline.core),
each breach on its own line starting with ``FAIL:``; ``--no-limits`` only reports (exit 0).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PACKAGES = ("pipeline", "workers", "sandbox")
LAYERED = ("workers", "sandbox")  # these may import from pipeline only pipeline.core
CORE = "pipeline.core"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
TOP = 5


@dataclass(frozen=True)
class Function:
    """A function or method: module-qualified name, file, first line and length in lines."""

    name: str
    path: str
    line: int
    lines: int


@dataclass(frozen=True)
class Import:
    """One imported name as written: ``module`` is absolute (relative imports resolved)."""

    line: int
    module: str
    name: str | None  # the name of ``from module import name``; None for ``import module``
    in_function: bool
    type_checking: bool


@dataclass(frozen=True)
class Edge:
    """An import of project module ``dst`` by module ``src`` (file ``path``)."""

    src: str
    dst: str
    path: str
    imp: Import


@dataclass
class Report:
    """The figures of one tree; ``violations`` holds the broken limits, one sentence each."""

    root: str
    modules: int = 0
    total_lines: int = 0
    largest_module: dict[str, Any] | None = None
    top_modules: list[dict[str, Any]] = field(default_factory=list)
    largest_function: dict[str, Any] | None = None
    top_functions: list[dict[str, Any]] = field(default_factory=list)
    cycles: list[list[str]] = field(default_factory=list)
    largest_cycle: int = 0
    private_imports: list[str] = field(default_factory=list)
    function_level_imports: int = 0
    cross_package_imports: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Scanner(ast.NodeVisitor):
    """Collects the functions and imports of one module, knowing where each one sits."""

    def __init__(self, module: str, path: str, is_package: bool) -> None:
        self.module, self.path, self.is_package = module, path, is_package
        self.scope: list[str] = []
        self.depth = 0  # how many ``def`` we are inside
        self.guarded = 0  # how many ``if TYPE_CHECKING:`` bodies we are inside
        self.functions: list[Function] = []
        self.imports: list[Import] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        lines = (node.end_lineno or node.lineno) - node.lineno + 1  # ``def`` line to body end
        self.functions.append(Function(".".join([self.module, *self.scope]), self.path,
                                       node.lineno, lines))
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1
        self.scope.pop()

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.guarded += 1
        for stmt in node.body:
            self.visit(stmt)
        self.guarded -= 1
        for stmt in node.orelse:  # the ``else`` of ``if TYPE_CHECKING`` does run
            self.visit(stmt)

    def _add(self, line: int, module: str, name: str | None) -> None:
        self.imports.append(Import(line, module, name, self.depth > 0, self.guarded > 0))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name, None)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parts = self.module.split(".")
            parts = parts if self.is_package else parts[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        for alias in node.names:
            self._add(node.lineno, base, alias.name)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm without recursion; only components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def enter(node: str) -> Iterator[str]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return iter(sorted(graph.get(node, ())))

    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, enter(start))]
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    work.append((nxt, enter(nxt)))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: list[str] = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def measure(root: Path) -> Report:
    """Scan the packages under ``root`` and return their figures and broken limits."""
    report = Report(root=str(root))
    files = sorted(p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")
                   if "__pycache__" not in p.parts)
    sizes: dict[str, int] = {}
    functions: list[Function] = []
    raw: list[tuple[str, str, Import]] = []
    modules: set[str] = set()
    for file in files:
        rel = file.relative_to(root)
        path, module = rel.as_posix(), _module_name(rel)
        text = file.read_text(encoding="utf-8")
        sizes[path] = len(text.splitlines())
        modules.add(module)
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as exc:
            report.violations.append(f"parse: cannot parse {path}: {exc.msg} (line {exc.lineno})")
            continue
        scanner = _Scanner(module, path, rel.name == "__init__.py")
        scanner.visit(tree)
        functions += scanner.functions
        raw += [(module, path, imp) for imp in scanner.imports]

    def deepest(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: list[Edge] = []
    for src, path, imp in raw:
        # ``from pkg import name`` is ``pkg.name`` when that is a module, else ``pkg``.
        sub = f"{imp.module}.{imp.name}" if imp.name not in (None, "*") else ""
        dst = sub if sub in modules else deepest(imp.module)
        if dst is not None and dst != src:
            edges.append(Edge(src, dst, path, imp))

    report.modules, report.total_lines = len(sizes), sum(sizes.values())
    by_size = sorted(sizes.items(), key=lambda kv: (-kv[1], kv[0]))
    report.top_modules = [{"path": p, "lines": n} for p, n in by_size[:TOP]]
    report.largest_module = report.top_modules[0] if report.top_modules else None
    functions.sort(key=lambda f: (-f.lines, f.name))
    report.top_functions = [asdict(f) for f in functions[:TOP]]
    report.largest_function = report.top_functions[0] if report.top_functions else None

    # TYPE_CHECKING-guarded imports never run, so they cannot make an import cycle: they are
    # left out of the graph. Imports inside functions do run (later), so they stay in.
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for e in edges:
        if not e.imp.type_checking:
            graph[e.src].add(e.dst)
    report.cycles = _strongly_connected(graph)
    report.largest_cycle = max((len(c) for c in report.cycles), default=0)

    # Private names and layering count type-only imports too: they are coupling all the same.
    # Layering and function-level imports count each (statement, imported module) once.
    seen: set[tuple[str, int, str]] = set()
    for e in edges:
        where, name = f"{e.path}:{e.imp.line}", e.imp.name
        if name is not None and _is_private(name):
            report.private_imports.append(f"{where} {e.src} imports {name} from {e.dst}")
        key = (e.path, e.imp.line, e.dst)
        if key in seen:
            continue
        seen.add(key)
        report.function_level_imports += e.imp.in_function
        if e.src.split(".")[0] in LAYERED and e.dst.split(".")[0] == "pipeline" \
                and e.dst != CORE and not e.dst.startswith(CORE + "."):
            report.cross_package_imports.append(f"{where} {e.src} imports {e.dst}")

    report.violations += [f"module: {p} has {n} lines (limit {MAX_MODULE_LINES})"
                          for p, n in by_size if n > MAX_MODULE_LINES]
    report.violations += [f"function: {f.name} ({f.path}:{f.line}) has {f.lines} lines "
                          f"(limit {MAX_FUNCTION_LINES})"
                          for f in functions if f.lines > MAX_FUNCTION_LINES]
    report.violations += [f"cycle: {len(c)} modules import each other: {', '.join(c)}"
                          for c in report.cycles]
    report.violations += [f"private import: {p}" for p in report.private_imports]
    report.violations += [f"layering: {c} (workers/sandbox may import only {CORE})"
                          for c in report.cross_package_imports]
    return report


def render(report: Report, enforce: bool) -> str:
    """The report as text, breaches last (``FAIL:`` when enforced)."""
    out = [f"layout of {', '.join(PACKAGES)} under {report.root}",
           f"modules: {report.modules}, lines: {report.total_lines}"]
    if report.largest_module:
        m = report.largest_module
        out.append(f"largest module: {m['path']} ({m['lines']} lines)")
    out.append("top modules by lines:")
    out += [f"  {m['lines']:5d}  {m['path']}" for m in report.top_modules]
    if report.largest_function:
        f = report.largest_function
        out.append(f"largest function: {f['name']} ({f['path']}:{f['line']}, {f['lines']} lines)")
    out.append("top functions by lines:")
    out += [f"  {f['lines']:5d}  {f['name']}  {f['path']}:{f['line']}"
            for f in report.top_functions]
    out.append(f"import cycles (TYPE_CHECKING imports excluded): {len(report.cycles)}, "
               f"largest {report.largest_cycle} modules")
    out += [f"  [{len(c)}] {', '.join(c)}" for c in report.cycles]
    out.append(f"private-name imports from other modules: {len(report.private_imports)}")
    out += [f"  {p}" for p in report.private_imports]
    out.append(f"function-level imports of project modules: {report.function_level_imports}"
               " (informational)")
    out.append(f"workers/sandbox imports of pipeline outside {CORE}: "
               f"{len(report.cross_package_imports)}")
    out += [f"  {c}" for c in report.cross_package_imports]
    if enforce:
        out += [f"FAIL: {v}" for v in report.violations]
    elif report.violations:  # only counted here; ``--json`` has them all, one by one
        kinds = Counter(v.split(":")[0] for v in report.violations)
        out.append(f"limits not enforced (--no-limits): {len(report.violations)} breaches ("
                   + ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items())) + ")")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="repo root holding the packages (default: this script's repo)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--no-limits", action="store_true", help="only report, exit 0")
    parser.add_argument("--quiet", action="store_true",
                        help="one summary line and the FAIL lines only (for make test)")
    args = parser.parse_args(argv)
    report = measure(args.root.resolve())
    enforce = not args.no_limits
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    elif args.quiet:
        largest = (report.largest_module or {}).get("lines", 0)
        print(f"layout: {report.modules} modules, largest {largest} lines, cycles "
              f"{len(report.cycles)}, private imports {len(report.private_imports)}, "
              f"breaches {len(report.violations)}")
        if enforce:
            print("\n".join(f"FAIL: {v}" for v in report.violations) or "", end="")
    else:
        print(render(report, enforce))
    return 1 if enforce and report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
