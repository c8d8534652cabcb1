"""The code's shape: special cases live behind the seams (method registry, tasks), files stay small."""

from __future__ import annotations

import re
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "simmlm"


def _sources() -> dict[str, str]:
    return {str(p.relative_to(SOURCE)): p.read_text() for p in sorted(SOURCE.rglob("*.py"))}


def test_no_method_or_dataset_special_cases_outside_their_homes() -> None:
    """A new method registers hooks, a new dataset registers a spec: no `isinstance(x, DREAM)` or `== "folder"`."""
    offenders = []
    for name, text in _sources().items():
        if name != "methods/dream.py" and re.search(r"isinstance\([^)]*\bDREAM\b", text):
            offenders.append(f"{name}: isinstance(..., DREAM)")
        for dataset in re.findall(r"""[=!]= ?["'](avmnist|brats|folder|food101|mvmnist|seqfeatures)["']""", text):
            home = name.startswith("datasets/") or name == "cli_example.py"  # its --layout
            if not home:
                offenders.append(f'{name}: == "{dataset}" (the special cases of a dataset belong in its spec)')
    assert not offenders, offenders


def test_no_source_file_over_about_400_lines() -> None:
    long = {name: text.count("\n") for name, text in _sources().items() if text.count("\n") > 420}
    assert not long, long


def _module_imports() -> dict[str, set[str]]:
    """simmlm module -> the simmlm modules it imports when it is imported (module level; imports inside functions
    and ``if TYPE_CHECKING:`` blocks are deferred, so they are left out)."""
    import ast

    def name(path: Path) -> str:
        parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name(p): p for p in SOURCE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            for item in ast.walk(node):
                if isinstance(item, ast.ImportFrom) and item.level == 0 and (item.module or "").startswith("simmlm"):
                    for alias in item.names:
                        found.add(
                            f"{item.module}.{alias.name}" if f"{item.module}.{alias.name}" in modules else item.module
                        )
                elif isinstance(item, ast.Import):
                    found |= {a.name for a in item.names if a.name in modules}
        graph[module] = {m for m in found if m in modules and m != module}
    return graph


def test_no_import_cycles_between_modules() -> None:
    """Importing any module never comes back to a module being imported (lazy imports inside functions excepted)."""
    graph, cycles = _module_imports(), []

    def visit(module: str, path: list[str], done: set[str]) -> None:
        for dependency in sorted(graph[module]):
            if dependency in path:
                cycles.append(" -> ".join([*path[path.index(dependency) :], dependency]))
            elif dependency not in done:
                visit(dependency, [*path, dependency], done)
        done.add(module)

    finished: set[str] = set()
    for module in sorted(graph):
        visit(module, [module], finished)
    assert not cycles, cycles[:5]
    assert "simmlm.engine.config" in graph["simmlm.runs"]  # the graph is read (a parse that found nothing passes)
