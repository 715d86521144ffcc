"""Load test of `headstart serve` on loopback, beside a naive server (one image per request, eager
PyTorch, no batching) in the same run: p50/p99 latency, throughput, errors and server memory at
1, 8 and 32 concurrent clients, each sending real photos as multipart uploads.

    python bench/serve_load.py ../shared/datasets/alpaca [--requests 2000]

Each server runs in its own process (uvicorn); the clients are asyncio tasks of one httpx client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

NAIVE_SERVER = """
import sys, threading
import numpy as np, torch, uvicorn
from fastapi import FastAPI, File, UploadFile
import headstart
from headstart.data.images import decode

model = headstart.load(sys.argv[1], engine="torch")  # eager PyTorch backbone and head
graph = model.graph()
lock = threading.Lock()
app = FastAPI()

@app.get("/v1/health/ready")
def ready():
    return {"status": "ready"}

@app.post("/v1/predict")
def predict(files: list[UploadFile] = File(...)):
    crop = model.preprocessing(decode(files[0].file.read(), model.preprocessing.resize_short))
    with lock, torch.inference_mode():  # one image per model call, as a notebook's model.predict would
        probs = graph(torch.from_numpy(crop[None]))[0].numpy()
    return {"predictions": [{"label": model.classes[int(probs.argmax())], "probability": float(probs.max())}]}

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def start(command: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server did not start: {proc.stderr.read().decode()[-2000:]}")


async def load(port: int, images: list[tuple[str, bytes]], requests: int, clients: int) -> dict:
    latencies, errors = [], 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60, limits=limits) as client:

        async def worker():
            nonlocal errors
            for i in counter:
                name, data = images[i % len(images)]
                start = time.perf_counter()
                try:
                    r = await client.post("/v1/predict", files=[("files", (name, data, "image/jpeg"))])
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - start)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {"p50": np.percentile(ms, 50), "p99": np.percentile(ms, 99), "rps": requests / elapsed, "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("--requests", type=int, default=2000, help="per server and concurrency level")
    parser.add_argument("--clients", default="1,8,32")
    args = parser.parse_args()

    import headstart

    work = Path(tempfile.mkdtemp(prefix="headstart-serve-bench-"))
    print(f"training a model on {args.data} ...", flush=True)
    headstart.train(args.data, out=work / "model", quiet=True)
    photos = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})[:64]
    images = [(p.name, p.read_bytes()) for p in photos]
    (work / "naive.py").write_text(NAIVE_SERVER)
    servers = {
        "headstart serve": lambda port: [
            sys.executable,
            "-m",
            "headstart",
            "serve",
            str(work / "model"),
            "--port",
            str(port),
        ],
        "naive eager PyTorch": lambda port: [sys.executable, str(work / "naive.py"), str(work / "model"), str(port)],
    }
    levels = [int(c) for c in args.clients.split(",")]
    print(f"{args.requests} requests per level, {len(images)} distinct photos, {os.cpu_count()} cores\n")
    print(f"{'server':<22}{'clients':>8}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'errors':>8}{'RSS MB':>16}")
    throughput: dict[tuple[str, int], float] = {}
    for name, command in servers.items():
        port = free_port()
        proc = start(command(port), port)
        try:
            asyncio.run(load(port, images, 50, 4))  # warm-up
            for clients in levels:
                before = rss_mb(proc.pid)
                r = asyncio.run(load(port, images, args.requests, clients))
                after = rss_mb(proc.pid)
                throughput[name, clients] = r["rps"]
                print(
                    f"{name:<22}{clients:>8}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['rps']:>9.1f}{r['errors']:>8}"
                    f"{before:>8.0f} → {after:<5.0f}",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    top = max(levels)
    ratio = throughput["headstart serve", top] / throughput["naive eager PyTorch", top]
    print(f"\nthroughput at {top} clients: headstart serve {ratio:.1f}x the naive server")


if __name__ == "__main__":
    main()
