"""Expected failures as one-line messages and exit codes, for every entry point.

``mlopsctl`` and the job modules (``python -m monitoring``) run their work through
:func:`run`, so an error reads and exits the same whichever way a command was started:
2 bad input, 3 not found, 4 conflict, 5 integrity, 6 gate failed, 7 too few captured rows
for a drift verdict (``drift``, the drift job), 10 AWS unreachable, 11 AWS refused, 130
interrupted. No traceback for any of them. (``controller run --once`` adds 1: a
deployment Degraded or failed; its 4 is a deployment, or the source, that another live
controller held for longer than the pass waited, and its 6 gates or budgets only.)
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
)

from mlops_core.errors import MlopsError

#: The errors :func:`run` turns into a message and an exit code (anything else is a bug).
EXPECTED: tuple[type[BaseException], ...] = (
    MlopsError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ClientError,
    KeyboardInterrupt,
)

AWS_UNREACHABLE = 10
AWS_REFUSED = 11
INTERRUPTED = 130


def fail(message: str, code: int) -> int:
    """Print ``error: message`` on stderr (red on a terminal) and return ``code``."""
    import typer

    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return code


def run(work: Callable[[], int]) -> int:
    """``work()``'s exit code, or the code and message of the expected error it raised."""
    try:
        return work()
    except MlopsError as exc:
        return fail(exc.render(), exc.exit_code)
    except EndpointConnectionError as exc:
        return fail(
            f"cannot reach the AWS endpoint ({exc.kwargs.get('endpoint_url')})\n"
            "  hint: start the local one with 'eval \"$(mlopsctl dev up)\"', "
            "or unset AWS_ENDPOINT_URL to use AWS",
            AWS_UNREACHABLE,
        )
    except (NoCredentialsError, NoRegionError) as exc:
        return fail(f"{exc}\n  hint: configure AWS credentials and region", AWS_UNREACHABLE)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code, message = err.get("Code"), err.get("Message")
        return fail(f"AWS refused {exc.operation_name}: {code}: {message}", AWS_REFUSED)
    except KeyboardInterrupt:
        return fail("interrupted", INTERRUPTED)


def exit_with(work: Callable[[], int]) -> None:
    sys.exit(run(work))
