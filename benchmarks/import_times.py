"""What importing each dlrun module costs, read from Python's own import profiler (python -X importtime)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


def import_breakdown(argv: list[str], env: dict[str, str], cwd: str) -> list[tuple[str, float, str]]:
    """What importing each dlrun module costs in a whole run, from Python's own import profiler (-X importtime):
    (module, seconds less the dlrun modules it imports itself, the packages it brought in)."""
    done = subprocess.run(argv, cwd=cwd, env=env | {"PYTHONPROFILEIMPORTTIME": "1"}, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr[-2000:]}")
    rows = []
    for name, seconds, modules in dlrun_imports(done.stderr):
        packages: dict[str, int] = {}
        for module in modules:
            root = module.split(".")[0]
            if root != "dlrun" and not root.startswith("_"):
                packages[root] = packages.get(root, 0) + 1
        biggest = sorted(packages, key=lambda root: -packages[root])[:4]
        rows.append((name, seconds, ", ".join(biggest) + (", ..." if len(packages) > 4 else "")))
    return sorted(rows, key=lambda row: -row[1])


@dataclass
class ImportNode:
    name: str
    cumulative_us: int  # the import with those it made, in microseconds
    inner: list[ImportNode]  # the imports it made


def dlrun_imports(importtime: str) -> list[tuple[str, float, list[str]]]:
    """Each dlrun module in -X importtime's report: its seconds less those of the dlrun modules it imports, and the
    other modules it brought in. The report lists an import after those it made, indented one level deeper."""
    waiting: dict[int, list[ImportNode]] = {}  # by depth: the imports whose importer is not listed yet
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)$", line)
        if match:
            depth = len(match[2]) // 2
            node = ImportNode(match[3], int(match[1]), waiting.pop(depth + 1, []))
            waiting.setdefault(depth, []).append(node)
    rows = []

    def visit(node: ImportNode) -> None:
        if not is_dlrun(node.name):
            for inner in node.inner:
                visit(inner)
            return
        nested, brought, pending = [], [], list(node.inner)
        while pending:  # what node imported, down to (not into) the dlrun modules among them
            inner = pending.pop()
            if is_dlrun(inner.name):
                nested.append(inner)
            else:
                brought.append(inner.name)
                pending += inner.inner
        rows.append((node.name, (node.cumulative_us - sum(inner.cumulative_us for inner in nested)) / 1e6, brought))
        for inner in nested:
            visit(inner)

    for node in waiting.get(0, []):
        visit(node)
    return rows


def is_dlrun(module: str) -> bool:
    return module.split(".")[0] == "dlrun"
