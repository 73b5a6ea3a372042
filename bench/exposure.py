"""Exposure scores: `systemd-analyze --user security` of a demo agent and a Node agent, as
fleetctl renders them, installed and healthy in the test manager.

Run as root:  python3 bench/exposure.py  (the test bed's manager, and so the agents, run as
its normal user, uid 1500: these are a normal user's numbers).
Prints a Markdown table; exits 1 when a target is missed (demo <= 2.0, Node <= 4.0).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from usermanager import UserManager, free_port  # noqa: E402

TARGETS = {"demo": 2.0, "node": 4.0}
NODE = shutil.which("node") or "/usr/bin/node"


def profiles(directory: Path) -> Path:
    """The two agents the targets are about, as a user would write them."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "demo.toml").write_text(
        f'command = ["{{python}}", "-m", "fleetctl.demo_agent"]\nport = {free_port()}\n'
    )
    agent = REPO / "tests" / "agents" / "node_health.js"
    (directory / "node.toml").write_text(
        f'command = ["{NODE}", "{agent}", "{{port}}"]\nport = {free_port()}\n'
    )
    return directory


def scores(run, env) -> dict[str, tuple[float, str]]:  # type: ignore[no-untyped-def]
    out = {}
    for agent in TARGETS:
        r = run(["systemd-analyze", "--user", "security", "--no-pager", f"fleet-{agent}.service"], env=env)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", r.stdout)
        if not m:
            raise RuntimeError(f"systemd-analyze said: {r.stdout[-300:]} {r.stderr[-300:]}")
        out[agent] = (float(m.group(1)), m.group(2))
    return out


def main() -> int:
    m = UserManager()
    try:
        m.start()
        env = m.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))
        d = profiles(m.home / "profiles")
        m.give(d)  # written as root, read by the manager's user
        r = m.run([sys.executable, "-m", "fleetctl", "install", str(d)], env=env, timeout=300)
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return 1
        got = scores(m.run, env)
    finally:
        m.stop()
    print("| agent | exposure | target |\n| --- | --- | --- |")
    for agent, (score, label) in got.items():
        print(f"| {agent} | {score:.1f} {label} | <= {TARGETS[agent]:.1f} |")
    return 0 if all(got[a][0] <= t for a, t in TARGETS.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
