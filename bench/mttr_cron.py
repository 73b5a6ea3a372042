"""Benchmark: the watchdog as cron really runs it, at default settings.

Run as root:  python3 bench/mttr_cron.py [--trials 12] [--cpu-runs 10]

In the systemd test manager (tests/usermanager.py), with fleetctl's defaults (watchdog every
minute, health timeout 2 s, three looks 1 s apart before acting, no LLM keys: the rules decide):

1. Steady-state CPU: the installed crontab line, run as cron runs it (bare environment,
   /bin/sh -c, fresh interpreter), over 6 and over 50 healthy demo agents; user+system CPU
   of the run and everything it starts, per run and per day (1440 runs).
2. Hang MTTR: a real `cron -f` runs the installed line every minute. Each trial freezes a
   fresh agent (SIGSTOP) at a random second of the minute and times fault -> health endpoint
   answers again. Every trial is listed; p50/p95/max printed.

Self-contained: cron runs inside the test bed's namespaces, in a mount namespace of its own
whose /run is private (so its pid-file lock cannot meet another cron on this host) with the
bed's /run/user, /run/systemd and /run/log bound back in. Tearing the bed down ends it.
"""

from __future__ import annotations

import argparse
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from usermanager import UserManager, free_port  # noqa: E402

from fleetctl.probes.health import probe  # noqa: E402
from fleetctl.systemd.manager import SystemdManager  # noqa: E402

# The shipped example's [defaults] (profiles/fleet.toml) minus the memory cap: default timing.
DEFAULTS = """[defaults]
command = ["{python}", "-m", "fleetctl.demo_agent"]
workspace = "~/agents/{name}/workspace"
config_dir = "~/agents/{name}/config"
[defaults.health]
path = "/health"
[defaults.config]
file = "config.json"
format = "json"
"""
CRON_ENV = ["PATH=/usr/bin:/bin", "SHELL=/bin/sh", "LOGNAME=root"]
CRON_SHELL = r"""
set -eu
old=$(mktemp -d /tmp/fleetctl-cronbench.XXXXXX)
mount --rbind /run "$old"
mount -t tmpfs -o mode=755 tmpfs /run
for d in user systemd log; do mkdir -p /run/$d; mount --rbind "$old/$d" /run/$d; done
exec cron -f
"""


class Bed:
    def __init__(self, m: UserManager, root: Path) -> None:
        self.m, self.root = m, root
        self.env = m.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))
        self.ports: dict[str, int] = {}

    def profiles(self, folder: str, names: list[str]) -> Path:
        d = self.root / folder
        d.mkdir(parents=True, exist_ok=True)
        (d / "fleet.toml").write_text(DEFAULTS)
        for n in names:
            self.ports.setdefault(n, free_port())
            (d / f"{n}.toml").write_text(f"port = {self.ports[n]}\n")
            cfg = self.m.home / "agents" / n / "config"
            cfg.mkdir(parents=True, exist_ok=True)
            (cfg / "config.json").write_text('{"greeting": "hi"}')
        return d

    def py(self, code: str, timeout: float = 900) -> str:
        r = self.m.run([sys.executable, "-c", code], env=self.env, timeout=timeout)
        if r.returncode:
            raise SystemExit(f"python -c failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def cli(self, *args: str, timeout: float = 900) -> str:
        r = self.m.run([sys.executable, "-m", "fleetctl", *args], env=self.env, timeout=timeout)
        if r.returncode not in (0, 2):
            raise SystemExit(f"fleetctl {' '.join(args)} exited {r.returncode}:\n{r.stdout}\n{r.stderr}")
        return r.stdout

    def install_cron(self, profiles: Path) -> str:
        """Install fleetctl's block for `profiles` at the fleet's own interval; its watchdog command."""
        self.py(
            "from pathlib import Path; from fleetctl.lifecycle import cron; "
            "from fleetctl.fleet.profiles import load_fleet; "
            f"f = load_fleet(Path({str(profiles)!r})); "
            "s = f.settings; "
            "cron.install_block(s.watchdog_interval_minutes, s.oversight_interval_minutes, f.directory)"
        )
        listing = self.m.run(["crontab", "-l"], env=self.m.ns_env()).stdout
        (line,) = [ln for ln in listing.splitlines() if " watchdog --profiles " in ln]
        fields = line.split(None, 5)
        assert fields[:5] == ["*/1", "*", "*", "*", "*"], f"not every minute by default: {line}"
        return fields[5]

    def run_as_cron(self, command: str) -> tuple[float, float]:
        """(cpu seconds, wall seconds) of one run of the crontab command as cron would run it."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.monotonic()
        r = self.m.run(
            ["/usr/bin/env", "-i", *CRON_ENV, "HOME=/root", "/bin/sh", "-c", command], env=self.m.ns_env()
        )
        wall = time.monotonic() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode:
            raise SystemExit(f"cron line exited {r.returncode}: {r.stdout}{r.stderr}")
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), wall

    def healthy(self, name: str) -> bool:
        return probe(f"http://127.0.0.1:{self.ports[name]}/health", 0.5).ok

    def freeze(self, name: str) -> None:
        with SystemdManager(self.m.bus_address) as mgr:
            mgr.kill(f"fleet-{name}.service", signal.SIGSTOP)


def cpu(bed: Bed, runs: int) -> list[str]:
    names = [f"h{i:02d}" for i in range(50)]
    six = bed.profiles("six", names[:6])
    fifty = bed.profiles("fifty", names)
    bed.cli("install", str(fifty))
    time.sleep(21)  # past the default start-up grace (20 s): the watchdog looks at every agent
    rows = []
    for label, folder in (("6", six), ("50", fifty)):
        command = bed.install_cron(folder)
        bed.run_as_cron(command)  # first sight: records systemd's restart counters once
        samples = [bed.run_as_cron(command) for _ in range(runs)]
        cpu_s = statistics.mean(c for c, _ in samples)
        wall = statistics.mean(w for _, w in samples)
        log = (bed.m.home / ".local/state/fleetctl/cron.log").read_text()
        rows.append(
            f"| {label} | {cpu_s:.2f} s | {wall:.2f} s | {cpu_s * 1440 / 60:.1f} min "
            f"({cpu_s * 1440 / 864:.2f}% of one core) | {len(log)} bytes |"
        )
    bed.cli("uninstall")  # stops the 50 and removes the cron block
    return [
        f"{runs} runs each, as cron runs the installed line (fresh interpreter, bare environment)\n",
        "| healthy agents | CPU per run | wall per run | CPU per day (1440 runs) | cron.log after |",
        "| ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]


def mttr(bed: Bed, trials: int, spacing: float) -> list[str]:
    names = [f"m{i:02d}" for i in range(trials)]
    folder = bed.profiles("mttr", names)
    bed.cli("install", str(folder))
    bed.install_cron(folder)
    cron = subprocess.Popen(
        [*bed.m.nsenter_argv(), "unshare", "--mount", "--propagation", "private", "sh", "-c", CRON_SHELL],
        env=bed.m.ns_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    time.sleep(2)
    if cron.poll() is not None:
        out = cron.stdout.read().decode(errors="replace") if cron.stdout else ""
        raise SystemExit(f"cron -f exited {cron.returncode}: {out}")
    time.sleep(20)  # past the start-up grace
    rng = random.Random(11)
    results: dict[str, tuple[float, float]] = {}  # name -> (second of the minute, seconds to healthy)

    def trial(name: str, delay: float) -> None:
        time.sleep(delay)
        t0, wall0 = time.monotonic(), time.time()
        bed.freeze(name)
        time.sleep(0.5)
        deadline = t0 + 240
        while time.monotonic() < deadline and not bed.healthy(name):
            time.sleep(0.2)
        results[name] = (wall0 % 60, time.monotonic() - t0 if bed.healthy(name) else float("nan"))

    threads = [
        threading.Thread(target=trial, args=(n, i * spacing + rng.uniform(0, 60)), daemon=True)
        for i, n in enumerate(names)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=trials * spacing + 400)
    cron.terminate()  # our own process; the bed's teardown ends cron itself
    times = sorted(r for _, r in results.values())
    done = [t for t in times if t == t]
    p95 = done[min(len(done) - 1, max(0, round(0.95 * len(done)) - 1))] if done else float("nan")
    rows = [f"| {n} | :{int(s):02d} | {r:.1f} s |" for n, (s, r) in sorted(results.items())]
    return [
        f"{trials} trials; a real `cron -f` runs the installed line (`*/1 * * * *`); health timeout 2 s; "
        f"no LLM keys (the rules decide)\n",
        f"recovered {len(done)}/{trials}; p50 {statistics.median(done):.1f} s, p95 {p95:.1f} s, "
        f"max {max(done):.1f} s, mean {statistics.mean(done):.1f} s\n",
        "| agent | frozen at (second of the minute) | fault -> healthy |",
        "| --- | ---: | ---: |",
        *rows,
    ]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--spacing", type=float, default=20.0, help="seconds between trial starts (plus jitter)")
    ap.add_argument("--cpu-runs", type=int, default=10)
    ap.add_argument("--skip-cpu", action="store_true")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fleetctl-mttrbench-", dir="/home"))
    m = UserManager()
    try:
        m.start()
        bed = Bed(m, root)
        cores = m.run(["nproc"]).stdout.strip()
        out = []
        if not args.skip_cpu:
            out += [
                f"## Steady-state CPU of the minutely watchdog ({cores} cores)\n",
                *cpu(bed, args.cpu_runs),
                "",
            ]
        out += ["## Hang MTTR through real cron, default settings\n", *mttr(bed, args.trials, args.spacing)]
        print("\n".join(out))
    finally:
        m.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
