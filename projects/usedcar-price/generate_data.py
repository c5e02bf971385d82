"""Write this project's synthetic training data: data/usedcars.csv.

    python generate_data.py --rows 20000 --seed 7 --out data/usedcars.csv

The data is made up (see README.md); the generator lives in the platform package
(training.sample_data, numpy only) so that `mlopsctl init` can write the same data.
"""

from training.sample_data import COLUMNS, generate, main, to_csv, write

__all__ = ["COLUMNS", "generate", "main", "to_csv", "write"]

if __name__ == "__main__":
    main()
