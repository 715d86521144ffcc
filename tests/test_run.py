"""A training run driven step by step from Python, its events, and cancelling it from a handler."""

import pytest

import headstart
from headstart.cli import main
from headstart.events import Cancelled
from headstart.hparams import HParams
from headstart.training.checkpoint import Interrupted, checkpoint_dir
from headstart.training.run import STEPS, TrainingRun

FINE_TUNE = dict(fine_tune=2, fine_tune_epochs=4, fine_tune_patience=4, epochs=12, patience=12, batch_size=8)


class Recorder:
    """Collects events; optionally cancels the run at a given epoch of a given stage."""

    def __init__(self, cancel_at: tuple[str, int] | None = None):
        self.events, self.cancel_at = [], cancel_at

    def __call__(self, event):
        self.events.append(event)
        if self.cancel_at and (event.stage, event.step) == self.cancel_at and event.kind == "progress":
            raise Cancelled()

    def kinds(self, stage):
        return [e.kind for e in self.events if e.stage == stage]


def test_steps_run_one_by_one_and_report_every_stage(small_hymenoptera, tmp_path):
    recorder = Recorder()
    run = TrainingRun(small_hymenoptera, HParams(**FINE_TUNE), out=tmp_path / "m", on_event=recorder, quiet=True)
    finished_when_numbers_came = []  # was the model already built when each epoch's numbers arrived?
    run.events.subscribe(lambda e: "val_loss" in e.metrics and finished_when_numbers_came.append(run.model is not None))

    run.scan()
    assert run.done == ["scan"] and run.features is None
    run.train_head()  # runs extract and group first
    assert run.done == ["scan", "extract", "group", "train_head"] and run.model is None
    run.run()
    assert run.done == list(STEPS)

    for stage in ("scan", "extract", "group", "train_head", "fine_tune", "calibrate", "describe", "save"):
        kinds = recorder.kinds(stage)
        assert kinds[0] == "start" and kinds[-1] == "end" and "progress" in kinds, (stage, kinds)
        end = [e for e in recorder.events if e.stage == stage][-1]
        assert end.status == "done" and end.elapsed >= 0
    head_epochs = [e.metrics for e in recorder.events if e.stage == "train_head" and e.kind == "progress" and e.metrics]
    assert [m["val_loss"] for m in head_epochs] == run.record.history.val_loss
    tuned_epochs = [e for e in recorder.events if e.stage == "fine_tune" and e.kind == "progress" and e.metrics]
    assert [e.step for e in tuned_epochs] == [1, 2, 3, 4] and all(e.total == 4 for e in tuned_epochs)
    assert len(finished_when_numbers_came) > 4 and not any(finished_when_numbers_came)  # they came during training
    extract = [e for e in recorder.events if e.stage == "extract" and e.kind == "progress"]
    assert extract[-1].step == extract[-1].total == 36 and extract[-1].unit == "images"
    assert (tmp_path / "m" / "model.json").exists() and not checkpoint_dir(tmp_path / "m").exists()


# The adamw head is checkpointed every epoch; the lbfgs head (under a second) is simply fitted again.
@pytest.mark.parametrize("stage, epoch, solver", [("train_head", 3, "adamw"), ("fine_tune", 2, "lbfgs")])
def test_cancelling_from_a_handler_leaves_a_resumable_checkpoint(small_hymenoptera, tmp_path, stage, epoch, solver):
    settings = FINE_TUNE | {"solver": solver}
    straight = headstart.train(small_hymenoptera, out=tmp_path / "straight", quiet=True, **settings)

    recorder = Recorder(cancel_at=(stage, epoch))
    with pytest.raises(Interrupted, match="--resume"):
        headstart.train(small_hymenoptera, out=tmp_path / "cut", on_event=recorder, quiet=True, **settings)
    assert recorder.events[-1].kind == "end" and recorder.events[-1].status == "cancelled"
    assert [e for e in recorder.events if e.stage == stage and e.kind == "end"][0].status == "cancelled"
    assert checkpoint_dir(tmp_path / "cut").is_dir() and not (tmp_path / "cut" / "model.json").exists()

    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    assert (
        main(
            [
                "train",
                str(small_hymenoptera),
                "--out",
                str(tmp_path / "cut"),
                "--resume",
                "--quiet",
                "--no-report",
                *flags,
            ]
        )
        == 0
    )
    resumed = headstart.load(tmp_path / "cut")
    assert resumed.record.fine_tune.val_loss == straight.record.fine_tune.val_loss
    assert resumed.record.history.val_loss == straight.record.history.val_loss
    assert resumed.metrics == straight.metrics
    assert not checkpoint_dir(tmp_path / "cut").exists()


def test_run_cancel_stops_at_the_next_event_and_resumes(small_hymenoptera, tmp_path):
    hp = HParams(solver="adamw", epochs=30, patience=30)
    straight = TrainingRun(small_hymenoptera, hp, quiet=True).run()
    run = TrainingRun(small_hymenoptera, hp, out=tmp_path / "m", quiet=True)
    run.events.subscribe(lambda e: run.cancel() if (e.stage, e.kind, e.step) == ("train_head", "progress", 5) else None)
    with pytest.raises(Interrupted):
        run.run()
    assert "train_head" not in run.done and run.model is None
    resumed = TrainingRun(small_hymenoptera, hp, out=tmp_path / "m", resume=True, quiet=True).run()
    assert resumed.model.extractor is resumed.extractor  # training's onnxruntime session serves the model
    assert resumed.record.history.val_loss == straight.record.history.val_loss
    assert resumed.record.metrics == straight.record.metrics


def test_cancelling_the_lbfgs_head_stops_the_run(small_hymenoptera, tmp_path):
    run = TrainingRun(small_hymenoptera, HParams(), out=tmp_path / "m", quiet=True)
    run.events.subscribe(lambda e: run.cancel() if (e.stage, e.kind, e.step) == ("train_head", "progress", 2) else None)
    with pytest.raises(Cancelled):
        run.run()
    assert "train_head" not in run.done and not (tmp_path / "m").exists()


@pytest.mark.parametrize("augment", ["none", "light"])
def test_a_class_deleted_while_the_run_trains_stops_it_with_a_sentence(small_hymenoptera, tmp_path, augment):
    """The head trains on features read at the start; fine-tuning reads the images again. With a
    class gone by then it used to pair the crops left with the wrong labels (a batch-size error)."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(small_hymenoptera, data)

    def delete_bees(event):
        if event.stage == "train_head" and event.kind == "start":
            for split in ("train", "val"):
                shutil.rmtree(data / split / "bees")

    hp = HParams(**FINE_TUNE | {"augment": augment})
    with pytest.raises(headstart.HeadstartError, match="bees.* gone or unreadable since this run started"):
        TrainingRun(data, hp, out=tmp_path / "m", on_event=delete_bees, quiet=True).run()
    assert not (tmp_path / "m" / "model.json").exists()
