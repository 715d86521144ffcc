"""Expected calibration error and temperature scaling, on numbers worked out by hand."""

import numpy as np
import pytest

from headstart.evaluation.calibration import expected_calibration_error, fit_temperature, softmax


def test_expected_calibration_error_by_hand():
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    # bins: 0.9 -> 2 images, both right (gap 0.1); 0.6 -> 2 images, one right (gap 0.1)
    assert expected_calibration_error(y, probs) == pytest.approx(0.1)


def test_temperature_scaling_lowers_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    logits = rng.normal(0, 1, (600, 3))
    logits[np.arange(600), y] += 1.0
    logits *= 6  # overconfident: same ranking, far too sharp
    t = fit_temperature(logits, y)
    assert t > 3
    assert expected_calibration_error(y, softmax(logits, t)) < expected_calibration_error(y, softmax(logits)) / 2
