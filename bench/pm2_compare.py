"""Benchmark: `fleetctl status --json` against `pm2 jlist` and `systemctl --user list-units`,
the same demo agents under each, in one test bed, commands interleaved round by round.

Run as root:  python3 bench/pm2_compare.py [--agents 50 200] [--rounds 15] [--idle-seconds 10]

For each fleet size N: N demo agents installed by fleetctl (user units) and N more started by
PM2 (same `python -m fleetctl.demo_agent` command, FLEET_PORT/FLEET_AGENT in the environment),
all as the bed's normal user. PM2 comes from the npm registry into a private prefix
(`npm install --prefix DIR pm2@latest`, on the host network, before the bed starts) and runs
with a private PM2_HOME; its daemon is killed at the end. Without `npm`, PM2 is left out.

fleetctl runs as the quickstart installs it: the bed's user runs ./install.sh in a copy of this
checkout (a fresh venv in ~/.local/share/fleetctl, the system's python3), so the interpreter
starts without this machine's site hooks (an editable install's import finder, a CA-bundle .pth)
and with the package's .pyc files; the agents of both managers run that venv's Python. Each
round runs every command once, in a shuffled order, so load drifts hit all of them alike. Wall
time of whole commands, interpreter start-up included; median and p90. Also prints the idle CPU
of the fleetctl agents (user + system time over --idle-seconds, per agent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from usermanager import UserManager, free_port, install_as_user  # noqa: E402

# Runs inside the namespaces as the user: `rounds` rounds, each command once per round.
TIMER = r"""
import json, random, statistics, subprocess, sys, time
cmds = json.loads(sys.argv[1]); rounds = int(sys.argv[2]); samples = {n: [] for n in cmds}
for _ in range(rounds):
    order = list(cmds); random.shuffle(order)
    for name in order:
        t = time.perf_counter()
        subprocess.run(cmds[name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples[name].append((time.perf_counter() - t) * 1000)
out = {}
for name, s in samples.items():
    s.sort()
    out[name] = {"median_ms": statistics.median(s), "p90_ms": s[max(0, int(len(s) * 0.9) - 1)]}
print(json.dumps(out))
"""

# Runs inside the namespaces: CPU ticks of every process whose command line names `marker`,
# over `seconds` of idling. Prints ms of CPU per process per second.
IDLE_CPU = r"""
import os, sys, time
marker, seconds = sys.argv[1], float(sys.argv[2]); hz = os.sysconf("SC_CLK_TCK")
def ticks():
    out = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == os.getpid():
            continue
        try:
            if marker.encode() not in open(f"/proc/{pid}/cmdline", "rb").read():
                continue
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            out[pid] = int(f[11]) + int(f[12])
        except OSError:
            pass
    return out
a = ticks(); time.sleep(seconds); b = ticks()
common = [p for p in a if p in b]
total = sum(b[p] - a[p] for p in common)
print(len(common), total * 1000 / hz / seconds / max(1, len(common)))
"""

# Runs inside the namespaces: waits until every port answers /health.
WAIT_HEALTHY = r"""
import sys, time, urllib.request
ports = [int(p) for p in sys.argv[1].split(",")]; deadline = time.monotonic() + float(sys.argv[2])
while ports and time.monotonic() < deadline:
    left = []
    for p in ports:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{p}/health", timeout=1).read()
        except Exception:
            left.append(p)
    ports = left
    if ports:
        time.sleep(0.5)
sys.exit(1 if ports else 0)
"""


def install_pm2(prefix: Path) -> Path | None:
    """PM2 from the npm registry into a private prefix; its CLI, or None without npm."""
    npm = shutil.which("npm")
    if not npm:
        return None
    prefix.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "pm2@latest"],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    os.chmod(prefix, 0o755)  # the bed's user runs it
    return prefix / "node_modules" / ".bin" / "pm2"


def pm2_version(pm2: Path) -> str:
    pkg = pm2.parent.parent / "pm2" / "package.json"
    return str(json.loads(pkg.read_text())["version"])


def stats(samples: dict[str, dict[str, float]], name: str) -> str:
    v = samples[name]
    return f"{v['median_ms']:.0f} ms (p90 {v['p90_ms']:.0f})"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, nargs="+", default=[50, 200])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--idle-seconds", type=float, default=10.0)
    ap.add_argument("--no-pm2", action="store_true", help="leave PM2 out even when npm is there")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="fleetctl-pm2-bench-"))
    os.chmod(work, 0o755)
    pm2 = None if args.no_pm2 else install_pm2(work / "pm2")
    version = pm2_version(pm2) if pm2 is not None else ""
    m = UserManager()
    results: list[tuple[int, dict[str, dict[str, float]], tuple[int, float]]] = []
    try:
        m.start()
        py = str(install_as_user(m, REPO))
        fleetctl = str(Path(py).parent / "fleetctl")
        env = m.ns_env(FLEETCTL_QUIET_ROOT="1")
        pm2_home = m.home / ".pm2-bench"
        env_pm2 = {**env, "PM2_HOME": str(pm2_home)}
        for n in args.agents:
            profiles = m.home / f"profiles-{n}"
            profiles.mkdir()
            (profiles / "fleet.toml").write_text(
                '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n'
                "[defaults.health]\nstartup_grace = 300\n"
            )
            for i in range(n):
                (profiles / f"agent{i:03d}.toml").write_text(f"port = {free_port()}\n")
            m.give(profiles)
            r = m.run([fleetctl, "install", str(profiles)], env=env, timeout=1200)
            if r.returncode != 0:
                print(r.stdout, r.stderr, file=sys.stderr)
                return 1
            status = [fleetctl, "status", "--json", "--profiles", str(profiles)]
            cmds = {
                "fleetctl status --json": status,
                "systemctl --user list-units 'fleet-*'": ["systemctl", "--user", "list-units", "fleet-*"],
                # The floor under any Python command on this machine (site hooks included).
                "python -c pass": [py, "-c", "pass"],
            }
            if pm2 is not None:
                ports = [free_port() for _ in range(n)]
                apps = [
                    {
                        "name": f"pm2agent{i:03d}",
                        "script": py,
                        "args": ["-m", "fleetctl.demo_agent"],
                        "interpreter": "none",
                        "autorestart": True,
                        "env": {"FLEET_PORT": str(p), "FLEET_AGENT": f"pm2agent{i:03d}"},
                    }
                    for i, p in enumerate(ports)
                ]
                eco = m.home / f"pm2-{n}.json"
                eco.write_text(json.dumps({"apps": apps}))
                pm2_home.mkdir(exist_ok=True)
                m.give(eco, pm2_home)
                r = m.run([str(pm2), "start", str(eco)], env=env_pm2, timeout=1200)
                if r.returncode != 0:
                    print(r.stdout[-2000:], r.stderr[-2000:], file=sys.stderr)
                    return 1
                ok = m.run([py, "-c", WAIT_HEALTHY, ",".join(map(str, ports)), "300"], env=env, timeout=400)
                if ok.returncode != 0:
                    print(f"PM2's {n} agents did not all answer /health", file=sys.stderr)
                    return 1
                cmds["pm2 jlist"] = ["env", f"PM2_HOME={pm2_home}", str(pm2), "jlist"]
            time.sleep(5)  # let start-up settle before measuring idle CPU and timing
            idle_argv = [py, "-c", IDLE_CPU, "fleetctl.demo_agent", str(args.idle_seconds)]
            idle = m.run(idle_argv, env=env, timeout=120)
            count, ms = idle.stdout.split()
            r = m.run([py, "-c", TIMER, json.dumps(cmds), str(args.rounds)], env=env, timeout=3600)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
            results.append((n, json.loads(r.stdout), (int(count), float(ms))))
            if pm2 is not None:
                m.run([str(pm2), "delete", "all"], env=env_pm2, timeout=600)
            m.run([fleetctl, "uninstall", "--purge"], env=env, timeout=600)
        if pm2 is not None:
            m.run([str(pm2), "kill"], env=env_pm2, timeout=120)
        cores = m.run(["nproc"]).stdout.strip()
    finally:
        m.stop()
        shutil.rmtree(work, ignore_errors=True)

    load = os.getloadavg()
    print(f"{cores} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    if pm2 is not None:
        print(f"PM2 {version}")
    print(f"{args.rounds} rounds, commands interleaved; median (p90)\n")
    names = list(results[0][1])
    print("| | " + " | ".join(f"{n} agents" for n, _, _ in results) + " |")
    print("|---|" + "---:|" * len(results))
    for name in names:
        print(f"| `{name}` | " + " | ".join(stats(s, name) for _, s, _ in results) + " |")
    fc = "fleetctl status --json"
    for other in [o for o in names if o not in (fc, "python -c pass")]:
        cells = [f"{s[fc]['median_ms'] / s[other]['median_ms']:.2f}" for _, s, _ in results]
        print(f"| fleetctl ÷ {other.split(' ')[0]} | " + " | ".join(cells) + " |")
    print(
        "| idle CPU per demo agent | "
        + " | ".join(f"{ms:.3f} ms/s ({count} procs)" for _, _, (count, ms) in results)
        + " |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
