"""The drift job runs on the serving image: the image carries what the job imports, and
Terraform's default command (tests/infra) is this package's entry point."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _first_party_imports(package: Path) -> set[str]:
    names: set[str] = set()
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
    return names & {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}


def test_serving_image_carries_the_drift_job():
    dockerfile = (ROOT / "serving" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \./\1$", dockerfile, flags=re.M))
    needed = _first_party_imports(ROOT / "monitoring") | {"monitoring"}
    assert needed == {"mlops_core", "monitoring"}  # no CLI, controller or training imports
    assert needed <= copied
    assert (ROOT / "monitoring" / "__main__.py").is_file()
