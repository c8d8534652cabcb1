"""Sphinx configuration of the simmlm documentation (``make docs``: warnings are errors)."""

from __future__ import annotations

import sys
from importlib.metadata import version as _version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

project = "simmlm"
author = "the simmlm developers"
copyright = "2026, the simmlm developers"  # noqa: A001
release = _version("simmlm")

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "simmlm_docs",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "datasets/*"]  # datasets/: narratives included by the generated dataset pages
templates_path = ["_templates"]

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
# docstrings name types (Tensor, Path, pydantic models) that intersphinx would resolve; without network the
# references stay plain text rather than failing the build
nitpicky = False
# a class re-exported by its package (simmlm.engine.RunConfig) is documented at both names
suppress_warnings = ["myst.header", "ref.python"]
autodoc_inherit_docstrings = False  # Lightning's own docstrings are not ours to render

html_theme = "furo"
html_title = f"simmlm {release}"
html_static_path: list[str] = []
