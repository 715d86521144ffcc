"""Hostile inputs and damaged state, every one made here in code: each CLI command against bad
inputs must exit non-zero with one line on stderr, no traceback, and leave the user's files as
they were (every file of the sandbox hashed before and after)."""

import base64
import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import headstart
from headstart.bundle import integrity
from headstart.cli import main
from headstart.training.checkpoint import checkpoint_dir
from tests.helpers import make_image


@pytest.fixture(scope="module")
def bundle(small_hymenoptera, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hostile") / "model"
    headstart.train(small_hymenoptera, out=out, hidden=(16,))
    return out


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file and link below `root` by relative path: content hash, or the link's target."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, name)
            key = os.fsencode(p.relative_to(root)).hex()
            out[key] = "link:" + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def edited_bundle(bundle: Path, dst: Path, edit, rehash: bool = True) -> Path:
    """A copy of `bundle` with model.json edited (and its integrity hash recomputed, as a careful
    forger would, so that the schema itself is what must refuse it)."""
    shutil.copytree(bundle, dst)
    meta = json.loads((dst / "model.json").read_text())
    edit(meta)
    if rehash:
        try:
            meta["integrity"] = integrity(meta)
        except (KeyError, TypeError):
            pass
    (dst / "model.json").write_text(json.dumps(meta))
    return dst


def set_path(keys, value):
    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return edit


def foreign_onnx(path: Path, metadata: str | None = None, width: int = 2) -> Path:
    """A valid ONNX model headstart did not write (optionally with a `headstart` property)."""
    x = helper.make_tensor_value_info("images", TensorProto.UINT8, ["N", 224, 224, 3])
    y = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", width])
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, width])
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Reshape", ["f", "shape"], ["probabilities"]),
        ],
        "foreign",
        [x],
        [y],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    if metadata is not None:
        helper.set_model_props(model, {"headstart": metadata})
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def sandbox(bundle, small_hymenoptera, tmp_path_factory) -> Path:
    """The user's world: their own files, a data folder, and every kind of damaged artefact."""
    root = tmp_path_factory.mktemp("sandbox")
    (root / "notes.txt").write_text("the user's own file")
    shutil.copytree(small_hymenoptera, root / "data")
    (root / "mine").mkdir()
    (root / "mine" / "model.json").write_text('{"mine": true}')  # a user's file that merely has the name
    (root / "mine" / "thesis.tex").write_text("precious")
    (root / "reports").mkdir()
    (root / "reports" / "report.html").write_text("<p>the user's own report</p>")
    (root / "a-file").write_text("not a folder")
    (root / "link").symlink_to(root / "mine")
    (root / "no-images").mkdir()
    (root / "no-images" / "readme.txt").write_text("no images here")
    make_image(root / "unreadable" / "x.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    damaged = {
        "labels-type": set_path(["labels"], "ants,bees"),
        "labels-one": set_path(["labels"], ["ants"]),
        "labels-repeated": set_path(["labels"], ["ants", "ants"]),
        "crop-zero": set_path(["preprocessing", "image_size"], 0),
        "crop-huge": set_path(["preprocessing", "image_size"], 20000),
        "crop-string": set_path(["preprocessing", "image_size"], "224"),
        "std-zero": set_path(["preprocessing", "std"], [0, 0, 0]),
        "hidden-huge": set_path(["head", "hidden"], [10**9]),
        "temperature-negative": set_path(["calibration", "temperature"], -1.0),
        "nested": set_path(["history"], json.loads("[" * 100 + "]" * 100)),
        "metrics-wrong": set_path(["metrics"], {"accuracy": "high"}),
        "version-newer": set_path(["format_version"], 99),
    }
    for name, edit in damaged.items():
        edited_bundle(bundle, root / "bad" / name, edit)
    edited_bundle(bundle, root / "bad" / "swapped", lambda m: m["labels"].reverse(), rehash=False)
    edited_bundle(bundle, root / "bad" / "no-integrity", lambda m: m.pop("integrity"), rehash=False)
    shutil.copytree(bundle, root / "bad" / "not-json")
    (root / "bad" / "not-json" / "model.json").write_text("{ not json")
    shutil.copytree(bundle, root / "bad" / "deep-json")
    (root / "bad" / "deep-json" / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    shutil.copytree(bundle, root / "bad" / "truncated-weights")
    weights = root / "bad" / "truncated-weights" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    foreign_onnx(root / "foreign.onnx")
    foreign_onnx(root / "bad-meta.onnx", metadata='{"labels": "ab", "preprocessing": {}}')
    good_meta = json.dumps({"labels": ["a", "b", "c"], "preprocessing": headstart.load(bundle).preprocessing.to_dict()})
    foreign_onnx(root / "wrong-width.onnx", metadata=good_meta)
    (root / "garbage.onnx").write_bytes(os.urandom(2000))
    shutil.copytree(bundle, root / "runs" / "m")  # a run whose checkpoint was damaged
    checkpoint = checkpoint_dir(root / "runs" / "m")
    checkpoint.mkdir()
    (checkpoint / "state.json").write_text('{"fingerprint": 42}')
    return root


def bad_invocations(root: Path) -> list[tuple[str, list[str], str]]:
    """(case, argv, what the one-line error must say)."""
    data, b = str(root / "data"), root / "bad"
    cases = [(f"predict-{p.name}", ["predict", str(p), data], "") for p in sorted(b.iterdir())]
    cases += [
        ("predict-swapped-says-why", ["predict", str(b / "swapped"), data], "integrity"),
        ("predict-crop-huge-says-why", ["predict", str(b / "crop-huge"), data], "image_size"),
        ("predict-foreign-onnx", ["predict", str(root / "foreign.onnx"), data], "not exported by headstart"),
        ("predict-bad-onnx-metadata", ["predict", str(root / "bad-meta.onnx"), data], "labels"),
        ("predict-onnx-wrong-width", ["predict", str(root / "wrong-width.onnx"), data], "3 labels"),
        ("predict-garbage-onnx", ["predict", str(root / "garbage.onnx"), data], "not a readable ONNX"),
        ("predict-no-images", ["predict", str(root / "runs" / "m"), str(root / "no-images")], "holds no image files"),
        ("predict-unreadable-only", ["predict", str(root / "runs" / "m"), str(root / "unreadable")], "to label"),
        ("evaluate-bad-bundle", ["evaluate", str(b / "crop-zero"), data], "image_size"),
        ("evaluate-missing-data", ["evaluate", str(root / "runs" / "m"), str(root / "nowhere")], "nowhere"),
        ("export-bad-bundle", ["export", str(b / "labels-type")], "labels"),
        ("export-under-a-file", ["export", str(root / "runs" / "m"), "-o", str(root / "a-file" / "m.onnx")], ""),
        ("export-over-users-file", ["export", str(root / "runs" / "m"), "-o", str(root / "notes.txt")], "exists"),
        ("report-over-users-report", ["report", str(root / "runs" / "m"), "-o", str(root / "reports")], "report.html"),
        ("report-into-a-file", ["report", str(root / "runs" / "m"), "-o", str(root / "a-file")], "not a folder"),
        ("train-over-foreign-model-json", ["train", data, "-o", str(root / "mine")], "not a headstart model bundle"),
        ("train-out-inside-data", ["train", data, "-o", str(root / "data" / "model")], "inside the data folder"),
        ("train-out-under-a-file", ["train", data, "-o", str(root / "a-file" / "m")], "not a folder"),
        ("train-out-symlink", ["train", data, "-o", str(root / "link")], "symbolic link"),
        ("train-out-name-too-long", ["train", data, "-o", str(root / ("x" * 300))], "too long"),
        ("train-out-path-too-long", ["train", data, "-o", str(root / ("d/" * 2100))], "this OS allows"),
        ("train-out-unwritable", ["train", data, "-o", "/proc/headstart-model"], "can't write there"),
        ("predict-path-too-long", ["predict", str(root / "runs" / "m"), "x/" * 2100], "too long"),
        ("train-out-over-a-file", ["train", data, "-o", str(root / "notes.txt")], "not a folder"),
        ("train-damaged-checkpoint", ["train", data, "-o", str(root / "runs" / "m"), "--resume"], "fingerprint"),
        ("train-missing-data", ["train", str(root / "nowhere")], "no such folder"),
        ("train-data-without-images", ["train", str(root / "no-images")], "no images"),
        ("demo-missing-data", ["demo", "--data", str(root / "nowhere")], "no such folder"),
    ]
    return cases


def test_every_command_refuses_bad_input_in_one_line_and_touches_nothing(sandbox, capsys, monkeypatch):
    monkeypatch.chdir(sandbox)  # default outputs (runs/, model.onnx) would land here: they must not
    failures = []
    for case, argv, expected in bad_invocations(sandbox):
        before = tree_hashes(sandbox)
        code = main([argv[0], "--quiet", *argv[1:]])
        captured = capsys.readouterr()
        lines = [line for line in captured.err.splitlines() if line.strip()]
        problems = []
        if code == 0:
            problems.append("exit 0")
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines: {captured.err!r}")
        if "Traceback" in captured.err + captured.out:
            problems.append("traceback")
        if expected and expected not in captured.err:
            problems.append(f"no {expected!r} in {captured.err!r}")
        if tree_hashes(sandbox) != before:
            problems.append("the sandbox changed")
        if problems:
            failures.append(f"{case}: {'; '.join(problems)}")
    assert not failures, "\n".join(failures)


def test_every_damaged_bundle_is_refused_by_the_python_api_too(sandbox):
    for bad in sorted((sandbox / "bad").iterdir()):
        with pytest.raises(headstart.HeadstartError):
            headstart.load(bad)


def test_retraining_over_a_bundle_keeps_the_files_the_user_added(bundle, small_hymenoptera, tmp_path):
    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    (target / "notes.txt").write_text("mine")
    (target / "exports").mkdir()
    (target / "exports" / "phone.tflite").write_bytes(b"user data")
    (target / "report.html").write_text("<p>an old report</p>")
    headstart.train(small_hymenoptera, out=target, hidden=(8,))
    assert (target / "notes.txt").read_text() == "mine"
    assert (target / "exports" / "phone.tflite").read_bytes() == b"user data"
    assert not (target / "report.html").exists()  # headstart's own old report is replaced, not kept stale
    assert json.loads((target / "model.json").read_text())["head"]["hidden"] == [8]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or retired folder left


def test_stale_staging_folders_of_dead_processes_are_cleaned_on_the_next_save(bundle, tmp_path):
    clf = headstart.Classifier.load(bundle)
    dead = tmp_path / ".model.999999999-abc.tmp"  # no such pid
    live = tmp_path / f".model.{os.getppid()}-abc.tmp"  # a running process: maybe saving right now
    dead.mkdir()
    live.mkdir()
    clf.save(tmp_path / "model")
    assert not dead.exists() and live.exists()


def test_a_full_disk_during_save_keeps_the_previous_bundle(bundle, tmp_path, monkeypatch):
    import headstart.bundle

    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    before = tree_hashes(tmp_path)
    real = headstart.bundle.write_durably

    def full(path, data):
        if path.name == "model.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(headstart.bundle, "write_durably", full)
    clf = headstart.Classifier.load(target)
    with pytest.raises(OSError, match="No space left"):
        clf.save(target)
    assert tree_hashes(tmp_path) == before  # old bundle intact, no staging folder left behind


def test_a_full_disk_during_a_checkpoint_keeps_the_previous_one(small_hymenoptera, tmp_path, monkeypatch, capsys):
    import headstart.training.checkpoint as checkpoint

    real, calls = checkpoint.write_durably, []

    def fills_up(path, data):
        calls.append(path.name)
        if len(calls) > 4:  # two checkpoints written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "write_durably", fills_up)
    code = main(
        ["train", str(small_hymenoptera), "-o", str(tmp_path / "m"), "--quiet", "--epochs", "6", "--hidden", "8"]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "No space left on device" in err
    state = checkpoint_dir(tmp_path / "m")
    assert json.loads((state / "state.json").read_text())["stage1"]["epoch"] >= 1  # the last good one
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_file_too_large_at_the_os_level_is_one_line(bundle, tmp_path):
    """A real kernel limit (RLIMIT_FSIZE: writes past 1 MB fail with EFBIG) during an export."""
    import resource
    import signal
    import subprocess
    import sys

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    out = tmp_path / "model.onnx"
    proc = subprocess.run(
        [sys.executable, "-m", "headstart", "export", str(bundle), "-o", str(out), "--quiet"],
        capture_output=True,
        text=True,
        preexec_fn=limit,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "File too large" in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []  # no partial file


def test_non_utf8_names_dollar_and_formula_classes_work_end_to_end(small_hymenoptera, tmp_path):
    """File names of arbitrary bytes, a class named like mathtext and one like a spreadsheet formula:
    train, save, report, and predict in every format on a strict UTF-8 terminal."""
    import subprocess
    import sys

    data = tmp_path / "data"
    renames = {"ants": "$ants$", "bees": "=HYPERLINK(1)"}
    for split in ("train", "val"):
        for cls, new in renames.items():
            (data / split / new).mkdir(parents=True)
            for i, f in enumerate(sorted((small_hymenoptera / split / cls).iterdir())):
                raw = os.fsencode(data / split / new) + b"/caf\xe9-" + str(i).encode() + b".jpg"
                Path(os.fsdecode(raw)).write_bytes(f.read_bytes())
    Path(os.fsdecode(os.fsencode(data / "train" / "$ants$") + b"/broken\xff.jpg")).write_bytes(b"not an image")
    clf = headstart.train(data, out=tmp_path / "model", hidden=(8,))
    assert any("broken\udcff" in p for p in headstart.load(tmp_path / "model").record.skipped)  # exact, via model.json
    report = clf.report(tmp_path / "model")
    assert "$ants$" in report.path.read_text("utf-8") and "broken\\xff.jpg" in report.path.read_text("utf-8")
    rows = (tmp_path / "model" / "per_class.csv").read_text("utf-8").splitlines()
    assert "'=HYPERLINK(1)" in rows[2] and rows[1].startswith("$ants$")
    env = os.environ | {"PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    for fmt in ("table", "csv", "jsonl"):
        proc = subprocess.run(
            [sys.executable, "-m", "headstart", "predict", str(tmp_path / "model"), str(data / "val"), "--format", fmt],
            capture_output=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0 and b"Traceback" not in proc.stderr, proc.stderr
        text = proc.stdout.decode("utf-8")  # strictly valid UTF-8
        if fmt == "csv":
            assert "'=HYPERLINK(1)" in text and "caf\\xe9" in text
        if fmt == "jsonl":
            paths = {os.fsencode(json.loads(line)["path"]) for line in text.splitlines()}
            assert any(b"caf\xe9" in p for p in paths)  # the exact bytes round-trip
    # A stream that can carry the bytes (C.UTF-8: surrogateescape) gets them: a script can open
    # the file each row names; JSONL rows of such names add the bytes in base64.
    for fmt in ("csv", "jsonl"):
        proc = subprocess.run(
            [sys.executable, "-m", "headstart", "predict", str(tmp_path / "model"), str(data / "val"), "--format", fmt],
            capture_output=True,
            env={k: v for k, v in os.environ.items() if k != "PYTHONIOENCODING"} | {"LC_ALL": "C.UTF-8"},
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
        if fmt == "csv":
            named = [os.fsdecode(row.split(b",")[0]) for row in proc.stdout.splitlines()[1:]]
        else:
            rows = [json.loads(line) for line in proc.stdout.splitlines()]
            named = [os.fsdecode(base64.b64decode(r["path_bytes"])) for r in rows if "path_bytes" in r]
            assert all(os.fsencode(r["path"]).decode("utf-8") for r in rows if "path_bytes" not in r)
        assert len(named) == 12 and all(Path(n).is_file() and b"caf\xe9" in os.fsencode(n) for n in named), named
    out = tmp_path / "predictions.parquet"
    assert main(["predict", str(tmp_path / "model"), str(data / "val"), "--out", str(out), "--quiet"]) == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert all(Path(os.fsdecode(b)).is_file() for b in table.column("path_bytes").to_pylist())
    assert any("caf\\xe9" in p for p in table.column("path").to_pylist())


def test_symlinks_broken_looping_and_to_folders_are_listed_with_a_reason(small_hymenoptera, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_hymenoptera, data)
    ants = data / "train" / "ants"
    (ants / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    (ants / "loop.jpg").symlink_to(ants / "loop.jpg")
    (ants / "elsewhere").symlink_to(tmp_path)
    clf = headstart.train(data, hidden=(8,))
    skipped = {Path(p).name: reason for p, reason in clf.record.skipped.items()}
    assert skipped["broken.jpg"].startswith("broken symbolic link")
    assert skipped["loop.jpg"] == "symbolic link loop"
    assert "not followed" in skipped["elsewhere"]


def test_damaged_cache_entries_are_reported_once_and_recomputed(small_hymenoptera, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    first = headstart.train(small_hymenoptera, hidden=(8,), seed=1)
    entries = sorted((tmp_path / "cache").rglob("*.f32"))
    assert len(entries) >= 36
    entries[0].write_bytes(b"")  # what a power cut can leave
    entries[1].write_bytes(np.full(1280, np.nan, "<f4").tobytes() + entries[1].read_bytes()[-32:])  # NaNs
    entries[2].write_bytes(entries[2].read_bytes()[:-40] + entries[2].read_bytes()[-32:])  # wrong shape
    with caplog.at_level("WARNING", logger="headstart"):
        second = headstart.train(small_hymenoptera, hidden=(8,), seed=1)
    warnings = [r.message for r in caplog.records if "damaged" in r.message]
    assert len(warnings) == 1
    assert second.record.timings.images_computed == 3  # the three damaged ones, nothing else
    assert second.metrics.accuracy == first.metrics.accuracy
    assert all(e.stat().st_size == 1280 * 4 + 32 for e in entries[:3])  # rewritten whole


@pytest.mark.parametrize("kind", ["a-file", "read-only-parent"])
def test_an_unusable_cache_location_means_running_uncached(small_hymenoptera, tmp_path, monkeypatch, caplog, kind):
    cache = tmp_path / "cache"
    if kind == "a-file":
        cache.write_text("not a folder")
    else:
        cache = Path("/proc/headstart-cache")  # a location no one can create, root included
    monkeypatch.setenv("HEADSTART_CACHE", str(cache))
    with caplog.at_level("WARNING", logger="headstart"):
        clf = headstart.train(small_hymenoptera, hidden=(8,))
    assert clf.metrics.accuracy > 0.5
    assert any("unusable" in r.message for r in caplog.records)


def test_a_cache_that_fills_up_mid_run_warns_once_and_the_run_goes_on(small_hymenoptera, tmp_path, monkeypatch, caplog):
    import headstart.inference.cache as cache

    def full(path, data, durable=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "atomic_write_bytes", full)
    with caplog.at_level("WARNING", logger="headstart"):
        clf = headstart.train(small_hymenoptera, hidden=(8,), seed=3)
    assert clf.metrics.count == 12
    assert len([r for r in caplog.records if "can't write" in r.message]) == 1


def deeper_than_path_max(folder: Path, image: bytes, name: str = "d" * 200) -> Path:
    """A file nested deeper than PATH_MAX in folders called `name`, made with directory descriptors
    (no path that long can be passed to the OS); returns its folder's first component."""
    fd, length = os.open(folder, os.O_RDONLY), len(os.fsencode(folder))
    try:
        while length <= os.pathconf("/", "PC_PATH_MAX"):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd, length = inner, length + len(name) + 1
        with open(os.open("deep.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(image)
    finally:
        os.close(fd)
    return folder / name


def remove_nested(top: Path, name: str) -> None:
    """Remove a chain made by `deeper_than_path_max` one level at a time: shutil.rmtree (and so pytest's
    clean-up of old tmp folders) recurses once per level and overflows on 2,000 of them."""
    while top.exists():
        below, spare = top / name, top.with_name(top.name + ".next")
        if below.exists():
            below.rename(spare)
        shutil.rmtree(top)
        if not spare.exists():
            return
        spare.rename(top)


def train_in_a_subprocess(data: Path, out: Path) -> str:
    """`headstart train` with a deadline, so that a run that hangs fails instead of hanging the suite; its stderr."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "headstart", "train", str(data), "-o", str(out), "--hidden", "8"],
        capture_output=True,
        text=True,
        timeout=120,  # the run takes about 10 s
        env=os.environ | {"COLUMNS": "10000"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_pipes_sockets_and_devices_are_listed_and_never_opened(small_hymenoptera, tmp_path):
    """Opening a named pipe blocks until a writer comes: the run must finish without ever opening it."""
    import socket

    data = tmp_path / "data"
    shutil.copytree(small_hymenoptera, data)
    ants, bees = data / "train" / "ants", data / "train" / "bees"
    os.mkfifo(ants / "pipe.jpg")
    (ants / "zero.jpg").symlink_to("/dev/zero")  # a character device that never ends
    (bees / "null.png").symlink_to("/dev/null")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(bees / "socket.jpg"))
        stderr = train_in_a_subprocess(data, tmp_path / "m")
        assert main(["predict", str(tmp_path / "m"), str(ants), str(bees / "socket.jpg"), "--format", "csv"]) == 0
    skipped = {Path(p).name: reason for p, reason in headstart.load(tmp_path / "m").record.skipped.items()}
    assert skipped["pipe.jpg"] == "a named pipe (FIFO), not a regular file"
    assert skipped["zero.jpg"] == skipped["null.png"] == "a character device, not a regular file"
    assert skipped["socket.jpg"] == "a socket, not a regular file"
    assert f"{ants / 'pipe.jpg'}: a named pipe (FIFO), not a regular file\n" in stderr


@pytest.mark.parametrize("name", ["d" * 200, "d"])  # "d": 2,000 levels, past Python's recursion limit
def test_a_file_nested_deeper_than_path_max_is_listed_and_the_run_goes_on(small_hymenoptera, tmp_path, name):
    data = tmp_path / "data"
    shutil.copytree(small_hymenoptera, data)
    bees = data / "train" / "bees"
    deep = deeper_than_path_max(bees, sorted(bees.glob("*.jpg"))[0].read_bytes(), name)
    try:
        stderr = train_in_a_subprocess(data, tmp_path / "m")
    finally:
        remove_nested(deep, name)
    record = headstart.load(tmp_path / "m").record
    (reason,) = [why for path, why in record.skipped.items() if path.startswith(str(deep))]
    assert reason.startswith("path too long for this system") and "path too long" in stderr
    assert record.data.counts["train"]["bees"] == 12  # every other image still used


def test_a_pipe_given_to_predict_is_refused_in_one_line(bundle, tmp_path, capsys):
    os.mkfifo(tmp_path / "photo.jpg")
    assert main(["predict", str(bundle), str(tmp_path / "photo.jpg")]) == 2
    assert capsys.readouterr().err.strip().endswith("photo.jpg: a named pipe (FIFO), not a regular file")


KILL_DURING_SAVE = """
import os, signal, sys
import headstart, headstart.fsutil as fsutil

target, point = sys.argv[1], sys.argv[2]
clf = headstart.load(target)
real_replace, real_exchange = os.replace, fsutil.exchange

def replace(src, dst):  # the fallback's first rename (the old bundle parked), then killed
    real_replace(src, dst)
    if point == "between renames" and str(src) == target:
        os.kill(os.getpid(), signal.SIGKILL)

def exchange(a, b):  # the swap done, the old version not yet removed, then killed
    if point == "between renames":
        return False  # as on an OS without renameat2
    real_exchange(a, b)
    os.kill(os.getpid(), signal.SIGKILL)

os.replace, fsutil.exchange = replace, exchange
clf.save(target)
"""


@pytest.mark.parametrize("point", ["between renames", "after the exchange"])
def test_a_kill_mid_save_leaves_a_bundle_that_loads_and_no_leftovers(bundle, tmp_path, point, capsys):
    import signal
    import subprocess
    import sys

    target = tmp_path / "model"
    shutil.copytree(bundle, target)
    (target / "notes.txt").write_text("mine")
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, str(target), point], timeout=300)
    assert proc.returncode == -signal.SIGKILL
    left = sorted(p.name for p in tmp_path.iterdir())
    if point == "between renames":
        assert ".model.old" in left and "model" not in left  # the moment the issue describes: no `model`
    else:
        assert "model" in left and any(name.endswith(".tmp") for name in left)
    image = make_image(tmp_path.parent / f"{tmp_path.name}-photo.jpg")
    assert main(["predict", str(target), str(image), "--format", "csv"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # parked bundle back, staging removed
    assert (target / "notes.txt").read_text() == "mine"
    assert headstart.load(target).classes == headstart.load(bundle).classes


def test_decoder_warnings_are_one_note_per_file_not_raw_library_output(small_hymenoptera, tmp_path):
    import subprocess
    import sys

    from PIL import Image

    from tests.test_images import CORRUPT_EXIF

    data = tmp_path / "data"
    shutil.copytree(small_hymenoptera, data)
    odd = sorted((data / "train" / "bees").glob("*.jpg"))[:3]
    for path in odd:
        Image.open(path).convert("RGB").save(path, "JPEG", exif=CORRUPT_EXIF)
    env = os.environ | {"HEADSTART_CACHE": str(tmp_path / "cache"), "COLUMNS": "400"}
    for argv in (
        ["train", str(data), "-o", str(tmp_path / "m"), "--hidden", "8"],
        ["predict", str(tmp_path / "m"), str(data)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "headstart", *argv], capture_output=True, text=True, timeout=300, env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert "Warning:" not in proc.stderr.replace("Warning: Validation", "") and "warnings.warn" not in proc.stderr
        lines = [line for line in proc.stderr.splitlines() if "Corrupt EXIF data" in line]
        assert len(lines) == 3 and all(any(str(p) in line for p in odd) for line in lines), proc.stderr
    assert set(headstart.load(tmp_path / "m").record.notes) == {str(p) for p in odd}
    assert "Used despite a decoder warning" in (tmp_path / "m" / "report.html").read_text()


def test_the_studio_lists_a_model_whose_save_was_killed_between_the_renames(bundle, tmp_path):
    from headstart.studio.project import Project

    project = Project(tmp_path / "project")
    project.models_dir.mkdir(parents=True)
    shutil.copytree(bundle, project.models_dir / ".20261207-101010.old")  # what the kill leaves
    assert project.models() == [project.models_dir / "20261207-101010"]
    assert headstart.load(project.models()[0]).classes == headstart.load(bundle).classes
