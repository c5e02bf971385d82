"""User-facing errors.

Every expected failure (bad input, missing resource, refused gate) is a :class:`MlopsError`
that says what was wrong, where, and what to do next. The CLI prints it without a
traceback and exits non-zero; the controller turns it into a Degraded condition.
"""

from __future__ import annotations


class MlopsError(Exception):
    """An error the user can act on."""

    #: Short machine-readable reason, used as a condition reason by the controller.
    reason: str = "Error"
    #: CLI exit code.
    exit_code: int = 1

    def __init__(self, what: str, *, where: str | None = None, hint: str | None = None):
        self.what = what
        self.where = where
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        parts = [self.what if not self.where else f"{self.where}: {self.what}"]
        if self.hint:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class InvalidInput(MlopsError):
    reason = "InvalidSpec"
    exit_code = 2


class NotFound(MlopsError):
    reason = "NotFound"
    exit_code = 3


class Conflict(MlopsError):
    reason = "Conflict"
    exit_code = 4


class IntegrityError(MlopsError):
    """A stored version, a signature or a pin disagrees with what was published."""

    reason = "IntegrityFailed"
    exit_code = 5


class SigningUnavailable(MlopsError):
    """The signing key cannot be used as asked (no permission, not a signing key)."""

    reason = "SigningUnavailable"
    exit_code = 3


class GateFailed(MlopsError):
    reason = "GateFailed"
    exit_code = 6
