"""Metrics in functional form (tested against outside references)."""

from simmlm.metrics.classification import accuracy, expected_calibration_error, static_calibration_error
from simmlm.metrics.counterintuitive import counterintuitive_rate
from simmlm.metrics.entropy import binary_entropy, categorical_entropy
from simmlm.metrics.shapley import ShapleyScores, shapley_contributions

__all__ = [
    "binary_entropy",
    "categorical_entropy",
    "ShapleyScores",
    "accuracy",
    "counterintuitive_rate",
    "expected_calibration_error",
    "shapley_contributions",
    "static_calibration_error",
]
