"""Synthetic used-car price data (numpy only, seeded, deterministic).

The data is made up. Prices follow a hand-written pricing rule with non-linear
depreciation, a brand and model premium, mileage wear, condition, engine and fuel effects,
an interaction (premium brands lose value faster) and multiplicative noise, so a random
forest reaches a realistic holdout R² (about 0.85) and clearly beats a constant predictor.

This is the one home of the generator: ``mlopsctl init`` writes a new project's sample
data with it, and ``projects/usedcar-price/generate_data.py`` is its command line::

    python generate_data.py --rows 20000 --seed 7 --out data/usedcars.csv

Same ``rows`` and ``seed`` give the same bytes. The "market" itself (each make's and
model's premium) is fixed by ``MARKET_SEED``, so different seeds are different samples
from one market, not different markets.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

import numpy as np

MARKET_SEED = 20190425
CURRENT_YEAR = 2025
N_MAKES = 20
N_MODELS = 100
CONDITIONS = ["salvage", "fair", "good", "excellent", "like new", "new"]
CONDITION_P = [0.02, 0.13, 0.35, 0.32, 0.15, 0.03]
CONDITION_EFFECT = [-0.75, -0.25, 0.0, 0.1, 0.2, 0.3]
CYLINDERS = [3, 4, 5, 6, 8, 10, 12]
CYLINDERS_P = [0.03, 0.45, 0.04, 0.3, 0.15, 0.02, 0.01]
FUELS = ["gas", "diesel", "hybrid", "electric", "other"]
FUELS_P = [0.8, 0.07, 0.07, 0.04, 0.02]
FUEL_EFFECT = [0.0, 0.12, 0.15, 0.25, -0.1]
COLUMNS = [
    "year",
    "odometer",
    "make_encoded",
    "model_encoded",
    "condition",
    "engine_cylinders",
    "fuel",
    "price",
]
# Share of rows in which each optional column is left empty, as in scraped listings.
MISSING_RATE = {"condition": 0.12, "engine_cylinders": 0.08, "fuel": 0.04}


def _market() -> tuple[np.ndarray, np.ndarray]:
    """Log-price premium per make and per model: fixed, independent of the sample seed."""
    rng = np.random.default_rng(MARKET_SEED)
    make_premium = rng.normal(0.0, 0.35, N_MAKES)
    model_premium = rng.normal(0.0, 0.12, N_MODELS)
    return make_premium, model_premium


def generate(rows: int, seed: int) -> dict[str, np.ndarray]:
    """Columns of a synthetic dataset; NaN (numbers) or '' (categories) marks a missing value."""
    if rows < 1:
        raise ValueError("rows must be at least 1")
    rng = np.random.default_rng(seed)
    make_premium, model_premium = _market()

    # Ages skew young: most listings are 2-10 years old.
    age = np.clip(rng.gamma(2.2, 3.0, rows), 0, 25).round().astype(int)
    year = CURRENT_YEAR - age
    # Mileage grows with age, at a driver-specific rate.
    per_year = rng.lognormal(np.log(11_000), 0.35, rows)
    odometer = np.clip((age + rng.uniform(0.1, 1.0, rows)) * per_year, 5, 400_000).round()
    make = rng.integers(0, N_MAKES, rows)
    model = rng.integers(0, N_MODELS, rows)
    condition = rng.choice(len(CONDITIONS), rows, p=CONDITION_P)
    cylinders = rng.choice(CYLINDERS, rows, p=CYLINDERS_P)
    fuel = rng.choice(len(FUELS), rows, p=FUELS_P)

    premium = make_premium[make]
    # Depreciation: a first-year drop, then exponential decay that premium makes feel more.
    decay = 0.11 + 0.05 * np.clip(premium, 0, None)
    depreciation = 0.15 * (age > 0) + decay * age - 0.0025 * age**2
    wear = 0.28 * np.log1p(odometer / 10_000) - 0.12 * (odometer > 150_000)
    log_price = (
        np.log(42_000)
        + premium
        + model_premium[model]
        - depreciation
        - wear
        + np.asarray(CONDITION_EFFECT)[condition]
        + 0.06 * (cylinders - 4)
        + np.asarray(FUEL_EFFECT)[fuel]
        + rng.normal(0.0, 0.09, rows)
    )
    price = np.clip(np.exp(log_price), 500, None).round(-1)

    cols: dict[str, np.ndarray] = {
        "year": year.astype(float),
        "odometer": odometer.astype(float),
        "make_encoded": make.astype(float),
        "model_encoded": model.astype(float),
        "condition": np.asarray(CONDITIONS, dtype=object)[condition],
        "engine_cylinders": cylinders.astype(float),
        "fuel": np.asarray(FUELS, dtype=object)[fuel],
        "price": price,
    }
    for name, rate in MISSING_RATE.items():
        gone = rng.random(rows) < rate
        if cols[name].dtype == object:
            cols[name][gone] = ""
        else:
            cols[name][gone] = np.nan
    return cols


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "" if np.isnan(value) else str(int(value))
    return str(value)


def to_csv(cols: dict[str, np.ndarray]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in zip(*(cols[c].tolist() for c in COLUMNS), strict=True):
        writer.writerow([_cell(v) for v in row])
    return buf.getvalue()


def write(rows: int, seed: int, out: Path) -> Path:
    """Write ``rows`` rows drawn with ``seed`` to ``out`` (creating its folder)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_csv(generate(rows, seed)))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Write synthetic used-car price data (made up, deterministic) as CSV."
    )
    parser.add_argument("--rows", type=int, default=20_000, help="number of rows (20000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (7)")
    parser.add_argument("--out", type=Path, default=Path("data/usedcars.csv"))
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error("--rows must be at least 1")
    path = write(args.rows, args.seed, args.out)
    print(f"wrote {args.rows} rows to {path}")


if __name__ == "__main__":
    main()
