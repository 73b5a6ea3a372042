"""Shared fixtures. `user_manager` is the real systemd user manager (one per session)."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from usermanager import UserManager  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"


def _testbed_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the systemd test manager runs in private mount/cgroup/pid namespaces"
    for tool in ("unshare", "nsenter", "journalctl"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd installed (/lib/systemd/systemd)"
    if not Path("/sys/fs/cgroup/systemd/cgroup.procs").exists():
        return "needs the hybrid cgroup layout (/sys/fs/cgroup/systemd and /sys/fs/cgroup/unified)"
    return None


def require_testbed() -> None:
    """Skip with a reason on a laptop; under CI=true a missing test bed is a failure."""
    reason = _testbed_missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but the systemd test bed is unavailable: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def user_manager() -> Iterator[UserManager]:
    require_testbed()
    manager = UserManager()
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()
