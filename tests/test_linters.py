"""ruff and mypy run as tests: CI fails on lint, as on a failing test."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        ["ruff", "check", "fleetctl", "tests", "bench"],
        [sys.executable, "-m", "mypy", "fleetctl"],
    ],
    ids=["ruff", "mypy"],
)
def test_linter(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None and argv[0] != sys.executable:
        pytest.skip(f"{argv[0]} not installed (pip install '.[test]')")
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
