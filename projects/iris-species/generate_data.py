"""Write this project's training data, data/iris.csv, from the iris dataset that ships
with scikit-learn (no download):

    python generate_data.py --out data/iris.csv

Columns: the four measurements in cm and ``species`` (setosa, versicolor, virginica).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.datasets import load_iris

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def write(out: Path) -> Path:
    iris = load_iris()
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row, target in zip(iris.data.tolist(), iris.target.tolist(), strict=True):
            writer.writerow([*row, iris.target_names[target]])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/iris.csv"))
    path = write(parser.parse_args().out)
    print(f"wrote 150 rows to {path}")


if __name__ == "__main__":
    main()
