"""Benchmark /predict over loopback HTTP; prints ONE JSON line.

    .venv/bin/python benchmarks/predict.py [--requests 2000] [--seconds 10]

What runs, all on 127.0.0.1 and in this one invocation:

* a 100-tree forest (max_depth 12) trained on synthetic records, written as a version
  folder exactly as training writes one;
* this service (``python -m serving``, as the container runs it) in a child process;
* the seed's style for comparison: a FastAPI endpoint taking a pydantic body, building a
  pandas DataFrame per request and calling the pipeline, under uvicorn in a child
  process (``--seed-server``);
* for each, ``--requests`` single-record requests (and at most ``--seconds``) at
  concurrency 1 and 8 from an httpx client, after a warm-up, reporting req/s, p50, p99;
  the two servers take turns in short rounds, so the machine's load drifts onto both;
* the same comparison without HTTP, timed directly in this process: the seed's
  DataFrame-per-request path against this service's parse + encode + predict path.

Client and servers share the machine's cores, so absolute numbers include the client's
own cost; the ratios between the two servers, measured the same way, are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlops_core.artifacts import MODEL_FILE, read_manifest  # noqa: E402
from mlops_core.features import FeatureEncoder  # noqa: E402
from serving.loader import load_model  # noqa: E402
from serving.synthetic import records, write_model_folder  # noqa: E402

TREES = 100
WARMUP = 200
ROUNDS = 4


# -- the seed's style, as a server -----------------------------------------------------
class Car(BaseModel):
    """The seed's hand-written request body (module level: FastAPI resolves it by name)."""

    mileage: float
    year: int
    fuel: str
    engine_size: float | None = None


def seed_server(model_dir: Path, port: int) -> None:
    """The baseline: pydantic body -> pandas DataFrame -> pipeline.predict, per request."""
    import pickle

    import pandas as pd
    import uvicorn
    from fastapi import FastAPI

    manifest = read_manifest(model_dir)
    encoder = FeatureEncoder(manifest.features)
    model = pickle.loads((model_dir / MODEL_FILE).read_bytes())

    app = FastAPI()

    @app.post("/predict")
    def predict(car: Car) -> dict:
        frame = pd.DataFrame([car.model_dump()])
        return {"predictions": model.predict(encoder.encode_frame(frame)).tolist()}

    @app.get("/ready")
    def ready() -> dict:
        return {"status": "ready"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


# -- driving a server --------------------------------------------------------------------
def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server {cmd} exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"server {cmd} did not become ready")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def summary(latencies: list[float], wall: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000
    return {
        "n": len(latencies),
        "rps": round(len(latencies) / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


async def load(
    url: str, bodies: list[bytes], concurrency: int, n: int, seconds: float, warmup: int
) -> tuple[list[float], float]:
    """Send up to ``n`` requests (at most ``seconds``); return latencies and wall time."""
    headers = {"content-type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        for i in range(warmup):
            response = await client.post(url, content=bodies[i % len(bodies)], headers=headers)
            response.raise_for_status()
        latencies: list[float] = []
        next_i = 0
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal next_i
            while next_i < n and time.perf_counter() < deadline:
                body = bodies[next_i % len(bodies)]
                next_i += 1
                t0 = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                response.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, time.perf_counter() - t0


def measure(urls: dict[str, str], bodies: list[bytes], n: int, seconds: float) -> dict:
    """Each server in turn, in ROUNDS short rounds per concurrency, so that changes in the
    machine's load during the run fall on both servers alike."""
    out: dict[str, dict] = {name: {} for name in urls}
    for c in (1, 8):
        got = {name: ([], 0.0) for name in urls}
        for r in range(ROUNDS):
            for name, url in urls.items():
                lat, wall = asyncio.run(
                    load(url, bodies, c, n // ROUNDS, seconds / ROUNDS, WARMUP if r == 0 else 20)
                )
                got[name] = (got[name][0] + lat, got[name][1] + wall)
        for name in urls:
            out[name][f"c{c}"] = summary(*got[name])
            print(f"{name} c={c}: {out[name][f'c{c}']}", file=sys.stderr)
    return out


# -- in-process, timed directly ----------------------------------------------------------
def in_process(model_dir: Path, recs: list[dict], n: int, seconds: float) -> dict:
    import pickle

    import pandas as pd

    manifest = read_manifest(model_dir)
    encoder = FeatureEncoder(manifest.features)
    pipeline = pickle.loads((model_dir / MODEL_FILE).read_bytes())
    loaded = load_model(str(model_dir))
    bodies = [json.dumps(r).encode() for r in recs]

    def seed(i: int) -> float:
        frame = pd.DataFrame([Car.model_validate(recs[i % len(recs)]).model_dump()])
        return float(pipeline.predict(encoder.encode_frame(frame))[0])

    def ours(i: int) -> float:
        parsed = loaded.parser.parse(bodies[i % len(bodies)])
        return float(
            loaded.runtime.predict(loaded.encoder.encode_records(r.__dict__ for r in parsed))[0]
        )

    paths = {"seed_style": seed, "serving_path": ours}
    times: dict[str, list[float]] = {name: [] for name in paths}
    for fn in paths.values():
        for i in range(WARMUP):
            fn(i)
    # Alternate in rounds, as over HTTP, so load drift falls on both paths alike.
    for _ in range(ROUNDS):
        for name, fn in paths.items():
            deadline = time.perf_counter() + seconds / ROUNDS
            for i in range(n // ROUNDS):
                if time.perf_counter() > deadline:
                    break
                t0 = time.perf_counter()
                fn(i)
                times[name].append(time.perf_counter() - t0)
    out: dict[str, object] = {name: summary(t, sum(t)) for name, t in times.items()}
    agree = max(abs(seed(i) - ours(i)) for i in range(min(len(recs), 50)))
    out["max_abs_diff"] = agree
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--seconds", type=float, default=10.0, help="cap per measurement")
    parser.add_argument(
        "--seed-server", nargs=2, metavar=("MODEL_DIR", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.seed_server:
        seed_server(Path(args.seed_server[0]), int(args.seed_server[1]))
        return

    with tempfile.TemporaryDirectory(prefix="bench-predict-") as tmp:
        model_dir = Path(tmp) / "model"
        manifest = write_model_folder(model_dir, n_estimators=TREES, max_depth=12, rows=5000)
        recs = records(500, seed=99)
        bodies = [json.dumps(r).encode() for r in recs]

        procs = []
        try:
            urls = {}
            for name, cmd, env in (
                (
                    "serving",
                    [sys.executable, "-m", "serving"],
                    {"MODEL_URI": str(model_dir), "HOST": "127.0.0.1", "MLOPS_LOG_FORMAT": "json"},
                ),
                ("seed_style", [sys.executable, __file__, "--seed-server", str(model_dir)], {}),
            ):
                port = free_port()
                argv = cmd + [str(port)] if name == "seed_style" else cmd
                procs.append(start(argv, {**env, "PORT": str(port)}, port))
                urls[name] = f"http://127.0.0.1:{port}/predict"
            first = {
                n: httpx.post(u, json=recs[0]).json()["predictions"][0] for n, u in urls.items()
            }
            http = measure(urls, bodies, args.requests, args.seconds)
        finally:
            for proc in procs:
                stop(proc)
        serving, seed = http["serving"], http["seed_style"]
        served, seeded = first["serving"], first["seed_style"]

        direct = in_process(model_dir, recs, args.requests, args.seconds)

    print(
        json.dumps(
            {
                "benchmark": "predict",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    # Other work on the machine skews everything; say how busy it was.
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                },
                "model": {"trees": TREES, "max_depth": 12, "version": manifest.version},
                "http": {"serving": serving, "seed_style": seed},
                "ratio_http": {
                    f"{c}_rps": round(serving[c]["rps"] / seed[c]["rps"], 2) for c in ("c1", "c8")
                }
                | {"c1_p50": round(seed["c1"]["p50_ms"] / serving["c1"]["p50_ms"], 2)},
                "in_process": direct,
                "ratio_in_process_p50": round(
                    direct["seed_style"]["p50_ms"] / direct["serving_path"]["p50_ms"], 2
                ),
                "predictions_agree": abs(served - seeded) < 1e-9 and direct["max_abs_diff"] < 1e-9,
            }
        )
    )


if __name__ == "__main__":
    main()
