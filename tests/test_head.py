"""Stage 1: the head, fitted by L-BFGS along an L2 path (the default) or by AdamW mini-batches."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from headstart.hparams import HParams
from headstart.training.head import fit_head
from headstart.training.lbfgs import minimize_lbfgs
from headstart.training.logistic import L2_PATH, stratified_folds
from headstart.training.losses import SoftmaxRegression, class_weights
from headstart.training.minibatch import AdamW


def blobs(n: int, classes: int = 3, dim: int = 6, spread: float = 1.5, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(size=(classes, dim)) * 2
    return (centres[y] + rng.normal(size=(n, dim)) * spread).astype(np.float32), y


def test_lbfgs_reaches_scipys_minimum():
    x, y = blobs(200, classes=4, dim=10)
    problem = SoftmaxRegression(x, y, 4)
    objective = problem.objective(0.01)
    ours = minimize_lbfgs(objective, np.zeros(problem.size, np.float32), gtol=1e-6, ftol=1e-12)
    reference = minimize(
        lambda t: tuple(np.float64(v) for v in objective(t.astype(np.float32))),
        np.zeros(problem.size),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-8, "ftol": 1e-15},
    )
    assert ours.converged
    assert ours.value == pytest.approx(reference.fun, rel=1e-5)
    np.testing.assert_allclose(ours.x, reference.x, atol=2e-3)


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_regression_is_torchs_cross_entropy_with_its_gradient(weighted):
    x, y = blobs(50, classes=3, dim=4)
    y[:5] = 2  # imbalanced, so class weights matter
    weights = class_weights(y, 3) if weighted else None
    problem = SoftmaxRegression(x, y, 3, weights, smoothing=0.1)
    theta = np.random.default_rng(1).normal(size=problem.size).astype(np.float32)
    value, grad = problem.objective(0.05)(theta)

    w, b = (torch.tensor(a, requires_grad=True) for a in problem.split(theta))
    loss_fn = torch.nn.CrossEntropyLoss(
        weight=None if weights is None else torch.from_numpy(weights), label_smoothing=0.1
    )
    reference = loss_fn(torch.from_numpy(x) @ w.T + b, torch.from_numpy(y)) + 0.025 * (w * w).sum()
    reference.backward()
    assert value == pytest.approx(reference.item(), rel=1e-5)
    np.testing.assert_allclose(grad, np.concatenate([w.grad.numpy().ravel(), b.grad.numpy()]), rtol=1e-4, atol=1e-6)


def test_the_l2_path_keeps_the_strength_with_the_lowest_validation_loss():
    x, y = blobs(300, spread=2.5)
    head, history = fit_head(x[:200], y[:200], x[200:], y[200:], 3, HParams())
    assert history.l2 == list(L2_PATH[: len(history.l2)])  # strongest first, in order
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    # The path stops at the first strength that does worse (or at its end).
    assert len(history.l2) == history.best_epoch + 1 or len(history.l2) == len(L2_PATH)
    kept = SoftmaxRegression(x[200:], y[200:], 3)
    theta = np.concatenate([head.weights[0].ravel(), head.biases[0]])
    assert kept.loss(theta) == pytest.approx(min(history.val_loss), rel=1e-5)
    assert history.val_accuracy[history.best_epoch - 1] == pytest.approx((head(x[200:]).argmax(1) == y[200:]).mean())


def test_a_given_l2_strength_is_one_fit():
    x, y = blobs(120)
    _, history = fit_head(x[:80], y[:80], x[80:], y[80:], 3, HParams(l2=0.3))
    assert history.l2 == [0.3] and history.best_epoch == 1


def test_without_a_validation_split_the_path_is_judged_by_cross_validation():
    x, y = blobs(90, spread=2.5)
    head, history = fit_head(x, y, None, None, 3, HParams())
    # Judged on held-out folds, the weakest strengths do worse than on the training split itself.
    assert history.val_loss[-1] > history.train_loss[-1]
    assert 1 <= history.best_epoch <= len(history.l2)
    assert (head(x).argmax(1) == y).mean() > 0.8
    folds = stratified_folds(y, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(90))
    assert all(np.bincount(y[f], minlength=3).tolist() == [10, 10, 10] for f in folds)


def test_lbfgs_with_hidden_layers_is_refused_and_auto_picks_adamw_for_them():
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match="--solver lbfgs fits a linear head"):
        HParams(solver="lbfgs", hidden=(16,))
    assert HParams(hidden=(16,)).head_solver == "adamw" and HParams().head_solver == "lbfgs"


def test_adamw_early_stopping_restores_the_best_epoch():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    xv = rng.normal(size=(30, 8)).astype(np.float32)
    yv = rng.integers(0, 2, 30)  # noise labels: validation loss soon rises
    hp = HParams(solver="adamw", epochs=200, patience=5, learning_rate=0.05)
    head, history = fit_head(x, y, xv, yv, 2, hp)
    assert len(history.val_loss) < 200 and not history.l2
    assert history.best_epoch == int(np.argmin(history.val_loss)) + 1
    assert len(history.val_loss) - history.best_epoch == 5


def test_auto_class_weights_balance_the_loss():
    w = class_weights(np.array([0] * 90 + [1] * 10), 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    assert float(w.mean()) == pytest.approx(np.mean([100 / 180, 100 / 20]))


def test_adamw_matches_torch_optim_step_for_step():
    torch.manual_seed(0)
    a = torch.nn.Linear(6, 3)
    b = torch.nn.Linear(6, 3)
    b.load_state_dict(a.state_dict())
    ours = AdamW(a.parameters(), lr=0.01, weight_decay=0.1)
    reference = torch.optim.AdamW(b.parameters(), lr=0.01, weight_decay=0.1)
    for _ in range(25):
        x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
        for model, opt in ((a, ours), (b, reference)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
