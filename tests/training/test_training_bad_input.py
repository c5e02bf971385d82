"""Bad input: one clear InvalidInput naming file, column, line and value; nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from training_helpers import read_rows, write_rows

import training
from mlops_core.errors import InvalidInput, MlopsError, NotFound

COLUMNS = read_rows(
    "year,odometer,make_encoded,model_encoded,condition,engine_cylinders,fuel,price\n"
)[0]


def _col(name: str) -> int:
    return COLUMNS.index(name)


def drop_column(name: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        i = _col(name)
        for row in rows:
            del row[i]

    return edit


def rename_column(old: str, new: str) -> Callable[[list[list[str]]], None]:
    def edit(rows: list[list[str]]) -> None:
        rows[0][_col(old)] = new

    return edit


def set_cell(data_row: int, name: str, value: str) -> Callable[[list[list[str]]], None]:
    """Set a cell of data row ``data_row`` (1-based), which is line ``data_row + 1``."""

    def edit(rows: list[list[str]]) -> None:
        rows[data_row][_col(name)] = value

    return edit


# (edit of the good CSV, substrings the error must contain)
CASES: dict[str, tuple[Callable[[list[list[str]]], None], list[str]]] = {
    "missing column": (drop_column("odometer"), ["feature column 'odometer' is missing"]),
    "misspelled column": (
        rename_column("odometer", "odometr"),
        ["'odometer' is missing", "did you mean 'odometr'?", "rename the CSV column"],
    ),
    "target absent": (drop_column("price"), ["target column 'price' is missing"]),
    "misspelled target": (rename_column("price", "Price"), ["did you mean 'Price'?"]),
    "non-numeric value": (
        set_cell(5, "odometer", "12k miles"),
        ["line 6", "column 'odometer'", "'12k miles' is not a finite number"],
    ),
    "infinite value": (set_cell(9, "odometer", "inf"), ["line 10", "'inf'"]),
    "fractional integer": (
        set_cell(7, "year", "2019.5"),
        ["line 8", "column 'year'", "not a whole number", "type: number"],
    ),
    "below min": (
        set_cell(3, "year", "1950"),
        ["line 4", "column 'year'", "1950 is below the minimum 1980", "min/max"],
    ),
    "above max": (set_cell(12, "engine_cylinders", "40"), ["line 13", "above the maximum 16"]),
    "unknown category": (
        set_cell(4, "fuel", "Gas"),
        ["line 5", "column 'fuel'", "'Gas' is not one of", "did you mean 'gas'?", "categories"],
    ),
    "missing required value": (
        set_cell(11, "make_encoded", ""),
        ["line 12", "column 'make_encoded'", "missing in a required feature", "required: false"],
    ),
    "missing target value": (
        set_cell(2, "price", ""),
        ["line 3", "column 'price'", "target value missing"],
    ),
    "non-numeric target": (set_cell(2, "price", "cheap"), ["line 3", "'cheap'"]),
}


@pytest.fixture
def bad_project(make_project, csv_text) -> Callable[..., Path]:
    def make(edit: Callable[[list[list[str]]], None]) -> Path:
        rows = read_rows(csv_text)
        assert rows[0] == COLUMNS
        edit(rows)
        return make_project(write_rows(rows))

    return make


def assert_nothing_written(project: Path) -> None:
    assert sorted(p.name for p in project.iterdir()) == ["data", "project.yaml"]


@pytest.mark.parametrize("case", list(CASES))
def test_bad_csv_is_rejected_before_writing(bad_project, case):
    edit, expected = CASES[case]
    project = bad_project(edit)
    with pytest.raises(InvalidInput) as err:
        training.train(project)
    message = str(err.value)
    assert err.value.where == str(project / "data" / "usedcars.csv")
    assert err.value.hint
    for part in expected:
        assert part in message, f"{part!r} not in:\n{message}"
    assert "Traceback" not in message
    assert_nothing_written(project)


def test_every_problem_is_listed_at_once(bad_project):
    def edits(rows: list[list[str]]) -> None:
        set_cell(5, "odometer", "abc")(rows)
        set_cell(6, "fuel", "petrol")(rows)

    project = bad_project(edits)
    with pytest.raises(InvalidInput, match="2 problems") as err:
        training.train(project)
    assert "line 6, column 'odometer'" in str(err.value)
    assert "line 7, column 'fuel'" in str(err.value)
    assert_nothing_written(project)


def test_counts_rows_with_the_same_problem(bad_project):
    def edits(rows: list[list[str]]) -> None:
        for r in (20, 30, 40):
            set_cell(r, "year", "")(rows)

    project = bad_project(edits)
    with pytest.raises(InvalidInput, match=r"line 21, .*\(3 rows like this\)"):
        training.train(project)


def test_empty_cells_in_optional_features_are_fine(bad_project):
    def edits(rows: list[list[str]]) -> None:
        for row in rows[1:]:
            row[_col("fuel")] = ""

    # An all-missing optional column still trains; the imputer keeps its place.
    manifest = training.train(bad_project(edits))
    assert manifest.metrics["model"]["r2"] > manifest.metrics["baseline"]["r2"]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", "the CSV is empty"),
        (b"\n\n", "the CSV is empty"),
        (",".join(COLUMNS).encode() + b"\n", "no data rows"),
        (",".join(COLUMNS).encode() + b"\n\n\n", "no data rows"),
        (b"year,odometer\n\xff\xfe\n", "not UTF-8"),
    ],
)
def test_empty_or_unreadable_csv(make_project, payload, expected):
    project = make_project(payload)
    with pytest.raises(InvalidInput, match=expected):
        training.train(project)
    assert_nothing_written(project)


def test_too_few_rows(make_project, csv_text):
    project = make_project("\n".join(csv_text.splitlines()[:6]) + "\n")
    with pytest.raises(InvalidInput, match="only 5 rows of data; at least 10"):
        training.train(project)
    assert_nothing_written(project)


def test_ragged_row(make_project, csv_text):
    lines = csv_text.splitlines()
    lines[3] += ",1,2,3"
    project = make_project("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match="not a valid CSV") as err:
        training.train(project)
    assert "line 4" in str(err.value)
    assert_nothing_written(project)


def test_duplicate_header(bad_project):
    project = bad_project(rename_column("fuel", "year"))
    with pytest.raises(InvalidInput, match=r"duplicate column name\(s\) in the header: \['year'\]"):
        training.train(project)
    assert_nothing_written(project)


def test_blank_lines_keep_line_numbers_right(make_project, csv_text):
    lines = csv_text.splitlines()
    lines.insert(2, "")  # a blank line 3; the old line 3 is now line 4
    fields = lines[3].split(",")
    fields[0] = "1900"
    lines[3] = ",".join(fields)
    project = make_project("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match="line 4, column 'year': 1900 is below"):
        training.train(project)


def test_missing_data_file(make_project):
    project = make_project()
    (project / "data" / "usedcars.csv").unlink()
    with pytest.raises(NotFound, match="training data file not found") as err:
        training.train(project)
    assert "--data" in str(err.value)
    assert_nothing_written(project)


def test_bad_project_yaml_names_the_line(make_project):
    project = make_project()
    text = (project / "project.yaml").read_text()
    (project / "project.yaml").write_text(text.replace("n_estimators: 20", "n_estimators: 0"))
    with pytest.raises(InvalidInput, match=r"project.yaml:\d+: model.n_estimators"):
        training.train(project)
    assert_nothing_written(project)


def test_out_dir_that_is_a_file(make_project, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(InvalidInput, match="is not a folder"):
        training.train(make_project(), out_dir=target)
    assert target.read_text() == "x"


def test_mlflow_requested_but_not_installed(make_project, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    project = make_project()
    with pytest.raises(MlopsError, match="MLflow is not installed") as err:
        # MLFLOW_TRACKING_URI, as the CLI's settings read it.
        training.train(project, tracking_uri="http://127.0.0.1:5000")
    assert "pip install 'mlops-platform[mlflow]'" in str(err.value)
    assert_nothing_written(project)
