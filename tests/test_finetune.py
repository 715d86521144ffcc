"""Stage 2: frozen BatchNorm, fine-tuned bundles, views, checkpoints and resume (end to end)."""

import copy
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import headstart
from headstart.backbones import get_backbone
from headstart.data.augment import augmentation_of
from headstart.errors import HeadstartError
from headstart.hparams import HParams
from headstart.inference.graph import build_head
from headstart.preprocessing import Preprocessing
from headstart.training.checkpoint import checkpoint_dir
from headstart.training.finetune import FineTuneStage, fine_tune

PP = Preprocessing()


def test_views_multiply_the_head_training_set(small_hymenoptera):
    clf = headstart.train(small_hymenoptera, augment="light", views=2, solver="adamw")
    assert clf.record.history.steps_per_epoch == math.ceil(3 * 24 / 32)
    again = headstart.train(small_hymenoptera, augment="light", views=2, solver="adamw")
    assert again.metrics == clf.metrics  # views are seeded and cached
    with pytest.raises(HeadstartError, match="--views needs augmentation"):
        headstart.train(small_hymenoptera, views=2)


def bn_buffers(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running_" in k or "num_batches" in k}


@pytest.mark.parametrize("augment", ["none", "light"])
def test_fine_tuning_never_moves_batchnorm_statistics(small_hymenoptera, augment):
    backbone = get_backbone("mobilenet_v2").create()
    before_bn, before_all = bn_buffers(backbone), copy.deepcopy(backbone.state_dict())
    paths = sorted((small_hymenoptera / "train").rglob("*.jpg"))[::4]  # a tiny batch: 6 images
    labels = np.array([p.parent.name == "bees" for p in paths], dtype=np.int64)
    hp = HParams(fine_tune=3, fine_tune_epochs=2, batch_size=4, fine_tune_patience=5, augment=augment)
    head = build_head(1280, 2)
    fine_tune(FineTuneStage(backbone, head, PP, (paths, labels), (paths, labels), hp, augmentation_of(hp)))
    after = bn_buffers(backbone)
    assert before_bn.keys() == after.keys() and len(after) > 100
    assert all(torch.equal(before_bn[k], after[k]) for k in after)
    # ...while the unfrozen convolutions did learn (train = val here, so a later epoch is kept), the frozen ones not.
    tuned = backbone.state_dict()
    assert not torch.equal(before_all["features.18.0.weight"], tuned["features.18.0.weight"])
    assert torch.equal(before_all["features.10.conv.0.0.weight"], tuned["features.10.conv.0.0.weight"])


def test_fine_tuned_bundle_round_trip(small_hymenoptera, tmp_path):
    clf = headstart.train(small_hymenoptera)
    tuned = get_backbone("mobilenet_v2").create()
    with torch.no_grad():  # stand in for fine-tuning: change the top block's weights
        tuned.features[18][0].weight.mul_(1.5)
    clf = headstart.Classifier(clf.record, **clf.parts() | {"backbone": tuned})
    clf.save(tmp_path / "m")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        assert any(k.startswith("backbone.features.18") for k in f.keys())
    images = sorted((small_hymenoptera / "val").rglob("*.jpg"))
    before = clf.predict(images)
    after = headstart.load(tmp_path / "m").predict(images)
    assert [p.probabilities for p in before] == [p.probabilities for p in after]
    plain = headstart.train(small_hymenoptera).predict(images)
    assert [p.probabilities for p in plain] != [p.probabilities for p in after]  # the tuned weights are used


def cli(*args, **kw):
    env = os.environ | {"HEADSTART_QUIET": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "headstart", *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background by a script inherits SIGINT ignored (POSIX shells do that
        # to background jobs), and Python then never turns Ctrl-C into KeyboardInterrupt.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )


FT_ARGS = [
    "--fine-tune",
    "2",
    "--fine-tune-epochs",
    "6",
    "--fine-tune-patience",
    "6",
    "--augment",
    "light",
    "--batch-size",
    "8",
    "--no-report",
]


def wait_for_stage2_epoch(out, epoch, process, timeout=240):
    state = checkpoint_dir(out) / "state.json"
    end = time.time() + timeout
    while time.time() < end and process.poll() is None:
        try:
            saved = json.loads(state.read_text())
            if saved.get("stage2", {}).get("epoch", 0) >= epoch:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(
        f"stage 2 never reached epoch {epoch}: {process.poll()} "
        f"{process.stderr.read() if process.poll() is not None else ''}"
    )


def test_resume_after_sigkill_matches_an_uninterrupted_run(small_hymenoptera, tmp_path):
    straight = cli("train", small_hymenoptera, "--out", tmp_path / "straight", *FT_ARGS)
    assert straight.wait(timeout=600) == 0, straight.stderr.read()

    killed = cli("train", small_hymenoptera, "--out", tmp_path / "killed", *FT_ARGS)
    wait_for_stage2_epoch(tmp_path / "killed", 2, killed)
    time.sleep(0.3)  # land somewhere inside the next epoch
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not (tmp_path / "killed" / "model.json").exists()

    resumed = cli("train", small_hymenoptera, "--out", tmp_path / "killed", "--resume", *FT_ARGS)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    a = json.loads((tmp_path / "straight" / "model.json").read_text())
    b = json.loads((tmp_path / "killed" / "model.json").read_text())
    assert b["stages"]["fine_tune"]["history"]["val_loss"] == a["stages"]["fine_tune"]["history"]["val_loss"]
    assert len(a["stages"]["fine_tune"]["history"]["val_loss"]) == 6
    assert b["metrics"] == a["metrics"]
    assert not checkpoint_dir(tmp_path / "killed").exists()  # cleaned up after the final save


def test_ctrl_c_saves_and_says_how_to_resume(small_hymenoptera, tmp_path):
    run = cli("train", small_hymenoptera, "--out", tmp_path / "m", *FT_ARGS)
    wait_for_stage2_epoch(tmp_path / "m", 1, run)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130, run.stderr.read()[-2000:]
    message = run.stderr.read()
    assert "--resume" in message and "Traceback" not in message
    assert (checkpoint_dir(tmp_path / "m") / "state.json").exists()
    again = cli("train", small_hymenoptera, "--out", tmp_path / "m", *FT_ARGS)  # forgot --resume
    assert again.wait(timeout=120) == 2 and "add --resume" in again.stderr.read()
    other = cli(
        "train", small_hymenoptera, "--out", tmp_path / "m", "--resume", *FT_ARGS[:-1], "--seed", "7", "--no-report"
    )
    assert other.wait(timeout=120) == 2 and "other settings or data" in other.stderr.read()
