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
            home = name.startswith(("datasets/", f"data/{dataset}")) or name == "cli_example.py"  # its --layout
            if not home:
                offenders.append(f'{name}: == "{dataset}" (the special cases of a dataset belong in its spec)')
    assert not offenders, offenders


def test_no_source_file_over_about_400_lines() -> None:
    long = {name: text.count("\n") for name, text in _sources().items() if text.count("\n") > 420}
    assert not long, long
