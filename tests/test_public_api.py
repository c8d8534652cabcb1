"""The package's public face: ``simmlm.<name>`` for the few entry points, loaded on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import simmlm


def test_importing_simmlm_is_light_and_every_public_name_resolves() -> None:
    code = "import sys, simmlm\nassert 'torch' not in sys.modules, 'import simmlm loaded torch'\n"
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in simmlm.__all__:
        assert callable(getattr(simmlm, name)), name
    assert "simmlm" in simmlm.list_methods() and "avmnist" in simmlm.list_datasets()
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        simmlm.nope  # noqa: B018


def test_the_version_has_one_home() -> None:
    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert simmlm.__version__ == project["version"]
