"""``python -m monitoring``: the scheduled drift job (one run for MLOPS_PROJECT/MLOPS_ENV).

What the ECS task runs (the serving image, command ``python -m monitoring``); the same
code as ``mlopsctl drift``. Settings come from the environment (:mod:`monitoring.settings`).
Exit code: 0 no drift, 1 drift, 7 too few captured rows, 70 an unexpected error, else the
platform's error codes.
"""

from __future__ import annotations

from rich.console import Console

from mlops_core import exits, logs
from monitoring import job
from monitoring.settings import load_settings
from monitoring.summary import print_summary


def main() -> int:
    def work() -> int:
        settings = load_settings()
        logs.configure(settings.log_level, settings.log_json)
        outcome = job.run(settings)
        print_summary(outcome.result, Console(width=200), report_uri=outcome.report_uri)
        return job.exit_code(outcome.result)

    return exits.run(work)


if __name__ == "__main__":
    raise SystemExit(main())
