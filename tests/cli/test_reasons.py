"""A reason a person types is recorded and shown in terminals (status, history,
describe): one line of printable text, or exit 2 before anything is read or written."""

from __future__ import annotations

import pytest

from mlopsctl.cli import main

VERSION = "20260101T000000Z-aaaaaaa"
COMMANDS = {
    "approve": ["approve", "demo-prod", "--source", "{tmp}"],
    "reject": ["reject", "demo-prod", "--source", "{tmp}"],
    "promote": ["promote", VERSION, "--env", "prod", "--project", "demo", "--force"],
    "rollback": ["rollback", "--env", "prod", "--project", "demo", "--force"],
    "deploy": [
        "deploy",
        "--env",
        "prod",
        "--project",
        "demo",
        "--version",
        VERSION,
        "--force",
        "--source",
        "{tmp}",
        "--no-wait",
    ],  # fmt: skip
    "policy set": ["policy", "set", "--project-dir", "{tmp}"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize(
    ("reason", "code_point"),
    [("two\nlines", "U+000A"), ("red \x1b[31mtext", "U+001B"), ("txt.exe\u202egnp", "U+202E")],
)
def test_a_reason_with_a_control_character_is_refused(
    command, reason, code_point, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing may be called
    args = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    code = main([*args, "--reason", reason])
    out = capsys.readouterr()
    assert code == 2, out
    assert f"--reason holds the control character {code_point}" in out.err
    assert "Traceback" not in out.err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_plain_reason_passes_stripped():
    from mlopsctl.context import check_reason

    assert check_reason("  rolled out to 5 % — see TICKET-1 \u2705 ") == (
        "rolled out to 5 % — see TICKET-1 \u2705"
    )
