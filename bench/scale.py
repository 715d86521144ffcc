"""Where Ray starts to pay: `headstart embed` in one process against Ray Data with 2 local workers,
on 500, 5,000 and 20,000 images, cold feature cache, whole processes from the shell:

    python bench/scale.py                     # sizes 500 5000 20000
    python bench/scale.py --sizes 500 2000    # quicker

The image sets are augmented copies (random crop, mirror, colour) of every photo in
../shared/datasets, written once to a temporary folder, so that no two files share content and
nothing comes from the cache. For each run: wall time, images per second, peak memory of the
whole process tree (the sum of the processes' PSS, so pages shared between Ray's processes count
once), and the Parquet bytes per image (for sizing storage).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def sources() -> list[Path]:
    return sorted(p for p in SHARED.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def augmented_copy(job: tuple[Path, Path, int]) -> None:
    source, target, seed = job
    rng = np.random.default_rng(seed)
    image = Image.open(source).convert("RGB")
    w, h = image.size
    scale = rng.uniform(0.7, 1.0)
    cw, ch = int(w * scale), int(h * scale)
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    image = image.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    image.save(target, quality=90)


def make_pool(folder: Path, count: int) -> list[Path]:
    """`count` distinct images (augmented copies of the shared photos), made once."""
    files = [folder / f"{i:06d}.jpg" for i in range(count)]
    todo = [(src, f, i) for i, (src, f) in enumerate(zip(_cycle(sources(), count), files)) if not f.exists()]
    if todo:
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(augmented_copy, todo, chunksize=64))
        print(f"wrote {len(todo)} augmented images in {time.perf_counter() - started:.0f} s", flush=True)
    return files


def _cycle(items: list, count: int) -> list:
    return [items[i % len(items)] for i in range(count)]


def subset(files: list[Path], size: int, root: Path) -> Path:
    """A folder holding the first `size` images (hard links: no copies)."""
    folder = root / f"set-{size}"
    if not folder.exists():
        folder.mkdir(parents=True)
        for f in files[:size]:
            os.link(f, folder / f.name)
    return folder


def tree_pss_mb(root_pid: int) -> float:
    """PSS of a process and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def run(folder: Path, engine: str, out: Path, cache: Path) -> dict:
    command = [sys.executable, "-m", "headstart", "embed", str(folder), "--out", str(out), "--quiet"]
    command += ["--engine", engine] + (["--workers", "2"] if engine == "ray" else [])
    env = os.environ | {"HEADSTART_CACHE": str(cache), "HEADSTART_QUIET": "1"}
    peak, done = 0.0, threading.Event()
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def watch():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_mb(process.pid))
            time.sleep(0.25)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = process.communicate()
    seconds = time.perf_counter() - started
    done.set()
    watcher.join()
    if process.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr[-2000:]}")
    parquet = sum(p.stat().st_size for p in out.glob("part-*.parquet"))
    return {"seconds": seconds, "peak_mb": peak, "parquet": parquet, "line": stdout.strip().splitlines()[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--work", type=Path, help="where to keep the generated images (default: a temporary folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="headstart-scale-"))
    files = make_pool(work / "pool", max(args.sizes))
    onnx_cache = work / "onnx-warm"  # export the backbone once, so no run pays for it
    run(subset(files, 8, work), "auto", work / "warmup", onnx_cache)
    print(f"{'images':>7} {'engine':>7} {'wall s':>8} {'images/s':>9} {'peak MB':>8} {'Parquet B/img':>14}")
    for size in args.sizes:
        folder = subset(files, size, work)
        for engine in ("auto", "ray"):
            cache = work / f"cache-{size}-{engine}"
            (cache / "onnx").mkdir(parents=True, exist_ok=True)
            for f in (onnx_cache / "onnx").iterdir():
                os.link(f, cache / "onnx" / f.name)
            result = run(folder, engine, work / f"out-{size}-{engine}", cache)
            name = "local" if engine == "auto" else "ray x2"
            print(
                f"{size:>7} {name:>7} {result['seconds']:>8.1f} {size / result['seconds']:>9.1f} "
                f"{result['peak_mb']:>8.0f} {result['parquet'] / size:>14.0f}",
                flush=True,
            )
    print(f"(images kept in {work})")


if __name__ == "__main__":
    main()
