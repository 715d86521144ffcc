"""Speed of the user's loop, whole process from the shell, this code against a baseline commit:

    python bench/train_speed.py ../shared/datasets/imagewoof-320-sub ../shared/datasets/alpaca

For each dataset and each code version (the baseline is checked out into a temporary folder and
run with the same interpreter and packages): `headstart train` with a cold feature cache (the
backbone's ONNX graph already exported, as after a machine's first run) and a warm one (the same
model again, so the report's figures come from the figure cache), a warm one with another setting
(`--label-smoothing 0.1`: another model, whose figures are drawn), `headstart report MODEL` and
`headstart predict MODEL one.jpg`, each in its own process, with its
wall time, peak RSS and, for this code, where the time went: interpreter start, then each stage
of the run (from headstart's own events), the gaps between them (imports, printing) and exit, so
the phases add up to the wall time.

    python bench/train_speed.py --naive ../shared/datasets/alpaca

compares headstart's training (cold and warm cache) with the reference notebook recipe done
naively in PyTorch (same weights and split, frozen backbone recomputed on every batch of 5
epochs, batch 64), and extraction throughput with the backbone's alone.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_headstart(args) -> dict:
    import headstart

    start = time.perf_counter()
    clf = headstart.train(
        args.data, backbone=args.backbone, val_fraction=args.val_fraction, test_fraction=0.0, seed=args.seed, quiet=True
    )
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "accuracy": clf.metrics.accuracy,
        "images": sum(sum(c.values()) for c in clf.record.data.counts.values()),
        "computed": clf.record.timings.images_computed,
        "extract_s": clf.record.timings.feature_extraction_s,
        "head_s": clf.record.timings.head_training_s,
    }


def run_naive(args) -> dict:
    """The notebook recipe, literally: decode + resize + backbone on every batch, every epoch."""
    import torch
    from PIL import Image
    from torch import nn

    from headstart.backbones import get_backbone
    from headstart.data.dataset import scan
    from headstart.inference.graph import Normalize

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    spec = get_backbone(args.backbone)
    dataset = scan(args.data, val_fraction=args.val_fraction, test_fraction=0.0, seed=args.seed)
    backbone = spec.create()
    for p in backbone.parameters():
        p.requires_grad_(False)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(spec.feature_dim, len(dataset.classes)))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def batches(samples, shuffle):
        order = np.random.default_rng(args.seed).permutation(len(samples)) if shuffle else np.arange(len(samples))
        for i in range(0, len(samples), args.batch_size):
            chunk = [samples[j] for j in order[i : i + args.batch_size]]
            x = np.stack([spec.preprocessing(Image.open(s.path).convert("RGB")) for s in chunk])
            yield Normalize(spec.preprocessing)(torch.from_numpy(x)), torch.tensor([s.label for s in chunk])

    train, val = dataset.split("train"), dataset.split("val")
    for _ in range(args.epochs):
        head.train()
        for x, y in batches(train, shuffle=True):
            with torch.no_grad():
                features = backbone.forward_features(x)
            loss = loss_fn(head(features), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        head.eval()
        correct = 0
        with torch.no_grad():
            for x, y in batches(val, shuffle=False):
                correct += (head(backbone.forward_features(x)).argmax(1) == y).sum().item()
    return {"seconds": time.perf_counter() - start, "accuracy": correct / len(val), "images": len(train) + len(val)}


def run_throughput(args) -> dict:
    """Feature extraction (read + decode + preprocess + backbone) against the backbone alone."""
    from concurrent.futures import ThreadPoolExecutor

    from headstart.backbones import get_backbone
    from headstart.data.dataset import scan
    from headstart.inference.features import FeatureExtractor
    from headstart.inference.pipeline import prepare_image as prepare
    from headstart.inference.runtime import BATCH_SIZE, num_threads

    fx = FeatureExtractor(get_backbone(args.backbone))
    batch = np.random.default_rng(0).integers(0, 256, size=(BATCH_SIZE, 224, 224, 3), dtype=np.uint8)
    fx.embed(batch)  # export + warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < 5:
        fx.embed(batch)
        n += BATCH_SIZE
    raw = n / (time.perf_counter() - start)
    paths = [s.path for s in scan(args.data, 0.0, 0.0).samples]
    start = time.perf_counter()
    fx.extract(paths, use_cache=False)
    extract = len(paths) / (time.perf_counter() - start)
    with ThreadPoolExecutor(num_threads()) as pool:
        start = time.perf_counter()
        list(pool.map(lambda p: prepare(p, fx.preprocessing, None), paths))
        decode = len(paths) / (time.perf_counter() - start)
    return {"raw_images_per_s": raw, "extract_images_per_s": extract, "decode_images_per_s": decode}


# -- this code against a baseline, whole processes -------------------------------------------
BASELINE = "0bafdbc"  # the last commit before the speed work (issue 12)
ROOT = Path(__file__).resolve().parent.parent

# Runs in each measured process: records when the interpreter started and every stage event,
# runs the command, prints the timeline and peak RSS as JSON on its last line of stderr.
PROBE = """
import atexit, json, os, resource, sys, time
started = time.time()
marks = []
import headstart.progress as progress
make_bus = progress.event_bus
def event_bus(on_event=None, quiet=False):
    bus = make_bus(on_event, quiet)
    if not getattr(bus, "_probed", False):
        bus.subscribe(lambda e: marks.append((time.time(), e.kind, e.stage)) if e.kind != "progress" else None)
        bus._probed = True
    return bus
progress.event_bus = event_bus
def report():
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"started": started, "marks": marks, "peak_mb": peak, "end": time.time()}), file=sys.stderr)
atexit.register(report)
sys.argv[0] = "headstart"
import headstart.cli as cli
if hasattr(cli, "run"):
    cli.run()  # the console script's entry point
sys.exit(cli.main())
"""


def timed(argv: list[str], source: Path, cache: Path) -> dict:
    """Run `headstart ARGV` from `source`'s code; wall time, peak RSS and phases that sum to the wall."""
    env = os.environ | {"HEADSTART_CACHE": str(cache), "HEADSTART_QUIET": "1", "PYTHONPATH": str(source / "src")}
    spawned = time.time()
    result = subprocess.run([sys.executable, "-c", PROBE, *argv], env=env, capture_output=True, text=True)
    wall = time.time() - spawned
    if result.returncode:
        sys.exit(f"headstart {' '.join(argv)} failed:\n{result.stderr}")
    probe = json.loads(result.stderr.strip().splitlines()[-1])
    return {"wall": wall, "peak_mb": probe["peak_mb"], "phases": phases(spawned, probe, spawned + wall)}


def phases(spawned: float, probe: dict, ended: float) -> dict[str, float]:
    """Seconds per phase: time between two events goes to the innermost stage then running, or,
    when none is, to imports and set-up (before the first) or to the gaps between stages."""
    out = {"interpreter start": probe["started"] - spawned}
    stack: list[str] = []
    last, gap = probe["started"], "imports and set-up"
    for t, kind, stage in probe["marks"]:
        name = stack[-1] if stack else gap
        out[name] = out.get(name, 0.0) + t - last
        if kind == "start":
            stack.append(stage)
        elif stage in stack:
            stack.remove(stage)
            gap = "between stages (imports, printing)"
        last = t
    tail = "printing and exit" if probe["marks"] else "imports, work and printing"
    out[tail] = out.get(tail, 0.0) + probe["end"] - last
    out["process exit"] = ended - probe["end"]
    return out


def checkout(revision: str, into: Path) -> Path:
    """The code of `revision`, extracted (not a worktree: nothing in the repository changes)."""
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(data: Path, source: Path, graphs: Path, work: Path) -> dict:
    """The figures of one code version on one dataset."""
    cache = work / "cache"
    shutil.copytree(graphs, cache / "onnx")  # exported once per machine: not part of a cold run
    model = work / "model"
    cold = timed(["train", str(data), "--out", str(model), "--quiet"], source, cache)
    shutil.rmtree(model)
    warm = timed(["train", str(data), "--out", str(model), "--quiet"], source, cache)
    # Another setting, so another model: none of its figures is in the figure cache yet.
    other = timed(
        ["train", str(data), "--out", str(work / "other"), "--quiet", "--label-smoothing", "0.1"], source, cache
    )
    report = timed(["report", str(model), "--quiet"], source, cache)
    image = next(p for p in sorted(data.rglob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    predict = timed(["predict", str(model), str(image)], source, cache)
    accuracy = json.loads((model / "model.json").read_text())["metrics"]["accuracy"]
    return {"cold": cold, "warm": warm, "other": other, "report": report, "predict": predict, "accuracy": accuracy}


def compare_versions(args) -> None:
    rows = [
        ("train, cold feature cache, s", "cold", "wall"),
        ("train, warm feature cache, s", "warm", "wall"),
        ("train, warm, another model, s", "other", "wall"),
        ("report MODEL, s", "report", "wall"),
        ("predict MODEL one.jpg, s", "predict", "wall"),
        ("peak RSS, cold train, MB", "cold", "peak_mb"),
        ("peak RSS, predict, MB", "predict", "peak_mb"),
    ]
    start = timed_start()
    print(f"{os.cpu_count()} CPUs; baseline {args.baseline}; interpreter start alone {start * 1e3:.0f} ms")
    with tempfile.TemporaryDirectory(prefix="headstart-bench-") as tmp:
        tmp = Path(tmp)
        before = checkout(args.baseline, tmp / "before")
        for data in args.data:
            prepared = tmp / f"prepare-{data.name}"
            timed(["train", str(data), "--out", str(prepared / "m"), "--quiet", "--no-report"], ROOT, prepared)
            results = {}
            for name, source in (("before", before), ("now", ROOT)):
                work = tmp / f"{name}-{data.name}"
                results[name] = measure(data, source, prepared / "onnx", work)
            print(f"\n{data}")
            print(f"{'figure':<32} {'before':>8} {'now':>8}")
            for label, run, key in rows:
                print(f"{label:<32} {results['before'][run][key]:8.2f} {results['now'][run][key]:8.2f}")
            print(f"{'accuracy (held out)':<32} {results['before']['accuracy']:8.4f} {results['now']['accuracy']:8.4f}")
            for run in ("cold", "warm", "other", "report", "predict"):
                r = results["now"][run]
                parts = ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items() if v >= 0.005)
                print(f"  now, {run} {r['wall']:.2f} s = {parts} (sum {sum(r['phases'].values()):.2f})")


def timed_start() -> float:
    """Seconds for the interpreter alone to start and exit (best of 5)."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        best = min(best, time.perf_counter() - t)
    return best


VARIANTS = {"cold": run_headstart, "warm": run_headstart, "naive": run_naive, "throughput": run_throughput}


def child(variant: str, args, cache: str) -> dict:
    env = os.environ | {"HEADSTART_CACHE": cache, "HEADSTART_QUIET": "1"}
    cmd = [
        sys.executable,
        __file__,
        str(args.data),
        "--variant",
        variant,
        "--epochs",
        str(args.epochs),
        "--batch-size",
        str(args.batch_size),
        "--val-fraction",
        str(args.val_fraction),
        "--seed",
        str(args.seed),
        "--backbone",
        args.backbone,
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{variant} failed:\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, nargs="+")
    parser.add_argument("--naive", action="store_true", help="against the naive PyTorch recipe (first dataset)")
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of the naive recipe")
    parser.add_argument("--batch-size", type=int, default=64, help="batch of the naive recipe")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not args.naive and not args.variant:
        compare_versions(args)
        return
    args.data = args.data[0]
    if args.variant:
        out = VARIANTS[args.variant](args)
        print(json.dumps(out | {"peak_rss_mb": peak_rss_mb()}))
        return

    with tempfile.TemporaryDirectory(prefix="headstart-bench-") as cache:
        print(
            f"dataset {args.data}, backbone {args.backbone}, {os.cpu_count()} "
            f"CPUs; split {1 - args.val_fraction:.0%}/{args.val_fraction:.0%} seed {args.seed}"
        )
        results = {v: child(v, args, cache) for v in ("cold", "warm", "naive", "throughput")}
    naive = results["naive"]["seconds"]
    print(f"{'variant':<44} {'wall s':>8} {'speed-up':>9} {'val acc':>8} {'peak RSS MB':>12}")
    for key, label in (
        ("cold", "headstart train, cold feature cache"),
        ("warm", "headstart train, warm feature cache"),
        ("naive", f"naive PyTorch, {args.epochs} epochs x batch {args.batch_size}"),
    ):
        r = results[key]
        print(
            f"{label:<44} {r['seconds']:8.2f} {naive / r['seconds']:8.1f}x "
            f"{r['accuracy']:8.3f} {r['peak_rss_mb']:12.0f}"
        )
    c = results["cold"]
    print(
        f"cold breakdown: feature extraction {c['extract_s']:.2f} s for "
        f"{c['computed']} images, head {c['head_s']:.2f} s"
    )
    t = results["throughput"]
    # Decoding and the backbone share the same cores: the best a pipeline can do is the harmonic
    # combination of the two rates, each measured alone on all cores.
    bound = 1 / (1 / t["decode_images_per_s"] + 1 / t["raw_images_per_s"])
    print(
        f"feature extraction {t['extract_images_per_s']:.0f} images/s (read + decode + preprocess + backbone) vs "
        f"backbone alone in onnxruntime {t['raw_images_per_s']:.0f} images/s: "
        f"ratio {t['extract_images_per_s'] / t['raw_images_per_s']:.2f}\n"
        f"decoding alone {t['decode_images_per_s']:.0f} images/s on all "
        f"cores; both sharing the cores can reach at most "
        f"{bound:.0f} images/s: the pipeline reaches {t['extract_images_per_s'] / bound:.0%} of that"
    )


if __name__ == "__main__":
    main()
