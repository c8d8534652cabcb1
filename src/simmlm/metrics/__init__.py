"""Metrics in functional form (tested against outside references)."""

from simmlm.metrics.classification import accuracy, expected_calibration_error, static_calibration_error
from simmlm.metrics.counterintuitive import counterintuitive_rate
from simmlm.metrics.entropy import binary_entropy, categorical_entropy
from simmlm.metrics.sentiment import sentiment_scores, weighted_f1
from simmlm.metrics.shapley import ShapleyScores, shapley_contributions

__all__ = [
    "binary_entropy",
    "categorical_entropy",
    "ShapleyScores",
    "accuracy",
    "counterintuitive_rate",
    "expected_calibration_error",
    "shapley_contributions",
    "sentiment_scores",
    "static_calibration_error",
    "weighted_f1",
]
