"""Model size and accuracy: a fully grown forest against ModelParams' defaults.

Generates the usedcar-price example data (20,000 rows, seed 7), fits both through the
training pipeline (same encoder, imputer, split and holdout) and prints one JSON line:
each variant's hyper-parameters, pickle size, holdout R²/MAE and fit time.

    .venv/bin/python benchmarks/model_size.py [--rows 20000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from mlops_core.project import ModelParams, load_project
from training import sample_data
from training.dataset import load_dataset
from training.run import fit

PROJECT = Path(__file__).resolve().parent.parent / "projects" / "usedcar-price"
FULL = ModelParams(n_estimators=100, max_depth=None, min_samples_leaf=1, max_features=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    cfg = load_project(PROJECT)
    result: dict[str, object] = {"benchmark": "model_size", "rows": args.rows, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        csv = sample_data.write(args.rows, args.seed, Path(tmp) / "usedcars.csv")
        dataset = load_dataset(str(csv), cfg, Path(tmp))
        for label, params in (("full_forest", FULL), ("defaults", ModelParams())):
            started = time.perf_counter()
            fitted = fit(cfg.model_copy(update={"model": params}), dataset)
            seconds = time.perf_counter() - started
            result[label] = {
                "params": params.model_dump(exclude={"type", "random_state"}),
                "pickle_bytes": len(fitted.model_bytes),
                "r2": round(fitted.metrics["model"]["r2"], 4),
                "mae": round(fitted.metrics["model"]["mae"], 1),
                "fit_seconds": round(seconds, 2),
            }
    full, small = result["full_forest"], result["defaults"]
    result["size_ratio"] = round(full["pickle_bytes"] / small["pickle_bytes"], 1)  # type: ignore[index]
    result["r2_delta"] = round(small["r2"] - full["r2"], 4)  # type: ignore[index]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
