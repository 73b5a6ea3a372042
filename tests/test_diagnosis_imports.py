"""Importing the diagnosis chain must not import the LLM SDKs (`fleetctl status` stays fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_chain_import_does_not_load_sdks() -> None:
    code = (
        "import sys, fleetctl.diagnosis.chain, fleetctl.diagnosis.providers\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('groq', 'anthropic')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out.stdout
