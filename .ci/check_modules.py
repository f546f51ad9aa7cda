"""The two house rules import-linter cannot state: no import cycles, no module over 400 lines.

`make lint` runs it after lint-imports, and tests/test_layers.py runs it too (so pytest fails on it as
well). It lives under .ci/ because it checks the repository, it is not part of the package: nothing
imports it, and it needs only grimp, which import-linter installs.

- A cycle: a module that imports, directly or through others, a module that imports it (a strongly
  connected component of the import graph with more than one module). grimp's graph holds every
  import: at the top, inside a function (a lazy import is still an import) and under TYPE_CHECKING.
- A module over the line limit (400): split it by responsibility.

Usage: python .ci/check_modules.py [--package mose_shards] [--max-lines 400]; exit 1 listing what is
wrong, one line each.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import grimp

MAX_LINES = 400


def cycles(modules: Iterable[str], imported_by: Callable[[str], Iterable[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative),
    each sorted, sorted by their first module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(modules):
        if root in index:
            continue
        work = [(root, iter(sorted(imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def import_cycles(package: str) -> list[list[str]]:
    graph = grimp.build_graph(package, include_external_packages=False)
    return cycles(graph.modules, graph.find_modules_directly_imported_by)


def long_modules(package: str, max_lines: int = MAX_LINES) -> list[tuple[str, int]]:
    """(path, lines) of each module of the package longer than max_lines."""
    root = Path(__import__(package).__file__).parent  # type: ignore[arg-type]
    counted = ((path, len(path.read_text(encoding="utf-8").splitlines())) for path in root.rglob("*.py"))
    return sorted((str(path.relative_to(root.parent)), n) for path, n in counted if n > max_lines)


def problems(package: str, max_lines: int = MAX_LINES) -> list[str]:
    out = [f"import cycle: {' <-> '.join(component)}" for component in import_cycles(package)]
    out += [f"{path}: {n} lines (at most {max_lines}; split it by responsibility)" for path, n in
            long_modules(package, max_lines)]  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="mose_shards")
    parser.add_argument("--max-lines", type=int, default=MAX_LINES)
    args = parser.parse_args(argv)
    found = problems(args.package, args.max_lines)
    for line in found:
        print(line, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
