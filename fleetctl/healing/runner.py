"""The body of one watchdog run, after run.py has taken the lock and sent the first look:
triage, confirmation, the confirmed failures handled in parallel, the records and the state."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.diagnosis import rules
from fleetctl.diagnosis.providers import preload
from fleetctl.fleet.profiles import Fleet
from fleetctl.healing import backoff, changes, evidence, incidents, intent, restarts
from fleetctl.healing import state as state_mod
from fleetctl.healing.evidence import providers
from fleetctl.healing.observe import Look, Observation, confirm, observe_ahead
from fleetctl.healing.record import Recorder
from fleetctl.healing.remedy import Ctx
from fleetctl.healing.report import RunReport, Say
from fleetctl.healing.respond import Result, flap_hold, respond
from fleetctl.secrets import known
from fleetctl.systemd import mask
from fleetctl.systemd.manager import SystemdManager

MAX_WORKERS = 16  # agents handled at once; each holds a D-Bus connection and maybe an LLM call


def _installed_at() -> float | None:
    """When the fleet was last installed (the manifest's mtime); None if unknown."""
    from fleetctl.lifecycle import manifest

    try:
        return manifest.manifest_path().stat().st_mtime
    except OSError:
        return None


class Runner:
    def __init__(self, fleet: Fleet, say: Say) -> None:
        self.fleet = fleet
        self.report = RunReport(time=time.time())
        self.state, problem = state_mod.load()
        # Cron runs this every minute: a healthy fleet must cost no writes but the heartbeat.
        self._saved = self.state.to_doc(with_last_look=False)
        # save(): asked (tickets handed out), written (the last ticket a write covered), writing.
        self._save_cv = threading.Condition()
        self._save_asked = self._save_written = 0
        self._save_busy = False
        self._intents: list[dict[str, Any]] = []  # intent records for the next save to append first
        if problem:
            self.report.problems.append(problem)
        self.fenv = known.load(fleet)
        self.report.problems += self.fenv.problems
        self.chain = providers(self.fenv.env, fleet.settings)
        self._lock = threading.Lock()
        self._say = say
        self.recorder = Recorder(uuid.uuid4().hex[:12], self.fenv)

    def say(self, line: str) -> None:
        # What is said ends up in cron.log: scrubbed like everything else that is stored.
        with self._lock:
            self._say(self.fenv.mask(line))

    def save(self) -> None:
        """On disk when this returns: every change made before the call.

        Written only when something but the time of the last look changed: a healthy pass
        every minute writes nothing but its heartbeat. (An unsaved last_look is harmless:
        restarts are counted from NRestarts; the journal only dates them, and no restart
        happened in a pass that found the counters unchanged.)

        Agents are handled in parallel and each one saves before it acts, so saves come in
        waves: a caller that finds a write under way waits for the next one, which covers its
        change too. One write serves the wave instead of one each: the intents queued so far
        (one append, one fsync) and then the state (one file), where every agent's intent and
        state had cost their own fsyncs, one agent after the other.
        """
        with self._save_cv:
            self._save_asked += 1
            ticket = self._save_asked
            while self._save_busy and self._save_written < ticket:
                self._save_cv.wait()
            if self._save_written >= ticket:
                return  # a write that began after this call covered it
            # Taken together under the lock that _intend queues and sets an intent under: the
            # state written below holds no intent whose record is not appended before it.
            # Sees every change made before a call up to `upto`.
            doc, looks = self.state.to_doc(with_last_look=False), self.state.last_looks()
            records, self._intents = self._intents, []
            upto = self._save_asked
            self._save_busy = True
        written = False
        try:
            if records:
                with self._lock:  # one writer of the incident log at a time
                    incidents.append_many(records)
            if doc != self._saved:
                state_mod.save_doc(state_mod.with_last_looks(doc, looks))
                self._saved = doc
            written = True
        finally:
            with self._save_cv:
                self._save_busy = False
                if written:
                    self._save_written = max(self._save_written, upto)
                elif records:  # the next writer tries them again: nobody acts before they are on disk
                    self._intents[:0] = records
                self._save_cv.notify_all()

    def go(self, mgr: SystemdManager, first: Look, started: float, rounds: int, interval: float) -> RunReport:
        """`first`: the first look, sent at `started` (time.monotonic()) over `mgr`."""
        seen, ahead = observe_ahead(mgr, self.fleet.profiles, rounds, interval, first=first)
        self._close_interrupted(seen)
        suspects, flapping = self._triage(seen, mgr)
        self.save()
        # A failure to confirm may need the LLMs: their SDKs load while the looks run, and
        # the evidence (log tail, config check, earlier incidents; read-only) is read
        # meanwhile too, so that a confirmed failure is diagnosed at once. The LLMs are
        # asked only once it is confirmed.
        collected: dict[str, Future[evidence.Collected]] = {}
        if suspects:
            preload(self.chain)
            readers = ThreadPoolExecutor(min(MAX_WORKERS, len(suspects)), thread_name_prefix="evidence")
            readers.submit(self._prepare_diagnosis)
            now = time.time()
            collected = {  # an agent in backoff needs none: it is answered "wait" (respond.py)
                n: readers.submit(evidence.collect, o.profile)
                for n, o in suspects.items()
                if not backoff.in_backoff(self.state.agent(n), now)
            }
            readers.shutdown(wait=False)  # its threads end with the last read
        confirmed = confirm(mgr, suspects, rounds, interval, first_look=started, ahead=ahead)
        for name in sorted(set(suspects) - set(confirmed)):
            self.report.counts["recovered"] = self.report.counts.get("recovered", 0) + 1
            self.say(f"{name}: {suspects[name].symptom}, but fine on a second look; no action")
        work = [(o, True) for o in confirmed.values()] + [(o, False) for o in flapping.values()]
        if work:
            with ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(work))) as pool:
                list(pool.map(lambda w: self._handle(w[0], w[1], collected.get(w[0].profile.name)), work))
        self.report.held = sorted(
            n for n, st in self.state.agents.items() if st.held and n in self.fleet.names
        )
        self.report.duration = time.monotonic() - started
        self.save()
        write_atomic(paths.heartbeat_file("watchdog"), json.dumps(self.report.heartbeat()) + "\n", 0o600)
        return self.report

    def _prepare_diagnosis(self) -> None:
        """Build what every diagnosis needs first, while the looks are out: the rules table
        (its patterns compiled, ~8 ms) and the redactor of every known secret (~5 ms). Built
        on first use they cost the first confirmed agents that time, once for each of them that
        asked before the table was cached."""
        rules.text_rules()
        _ = self.fenv.redactor

    def _triage(
        self, seen: dict[str, Observation], mgr: SystemdManager
    ) -> tuple[dict[str, Observation], dict[str, Observation]]:
        """Bookkeeping for every agent; returns (suspected failures, flapping agents)."""
        now = time.time()
        installed_at = _installed_at()
        suspects: dict[str, Observation] = {}
        flapping: dict[str, Observation] = {}
        for name, o in seen.items():
            self.report.counts[o.status] = self.report.counts.get(o.status, 0) + 1
            if o.status == "not-installed":
                continue
            self.report.agents_checked += 1
            st = self.state.agent(name)
            by_systemd = restarts.observe(st, o.info, o.info.name, now, installed_at)
            if by_systemd.count:
                # Every restart systemd did is an incident and counts toward the flap limit,
                # whatever the watchdog does about the agent now (also when it is held).
                limit = o.profile.restart.max_restarts_per_hour
                detail = (
                    f"{o.status} now; {backoff.restarts_last_hour(st, now)} restart(s) in the last hour "
                    f"count toward the flap limit ({limit})"
                )
                result = Result("none", "n/a", detail, extra={"restarts": by_systemd.count})
                self._record(o, result, {}, f"restarted by systemd: {by_systemd.describe()}", now)
            if o.status == "healthy":
                changes.note_healthy(st, o.profile, o.info.active_enter_timestamp / 1e6)
            if o.status == "held" and not st.held:
                self.say(
                    f"{name}: masked, but not held in the watchdog's state; `fleetctl ack {name}` unmasks it"
                )
                continue
            if st.held and o.status != "held":
                # Held but not masked: a hold from before holds were masks, or a mask removed by
                # hand. The hold lasts until ack: mask again (a running agent keeps running).
                try:
                    mask.mask(mgr, o.info.name)
                    self.say(f"{name}: held but not masked; masked again (`fleetctl ack {name}` releases it)")
                except (OSError, FleetError) as e:
                    self.report.problems.append(f"{name}: could not mask the held unit: {e}")
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
        return suspects, flapping

    def _handle(
        self, o: Observation, failing: bool, collected: Future[evidence.Collected] | None = None
    ) -> None:
        started = time.monotonic()
        name = o.profile.name
        st = self.state.agent(name)
        try:
            with SystemdManager(private=True) as mgr:  # as run.py's
                symptom = o.symptom if failing else "too many restarts"
                ctx = Ctx(
                    self.fleet,
                    o.profile,
                    st,
                    mgr,
                    self.fenv,
                    self.save,
                    self.say,
                    intend=lambda action: self._intend(o, action, symptom),
                )
                if failing:
                    result, diag = respond(ctx, o, self.chain, collected)
                else:
                    count = backoff.restarts_last_hour(st, time.time())
                    result, diag = flap_hold(ctx, count), {}
        except Exception as e:  # one agent's trouble must not cost the others their turn
            problem = self.fenv.mask(f"{name}: {type(e).__name__}: {(str(e).split(chr(10)) or [''])[0]}")
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
        st = self.state.agent(o.profile.name)
        it = st.intent
        if it is not None and it.run == self.recorder.run_id:
            rec["completes"] = it.id
        with self._lock:
            self.recorder.write(rec)
            self.report.records.append(rec)
            self._say(self.fenv.mask(self.recorder.line(rec)))
        if it is not None and it.run == self.recorder.run_id:
            st.intent = None
            self.save()

    # --- write-ahead: every action reaches the incident log (intent.py) ------------------------
    def _intend(self, o: Observation, action: str, symptom: str) -> None:
        """Before the first change to the agent in this run: the intent, on disk."""
        st = self.state.agent(o.profile.name)
        if st.intent is not None and st.intent.run == self.recorder.run_id:
            return  # one intent per agent per run; the final record names every step
        redact = self.fenv.mask
        it = intent.new(action, self.recorder.run_id, redact(symptom))
        with self._save_cv:
            self._intents.append(intent.record(o.profile.name, it))
            st.intent = it
        self.save()  # the record, then the state, on disk before this returns

    def _close_interrupted(self, seen: dict[str, Observation]) -> None:
        """Close the intents an earlier run left open: it died between acting and recording."""
        for name, st in sorted(self.state.agents.items()):
            it = st.intent
            if it is None or it.run == self.recorder.run_id:
                continue
            st.intent = None
            o = seen.get(name)
            done = incidents.completed_intents(incidents.read(agent=name, since=it.since - 1))
            if it.id in done or o is None:  # recorded after all (died before saving the state)
                continue
            detail = (
                f"the watchdog run {it.run} stopped after it began to {it.action.replace('_', ' ')} "
                f"at {incidents.iso(it.since)}, before recording the outcome; now {o.status}"
            )
            rec = self.recorder.record(
                o.profile, Result(it.action, "interrupted", detail), {}, it.symptom, time.time(), 0.0
            )
            rec["completes"] = it.id
            self.recorder.write(rec)
            self.report.records.append(rec)
            self._say(self.recorder.line(rec))
        self.save()
