"""Starting `fleetctl dashboard` in the test manager and a headless Chromium that looks at it.

Both start here and nowhere else, so when the manager moves into its own network namespace
only this helper needs to follow it (the browser must then run inside that namespace too).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import Fleetctl
from usermanager import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@dataclass
class Served:
    url: str
    port: int
    proc: subprocess.Popen[str]

    def stderr(self) -> str:
        return self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""


def _wait_port(port: int, proc: subprocess.Popen[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"fleetctl dashboard exited {proc.returncode}:\n{out}\n{err}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"fleetctl dashboard did not listen on {port} within {timeout}s")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # reaches the fleetctl nsenter forked
            proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream:
            stream.close()


@contextmanager
def dashboard(fc: Fleetctl, *args: str) -> Iterator[Served]:
    """`fleetctl dashboard ARGS` in the manager's namespaces on a free loopback port."""
    port = free_port()
    proc = fc.spawn("dashboard", "--port", str(port), *args)
    try:
        _wait_port(port, proc)
        yield Served(f"http://127.0.0.1:{port}", port, proc)
    finally:
        _stop(proc)


@contextmanager
def browser() -> Iterator[Any]:
    """A headless Chromium page (Debian's /usr/bin/chromium driven by Playwright)."""
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = b.new_page(viewport={"width": 1600, "height": 1000})
            yield page
        finally:
            b.close()
