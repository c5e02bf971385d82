"""The checked-in sources carry no unresolved merge: a conflict inside a docstring or a
Markdown file still imports and renders, so nothing else would notice it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = re.compile(r"^(<{7} |>{7} |={7}$)", re.MULTILINE)


def test_no_file_holds_merge_conflict_markers():
    listed = subprocess.run(
        ["git", "ls-files", "-z", "*.py", "*.md", "*.tf", "*.yaml", "*.yml", "*.toml"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    found = [
        name
        for name in filter(None, listed)
        if (ROOT / name).is_file() and MARKER.search((ROOT / name).read_text(errors="replace"))
    ]
    assert not found, f"unresolved merge conflict markers in {found}"
