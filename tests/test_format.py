"""Number formatting has one home (simmlm.reporting.format): what the tables print, and that nothing else prints a
"mean ± spread" itself."""

from __future__ import annotations

import math
import re
from pathlib import Path

from simmlm.reporting.format import NO_NUMBER, ci, difference, over_subsets, pm, training_seconds

SOURCE = Path(__file__).resolve().parents[1] / "src" / "simmlm"


def test_pm_is_mean_and_sample_std_in_percent() -> None:
    assert pm([0.5, 0.7]) == "60.00 ± 14.14"
    assert pm([0.5]) == "50.00 ± 0.00"  # one seed: no spread
    assert pm([0.123456], scale=1.0, digits=4) == "0.1235 ± 0.0000"
    assert pm([0.5, math.nan]) == NO_NUMBER == "–"  # a subset without test samples


def test_ci_is_the_half_width_of_the_seeds_t_interval() -> None:
    # mean 0.6, std 0.1414, two seeds: t(1) = 12.706, half-width 12.706 * 0.1414 / sqrt(2) = 1.2706
    assert ci([0.5, 0.7]) == "60.00 ± 127.06"
    assert ci([0.5]) == ci([0.5, math.nan]) == NO_NUMBER


def test_over_subsets_leaves_out_subsets_without_samples() -> None:
    m = {"subsets": {"a": {"ece": [0.1, 0.2]}, "b": {"ece": [0.3, math.nan]}}}
    assert over_subsets(m, "ece", ["a", "b"]) == [0.2, 0.2]


def test_training_seconds_names_the_reused_part() -> None:
    assert training_seconds({"train_seconds": [10.0, 12.0]}) == "11.0"
    assert training_seconds({"train_seconds": [100.0], "shared_seconds": [95.0]}) == "5.0 (+95.0 reused)"


def test_difference_says_what_the_interval_means() -> None:
    value = {"difference": 0.0123, "low": 0.0045, "high": 0.0201, "significant": True}
    assert difference(value) == "+1.23 [+0.45, +2.01]"
    assert difference({**value, "significant_holm": False}) == "+1.23 [+0.45, +2.01] (not after Holm)"
    covers = {"difference": -0.001, "low": -0.01, "high": 0.008, "significant": False}
    assert difference(covers) == "-0.10 [-1.00, +0.80] no significant difference"


def test_no_module_formats_mean_and_spread_itself() -> None:
    """A "{mean} ± {spread}" f-string anywhere else is a second formatter that can drift from these."""
    offenders = [
        str(path.relative_to(SOURCE))
        for path in SOURCE.rglob("*.py")
        if path != SOURCE / "reporting" / "format.py" and re.search(r"\} ± \{", path.read_text())
    ]
    assert not offenders
