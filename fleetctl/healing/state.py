"""What the watchdog remembers between runs, per agent, in one JSON file.

The file is replaced atomically (temp, fsync, rename), so a run killed at any point leaves the
previous or the next state, never a torn one. Timestamps are wall-clock seconds since the epoch:
runs are separate processes, so monotonic clocks mean nothing across them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.healing.intent import Intent

STATE_FILE = "watchdog-state.json"
VERSION = 1


@dataclass
class Hold:
    """The watchdog gave up on this agent and told a human; nothing happens until `ack`."""

    since: float
    reason: str


@dataclass
class AgentState:
    """What the watchdog remembers of one agent between runs."""

    n_restarts: int | None = None  # systemd's NRestarts at the last look; None: never seen
    systemd_restarts: list[float] = field(default_factory=list)  # one stamp per NRestarts step
    watchdog_restarts: list[float] = field(default_factory=list)  # restarts this watchdog did
    consecutive: int = 0  # watchdog restarts since the agent last stayed healthy for an hour
    backoff_until: float | None = None
    last_action: str | None = None
    held: Hold | None = None
    credentials_index: int = 0  # 0: secrets_file; i: alternate_secrets_files[i - 1]
    oom_kills: list[float] = field(default_factory=list)
    intent: Intent | None = None  # an action begun and not yet recorded as done (intent.py)
    invocation_id: str | None = None  # systemd's InvocationID at the last look
    last_look: float | None = None  # when the watchdog last read systemd's record of the agent
    healthy_fingerprint: dict[str, str] = field(default_factory=dict)  # see healing.changes
    # The rule whose remedy last verified, and when: the same cause back inside the window
    # escalates instead of repeating the remedy (healing.respond.REPEAT_WINDOW).
    remedied_rule: str | None = None
    remedied_at: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentState:
        held = d.get("held")
        return cls(
            n_restarts=None if d.get("n_restarts") is None else int(d["n_restarts"]),
            systemd_restarts=[float(t) for t in d.get("systemd_restarts", [])],
            watchdog_restarts=[float(t) for t in d.get("watchdog_restarts", [])],
            consecutive=int(d.get("consecutive", 0)),
            backoff_until=None if d.get("backoff_until") is None else float(d["backoff_until"]),
            last_action=d.get("last_action"),
            held=None if not held else Hold(float(held["since"]), str(held["reason"])),
            credentials_index=int(d.get("credentials_index", 0)),
            oom_kills=[float(t) for t in d.get("oom_kills", [])],
            intent=Intent.from_dict(d["intent"]) if d.get("intent") else None,
            invocation_id=d.get("invocation_id") or None,
            last_look=None if d.get("last_look") is None else float(d["last_look"]),
            healthy_fingerprint={str(k): str(v) for k, v in (d.get("healthy_fingerprint") or {}).items()},
            remedied_rule=d.get("remedied_rule"),
            remedied_at=None if d.get("remedied_at") is None else float(d["remedied_at"]),
        )

    def to_dict(self, with_last_look: bool = True) -> dict[str, Any]:
        """What dataclasses.asdict gives, at a small part of its cost: a run that acts on ten
        agents saves the whole state a dozen times while they start, and every save copies
        every agent. The fields are copied at once, then the mutable ones one level deep:
        lists of numbers, a dict of strings, and Hold and Intent, whose fields are plain."""
        d = dict(vars(self))
        for name in ("systemd_restarts", "watchdog_restarts", "oom_kills"):
            d[name] = list(d[name])
        d["healthy_fingerprint"] = dict(self.healthy_fingerprint)
        for name in ("held", "intent"):
            if d[name] is not None:
                d[name] = dict(vars(d[name]))
        if not with_last_look:
            del d["last_look"]
        return d


@dataclass
class WatchdogState:
    """The watchdog's memory between runs: one AgentState per agent."""

    agents: dict[str, AgentState] = field(default_factory=dict)

    def agent(self, name: str) -> AgentState:
        return self.agents.setdefault(name, AgentState())

    def to_doc(self, with_last_look: bool = True) -> dict[str, Any]:
        """The file's content as plain data (compared cheaply, to skip writes that change nothing)."""
        agents = {k: v.to_dict(with_last_look) for k, v in sorted(self.agents.items())}
        return {"version": VERSION, "agents": agents}

    def last_looks(self) -> dict[str, float | None]:
        return {k: v.last_look for k, v in self.agents.items()}

    def to_json(self, with_last_look: bool = True) -> str:
        return dumps(self.to_doc(with_last_look))


def with_last_looks(doc: dict[str, Any], looks: dict[str, float | None]) -> dict[str, Any]:
    """`doc` (to_doc(with_last_look=False)) with each agent's last_look back in; `doc` unchanged."""
    agents = {k: {**a, "last_look": looks.get(k)} for k, a in doc["agents"].items()}
    return {**doc, "agents": agents}


def dumps(doc: dict[str, Any]) -> str:
    """One line per agent (grep finds an agent's whole state), each encoded by json's C
    encoder: an indented dump takes json's pure-Python path, and a run that acts on ten agents
    of a hundred saves the state a dozen times while those agents start (~10 ms a save)."""
    agents = doc.get("agents", {})
    rest = {k: v for k, v in doc.items() if k != "agents"}
    lines = [f" {json.dumps(name)}: {json.dumps(agents[name], sort_keys=True)}" for name in sorted(agents)]
    head = json.dumps(rest, sort_keys=True)[:-1]  # the other keys, without the closing brace
    sep = ", " if rest else ""
    if not lines:
        return f'{head}{sep}"agents": {{}}}}\n'
    return f'{head}{sep}"agents": {{\n' + ",\n".join(lines) + "\n}}\n"


def state_path() -> Path:
    return paths.state_dir() / STATE_FILE


def parse(text: str, where: str) -> WatchdogState:
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise FleetError(f"{where}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise FleetError(f"{where}: unknown watchdog state version (expected {VERSION})")
    try:
        return WatchdogState({str(k): AgentState.from_dict(v) for k, v in doc.get("agents", {}).items()})
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise FleetError(f"{where}: malformed watchdog state ({e})") from None


def load(path: Path | None = None) -> tuple[WatchdogState, str | None]:
    """The state and a problem to report, if any.

    An unreadable file must not stop the watchdog for good: it is moved aside and the run starts
    afresh. That forgets holds and restart history, which is noisy (an agent may be acted on or
    escalated again) but never silent, and the problem is in the run's report.
    """
    path = path or state_path()
    try:
        return parse(path.read_text(), str(path)), None
    except FileNotFoundError:
        return WatchdogState(), None
    except (OSError, FleetError) as e:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        try:
            path.replace(aside)
        except OSError:
            pass
        problem = f"{e}; moved to {aside}, starting with an empty state (holds and restart history lost)"
        import logging  # here: `status` reads the state and logs nothing

        logging.getLogger(__name__).error("%s", problem)
        return WatchdogState(), problem


def save(state: WatchdogState, path: Path | None = None) -> None:
    save_doc(state.to_doc(), path)


def save_doc(doc: dict[str, Any], path: Path | None = None) -> None:
    """Write what WatchdogState.to_doc() gave."""
    write_atomic(path or state_path(), dumps(doc), mode=0o600)
