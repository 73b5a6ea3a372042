"""Benchmark: the watchdog in the systemd test manager.

Run as root:  python3 bench/watchdog_bench.py [--agents 100] [--hung 10] [--runs 3] [--trials 5] [--every 5]

1. RUNS `fleetctl watchdog` runs over AGENTS demo agents, each with HUNG other agents frozen
   (SIGSTOP); the median wall time should be a few health timeouts (every agent is probed at
   once, failures are confirmed together, fixes run in parallel), not AGENTS x timeout.
2. Mean time to recovery (fault -> health endpoint answers again) for a crash, a hang and a
   corrupted config, with the watchdog run every EVERY seconds (a fast cron). Each trial uses
   a fresh agent, so backoff from earlier trials never inflates a later one.

fleetctl and the demo agents run from a venv the bed's user installs with ./install.sh, as the
quickstart does, not from this interpreter: that way no agent start pays for this machine's
site hooks.

Prints Markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from usermanager import UserManager, free_port, install_as_user  # noqa: E402

from fleetctl.probes.health import probe  # noqa: E402
from fleetctl.systemd.manager import SystemdManager  # noqa: E402

FLEET = """[defaults]
command = ["{python}", "-m", "fleetctl.demo_agent"]
[defaults.health]
timeout = %(timeout)s
startup_grace = %(grace)s
[defaults.restart]
delay = 0.5
bad_config_exit_statuses = [78]
max_restarts_per_hour = 100
[defaults.config]
file = "config.json"
"""


class Bed:
    def __init__(self, m: UserManager, profiles: Path, python: Path) -> None:
        self.m, self.profiles, self.python = m, profiles, python
        self.env = m.ns_env(FLEETCTL_QUIET_ROOT="1")
        self.ports: dict[str, int] = {}
        self.wall = 0.0

    def fleet(self, names: list[str], timeout: float, grace: float, policy: dict[str, str]) -> None:
        self.profiles.mkdir(parents=True, exist_ok=True)
        (self.profiles / "fleet.toml").write_text(FLEET % {"timeout": timeout, "grace": grace})
        for n in names:
            self.ports[n] = free_port()
            extra = f'\n[restart]\npolicy = "{policy[n]}"\n' if n in policy else ""
            (self.profiles / f"{n}.toml").write_text(f"port = {self.ports[n]}\n{extra}")
            cfg = self.m.home / "agents" / n / "config"
            cfg.mkdir(parents=True, exist_ok=True)
            (cfg / "config.json").write_text('{"greeting": "hi"}')
        self.cli("install", str(self.profiles), timeout=900)

    def cli(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run fleetctl as the bed's user; self.wall: how long the command itself took."""
        self.m.give(self.profiles, self.m.home)  # written as root, read by the manager's user
        t = time.monotonic()
        r = self.m.run([str(self.python), "-m", "fleetctl", *args], env=self.env, timeout=timeout)
        self.wall = time.monotonic() - t
        if check and r.returncode not in (0, 2):
            raise SystemExit(f"fleetctl {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def watchdog_json(self) -> dict:  # type: ignore[type-arg]
        return json.loads(self.cli("watchdog", "--json", "--profiles", str(self.profiles)))

    def kill(self, name: str, sig: int) -> None:
        with self.m.as_user():  # the user's dbus-daemon admits only its own uid
            mgr = SystemdManager(self.m.bus_address)
        with mgr:
            mgr.kill(f"fleet-{name}.service", sig)

    def healthy(self, name: str) -> bool:
        return probe(f"http://127.0.0.1:{self.ports[name]}/health", 0.5).ok


def scale(bed: Bed, agents: int, hung: int, runs: int) -> list[str]:
    names = [f"a{i:03d}" for i in range(agents)]
    grace, timeout = 10, 2.0
    t = time.monotonic()
    bed.fleet(names, timeout, grace, {})
    installed = time.monotonic() - t
    # Each run freezes agents no earlier run touched: a restarted agent is young (start-up
    # grace) and has a restart on its record (backoff), and would be a different case.
    order = random.Random(1).sample(names, min(agents, hung * runs))
    walls: list[float] = []
    durations: list[float] = []
    all_fixed = True
    for k in range(runs):
        time.sleep(grace + 1)  # everyone past the start-up grace: the watchdog leaves younger ones alone
        victims = order[k * hung : (k + 1) * hung]
        for n in victims:
            bed.kill(n, signal.SIGSTOP)
        report = bed.watchdog_json()
        walls.append(bed.wall)  # not the chown of the home before it (give)
        durations.append(report["duration_s"])
        fixed = [r["agent"] for r in report["incidents"] if r["verification"] == "healthy"]
        all_fixed &= sorted(fixed) == sorted(victims) and all(bed.healthy(n) for n in names)
    each = ", ".join(f"{w:.2f}" for w in walls)
    wall = statistics.median(walls)
    return [
        f"| agents / hung | {agents} / {hung} |",
        f"| health timeout | {timeout:g} s |",
        f"| install (start + wait healthy) | {installed:.1f} s |",
        f"| `fleetctl watchdog` wall time, median of {runs} (incl. interpreter start) "
        f"| {wall:.2f} s ({each}) |",
        f"| run duration (its own report), median | {statistics.median(durations):.2f} s |",
        f"| ... as health timeouts | {wall / timeout:.2f} (sequential probing alone: {agents}) |",
        f"| hung agents restarted and verified | {'all' if all_fixed else 'NOT all'} "
        f"({hung} a run; all {agents} healthy after each) |",
    ]


def scheduler(bed: Bed, every: float, stop: threading.Event, busy: threading.Event) -> None:
    """A fast cron: start a run every `every` seconds (or at once if the last took longer).
    `busy` is set while a run is under way."""
    while not stop.is_set():
        started = time.monotonic()
        busy.set()
        bed.cli("watchdog", "--profiles", str(bed.profiles), check=False)
        busy.clear()
        stop.wait(max(0.0, started + every - time.monotonic()))


def mttr(bed: Bed, trials: int, every: float) -> list[str]:
    kinds = {
        "crash": "SIGKILL; systemd restarts it (Restart=on-failure)",
        "crashno": "SIGKILL, Restart=no: the watchdog restarts it",
        "hang": "SIGSTOP",
        "badcfg": "corrupt config + SIGKILL: exit 78, last-known-good restored",
    }
    names = [f"{k}{i}" for k in kinds for i in range(trials)]
    bed.fleet(names, 1.0, 3, {n: "no" for n in names if n.startswith("crashno")})
    for n in names:
        if n.startswith("badcfg"):  # a verified version: the last-known-good the watchdog restores
            good = bed.profiles.parent / f"{n}-good.json"
            good.write_text('{"greeting": "known good"}')
            bed.cli("config", "apply", n, str(good), "--profiles", str(bed.profiles))
    time.sleep(4)
    stop, busy = threading.Event(), threading.Event()
    th = threading.Thread(target=scheduler, args=(bed, every, stop, busy), daemon=True)
    th.start()
    rng = random.Random(2)
    results: dict[str, list[float]] = {k: [] for k in kinds}
    try:
        for kind in kinds:
            for i in range(trials):
                n = f"{kind}{i}"
                # Each trial on its own: a run that fixed the last one may still be under way (a
                # restored config is watched for its stable_window before it is last-known-good,
                # 10 s by default, and the run holds the lock meanwhile); a fault landing then
                # would time the earlier trial's run too.
                while busy.is_set():
                    time.sleep(0.05)
                time.sleep(rng.uniform(0, every))  # land anywhere in the schedule
                if kind == "badcfg":
                    (bed.m.home / "agents" / n / "config" / "config.json").write_text('{"greeting": ')
                t = time.monotonic()
                bed.kill(n, signal.SIGSTOP if kind == "hang" else signal.SIGKILL)
                time.sleep(0.2)
                deadline = t + 120
                while not bed.healthy(n) and time.monotonic() < deadline:
                    time.sleep(0.05)
                results[kind].append(time.monotonic() - t if bed.healthy(n) else float("nan"))
    finally:
        stop.set()
        th.join(timeout=120)
    rows = [
        f"| {kind} ({what}) | {statistics.mean(r):.1f} s | {min(r):.1f} s | {max(r):.1f} s |"
        for (kind, what), r in ((kw, results[kw[0]]) for kw in kinds.items())
    ]
    return [
        f"{trials} trials each; watchdog every {every:g} s; health timeout 1 s, start-up grace 3 s\n",
        "| fault | mean time to recovery | min | max |",
        "| --- | ---: | ---: | ---: |",
        *rows,
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=100)
    ap.add_argument("--hung", type=int, default=10)
    ap.add_argument(
        "--runs", type=int, default=3, help="watchdog runs over the large fleet, each with new hung agents"
    )
    ap.add_argument("--trials", type=int, default=5)
    ap.add_argument("--every", type=float, default=5.0)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fleetctl-wdbench-"))
    m = UserManager()
    try:
        m.start()
        cores = m.run(["nproc"]).stdout.strip()
        python = install_as_user(m, REPO)  # fleetctl and its agents as the quickstart installs them
        bed = Bed(m, tmp / "scale", python)
        out: list[str] = []
        if args.runs > 0:  # --runs 0: the recovery times only
            out = [f"## One watchdog run over a large fleet ({cores} cores)\n", "| | |", "| --- | ---: |"]
            out += scale(bed, args.agents, args.hung, args.runs)
            bed.cli("uninstall", "--purge", check=False)
        if args.trials > 0:  # --trials 0: the large-fleet run only
            bed2 = Bed(m, tmp / "mttr", python)
            out += ["", "## Mean time to recovery\n", *mttr(bed2, args.trials, args.every)]
            bed2.cli("uninstall", "--purge", check=False)
        print("\n".join(out))
    finally:
        m.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
