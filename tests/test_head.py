"""Stage 1: the head's training loop, class weights and the hand-written AdamW."""

import numpy as np
import pytest
import torch

from headstart.hparams import HParams
from headstart.training.head import AdamW, class_weights, fit_head


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
