"""The usedcar-price example: its generator, project.yaml, Makefile and README."""

from __future__ import annotations

import subprocess
import sys

import pytest
from training_helpers import EXAMPLE

from mlops_core.artifacts import sha256_bytes
from mlops_core.project import load_project
from training.dataset import load_dataset

SEED_REQUEST = {"year": 2019, "odometer": 25000, "make_encoded": 9, "model_encoded": 42}


def test_generator_is_deterministic(generator):
    a = generator.to_csv(generator.generate(500, 11))
    b = generator.to_csv(generator.generate(500, 11))
    c = generator.to_csv(generator.generate(500, 12))
    assert a == b
    assert a != c
    assert a.splitlines()[0] == ",".join(generator.COLUMNS)
    assert len(a.splitlines()) == 501


def test_generator_cli_writes_the_same_bytes(generator, tmp_path):
    out = tmp_path / "data" / "usedcars.csv"
    cmd = [sys.executable, str(EXAMPLE / "generate_data.py"), "--rows", "300", "--seed", "5"]
    done = subprocess.run([*cmd, "--out", str(out)], capture_output=True, text=True, check=True)
    assert "wrote 300 rows" in done.stdout
    assert out.read_text() == generator.to_csv(generator.generate(300, 5))


def test_generator_cli_rejects_zero_rows(generator, capsys):
    with pytest.raises(SystemExit) as exit_:
        generator.main(["--rows", "0"])
    assert exit_.value.code == 2
    assert "--rows must be at least 1" in capsys.readouterr().err


def test_generated_data_fits_the_example_schema(generator, tmp_path):
    cfg = load_project(EXAMPLE)
    csv_path = tmp_path / "usedcars.csv"
    csv_path.write_text(generator.to_csv(generator.generate(3000, 7)))
    dataset = load_dataset(str(csv_path), cfg, tmp_path)  # raises on any schema violation
    assert dataset.rows == 3000
    assert dataset.fingerprint == sha256_bytes(csv_path.read_bytes())
    frame = dataset.frame
    for spec in cfg.features:
        share = frame[spec.name].isna().mean()
        assert (share == 0) if spec.required else (0.01 < share < 0.2), spec.name


def test_seed_request_is_valid_for_the_example_schema():
    cfg = load_project(EXAMPLE)
    assert cfg.name == "usedcar-price" and cfg.target == "price"
    by_name = {f.name: f for f in cfg.features}
    assert {n for n, f in by_name.items() if f.required} == set(SEED_REQUEST)
    assert len(by_name) > len(SEED_REQUEST)  # and optional ones beyond the seed's four
    for name, value in SEED_REQUEST.items():
        spec = by_name[name]
        assert spec.min is not None and spec.min <= value
        assert spec.max is not None and value <= spec.max


def test_makefile_targets():
    done = subprocess.run(
        ["make", "-n", "-C", str(EXAMPLE), "train-local", "serve-local", "MLOPSCTL=mlopsctl"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "mlopsctl train --project-dir . --out artifacts" in done.stdout
    assert "mlopsctl serve --model-dir artifacts" in done.stdout


def test_readme_says_the_data_is_synthetic():
    text = (EXAMPLE / "README.md").read_text().lower()
    assert "synthetic" in text and "generate_data.py" in text


def test_init_template_accepts_its_sample_data(generator, tmp_path):
    """`mlopsctl init` writes this generator's data next to its template project.yaml."""
    template = EXAMPLE.parents[1] / "mlopsctl" / "templates" / "project" / "project.yaml"
    (tmp_path / "project.yaml").write_text(template.read_text().replace("{{ name }}", "demo"))
    cfg = load_project(tmp_path)
    generator.write(500, 0, tmp_path / "data" / "usedcars.csv")
    assert load_dataset(cfg.data.source, cfg, tmp_path).rows == 500
