"""``mlopsctl controller run --once``'s exit code: 1 when anything is Degraded, 6 (a gate
failure, as ``deploy --dry-run`` and ``deploy --wait`` exit) when every Degraded
deployment was refused by its gates or its budget."""

from __future__ import annotations

import pytest

from controller.api import ModelDeploymentStatus, degraded_status
from controller.runtime import Outcome
from mlopsctl.cmd_controller import DeploymentsDegraded, DeploymentsRefused, once_failure


def outcome(key: str, reason: str | None = None, error: str | None = None) -> Outcome:
    status = (
        degraded_status(None, 1, reason, f"{reason}: why") if reason else ModelDeploymentStatus()
    )
    return Outcome(key, key, 1, status, degraded=reason is not None, error=error)


def test_nothing_degraded_is_success():
    assert once_failure([outcome("a"), outcome("b")], "dir") is None


@pytest.mark.parametrize(
    "reasons", [["BudgetExceeded"], ["GateFailed"], ["GateFailed", "BudgetExceeded"]]
)
def test_only_gate_refusals_exit_6(reasons):
    outcomes = [outcome("ok"), *(outcome(f"d{n}", r) for n, r in enumerate(reasons))]
    got = once_failure(outcomes, "dir")
    assert isinstance(got, DeploymentsRefused) and got.exit_code == 6
    assert f"{len(reasons)} of {len(outcomes)} deployment(s)" in got.what


@pytest.mark.parametrize(
    "other",
    [outcome("bad", "InvalidSpec"), outcome("err", error="boom"), outcome("x", "RolloutFailed")],
)
def test_anything_else_degraded_exits_1(other):
    got = once_failure([outcome("d", "BudgetExceeded"), other], "dir")
    assert isinstance(got, DeploymentsDegraded) and got.exit_code == 1
