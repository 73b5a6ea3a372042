"""Benchmark: the dashboard's page load with 50 demo agents and 10,000 incidents.

Run as root:  python3 bench/dashboard_bench.py [--agents 50] [--incidents 10000] [--runs 10]
Installs the agents in the test manager, writes the incident log, serves `fleetctl dashboard`
inside the manager's namespaces and loads the page in headless Chromium (/usr/bin/chromium):
the time from navigation to the page having rendered every panel from its JSON (agents with a
live D-Bus read and health probe of each, cron, alerts, the feed's first page). Each load waits
out the server's 1 s snapshot cache, so every one pays for the D-Bus read and the probes. Also
times the JSON twins alone. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from conftest import Fleetctl  # noqa: E402
from dashboard_support import browser, dashboard  # noqa: E402
from usermanager import UserManager  # noqa: E402


def write_incidents(state: Path, n: int, agents: list[str]) -> None:
    state.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - n * 60
    with (state / "incidents.jsonl").open("w") as f:
        for i in range(n):
            ts = t0 + i * 60
            rec = {
                "schema": 1,
                "ts": ts,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
                "agent": agents[i % len(agents)],
                "symptom": "health check failed: timeout after 2s",
                "action": "restart",
                "verification": "healthy",
                "detail": "healthy 0.4s after restart",
                "provider": "rules",
            }
            f.write(json.dumps(rec) + "\n")


def stats(samples: list[float]) -> tuple[float, float]:
    samples = sorted(samples)
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.9) - 1)]


def main() -> int:
    import httpx

    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cold-json", action="store_true", help="Time the JSON twins right after start.")
    args = ap.parse_args()
    profiles = Path(tempfile.mkdtemp(prefix="fleetctl-dash-bench-"))
    (profiles / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
        "[defaults.health]\nstartup_grace = 120\n"
    )
    names = [f"agent{i:02d}" for i in range(args.agents)]
    for i, n in enumerate(names):
        (profiles / f"{n}.toml").write_text(f"port = {48520 + 20 * i}\n")
    m = UserManager()
    try:
        m.start()
        fc = Fleetctl(m)
        fc("install", str(profiles), timeout=900)
        write_incidents(m.home / ".local/state/fleetctl", args.incidents, names)
        rows: list[tuple[str, float, float]] = []
        with dashboard(fc, "--profiles", str(profiles)) as srv, browser() as page:
            if args.cold_json:  # where the first load's time goes: the server's cold start
                for path in ("/agents.json", "/feed.json", "/alerts.json", "/agents.json"):
                    t = time.perf_counter()
                    httpx.get(srv.url + path, trust_env=False, timeout=60).raise_for_status()
                    print(f"cold {path}: {(time.perf_counter() - t) * 1000:.0f} ms", file=sys.stderr)
            t = time.perf_counter()
            page.goto(srv.url + "/")
            page.wait_for_selector("body[data-loaded=yes]", timeout=60_000)
            first = (time.perf_counter() - t) * 1000
            shown = page.locator("#agents tbody tr").count()
            assert shown == args.agents, f"{shown} rows shown"
            loads = []
            for _ in range(args.runs):
                time.sleep(1.1)  # past the snapshot cache: each load reads D-Bus and probes anew
                t = time.perf_counter()
                page.goto(srv.url + "/")
                page.wait_for_selector("body[data-loaded=yes]", timeout=60_000)
                loads.append((time.perf_counter() - t) * 1000)
            rows.append(("page load, first after start (incident log parsed)", first, first))
            rows.append(("page load (all panels rendered)", *stats(loads)))
            for path in ("/agents.json", "/feed.json", "/feed.json?page=200", "/agent/agent07.json"):
                samples = []
                for _ in range(args.runs):
                    time.sleep(1.1)
                    t = time.perf_counter()
                    r = httpx.get(srv.url + path, trust_env=False, timeout=60)
                    samples.append((time.perf_counter() - t) * 1000)
                    r.raise_for_status()
                rows.append((f"`GET {path}`", *stats(samples)))
        print(f"{args.agents} agents, {args.incidents} incidents, {args.runs} runs\n")
        print("| what | median | p90 |\n| --- | ---: | ---: |")
        for what, med, p90 in rows:
            print(f"| {what} | {med:.0f} ms | {p90:.0f} ms |")
        fc("uninstall", "--purge", check=False)
        return 0
    finally:
        m.stop()


if __name__ == "__main__":
    sys.exit(main())
