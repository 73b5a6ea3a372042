"""Benchmark: one `fleetctl oversee` pass over a large fleet with some agents hung.

Run as root:  python3 bench/oversee_bench.py [--agents 200] [--hung 10] [--timeout 2] [--runs 3]

AGENTS demo agents in the test bed (as its normal user), every one reporting usage at
`/usage` (so the rate-limit and fallback checks ask each of them), health timeout TIMEOUT.
Times `fleetctl oversee --json` with the whole fleet healthy, then with HUNG agents frozen
(SIGSTOP). A pass should cost about one health timeout more than a healthy one, however
many agents hang: probes and usage requests run at once, and an agent whose health probe
failed is not asked for its usage (agent-down already says it is down).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from usermanager import UserManager, free_port  # noqa: E402

from fleetctl.systemd.manager import SystemdManager  # noqa: E402

FLEET = """[defaults]
command = ["{python}", "-m", "fleetctl.demo_agent"]
[defaults.health]
timeout = %(timeout)s
startup_grace = 5
[defaults.oversight]
usage_path = "/usage"
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=200)
    ap.add_argument("--hung", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    py = sys.executable
    subprocess.run(
        [py, "-m", "compileall", "-q", str(REPO / "fleetctl")], check=True, stdout=subprocess.DEVNULL
    )
    m = UserManager()
    try:
        m.start()
        env = m.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))
        profiles = m.home / "profiles"
        profiles.mkdir()
        (profiles / "fleet.toml").write_text(FLEET % {"timeout": args.timeout})
        names = [f"a{i:03d}" for i in range(args.agents)]
        for n in names:
            (profiles / f"{n}.toml").write_text(f"port = {free_port()}\n")
        m.give(profiles)
        r = m.run([py, "-m", "fleetctl", "install", str(profiles)], env=env, timeout=1800)
        if r.returncode != 0:
            print(r.stdout, r.stderr, file=sys.stderr)
            return 1
        oversee = [py, "-m", "fleetctl", "oversee", "--json", "--profiles", str(profiles)]

        def passes() -> tuple[list[float], dict]:  # type: ignore[type-arg]
            walls, report = [], {}
            for _ in range(args.runs):
                t = time.monotonic()
                out = m.run(oversee, env=env, timeout=600)
                walls.append(time.monotonic() - t)
                report = json.loads(out.stdout)
            return walls, report

        time.sleep(6)  # past the start-up grace
        healthy, _ = passes()
        victims = random.Random(1).sample(names, args.hung)
        with m.as_user():  # the user's dbus-daemon admits only its own uid
            mgr = SystemdManager(m.bus_address)
        with mgr:
            for n in victims:
                mgr.kill(f"fleet-{n}.service", signal.SIGSTOP)
        hung, report = passes()
        # agent-down is paged, or held back while the watchdog may still fix it: seen either way.
        seen_down = report.get("violations", []) + report.get("suppressed", [])
        down = sorted({v["agent"] for v in seen_down if v.get("check") == "agent-down"})
        held_back = len([v for v in report.get("suppressed", []) if v.get("check") == "agent-down"])
        with m.as_user():
            mgr = SystemdManager(m.bus_address)
        with mgr:
            for n in victims:
                mgr.kill(f"fleet-{n}.service", signal.SIGCONT)
        m.run([py, "-m", "fleetctl", "uninstall", "--purge"], env=env, timeout=900)
        cores = m.run(["nproc"]).stdout.strip()
    finally:
        m.stop()
    seen = "all" if set(victims) <= set(down) else f"{len(set(victims) & set(down))}"
    print(f"{args.agents} agents, {args.runs} passes each, {cores} cores; wall time, interpreter included\n")
    print("| | median | max |\n| --- | ---: | ---: |")
    print(f"| `fleetctl oversee`, all healthy | {statistics.median(healthy):.2f} s | {max(healthy):.2f} s |")
    print(
        f"| `fleetctl oversee`, {args.hung} hung (health timeout {args.timeout:g} s) | "
        f"{statistics.median(hung):.2f} s | {max(hung):.2f} s |"
    )
    print(f"\nhung agents seen as agent-down: {seen} of {args.hung} ({held_back} held back for the watchdog)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
