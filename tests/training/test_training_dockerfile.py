"""Static checks of training/Dockerfile (no Docker engine here to build it)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mlops_core.errors import InvalidInput

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "training" / "Dockerfile"
SERVING_DOCKERFILE = ROOT / "serving" / "Dockerfile"
CONSTRAINTS = ROOT / "training" / "constraints.txt"
# python:3.11.11-slim-bookworm: an exact patch version, never a floating tag.
PINNED_PYTHON = re.compile(r"^python:(?P<minor>\d+\.\d+)\.\d+-[a-z0-9-]+$")


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, args = line.partition(" ")
            pairs.append((op.upper(), args.strip()))
    return pairs


def base_images(path: Path) -> list[str]:
    return [args.split()[0] for op, args in instructions(path) if op == "FROM"]


def python_minor(image: str, where: Path) -> str:
    m = PINNED_PYTHON.match(image)
    if not m:
        raise InvalidInput(
            f"base image {image!r} is not a pinned python:X.Y.Z-... tag", where=str(where)
        )
    return m["minor"]


def test_base_image_is_pinned():
    images = base_images(DOCKERFILE)
    assert images, "no FROM line"
    for image in images:
        assert "latest" not in image and ":" in image
        python_minor(image, DOCKERFILE)  # raises unless pinned to a patch version


def test_pinning_check_rejects_floating_tags(tmp_path):
    for floating in ("python:3.11-slim", "python:latest", "python"):
        with pytest.raises(InvalidInput):
            python_minor(floating, tmp_path)


def test_runs_as_a_non_root_user():
    users = [args for op, args in instructions(DOCKERFILE) if op == "USER"]
    assert users, "no USER instruction: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # The final USER comes after every RUN (installation happens as root, running does not).
    ops = [op for op, _ in instructions(DOCKERFILE)]
    assert max(i for i, op in enumerate(ops) if op == "RUN") < max(
        i for i, op in enumerate(ops) if op == "USER"
    )


def test_entrypoint_is_mlopsctl_train():
    entry = [args for op, args in instructions(DOCKERFILE) if op == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["mlopsctl", "train"]


def test_installs_with_pinned_constraints():
    runs = " ".join(args for op, args in instructions(DOCKERFILE) if op == "RUN")
    assert "pip install --constraint constraints.txt" in runs
    pins = dict(
        line.split("==")
        for line in CONSTRAINTS.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for package in ("scikit-learn", "numpy", "scipy", "pandas", "pydantic", "boto3"):
        assert package in pins, f"{package} is not pinned in {CONSTRAINTS.name}"
    import sklearn

    # The image pins the scikit-learn the tests ran with: serving refuses another minor.
    assert pins["scikit-learn"].split(".")[:2] == sklearn.__version__.split(".")[:2]


def test_same_python_minor_as_serving():
    if not SERVING_DOCKERFILE.is_file():
        pytest.skip("serving/Dockerfile does not exist yet (written by the serving work)")
    ours = {python_minor(i, DOCKERFILE) for i in base_images(DOCKERFILE)}
    theirs = {python_minor(i, SERVING_DOCKERFILE) for i in base_images(SERVING_DOCKERFILE)}
    assert ours == theirs


def test_pins_satisfy_the_projects_own_requirements():
    """The image installs what the tests ran with: a pin outside pyproject's range (a
    Typer that renders help otherwise, say) is a mismatch to fix in one place or the
    other."""
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins = {
        canonicalize_name(name): version
        for name, version in (
            line.split("==")
            for line in CONSTRAINTS.read_text().splitlines()
            if line and not line.startswith("#")
        )
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    checked = 0
    for line in project["dependencies"]:
        req = Requirement(line)
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is not None and (req.marker is None or req.marker.evaluate()):
            assert req.specifier.contains(pinned, prereleases=True), (
                f"{CONSTRAINTS.name} pins {req.name}=={pinned}, outside pyproject's {line!r}"
            )
            checked += 1
    assert checked >= 10, "the constraints pin few of the runtime dependencies"
