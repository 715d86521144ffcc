"""Metrics in numpy, checked against scikit-learn; their dict round trip."""

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

from headstart.evaluation.metrics import Metrics, compute_metrics


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 300)
    y[:3] = 4  # class 3 may go unpredicted: zero-division must give 0 as in sklearn
    probs = rng.dirichlet(np.ones(5), 300)
    probs[np.arange(300), y] += rng.random(300) * 0.6  # better than chance
    m = compute_metrics(y, probs, list("abcde"))
    p, r, f, s = precision_recall_fscore_support(y, probs.argmax(1), labels=range(5), zero_division=0)
    np.testing.assert_allclose(m.precision, p)
    np.testing.assert_allclose(m.recall, r)
    np.testing.assert_allclose(m.f1, f)
    assert m.support == s.tolist()
    assert m.confusion == confusion_matrix(y, probs.argmax(1), labels=range(5)).tolist()
    assert m.top_k_accuracy[3] == pytest.approx(top_k_accuracy_score(y, probs, k=3, labels=range(5)))
    assert m.accuracy == pytest.approx(np.mean(probs.argmax(1) == y))


def test_metrics_survive_the_dict_round_trip_in_any_class_order():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 50)
    m = compute_metrics(y, rng.dirichlet(np.ones(3), 50), ["a", "b", "c"])
    assert Metrics.from_dict(m.to_dict(), ["a", "b", "c"]) == m
    assert Metrics.from_dict(m.to_dict()) == m  # the stored order
    rows = m.per_class_rows()
    assert [r["class"] for r in rows][:5] == ["a", "b", "c", "macro avg", "weighted avg"]
    assert rows[3]["f1"] == pytest.approx(np.mean(m.f1))
