"""One watchdog run: lock, look at every agent, handle the confirmed failures in parallel, record.

Overlapping runs (a slow run and the next cron tick) must never both act: the second one finds
the flock taken and exits at once (LockedError, exit 75). The lock dies with its holder, so a
run killed by SIGKILL never blocks the next one.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.locks import file_lock
from fleetctl.fleet.profiles import Fleet, load_fleet
from fleetctl.healing import backoff, incidents
from fleetctl.healing import state as state_mod
from fleetctl.healing.evidence import FleetEnv, providers
from fleetctl.healing.observe import CONFIRM_INTERVAL, CONFIRM_ROUNDS, Observation, confirm, observe
from fleetctl.healing.record import Recorder
from fleetctl.healing.remedy import Ctx
from fleetctl.healing.respond import Result, flap_hold, respond
from fleetctl.systemd.manager import SystemdManager

LOCK_FILE = "watchdog.lock"
MAX_WORKERS = 16  # agents handled at once; each holds a D-Bus connection and maybe an LLM call

Say = Callable[[str], None]


@dataclass
class RunReport:
    time: float
    duration: float = 0.0
    agents_checked: int = 0
    counts: dict[str, int] = field(default_factory=dict)  # status -> agents
    records: list[dict[str, Any]] = field(default_factory=list)  # incidents written this run
    held: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def actions(self) -> int:
        return sum(1 for r in self.records if r["action"] != "none")

    @property
    def ok(self) -> bool:
        """Nothing needs a human: no agent held, every fix verified (or waiting), no errors."""
        bad = [r for r in self.records if r["verification"] not in ("healthy", "waiting")]
        return not (bad or self.held or self.problems)

    def heartbeat(self) -> dict[str, Any]:
        return {
            "time": incidents.iso(self.time),
            "ts": self.time,
            "ok": self.ok,
            "agents_checked": self.agents_checked,
            "actions": self.actions,
            "duration_s": round(self.duration, 2),
            "held": self.held,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            **self.heartbeat(),
            "counts": self.counts,
            "incidents": self.records,
            "problems": self.problems,
        }


def lock_path() -> Path:
    return paths.state_dir() / LOCK_FILE


def run(
    profiles_dir: Path,
    say: Say = print,
    confirm_rounds: int = CONFIRM_ROUNDS,
    confirm_interval: float = CONFIRM_INTERVAL,
) -> RunReport:
    fleet = load_fleet(profiles_dir)  # a broken profile is reported before taking the lock
    with file_lock(lock_path(), "fleetctl watchdog"):
        from fleetctl.lifecycle.cron import rotate_log

        rotate_log()
        return _Run(fleet, say).go(confirm_rounds, confirm_interval)


class _Run:
    def __init__(self, fleet: Fleet, say: Say) -> None:
        self.fleet = fleet
        self.report = RunReport(time=time.time())
        self.state, problem = state_mod.load()
        # Cron runs this every minute: a healthy fleet must cost no writes but the heartbeat.
        self._saved = self.state.to_json()
        if problem:
            self.report.problems.append(problem)
        self.fenv = FleetEnv.load(fleet)
        self.report.problems += self.fenv.problems
        self.chain = providers(self.fenv.env, fleet.settings)
        self._lock = threading.Lock()
        self._say = say
        self.recorder = Recorder(uuid.uuid4().hex[:12], self.fenv)

    def say(self, line: str) -> None:
        with self._lock:
            self._say(line)

    def save(self) -> None:
        with self._lock:
            text = self.state.to_json()
            if text != self._saved:
                state_mod.save(self.state)
                self._saved = text

    def go(self, rounds: int, interval: float) -> RunReport:
        started = time.monotonic()
        with SystemdManager() as mgr:
            seen = observe(mgr, self.fleet.profiles)
            suspects, flapping = self._triage(seen)
            self.save()
            confirmed = confirm(mgr, suspects, rounds, interval, first_look=started)
        for name in sorted(set(suspects) - set(confirmed)):
            self.report.counts["recovered"] = self.report.counts.get("recovered", 0) + 1
            self.say(f"{name}: {suspects[name].symptom}, but fine on a second look; no action")
        work = [(o, True) for o in confirmed.values()] + [(o, False) for o in flapping.values()]
        if work:
            with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(work))) as pool:
                list(pool.map(lambda w: self._handle(*w), work))
        self.report.held = sorted(
            n for n, st in self.state.agents.items() if st.held and n in self.fleet.names
        )
        self.report.duration = time.monotonic() - started
        self.save()
        write_atomic(paths.heartbeat_file("watchdog"), json.dumps(self.report.heartbeat()) + "\n", 0o600)
        return self.report

    def _triage(self, seen: dict[str, Observation]) -> tuple[dict[str, Observation], dict[str, Observation]]:
        """Bookkeeping for every agent; returns (suspected failures, flapping agents)."""
        now = time.time()
        suspects: dict[str, Observation] = {}
        flapping: dict[str, Observation] = {}
        for name, o in seen.items():
            self.report.counts[o.status] = self.report.counts.get(o.status, 0) + 1
            if o.status == "not-installed":
                continue
            self.report.agents_checked += 1
            st = self.state.agent(name)
            by_systemd = backoff.observe_n_restarts(st, o.info.n_restarts, now)
            if st.held:
                self.say(
                    f"{name}: held since {incidents.iso(st.held.since)} ({st.held.reason}); "
                    f"`fleetctl ack {name}` to resume"
                )
                continue
            if o.status == "failing":
                suspects[name] = o
                continue
            if backoff.would_flap(st, o.profile.restart.max_restarts_per_hour, now):
                flapping[name] = o
                continue
            if o.status == "healthy":
                backoff.note_healthy(st, o.uptime, now)
                if by_systemd:
                    symptom = f"restarted by systemd {by_systemd} time(s) since the last run"
                    self._record(o, Result("none", "healthy", "healthy now; no action"), {}, symptom, now)
        return suspects, flapping

    def _handle(self, o: Observation, failing: bool) -> None:
        started = time.monotonic()
        name = o.profile.name
        st = self.state.agent(name)
        try:
            with SystemdManager() as mgr:
                ctx = Ctx(self.fleet, o.profile, st, mgr, self.fenv, self.save, self.say)
                if failing:
                    result, diag = respond(ctx, o, self.chain)
                else:
                    count = backoff.restarts_last_hour(st, time.time())
                    result, diag = flap_hold(ctx, count), {}
        except Exception as e:  # one agent's trouble must not cost the others their turn
            problem = f"{name}: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}"
            with self._lock:
                self.report.problems.append(problem)
            result, diag = Result("error", "failed", problem), {}
        symptom = o.symptom if failing else "too many restarts"
        self._record(o, result, diag, symptom, time.time(), time.monotonic() - started)

    def _record(
        self,
        o: Observation,
        result: Result,
        diag: dict[str, Any],
        symptom: str,
        now: float,
        duration: float = 0.0,
    ) -> None:
        rec = self.recorder.record(o.profile, result, diag, symptom, now, duration)
        with self._lock:
            self.recorder.write(rec)
            self.report.records.append(rec)
            self._say(self.recorder.line(rec))
