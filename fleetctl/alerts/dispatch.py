"""Decide what to send and when, and make sure nothing is lost on the way.

Each oversight pass hands `process()` the violations open right now. Compared with the state
kept from the last pass:

- a new violation is sent as `firing` to every channel;
- one still open is not sent again until `dedup_window` seconds after the last send, then it is
  sent again as a reminder (and at once if its severity went up);
- one no longer present is sent once as `resolved` and forgotten.

Every delivery is tried a few times with backoff. What still fails goes to the outbox, which
the next run (or `send_now`) delivers first, oldest first. Outbox entries stay until delivered;
only the cap on its size drops the oldest, and each drop is in the report and the log.

State is one JSON file (`alerts.json`) in the state dir, written atomically under a lock so
the watchdog's `send_now` and the oversight pass never interleave.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fleetctl.alerts import CHANNELS, validate_channels
from fleetctl.alerts.base import ChannelConfig, DeliveryError, Secrets, redact
from fleetctl.alerts.model import SEVERITIES, Alert
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.common.locks import file_lock

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

STATE_FILE = "alerts.json"
LOCK_FILE = "alerts.lock"
STATE_VERSION = 1
DEFAULT_DEDUP_WINDOW = 3600.0
DEFAULT_TRIES = 3
DEFAULT_BACKOFF = (0.5, 1.0)
DEFAULT_OUTBOX_LIMIT = 500

Sleep = Callable[[float], None]


@dataclass
class OpenViolation:
    alert: Alert
    first_seen: float
    last_sent: float

    def to_dict(self) -> dict[str, Any]:
        return {"alert": self.alert.to_dict(), "first_seen": self.first_seen, "last_sent": self.last_sent}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpenViolation:
        return cls(Alert.from_dict(data["alert"]), float(data["first_seen"]), float(data["last_sent"]))


@dataclass
class OutboxEntry:
    """One alert not yet taken by one channel."""

    alert: Alert
    channel: str
    queued_at: float
    attempts: int = 0
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "alert": self.alert.to_dict(),
            "channel": self.channel,
            "queued_at": self.queued_at,
            "attempts": self.attempts,
            "last_error": self.last_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutboxEntry:
        return cls(
            Alert.from_dict(data["alert"]),
            str(data["channel"]),
            float(data["queued_at"]),
            int(data.get("attempts", 0)),
            str(data.get("last_error", "")),
        )


@dataclass
class AlertState:
    open: dict[str, OpenViolation] = field(default_factory=dict)
    outbox: list[OutboxEntry] = field(default_factory=list)

    @staticmethod
    def path(state_dir: Path) -> Path:
        return Path(state_dir) / STATE_FILE

    @classmethod
    def load(cls, state_dir: Path) -> AlertState:
        """Read the state; a missing file is an empty state. Raises FleetError if unreadable."""
        path = cls.path(state_dir)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as e:
            raise FleetError(f"{path}: cannot read alert state: {e}") from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise FleetError(f"{path}: unknown alert state version (expected {STATE_VERSION})")
        try:
            return cls(
                open={k: OpenViolation.from_dict(v) for k, v in data.get("open", {}).items()},
                outbox=[OutboxEntry.from_dict(e) for e in data.get("outbox", [])],
            )
        except (KeyError, TypeError, ValueError, FleetError) as e:
            raise FleetError(f"{path}: malformed alert state: {e}") from None

    def save(self, state_dir: Path) -> None:
        data = {
            "version": STATE_VERSION,
            "open": {k: v.to_dict() for k, v in sorted(self.open.items())},
            "outbox": [e.to_dict() for e in self.outbox],
        }
        write_atomic(self.path(state_dir), json.dumps(data, indent=1, sort_keys=True) + "\n", mode=0o600)


@dataclass(frozen=True)
class Delivery:
    """One (alert, channel) pair in a report; `note` says why (reminder, error, reason dropped)."""

    key: str
    state: str
    channel: str
    note: str = ""

    def line(self) -> str:
        return f"{self.key} ({self.state}) -> {self.channel}" + (f": {self.note}" if self.note else "")


@dataclass
class DispatchReport:
    sent: list[Delivery] = field(default_factory=list)
    deduplicated: list[str] = field(default_factory=list)  # keys still open, not re-sent yet
    resolved: list[str] = field(default_factory=list)  # keys that cleared this run
    failed: list[Delivery] = field(default_factory=list)  # deliveries that did not happen this run
    queued: list[Delivery] = field(default_factory=list)  # the outbox after this run
    dropped: list[Delivery] = field(default_factory=list)  # given up on, with the reason
    problems: list[str] = field(default_factory=list)  # e.g. an unreadable state file set aside

    @property
    def ok(self) -> bool:
        return not (self.failed or self.dropped or self.queued or self.problems)

    def lines(self) -> list[str]:
        out = [f"sent: {d.line()}" for d in self.sent]
        out += [f"resolved: {k}" for k in self.resolved]
        out += [f"not re-sent (within dedup window): {k}" for k in self.deduplicated]
        out += [f"failed: {d.line()}" for d in self.failed]
        out += [f"queued for next run: {d.line()}" for d in self.queued]
        out += [f"DROPPED: {d.line()}" for d in self.dropped]
        out += [f"problem: {p}" for p in self.problems]
        return out

    def to_dict(self) -> dict[str, Any]:
        def rows(ds: list[Delivery]) -> list[dict[str, str]]:
            return [{"key": d.key, "state": d.state, "channel": d.channel, "note": d.note} for d in ds]

        return {
            "sent": rows(self.sent),
            "deduplicated": list(self.deduplicated),
            "resolved": list(self.resolved),
            "failed": rows(self.failed),
            "queued": rows(self.queued),
            "dropped": rows(self.dropped),
            "problems": list(self.problems),
        }


@dataclass
class _Run:
    """One run's delivery machinery: channels by name, the client, retry policy, the report."""

    channels: dict[str, ChannelConfig]
    secrets: Secrets
    client: httpx.Client
    sleep: Sleep
    tries: int
    backoff: Sequence[float]
    report: DispatchReport = field(default_factory=DispatchReport)
    # A channel that failed every try this run is not tried again until the next run: with a
    # service down, a long outbox would otherwise cost tries x backoff per entry, every 5 minutes.
    down: dict[str, str] = field(default_factory=dict)
    # What was delivered, for the sent log (SENT_LOG): the alert itself, not only its key.
    delivered: list[tuple[Alert, str, str]] = field(default_factory=list)

    def deliver(self, alert: Alert, channel: str) -> str | None:
        """Send with retries; None when delivered, else the (secret-free) error."""
        if channel in self.down:
            return f"not tried: failed earlier in this run ({self.down[channel]})"
        cfg = self.channels[channel]
        module = CHANNELS[str(cfg["type"])]
        error = ""
        for attempt in range(self.tries):
            if attempt:
                self.sleep(self.backoff[min(attempt - 1, len(self.backoff) - 1)])
            try:
                module.send(alert, cfg, self.secrets, self.client)
                return None
            except DeliveryError as e:
                error = redact(str(e))
                log.debug(
                    "alert %s to %s: attempt %d/%d failed: %s",
                    alert.key,
                    channel,
                    attempt + 1,
                    self.tries,
                    error,
                )
                if not e.retryable:
                    break
            except Exception as e:
                # A bug in a channel module must not abort the run (and lose the state of the
                # channels that worked); keep the alert queued and say loudly what happened.
                error = redact(f"internal error: {type(e).__name__}: {e}")
                log.error("alert %s to %s: %s (a fleetctl bug; please report it)", alert.key, channel, error)
                break
        self.down[channel] = error
        return error


def _enqueue(state: AlertState, alert: Alert, channel: str, now: float, error: str) -> None:
    # A reminder for an alert whose firing message is still waiting would say the same thing
    # twice; refresh the waiting entry instead. Only the newest entry for this key and channel
    # may be refreshed, or a firing/resolved/firing sequence would lose its order.
    for entry in reversed(state.outbox):
        if entry.alert.key == alert.key and entry.channel == channel:
            if entry.alert.state == alert.state:
                entry.alert = alert
                entry.last_error = error
                entry.attempts += 1
                return
            break
    state.outbox.append(OutboxEntry(alert, channel, now, attempts=1, last_error=error))


def _fan_out(run: _Run, state: AlertState, alert: Alert, now: float, note: str = "") -> None:
    for channel in run.channels:
        error = run.deliver(alert, channel)
        if error is None:
            run.report.sent.append(Delivery(alert.key, alert.state, channel, note))
            run.delivered.append((alert, channel, note))
        else:
            log.warning(
                "alert %s (%s) to %s failed, queued for the next run: %s",
                alert.key,
                alert.state,
                channel,
                error,
            )
            run.report.failed.append(Delivery(alert.key, alert.state, channel, error))
            _enqueue(state, alert, channel, now, error)


def _flush_outbox(run: _Run, state: AlertState) -> None:
    kept: list[OutboxEntry] = []
    for entry in state.outbox:
        if entry.channel not in run.channels:
            # Nowhere to deliver it any more; say so rather than keep it forever unseen.
            reason = f"channel {entry.channel!r} is no longer configured"
            log.warning("alert %s (%s) dropped: %s", entry.alert.key, entry.alert.state, reason)
            run.report.dropped.append(Delivery(entry.alert.key, entry.alert.state, entry.channel, reason))
            continue
        tried = entry.channel not in run.down
        error = run.deliver(entry.alert, entry.channel)
        if error is None:
            run.report.sent.append(Delivery(entry.alert.key, entry.alert.state, entry.channel, "from outbox"))
            run.delivered.append((entry.alert, entry.channel, "from outbox"))
            continue
        if tried:
            entry.attempts += 1
            entry.last_error = error
        run.report.failed.append(Delivery(entry.alert.key, entry.alert.state, entry.channel, error))
        kept.append(entry)
    state.outbox = kept


def _cap_outbox(run: _Run, state: AlertState, limit: int) -> None:
    excess = len(state.outbox) - limit
    if excess > 0:
        for entry in state.outbox[:excess]:
            reason = f"outbox full (limit {limit}); oldest dropped, queued {entry.attempts} tries ago"
            log.warning(
                "alert %s (%s) to %s dropped: %s", entry.alert.key, entry.alert.state, entry.channel, reason
            )
            run.report.dropped.append(Delivery(entry.alert.key, entry.alert.state, entry.channel, reason))
        state.outbox = state.outbox[excess:]
    run.report.queued = [Delivery(e.alert.key, e.alert.state, e.channel, e.last_error) for e in state.outbox]


def _load_or_set_aside(state_dir: Path) -> tuple[AlertState, str]:
    """An unreadable state file must not stop alerting for good: move it aside, start empty
    (every open violation fires again, which is noisy but never silent) and report it."""
    try:
        return AlertState.load(state_dir), ""
    except FleetError as e:
        path = AlertState.path(state_dir)
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        path.replace(aside)
        problem = f"{e}; moved to {aside} and started afresh (its queued alerts were lost)"
        log.error("%s", problem)
        return AlertState(), problem


SENT_LOG = "alerts-sent.jsonl"
SENT_KEEP = 1000  # deliveries kept in the sent log (the newest), for the dashboard and a human


def log_sent(state_dir: Path, delivered: Sequence[tuple[Alert, str, str]], now: float) -> None:
    """Append what was delivered to the sent log (0600: a summary may quote an agent), keeping
    the newest SENT_KEEP; a crash mid-write costs a torn last line, which readers skip."""
    if not delivered:
        return
    path = Path(state_dir) / SENT_LOG
    lines = [
        json.dumps(
            {
                "time": now,
                "key": a.key,
                "agent": a.agent,
                "check": a.check,
                "severity": a.severity,
                "state": a.state,
                "summary": a.summary,
                "channel": channel,
                "note": note,
            },
            sort_keys=True,
        )
        for a, channel, note in delivered
    ]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, ("\n".join(lines) + "\n").encode())
    finally:
        os.close(fd)
    if path.stat().st_size > SENT_KEEP * 600:  # a few hundred bytes a line: trim now and then
        kept = path.read_text(errors="replace").splitlines()[-SENT_KEEP:]
        write_atomic(path, "\n".join(kept) + "\n", mode=0o600)


def read_sent(state_dir: Path, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` deliveries, newest first."""
    try:
        lines = (Path(state_dir) / SENT_LOG).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in reversed(lines):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
        if len(out) >= limit:
            break
    return out


@contextmanager
def _session(
    channels: Sequence[ChannelConfig],
    secrets: Secrets,
    state_dir: Path,
    client: httpx.Client | None,
    sleep: Sleep,
    tries: int,
    backoff: Sequence[float],
    outbox_limit: int,
) -> Iterator[tuple[_Run, AlertState]]:
    problems = validate_channels(channels)
    if problems:
        raise FleetError("; ".join(problems))
    if tries < 1 or not backoff or outbox_limit < 1:
        raise FleetError("alerts: tries and outbox_limit must be at least 1, backoff non-empty")
    state_dir = Path(state_dir)
    # wait=True: the watchdog and the oversight pass take turns; neither may skip its alerts.
    with file_lock(state_dir / LOCK_FILE, "alert dispatch", wait=True):
        state, problem = _load_or_set_aside(state_dir)
        own_client = client is None
        if client is None:
            import httpx

            client = httpx.Client(follow_redirects=False)
        try:
            run = _Run({str(c["name"]): c for c in channels}, secrets, client, sleep, tries, backoff)
            if problem:
                run.report.problems.append(problem)
            # Older first: a resolved message must never overtake the firing it ends.
            _flush_outbox(run, state)
            yield run, state
            _cap_outbox(run, state, outbox_limit)
        finally:
            if own_client:
                client.close()
        state.save(state_dir)
        log_sent(state_dir, run.delivered, time.time())


def process(
    current: Sequence[Alert],
    channels: Sequence[ChannelConfig],
    secrets: Secrets,
    state_dir: Path,
    now: float | None = None,
    dedup_window: float = DEFAULT_DEDUP_WINDOW,
    *,
    client: httpx.Client | None = None,
    sleep: Sleep = time.sleep,
    tries: int = DEFAULT_TRIES,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
) -> DispatchReport:
    """Send what changed since the last run, given every violation open right now.

    `current` must list every open violation (firing state); anything open before and missing
    now is resolved. `channels` are the validated `[[alerts.channels]]` tables; `secrets` maps
    env/secrets-file names to values. Raises FleetError only for bad config or unreadable
    state; delivery failures are in the report, never raised.
    """
    now = time.time() if now is None else now
    latest: dict[str, Alert] = {}
    for alert in current:
        latest[alert.key] = alert  # one message per key; the last one given is the freshest
    with _session(channels, secrets, state_dir, client, sleep, tries, backoff, outbox_limit) as (run, state):
        for key, alert in latest.items():
            was = state.open.get(key)
            if was is None:
                state.open[key] = OpenViolation(alert, first_seen=now, last_sent=now)
                _fan_out(run, state, alert, now)
                continue
            worse = SEVERITIES.index(alert.severity) > SEVERITIES.index(was.alert.severity)
            was.alert = alert
            if worse or now - was.last_sent >= dedup_window:
                was.last_sent = now
                reminder = dataclasses.replace(alert, since=was.first_seen)
                _fan_out(run, state, reminder, now, "severity raised" if worse else "reminder")
            else:
                run.report.deduplicated.append(key)
        for key in [k for k in state.open if k not in latest]:
            cleared = state.open.pop(key)
            run.report.resolved.append(key)
            _fan_out(run, state, cleared.alert.resolved(now), now)
    return run.report


def send_now(
    alert: Alert,
    channels: Sequence[ChannelConfig],
    secrets: Secrets,
    state_dir: Path,
    now: float | None = None,
    *,
    client: httpx.Client | None = None,
    sleep: Sleep = time.sleep,
    tries: int = DEFAULT_TRIES,
    backoff: Sequence[float] = DEFAULT_BACKOFF,
    outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
) -> DispatchReport:
    """Send one alert at once (the watchdog's escalations), outside dedup and open tracking.

    Same retries and outbox as `process`: whatever cannot be delivered waits for the next run.
    """
    now = time.time() if now is None else now
    with _session(channels, secrets, state_dir, client, sleep, tries, backoff, outbox_limit) as (run, state):
        _fan_out(run, state, alert, now)
    return run.report
