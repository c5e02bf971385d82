"""Which local program a container image runs: the one table.

There is no container runtime here, so the data plane runs the platform's own images as
the installed platform: image ``{registry}/{platform}/{component}:{tag}`` is looked up
by ``component`` in :data:`PLATFORM_IMAGES`, which says what the image's Dockerfile says
(ENTRYPOINT, CMD) and which programs the image has, mapped to this installation. A task
definition's ``entryPoint`` and ``command`` override them as Docker's do. Any other image
cannot be pulled, and the task stops with ECS's ``CannotPullContainerError``; a command
naming a program the image lacks stops with ``CannotStartContainerError``.

The drift job runs the serving image with its own command (``python -m monitoring``); a
new platform image is one more entry in :data:`PLATFORM_IMAGES`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


def _programs() -> dict[str, tuple[str, ...]]:
    """Programs on the platform images' PATH, as this installation runs them."""
    python = (sys.executable,)
    return {
        "python": python,
        "python3": python,
        "mlopsctl": (sys.executable, "-m", "mlopsctl.cli"),
    }


#: The ENV every platform Dockerfile sets.
PYTHON_ENV = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "MLOPS_LOG_FORMAT": "json"}


@dataclass(frozen=True)
class Image:
    """One platform image: its Dockerfile's ENTRYPOINT, CMD and ENV, and its programs."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: dict(PYTHON_ENV))
    programs: Mapping[str, tuple[str, ...]] = field(default_factory=_programs)


#: The platform's images by component (repository ``{platform}/{component}``), as their
#: Dockerfiles define them (``serving/Dockerfile``, ``training/Dockerfile``).
PLATFORM_IMAGES: dict[str, Image] = {
    "serving": Image(cmd=("python", "-m", "serving"), env={**PYTHON_ENV, "PORT": "8080"}),
    "training": Image(entrypoint=("mlopsctl", "train")),
}

# [registry[:port]/]repository[:tag][@digest]
_REF_RE = re.compile(
    r"^(?:(?P<registry>[^/]+\.[^/]+|[^/]+:\d+|localhost)/)?(?P<repo>[^:@]+)"
    r"(?::(?P<tag>[^@]+))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class ImageError(Exception):
    """A container cannot start: ``reason`` in ECS's words, ``stop_code`` as ECS sets it."""

    stop_code = "TaskFailedToStart"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def repository(image: str) -> str | None:
    """The repository path of an image reference (no registry, tag or digest)."""
    match = _REF_RE.match(image)
    return match.group("repo") if match else None


def lookup(image: str, platform: str) -> Image:
    repo = repository(image)
    prefix = f"{platform}/"
    if repo is not None and repo.startswith(prefix) and repo[len(prefix) :] in PLATFORM_IMAGES:
        return PLATFORM_IMAGES[repo[len(prefix) :]]
    known = ", ".join(f"{platform}/{name}" for name in PLATFORM_IMAGES)
    raise ImageError(
        "CannotPullContainerError: pull image manifest has been retried 1 time(s): failed to "
        f"resolve ref {image}: {image}: not found (the local data plane runs the platform's "
        f"own images: {known})"
    )


def resolve(
    image: str,
    platform: str,
    entry_point: Sequence[str] | None = None,
    command: Sequence[str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The local command line and the image's environment for a container of ``image``,
    with Docker's override rules: an ``entryPoint`` replaces the image's ENTRYPOINT and
    drops its CMD, a ``command`` replaces CMD."""
    spec = lookup(image, platform)
    entry = list(entry_point) if entry_point else list(spec.entrypoint)
    args = list(command) if command else ([] if entry_point else list(spec.cmd))
    line = entry + args
    if not line:
        raise ImageError(
            "CannotStartContainerError: ResourceInitializationError: no command specified"
        )
    program = spec.programs.get(line[0])
    if program is None:
        raise ImageError(
            "CannotStartContainerError: ResourceInitializationError: failed to create new "
            f'container runtime task: exec: "{line[0]}": executable file not found in $PATH'
        )
    return [*program, *line[1:]], dict(spec.env)
