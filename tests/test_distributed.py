"""Past one process: Ray Data embedding and batch prediction on a local 2-worker cluster (loopback
only), and torchrun DDP fine-tuning on 2 processes. Real photos throughout."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from headstart import HeadstartError
from headstart.backbones import get_backbone
from headstart.distributed.cluster import ray_cluster
from headstart.distributed.embeddings import MANIFEST, embed, import_features
from headstart.events import Cancelled
from headstart.inference.features import FeatureExtractor
from headstart.inference.prediction_file import PredictionFile
from headstart.inference.predictor import Predictions
from headstart.options import RayOptions
from tests.test_cli import headstart_cli

OPTIONS = RayOptions(workers=2, no_progress_timeout=120)


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster (2 backbone workers + 1 CPU for reading) for the module's Ray jobs."""
    with ray_cluster(OPTIONS):
        yield


@pytest.fixture(scope="module")
def hymenoptera_copy(tmp_path_factory, hymenoptera):
    root = tmp_path_factory.mktemp("ray") / "hymenoptera"
    shutil.copytree(hymenoptera, root)
    return root


def read_shards(folder: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(folder)  # the manifest starts with "_": Parquet readers skip it
    return dict(zip(table["path"].to_pylist(), np.array(table["features"].to_pylist(), np.float32)))


def single_process(paths: list[Path]) -> dict[str, np.ndarray]:
    extraction = FeatureExtractor(get_backbone("mobilenet_v2")).extract(paths)
    return {str(paths[i]): row for row, i in zip(extraction.features, extraction.ok)}


def processes_mentioning(text: str) -> list[int]:
    """Process ids of this machine's processes whose command line contains `text`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def ray_workers() -> list[int]:
    """Process ids of this machine's Ray Data map workers (the backbone actors)."""
    return processes_mentioning("ray::MapWorker")


def test_ray_embedding_equals_the_single_process_cache(cluster, hymenoptera_copy, tmp_path):
    result = embed(hymenoptera_copy, tmp_path / "features", ray=OPTIONS, shard_size=100, quiet=True)
    assert (result.images, result.shards, result.written, result.failures) == (398, 4, 4, {})
    on_ray = read_shards(tmp_path / "features")
    here = single_process([Path(p) for p in on_ray])
    assert on_ray.keys() == here.keys() and len(here) == 398
    assert max(float(np.abs(on_ray[p] - here[p]).max()) for p in here) <= 1e-5
    table = pq.read_table(tmp_path / "features", columns=["path", "label", "sha256"])
    labels = {Path(p).parent.name for p, label in zip(table["path"].to_pylist(), table["label"].to_pylist())}
    assert labels == {"ants", "bees"} and set(table["label"].to_pylist()) == {"ants", "bees"}
    manifest = json.loads((tmp_path / "features" / MANIFEST).read_text())
    assert manifest["images"] == 398 and manifest["classes"] == ["ants", "bees"]


def test_killing_a_worker_mid_job_still_completes(cluster, hymenoptera_copy, tmp_path):
    killed = []

    def kill_one(event):
        if event.kind == "progress" and not killed and (pids := ray_workers()):
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    result = embed(hymenoptera_copy / "val", tmp_path / "f", ray=OPTIONS, shard_size=50, on_event=kill_one)
    assert killed, "no Ray worker process was found to kill"
    assert result.written == result.shards == 4 and not result.failures
    on_ray = read_shards(tmp_path / "f")
    here = single_process([Path(p) for p in on_ray])
    assert len(on_ray) == 153 and max(float(np.abs(on_ray[p] - here[p]).max()) for p in here) <= 1e-5


def test_a_rerun_after_an_interrupted_job_skips_finished_shards(cluster, hymenoptera_copy, tmp_path):
    out = tmp_path / "f"

    def stop_after_a_shard(event):
        if event.kind == "progress" and any(out.glob("part-*.parquet")):
            raise Cancelled()

    with pytest.raises(Cancelled):
        embed(hymenoptera_copy / "val", out, ray=OPTIONS, shard_size=40, on_event=stop_after_a_shard)
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    assert 1 <= len(finished) < 4
    result = embed(hymenoptera_copy / "val", out, ray=OPTIONS, shard_size=40, quiet=True)
    assert result.skipped == len(finished) and result.written == 4 - len(finished)
    assert all(out.joinpath(name).stat().st_mtime_ns == t for name, t in finished.items())  # not rewritten
    whole = read_shards(out)
    here = single_process([Path(p) for p in whole])
    assert len(whole) == 153 and max(float(np.abs(whole[p] - here[p]).max()) for p in here) <= 1e-5


def test_ray_predictions_equal_headstart_predict(small_hymenoptera, hymenoptera, tmp_path):
    model = tmp_path / "model"
    headstart_cli("train", small_hymenoptera, "--out", model, "--no-report", "--tta", "flip")
    local = headstart_cli("predict", model, hymenoptera / "val", "--format", "jsonl").stdout.splitlines()
    headstart_cli("predict", model, hymenoptera / "val", "--engine", "ray", "--out", tmp_path / "p.parquet")
    table = pq.read_table(tmp_path / "p.parquet").to_pylist()
    expected = [json.loads(line) for line in local]
    assert [row["path"] for row in table] == [row["path"] for row in expected] and len(table) == 153
    assert [row["label"] for row in table] == [row["label"] for row in expected]
    for row, want in zip(table, expected):
        assert abs(row["probability"] - want["probability"]) <= 1e-5
        assert row["top_labels"] == [label for label, _ in want["top"][:2]]


def test_train_reads_back_what_embed_wrote_and_refuses_another_recipe(small_hymenoptera, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "empty-cache"))
    embed(small_hymenoptera, tmp_path / "features", shard_size=16, quiet=True)
    assert len(list((tmp_path / "features").glob("part-*.parquet"))) == 3  # 36 images
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "another-cache"))  # nothing computed: all imported
    result = headstart_cli("train", small_hymenoptera, "--out", tmp_path / "m", "--features", tmp_path / "features")
    assert "Features: 0 computed, 36 from cache" in result.stdout
    with pytest.raises(HeadstartError, match="embedded with mobilenet_v2"):
        import_features(tmp_path / "features", FeatureExtractor(get_backbone("efficientnet_lite0")))
    with pytest.raises(HeadstartError, match="another job"):
        embed(small_hymenoptera, tmp_path / "features", shard_size=8, quiet=True)


def test_prediction_files_appear_whole_and_never_replace_silently(tmp_path):
    chunk = Predictions.from_probabilities(["a", "b"], [Path("x.jpg")], [0], np.array([[0.25, 0.75]]), {})
    with PredictionFile(tmp_path / "p.csv", ["a", "b"]) as file:
        file.write(chunk)
        file.write(chunk)
        assert not (tmp_path / "p.csv").exists()  # only when closed
    assert (tmp_path / "p.csv").read_text().splitlines() == [
        "path,label,probability,a,b",
        "x.jpg,b,0.750000,0.250000,0.750000",
        "x.jpg,b,0.750000,0.250000,0.750000",
    ]
    with pytest.raises(HeadstartError, match="exists"):
        PredictionFile(tmp_path / "p.csv", ["a", "b"])
    with pytest.raises(RuntimeError), PredictionFile(tmp_path / "q.parquet", ["a", "b"]) as file:
        file.write(chunk)
        raise RuntimeError("the job failed half-way")
    assert not list(tmp_path.glob("*q.parquet*"))  # a failed job leaves nothing behind


def test_a_stalled_job_fails_loudly_instead_of_hanging():
    from headstart.distributed.pipeline import _watched

    release = threading.Event()

    def stuck():
        yield 1
        release.wait(30)
        yield 2

    batches = _watched(stuck(), timeout=0.5)
    assert next(batches) == 1
    with pytest.raises(HeadstartError, match="no batch finished in 0.5 s"):
        next(batches)
    release.set()


# -- torchrun DDP ----------------------------------------------------------------------------


def torchrun(*args, processes=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    command += ["--standalone", "-m", "headstart", *map(str, args)]  # rendezvous on a free loopback port
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def val_accuracy(bundle: Path) -> tuple[int, int]:
    val = json.loads((bundle / "model.json").read_text())["splits"]["val"]
    return round(val["accuracy"] * val["count"]), val["count"]


def test_ddp_fine_tuning_on_two_processes_matches_one(alpaca, tmp_path):
    flags = ["--fine-tune", "2", "--no-report", "--quiet"]
    headstart_cli("train", alpaca, "--out", tmp_path / "one", *flags)
    run = torchrun("train", alpaca, "--out", tmp_path / "two", *flags)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.count("Model saved to") == 1  # rank 0 alone speaks and writes
    one, two = val_accuracy(tmp_path / "one"), val_accuracy(tmp_path / "two")
    assert one[1] == two[1] and abs(one[0] - two[0]) <= 1, (one, two)
    record = json.loads((tmp_path / "two" / "model.json").read_text())
    assert len(record["stages"]["fine_tune"]["history"]["val_loss"]) >= 1  # stage 2 ran, on both ranks
    assert not (tmp_path / "two.checkpoint").exists()


def test_repeated_ddp_runs_always_exit_cleanly(small_hymenoptera, tmp_path):
    flags = ["--fine-tune", "1", "--fine-tune-epochs", "1", "--epochs", "2", "--no-report", "--quiet"]
    runs = [torchrun("train", small_hymenoptera, "--out", tmp_path / f"m{i}", *flags) for i in range(10)]
    failed = [run.stderr[-3000:] for run in runs if run.returncode != 0]
    assert [run.returncode for run in runs] == [0] * 10, failed[:1]
    assert all((tmp_path / f"m{i}" / "model.json").exists() for i in range(10))


def test_a_killed_ddp_run_resumes_from_rank_0s_checkpoint(alpaca, tmp_path):
    out, state = tmp_path / "m", tmp_path / "m.checkpoint" / "state.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += ["-m", "headstart", "train", str(alpaca), "--out", str(out), "--fine-tune", "2", "--no-report", "-q"]
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if state.exists() and '"stage2"' in state.read_text(errors="replace"):
            break
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)  # the launcher, mid fine-tuning ...
    for pid in processes_mentioning(str(out)):  # ... and every rank (torchrun starts them in sessions of their own)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    run.wait()
    assert not (out / "model.json").exists()
    epoch = json.loads(state.read_text())["stage2"]["epoch"]
    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-1500:] + resumed.stderr[:1500]
    history = json.loads((out / "model.json").read_text())["stages"]["fine_tune"]["history"]
    assert len(history["val_loss"]) >= epoch and not state.parent.exists()


def test_embed_labels_by_folder_and_takes_any_folder(tmp_path):
    from headstart.data.labelled import FolderImages as Images
    from tests.helpers import make_image

    make_image(tmp_path / "one" / "cats" / "a.png")  # one class: no training set, still labelled
    make_image(tmp_path / "one" / "cats" / "deeper" / "b.png", seed=1)
    make_image(tmp_path / "one" / "loose.png", seed=2)
    make_image(tmp_path / "split" / "train" / "dogs" / "c.png", seed=3)
    make_image(tmp_path / "split" / "validation" / "dogs" / "d.png", seed=4)
    one, split = Images.of(tmp_path / "one"), Images.of(tmp_path / "split")
    assert dict(zip((p.name for p in one.paths), one.labels)) == {"a.png": "cats", "b.png": "cats", "loose.png": None}
    assert one.classes == ["cats"] and split.labels == ["dogs", "dogs"] and split.classes == ["dogs"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(HeadstartError, match="no image files"):
        Images.of(tmp_path / "empty")
