"""Running the ``breach`` command line inside the test process."""

from __future__ import annotations

import pytest

from orchestrator.commands import main


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``breach ARGS`` as a user runs it: its exit code, standard output and standard error."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
