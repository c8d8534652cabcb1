"""Metrics in functional form (tested against outside references)."""

from simmlm.metrics.classification import accuracy, expected_calibration_error, static_calibration_error
from simmlm.metrics.counterintuitive import counterintuitive_rate

__all__ = ["accuracy", "counterintuitive_rate", "expected_calibration_error", "static_calibration_error"]
