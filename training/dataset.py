"""Read the training CSV (a path or ``s3://``) and check it against ``project.yaml``.

Every problem is reported before anything is trained or written, as one
:class:`~mlops_core.errors.InvalidInput` that names the file, the column, the first bad
line and value, and what to do. Line numbers are lines of the file (the header is line 1).

Decisions on values the schema does not allow:

- An empty cell (or ``NA``, ``null``...) in an optional feature is missing: the model's
  imputer fills it, as serving does for an absent field. In a required feature it is an
  error, as it would be a 422 at serving time.
- A category value not listed in ``categories`` is an error in training data (serving maps
  it to NaN). Silently imputing it would train a model that has never seen the value while
  the schema claims to know the feature, and it is nearly always a typo or a stale list.
- Values outside a feature's ``min``/``max`` are errors: serving would reject them too.
- Columns the schema does not name are ignored (and listed in the manifest's columns).

The target follows the project's ``task``: a finite number for regression; a class label
for classification, kept as written (strings), or as integers when every label is one.
Data a model cannot learn from is refused before training: a constant target, a single
class, a class with fewer than two rows (it could not be in both the training and the
holdout split). A regression target with only a few distinct whole numbers trains, with
a warning naming the ``task`` setting: it is usually a class label.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_core import aws
from mlops_core.artifacts import sha256_bytes
from mlops_core.errors import InvalidInput, MlopsError, NotFound
from mlops_core.features import FeatureSpec
from mlops_core.project import ProjectConfig

#: Fewest rows that still leave a holdout set large enough to score.
MIN_ROWS = 10
#: How many distinct bad values an error message shows.
SHOW_VALUES = 5
#: A regression target with at most this many distinct whole numbers looks like labels.
FEW_DISTINCT_INTEGERS = 10
#: Fewest rows of each class (one to train on, one to hold out).
MIN_CLASS_ROWS = 2


@dataclass(frozen=True)
class Dataset:
    """A validated training table.

    ``frame`` holds the feature columns in schema order (numbers as float, categories as
    str, missing as NaN) and the target (float for regression; int or str labels for
    classification); its index is the CSV line number.
    """

    source: str
    fingerprint: str
    columns: list[str]
    frame: pd.DataFrame = field(repr=False)
    #: Things worth telling the user that do not stop training (see check_target).
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame)


# -- reading ---------------------------------------------------------------------------


def _read_s3(uri: str) -> bytes:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise InvalidInput(
            f"malformed S3 URI {uri!r}", hint="use s3://BUCKET/KEY, e.g. s3://my-bucket/cars.csv"
        )
    try:
        return aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        code = aws.error_code(exc)
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            raise NotFound(
                f"training data not found ({code})",
                where=uri,
                hint="check the bucket and key ('aws s3 ls' the prefix) or pass --data",
            ) from None
        raise MlopsError(f"could not read training data: {code or exc}", where=uri) from None
    except BotoCoreError as exc:
        raise MlopsError(
            f"could not reach S3 to read training data: {exc}",
            where=uri,
            hint="check AWS credentials, region and AWS_ENDPOINT_URL",
        ) from None


def _read_file(path: Path) -> bytes:
    if path.is_dir():
        raise InvalidInput(f"{path} is a directory, not a CSV file", hint="point at the CSV file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(
            f"training data file not found: {path}",
            hint="check the path: generate or copy the CSV there (see the project's README) "
            "or point --data at the right file",
        ) from None


def resolve(source: str, base_dir: Path) -> str:
    """Where ``source`` is: an ``s3://`` URI as is, else a path relative to ``base_dir``."""
    if source.startswith("s3://"):
        return source
    return str(base_dir / Path(source).expanduser())


def read_source(location: str) -> bytes:
    """The raw bytes at ``location`` (from :func:`resolve`)."""
    if location.startswith("s3://"):
        return _read_s3(location)
    return _read_file(Path(location))


def _parse(raw: bytes, source: str) -> tuple[list[str], pd.DataFrame]:
    if not raw.strip():
        raise InvalidInput(
            "the CSV is empty", where=source, hint="a header line and data rows are needed"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"the CSV is not UTF-8 text (byte {exc.start})",
            where=source,
            hint="save the file as UTF-8 CSV",
        ) from None
    header = next(csv.reader(io.StringIO(text)), [])
    dups = sorted({c for c in header if header.count(c) > 1})
    if dups:
        raise InvalidInput(
            f"duplicate column name(s) in the header: {dups}",
            where=f"{source}, line 1",
            hint="give every column a unique name",
        )
    try:
        # Keep blank lines as empty rows so the index maps to the line number exactly;
        # they are dropped below. Everything is read as text and parsed per column.
        frame = pd.read_csv(io.StringIO(text), dtype=str, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InvalidInput(
            f"not a valid CSV: {exc}".strip(),
            where=source,
            hint="check the delimiter (',') and that every row has as many fields as the header",
        ) from None
    frame.index = frame.index + 2
    frame = frame.dropna(how="all")
    if frame.empty:
        raise InvalidInput(
            "the CSV has a header but no data rows",
            where=source,
            hint="add data rows below the header line",
        )
    return header, frame


# -- checking --------------------------------------------------------------------------


@dataclass
class _Problems:
    source: str
    lines: list[str] = field(default_factory=list)
    hints: list[str] = field(default_factory=list)

    def add(self, what: str, hint: str) -> None:
        self.lines.append(what)
        if hint not in self.hints:
            self.hints.append(hint)

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        if len(self.lines) == 1:
            raise InvalidInput(self.lines[0], where=self.source, hint=self.hints[0])
        what = f"{len(self.lines)} problems in the training data:\n" + "\n".join(
            f"  - {line}" for line in self.lines
        )
        raise InvalidInput(what, where=self.source, hint="; ".join(self.hints))


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _first(mask: pd.Series, values: pd.Series) -> tuple[int, str, int]:
    """Line, raw value and count of the rows where ``mask`` holds."""
    bad = values[mask]
    return int(bad.index[0]), str(bad.iloc[0]), len(bad)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _rows(count: int) -> str:
    return "1 row" if count == 1 else f"{count} rows"


def _check_columns(header: list[str], cfg: ProjectConfig, problems: _Problems) -> None:
    wanted = [f.name for f in cfg.features]
    extra = [c for c in header if c not in wanted and c != cfg.target]
    for name in wanted:
        if name not in header:
            problems.add(
                f"feature column {name!r} is missing{_suggest(name, extra)}",
                "rename the CSV column to match project.yaml's features, or fix the "
                "feature's name there",
            )
    if cfg.target not in header:
        problems.add(
            f"target column {cfg.target!r} is missing{_suggest(cfg.target, extra)}",
            "add the target column to the CSV, or fix 'target' in project.yaml",
        )


def _parse_number(
    raw: pd.Series, name: str, kind: str, problems: _Problems, *, integer: bool = False
) -> pd.Series:
    number = pd.to_numeric(raw, errors="coerce")
    bad = raw.notna() & (number.isna() | ~np.isfinite(number))
    if bad.any():
        line, value, n = _first(bad, raw)
        problems.add(
            f"line {line}, column {name!r}: {value!r} is not a finite number "
            f"({_rows(n)} like this)",
            f"fix the {kind} values or clear them (empty cell = missing)",
        )
        return number.where(~bad)
    if integer:
        frac = number.notna() & (number != np.floor(number))
        if frac.any():
            line, value, n = _first(frac, raw)
            problems.add(
                f"line {line}, column {name!r}: {value!r} is not a whole number, and the "
                f"feature's type is integer ({_rows(n)} like this)",
                "round the values, or declare the feature as type: number",
            )
    return number


def _check_feature(spec: FeatureSpec, raw: pd.Series, problems: _Problems) -> pd.Series:
    name = spec.name
    missing = raw.isna()
    if spec.required and missing.any():
        line, _, n = _first(missing, raw)
        problems.add(
            f"line {line}, column {name!r}: value missing in a required feature "
            f"({_rows(n)} like this)",
            "fill the missing values, drop those rows, or set 'required: false' on the feature",
        )
    if spec.type == "category":
        allowed = set(spec.categories or [])
        unknown = raw.notna() & ~raw.isin(allowed)
        if unknown.any():
            line, value, n = _first(unknown, raw)
            counts = raw[unknown].value_counts()
            shown = ", ".join(f"{v!r} ({c})" for v, c in counts.head(SHOW_VALUES).items())
            more = f" and {len(counts) - SHOW_VALUES} more" if len(counts) > SHOW_VALUES else ""
            problems.add(
                f"line {line}, column {name!r}: {value!r} is not one of the feature's "
                f"categories{_suggest(value, allowed)}; unknown values: {shown}{more}",
                "add the values to the feature's 'categories' in project.yaml, or fix the data",
            )
        return raw.where(~unknown)
    number = _parse_number(raw, name, "feature", problems, integer=spec.type == "integer")
    checks = (
        ("below the minimum", spec.min, number.lt),
        ("above the maximum", spec.max, number.gt),
    )
    for label, bound, compare in checks:
        if bound is None:
            continue
        outside = compare(bound)
        if outside.any():
            line, value, n = _first(outside, raw)
            problems.add(
                f"line {line}, column {name!r}: {value} is {label} {_number(bound)} of the feature "
                f"({_rows(n)} like this)",
                "fix or drop those rows, or widen the feature's min/max in project.yaml",
            )
    return number


def _parse_labels(raw: pd.Series) -> pd.Series:
    """Class labels as written, or as ints when every label is a whole number."""
    text = raw.str.strip()
    number = pd.to_numeric(text, errors="coerce")
    if number.notna().all() and bool((number == np.floor(number)).all()):
        return number.astype(np.int64)
    return text


def _show(values: Iterable[object]) -> str:
    return ", ".join(repr(v) for v in values)


def check_target(y: pd.Series, cfg: ProjectConfig, source: str) -> list[str]:
    """Refuse a target nothing can be learned from; return warnings worth logging."""
    name = cfg.target
    counts = y.value_counts()
    where = f"{source}, column {name!r}"
    if cfg.task == "classification":
        if len(counts) < 2:
            raise InvalidInput(
                f"the target has a single class ({_show(counts.index[:1])}); a classifier "
                "needs at least two",
                where=where,
                hint="add rows of the other classes, or check that 'target' names the label column",
            )
        rare = counts[counts < MIN_CLASS_ROWS]
        if len(rare):
            raise InvalidInput(
                f"class(es) {_show(rare.index[:SHOW_VALUES])} have fewer than "
                f"{MIN_CLASS_ROWS} rows; each class needs one row to train on and one to "
                "hold out",
                where=where,
                hint="add rows of those classes, or drop or merge them",
            )
        return []
    if len(counts) < 2:
        raise InvalidInput(
            f"the target is constant ({_number(float(counts.index[0]))} in every row); "
            "there is nothing to learn",
            where=where,
            hint="check that 'target' names the right column and that the data is complete",
        )
    values = counts.index.to_numpy(dtype=np.float64)
    if len(counts) <= FEW_DISTINCT_INTEGERS and bool((values == np.floor(values)).all()):
        shown = ", ".join(_number(v) for v in sorted(values)[:SHOW_VALUES])
        return [
            f"the target {name!r} has only {len(counts)} distinct whole-number values "
            f"({shown}); if they are classes, set 'task: classification' in project.yaml "
            "(the project trains a regression model: task is 'regression')"
        ]
    return []


def load_dataset(source: str, cfg: ProjectConfig, base_dir: Path) -> Dataset:
    """Read ``source`` (relative to ``base_dir``) and validate it against ``cfg``.

    Raises one :class:`InvalidInput` listing every problem found, named by the resolved
    location (``base_dir/source``) so the user can open the file.
    """
    location = resolve(source, base_dir)
    raw = read_source(location)
    header, table = _parse(raw, location)
    problems = _Problems(location)
    _check_columns(header, cfg, problems)
    problems.raise_if_any()

    out: dict[str, pd.Series] = {}
    for spec in cfg.features:
        out[spec.name] = _check_feature(spec, table[spec.name], problems)
    target = table[cfg.target]
    missing = target.isna()
    if missing.any():
        line, _, n = _first(missing, target)
        problems.add(
            f"line {line}, column {cfg.target!r}: target value missing ({_rows(n)} like this)",
            "drop the rows without a target value, or fill them",
        )
    if cfg.task == "classification":
        out[cfg.target] = _parse_labels(target.where(~missing, ""))
    else:
        out[cfg.target] = _parse_number(target, cfg.target, "target", problems)
    if len(table) < MIN_ROWS:
        problems.add(
            f"only {_rows(len(table))} of data; at least {MIN_ROWS} are needed to train and "
            "hold out a test set",
            "add more rows",
        )
    problems.raise_if_any()

    frame = pd.DataFrame(out, index=table.index)
    for spec in cfg.features:
        if spec.type != "category":
            frame[spec.name] = frame[spec.name].astype(np.float64)
    if cfg.task == "regression":
        frame[cfg.target] = frame[cfg.target].astype(np.float64)
    warnings = check_target(frame[cfg.target], cfg, location)
    return Dataset(
        source=source,
        fingerprint=sha256_bytes(raw),
        columns=header,
        frame=frame,
        warnings=warnings,
    )
