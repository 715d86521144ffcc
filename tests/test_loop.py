"""The epoch loop both stages share: early stopping, best weights restored, exact resume."""

import math

import torch

from headstart.evaluation.record import History
from headstart.events import EventBus
from headstart.training.loop import fit_epochs, seed_everything
from headstart.training.stopping import EarlyStopping


def test_early_stopping_counts_epochs_without_improvement():
    stopping = EarlyStopping(patience=2)
    assert [stopping.update(v) for v in (1.0, 0.5, 0.5 - 1e-9, 0.6)] == [True, True, False, False]
    assert stopping.should_stop and stopping.best_loss == 0.5
    assert not EarlyStopping(patience=2, best_loss=0.1).update(0.2)  # a starting loss to beat (stage 2)


class ToyStage:
    """A 1-parameter model whose validation loss is scripted, to test the loop alone."""

    name, description, epochs, patience, size, batch_size = "toy", "toy", 8, 3, 4, 2

    def __init__(self, val_losses):
        self.w = torch.zeros(1)
        self.val_losses = list(val_losses)
        self.orders = []

    def start_epoch(self, epoch):
        self.w += 1
        self.orders.append([])

    def step(self, batch):
        self.orders[-1] += batch.tolist()
        logits = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # with targets [0, 0]: one right
        return torch.tensor(float(len(self.orders))), logits, torch.tensor([0, 0])

    def validate(self):
        loss = self.val_losses[len(self.orders) - 1]
        return loss, 1 - loss

    def weights(self):
        return {"w": self.w.clone()}

    def load_weights(self, weights):
        self.w = weights["w"].clone()

    def state(self):
        return {"epochs_seen": len(self.orders)}

    def load_state(self, state):
        self.orders = [[]] * state["epochs_seen"]


LOSSES = [0.9, 0.5, 0.6, 0.4, 0.45, 0.47, 0.5, 0.3]


def run(stage, resume=None, on_epoch=None, start_loss=math.inf):
    return fit_epochs(stage, History(), seed_everything(0), EventBus(), start_loss, on_epoch, resume)


def test_stops_after_patience_and_restores_the_best_epoch():
    stage = ToyStage(LOSSES)
    history = run(stage)
    assert history.val_loss == LOSSES[:7] and history.best_epoch == 4  # 0.4 at epoch 4, then 3 worse epochs
    assert float(stage.w) == 4.0  # the weights after epoch 4
    assert history.train_loss == [1, 2, 3, 4, 5, 6, 7] and history.train_accuracy == [0.5] * 7
    assert history.step_loss == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7] and history.step_accuracy == [0.5] * 14


def test_nothing_beats_the_starting_loss_so_the_starting_weights_stay():
    stage = ToyStage(LOSSES)
    history = run(stage, start_loss=0.1)
    assert history.best_epoch == 0 and float(stage.w) == 0.0 and len(history.val_loss) == 3


def test_resuming_from_any_snapshot_repeats_the_uninterrupted_run():
    snapshots = []
    straight_stage = ToyStage(LOSSES)
    straight = run(straight_stage, on_epoch=snapshots.append)
    for snapshot in snapshots[:-1]:
        stage = ToyStage(LOSSES)
        resumed = run(stage, resume=snapshot)
        assert resumed.val_loss == straight.val_loss and resumed.best_epoch == straight.best_epoch
        assert resumed.step_loss == straight.step_loss and float(stage.w) == float(straight_stage.w)
        assert stage.orders[snapshot.epoch :] == straight_stage.orders[snapshot.epoch :]  # same shuffles
