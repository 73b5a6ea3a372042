"""Benchmark: `fleetctl status --json` over 50 demo agents vs systemctl, in the test manager.

Run as root:  python3 bench/status_bench.py [--agents 50] [--runs 15]
Prints a Markdown table (median and p90 wall time of whole commands, interpreter start-up
included). The timing loop runs inside the manager's namespaces, so nsenter is not counted.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from usermanager import UserManager, free_port  # noqa: E402

# Runs inside the namespaces: times each command `runs` times.
TIMER = r"""
import json, statistics, subprocess, sys, time
cmds = json.loads(sys.argv[1]); runs = int(sys.argv[2]); out = {}
for name, argvs in cmds.items():
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        for argv in argvs:
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    out[name] = {"median_ms": statistics.median(samples), "p90_ms": samples[int(len(samples) * 0.9) - 1]}
print(json.dumps(out))
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    profiles = Path(tempfile.mkdtemp(prefix="fleetctl-bench-"))
    (profiles / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
        "[defaults.health]\nstartup_grace = 120\n"
    )
    for i in range(args.agents):
        (profiles / f"agent{i:02d}.toml").write_text(f"port = {free_port()}\n")
    m = UserManager()
    try:
        m.start()
        m.give(profiles)  # the manager's user runs fleetctl
        env = m.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))
        py = sys.executable
        r = m.run([py, "-m", "fleetctl", "install", str(profiles)], env=env, timeout=600)
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return 1
        units = [f"fleet-agent{i:02d}.service" for i in range(args.agents)]
        cmds = {
            "fleetctl status --json": [
                [py, "-m", "fleetctl", "status", "--json", "--profiles", str(profiles)]
            ],
            "systemctl --user list-units": [["systemctl", "--user", "list-units", "fleet-*", "--no-pager"]],
            f"systemctl --user show, x{args.agents}": [["systemctl", "--user", "show", u] for u in units],
        }
        r = m.run([py, "-c", TIMER, json.dumps(cmds), str(args.runs)], env=env, timeout=1200)
        if r.returncode != 0:
            print(r.stderr, file=sys.stderr)
            return 1
        result = json.loads(r.stdout)
        print(f"{args.agents} demo agents, {args.runs} runs each, {m.run(['nproc']).stdout.strip()} cores\n")
        print("| command | median | p90 |\n| --- | ---: | ---: |")
        for name, v in result.items():
            print(f"| `{name}` | {v['median_ms']:.0f} ms | {v['p90_ms']:.0f} ms |")
        m.run([py, "-m", "fleetctl", "uninstall", "--purge"], env=env, timeout=300)
    finally:
        m.stop()
        subprocess.run(["rm", "-rf", str(profiles)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
