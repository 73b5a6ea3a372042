"""Capture the outputs the README shows, as the test bed's non-root user (run as root):

    python3 tests/capture_readme_output.py

Starts a private manager (uid 1500, its own network), installs the example fleet as that user
and prints what `install`, `status`, `restart`, `logs`, `incidents`, `cost` and `doctor` say.
Nothing is left running.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from usermanager import UserManager  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    m = UserManager(netns=True)
    try:
        m.start()
        profiles = m.home / "fleet" / "profiles"
        shutil.copytree(REPO / "profiles", profiles, ignore=shutil.ignore_patterns("examples"))
        m.give(m.home / "fleet")
        env = m.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"

        def show(*args: str) -> None:
            r = m.run([sys.executable, "-m", "fleetctl", *args], env=env, cwd=m.home / "fleet", timeout=300)
            print(f"$ fleetctl {' '.join(args)}")
            print((r.stdout + r.stderr).rstrip().replace(str(m.home), "~"))
            print()

        show("install", "profiles/")
        show("status")
        show("restart", "coder")
        show("logs", "coder", "-n", "5")
        show("incidents")
        show("cost")
        show("doctor")
        show("uninstall", "--purge")
    finally:
        m.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
