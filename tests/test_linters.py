"""ruff and mypy run as tests: CI fails on lint, as on a failing test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EARLY_LINTERS, early_linter

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "fleetctl", "tests", "bench"],
        EARLY_LINTERS["mypy"],
    ],
    ids=["ruff", "mypy"],
)
def test_linter(argv: list[str], request: pytest.FixtureRequest) -> None:
    if shutil.which(argv[0]) is None and argv[0] != sys.executable:
        pytest.skip(f"{argv[0]} not installed (pip install '.[test]')")
    # mypy was started when the tests were collected (conftest.EARLY_LINTERS): its result.
    proc = early_linter(request.node.callspec.id) or subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
