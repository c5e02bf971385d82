#!/usr/bin/env bash
# The drift report is checked in a real headless browser (tests/monitoring/test_report.py):
# Chromium from the distribution's packages. Installed when it is missing and this runs
# as root on a machine with apt; otherwise (or when the install fails, e.g. offline) the
# test skips and says why. Never fails the caller: the rest of the suite does not need it.
set -uo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" != 0 ]; then
    echo "==> chromium is missing and cannot be installed here (needs root and apt-get):" \
        "the drift report's browser test will skip"
    exit 0
fi
echo "==> installing chromium (apt) for the drift report's browser test"
if ! { apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        chromium >/dev/null; }; then
    echo "==> chromium could not be installed: the drift report's browser test will skip"
fi
exit 0
