"""The code's shape: the layers (docs/contributing/architecture.md) import only downwards, special cases live
behind the seams (method registry, dataset packages, tasks), files stay small."""

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
            home = name.startswith("datasets/") or name == "cli/example.py"  # its --layout
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
    assert (
        "simmlm.engine.config" in graph["simmlm.engine.runs"]
    )  # the graph is read (a parse that found nothing passes)


# The layers (docs/contributing/architecture.md): the core is plain PyTorch and knows nothing of training,
# experiments, reports or commands; the ring stands on it.
CORE = ("portable", "fileio", "progress", "subsets", "data", "nn", "metrics", "losses", "methods", "evaluation")
RING = ("engine", "experiments", "reporting", "cli")
DATASET_NAMES = re.compile(r"avmnist|brats|food101|mvmnist|seqfeatures", re.IGNORECASE)
#: The training files, the only ones that import Lightning.
LIGHTNING = {"engine/train.py", "engine/stages.py", "engine/resume.py", "engine/callbacks.py"}


def _every_import() -> dict[str, set[str]]:
    """Source file (relative to ``src/simmlm``) -> every module it imports anywhere: at module level, inside
    functions and under ``if TYPE_CHECKING:`` (``from a.b import c`` counts as ``a.b.c`` and ``a.b``)."""
    import ast

    found: dict[str, set[str]] = {}
    for name, text in _sources().items():
        modules: set[str] = set()
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Import):
                modules |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{name}: a relative import"
                modules.add(node.module or "")
                modules |= {f"{node.module}.{alias.name}" for alias in node.names}
        found[name] = modules
    return found


def _in(package: str, modules: set[str]) -> set[str]:
    return {m for m in modules if m == f"simmlm.{package}" or m.startswith(f"simmlm.{package}.")}


def _of(layer: tuple[str, ...], name: str) -> bool:
    """Whether the source file ``name`` belongs to one of the packages (or top-level modules) of ``layer``."""
    return name.split("/")[0].removesuffix(".py") in layer


def test_the_core_never_imports_the_ring() -> None:
    """subsets, data, nn, metrics, losses, methods and evaluation (and the helpers portable, fileio) import nothing of
    engine, experiments, reporting or cli, not even inside a function: the core stands alone."""
    offenders = {
        name: sorted(set().union(*(_in(package, modules) for package in RING)))
        for name, modules in _every_import().items()
        if _of(CORE, name)
    }
    assert not {name: bad for name, bad in offenders.items() if bad}
    assert "simmlm.subsets" in _every_import()["evaluation/evaluate.py"]  # the imports are read


def test_data_is_generic_machinery_that_names_no_dataset() -> None:
    """data/ imports nothing of datasets/, and its code (docstrings and comments aside) names no dataset: what is
    one dataset's lives in its package under datasets/."""
    import ast

    imports = {name: _in("datasets", m) for name, m in _every_import().items() if _of(("data",), name)}
    assert "data/base.py" in imports and not {name: bad for name, bad in imports.items() if bad}
    offenders = []
    for name, text in _sources().items():
        if not _of(("data",), name):
            continue
        tree = ast.parse(text)
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            words = []
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                words.append(node.value)
            elif isinstance(node, ast.Name):
                words.append(node.id)
            elif isinstance(node, ast.Attribute):
                words.append(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                words.append(node.name)
            elif isinstance(node, ast.arg):
                words.append(node.arg)
            offenders += [f"{name}: {w!r}" for w in words if DATASET_NAMES.search(w)]
    assert not offenders, offenders


def test_the_top_level_holds_only_the_core_helpers() -> None:
    """Everything else is in a package that names its layer."""
    assert {p.name for p in SOURCE.glob("*.py")} == {
        "__init__.py",
        "portable.py",
        "fileio.py",
        "progress.py",
        "subsets.py",
    }


def test_lightning_stays_in_the_training_files() -> None:
    """Configs, tasks, run folders (load_run, predict) and everything below them import no Lightning."""
    importers = {
        name
        for name, modules in _every_import().items()
        if any(m.split(".")[0] in ("lightning", "pytorch_lightning") for m in modules)
    }
    assert importers == LIGHTNING


def test_run_folders_and_predict_load_no_lightning_at_import() -> None:
    """What importing ``simmlm.engine.runs`` (load_run, predict_files) or ``simmlm.evaluation.predict`` runs, package
    ``__init__`` files included, reaches none of the training files (``tests/test_predict.py`` checks it in a fresh
    interpreter)."""
    graph = _module_imports()
    training = {f"simmlm.{name.removesuffix('.py').replace('/', '.')}" for name in LIGHTNING}

    def reached(module: str) -> set[str]:
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            parents = {".".join(current.split(".")[:k]) for k in range(2, current.count(".") + 1)}
            for dependency in (graph.get(current, set()) | parents) - seen:
                seen.add(dependency)
                todo.append(dependency)
        return seen

    for module in ("simmlm.engine.runs", "simmlm.evaluation.predict", "simmlm.engine.tasks", "simmlm.datasets"):
        assert not reached(module) & training, (module, sorted(reached(module) & training))


def test_the_library_reports_through_one_logger_per_module_and_never_prints() -> None:
    """Outside the command line (whose output is its result), no ``print(...)``, no ``logging.getLogger("simmlm")``
    at a call site (a module's logger is ``logging.getLogger(__name__)``, a child of ``simmlm`` that the CLI's handler
    shows), no ``log=print``-style callbacks, and progress bars only through ``simmlm.progress``."""
    import ast

    offenders, imports = [], _every_import()
    for name, text in _sources().items():
        if name.startswith("cli/"):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno}: print(...)")
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("logging.getLogger", "getLogger"):
                given = [a.value for a in node.args if isinstance(a, ast.Constant)]
                if not node.args or any(str(v).split(".")[0] == "simmlm" for v in given):  # root, or by hand
                    offenders.append(f"{name}:{node.lineno}: {ast.unparse(node)} (use logging.getLogger(__name__))")
            elif isinstance(node, ast.arg) and node.arg == "log":
                offenders.append(f"{name}:{node.lineno}: a log= parameter (log on the module's logger)")
            elif isinstance(node, ast.Name) and node.id == "print":
                offenders.append(f"{name}:{node.lineno}: print as a value")
        if name != "progress.py" and "rich.progress" in imports[name]:
            offenders.append(f"{name}: rich.progress (show progress with simmlm.progress)")
    assert not offenders, offenders
