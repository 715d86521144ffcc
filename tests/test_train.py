import numpy as np
import pytest
import torch

import headstart
from headstart.errors import HeadstartError
from headstart.hparams import HParams
from headstart.training import AdamW, class_weights, fit_head


def test_same_seed_same_data_gives_identical_metrics(small_hymenoptera):
    a = headstart.train(small_hymenoptera, seed=3)
    b = headstart.train(small_hymenoptera, seed=3)
    assert a.info["metrics"] == b.info["metrics"] and a.info["history"]["val_loss"] == b.info["history"]["val_loss"]
    assert b.info["timings"]["images_computed"] == 0  # second run: every feature from the cache


def test_learns_separable_classes(colour_folder):
    clf = headstart.train(colour_folder, val_fraction=0.2, test_fraction=0.2)
    assert clf.metrics.accuracy == 1.0
    assert clf.info["evaluated_on"] == "test" and clf.metrics.count == 6


def test_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    xv = rng.normal(size=(30, 8)).astype(np.float32)
    yv = rng.integers(0, 2, 30)  # noise labels: validation loss soon rises
    head, history = fit_head(x, y, xv, yv, 2, HParams(epochs=200, patience=5, learning_rate=0.05))
    assert len(history.val_loss) < 200
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert len(history.val_loss) - history.best_epoch == 5


def test_auto_class_weights_balance_the_loss():
    w = class_weights(np.array([0] * 90 + [1] * 10), 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    assert float(w.mean()) == pytest.approx(np.mean([100 / 180, 100 / 20]))


def test_invalid_hyperparameters_are_user_errors():
    with pytest.raises(HeadstartError, match="invalid dropout"):
        HParams(dropout=1.5)
    with pytest.raises(HeadstartError, match="invalid class_weights"):
        HParams(class_weights="sometimes")


def test_adamw_matches_torch_optim_step_for_step():
    torch.manual_seed(0)
    a = torch.nn.Linear(6, 3)
    b = torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    ours = AdamW(a.parameters(), lr=0.01, weight_decay=0.1)
    reference = torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=0.1)
    for step in range(25):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        for model, opt in ((a, ours), (b, reference)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_metrics_agree_with_scikit_learn():
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    from headstart.metrics import compute_metrics

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
