"""TOML agent profiles → frozen dataclasses. Every problem is collected, then reported at once.

Errors read `profiles/coder.toml: health.timeout: must be a positive number of seconds (got "5s")`.
Loading reads only the profile files: nothing here touches systemd or the agents' directories.
"""

from __future__ import annotations

import functools
import os
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from fleetctl.common.errors import FleetError
from fleetctl.fleet import schema

FLEET_FILE = "fleet.toml"
MAX_PROFILE_BYTES = 64 * 1024  # a profile is a screenful; anything bigger is a mistake or an attack


# The sections are NamedTuples, Profile and Fleet frozen dataclasses: every command imports this
# module, and a dataclass costs ~0.7 ms to create (it compiles six methods), a NamedTuple ~0.3.
# The sections are plain records nothing replaces or extends; Profile and Fleet are replaced.
class Health(NamedTuple):
    """[health]: how the agent's health is probed, and how long it may take to come up."""

    path: str
    ready_path: str | None
    timeout: float
    expected_status: int
    startup_grace: float
    stable_window: float


class Restart(NamedTuple):
    """[restart]: systemd's restart policy, backoff and stop, and the watchdog's flap limit."""

    policy: str
    delay: float
    max_delay: float | None
    steps: int | None
    burst: int
    interval: float
    bad_config_exit_statuses: tuple[int, ...]
    success_exit_statuses: tuple[int, ...]
    max_restarts_per_hour: int
    kill_mode: str
    stop_timeout: float


class Resources(NamedTuple):
    """[resources]: the unit's memory, CPU and task limits."""

    memory_max: str | None
    cpu_quota: str | None
    tasks_max: int | None


class Sandbox(NamedTuple):
    """[sandbox]: whether the unit is sandboxed, the paths it may use, the directives relaxed."""

    enabled: bool
    read_write_paths: tuple[str, ...]
    read_only_paths: tuple[str, ...]
    relax: tuple[str, ...]


class AgentConfig(NamedTuple):
    """[config]: the agent's config file, its format, and how a new version is checked."""

    file: str | None
    format: str
    schema: str | None
    validate_command: tuple[str, ...]


class Warmup(NamedTuple):
    """[warmup]: the prompt sent after a restart the watchdog verified."""

    path: str
    prompt: str | None


class Watchdog(NamedTuple):
    """[watchdog]: how the watchdog treats this agent's log text (redaction)."""

    redact: tuple[str, ...]


class UserCheck(NamedTuple):
    """One [[oversight.checks]] entry: a command whose failure oversee raises."""

    name: str
    command: tuple[str, ...]
    timeout: float


class Oversight(NamedTuple):
    """[oversight]: what oversee reads from the agent (usage, inbox) and the checks it runs."""

    usage_path: str | None
    rate_limits: tuple[tuple[str, int], ...]
    inbox_path: str | None
    checks: tuple[UserCheck, ...]


class Cost(NamedTuple):
    """[cost]: where the agent reports its token use and spend."""

    path: str | None
    format: str
    token_env: str | None


class Budget(NamedTuple):
    """[budget]: the agent's daily spending limit, what happens past it, the rate alarm."""

    usd_per_day: float | None
    on_exceed: str
    spend_rate_factor: float


class Kubernetes(NamedTuple):
    """[kubernetes]: the image, command and storage `fleetctl export kubernetes` uses."""

    image: str | None = None
    command: tuple[str, ...] = ()
    storage: str = "1G"


@dataclass(frozen=True)
class Profile:
    """One agent, as its profile and the fleet's defaults describe it."""

    name: str
    source: Path
    description: str
    role: str
    command: tuple[str, ...]
    port: int
    port_span: int
    workspace: str
    config_dir: str
    environment: tuple[tuple[str, str], ...]
    secrets_file: str | None
    alternate_secrets_files: tuple[str, ...]
    after: tuple[str, ...]
    log_file: bool
    health: Health
    restart: Restart
    resources: Resources
    sandbox: Sandbox
    config: AgentConfig
    warmup: Warmup
    watchdog: Watchdog
    oversight: Oversight
    cost: Cost
    budget: Budget
    kubernetes: Kubernetes = Kubernetes()


@dataclass(frozen=True)
class FleetSettings:
    """fleet.toml's fleet-wide settings (not the per-agent [defaults])."""

    watchdog_interval_minutes: int = 1
    groq_model: str = "llama-3.1-8b-instant"
    anthropic_model: str = "claude-haiku-4-5"
    oversight_interval_minutes: int = 5
    alerts_dedup_window: float = 3600.0
    alert_channels: tuple[dict[str, Any], ...] = ()
    review_checklist: str | None = None
    budget_usd_per_day: float | None = None
    bulletin_max_age_days: float = 7.0
    providers: tuple[dict[str, Any], ...] = ()  # [[watchdog.providers]]; () = Groq, Anthropic


@dataclass(frozen=True)
class Fleet:
    """A profiles folder, read and checked: its agents and its fleet-wide settings."""

    directory: Path
    profiles: tuple[Profile, ...]
    settings: FleetSettings = field(default_factory=FleetSettings)

    def get(self, name: str) -> Profile:
        for p in self.profiles:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.profiles) or "none"
        raise FleetError(f"unknown agent {name!r} (agents in {self.directory}: {known})")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.profiles]


class ProfileErrors(FleetError):
    """All problems found, one per line; the first line alone is the summary."""

    def __init__(self, problems: list[str]) -> None:
        # A file name or value may hold a newline or an escape sequence: each problem stays
        # one printable line whatever the input.
        self.problems = [printable(p) for p in problems]
        super().__init__("\n".join(self.problems))


def printable(text: str) -> str:
    """`text` with control and non-characters shown as escapes (\\n, \\x1b, \\u2028)."""
    if not any(schema.unprintable(c) for c in text):
        return text
    return "".join(ascii(c)[1:-1] if schema.unprintable(c) else c for c in text)


# --- parsing ------------------------------------------------------------------------------
def _flatten(doc: dict[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in doc.items():
        if key in schema.SECTIONS and isinstance(value, dict):
            for sub, v in value.items():
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = value
    return flat


def _type_problem(s: schema.Setting, v: Any) -> str | None:
    ok: bool
    if s.kind == "str":
        ok = isinstance(v, str)
    elif s.kind == "int":
        ok = isinstance(v, int) and not isinstance(v, bool)
    elif s.kind == "number":
        ok = isinstance(v, int | float) and not isinstance(v, bool)
    elif s.kind == "bool":
        ok = isinstance(v, bool)
    elif s.kind == "list[str]":
        ok = isinstance(v, list) and all(isinstance(x, str) for x in v)
    elif s.kind == "list[int]":
        ok = isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
    elif s.kind == "table[str]":
        ok = isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
    elif s.kind == "table[int]":
        ok = isinstance(v, dict)
    elif s.kind == "list[table]":
        ok = isinstance(v, list) and all(isinstance(x, dict) for x in v)
    else:  # pragma: no cover - a schema bug, not user input
        raise AssertionError(s.kind)
    if ok:
        return None
    want = {
        "str": "a string",
        "int": "a whole number",
        "number": "a number",
        "bool": "true or false",
        "list[str]": "a list of strings",
        "list[int]": "a list of whole numbers",
        "table[str]": "a table of strings",
        "table[int]": "a table of numbers",
        "list[table]": "a list of tables",
    }[s.kind]
    return f"must be {want} (got {_show(v)})"


def _show(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    return repr(v) if not isinstance(v, bool) else str(v).lower()


def _check_values(
    flat: dict[str, Any], table: dict[str, schema.Setting], where: str, problems: list[str]
) -> dict[str, Any]:
    good: dict[str, Any] = {}
    for key, value in flat.items():
        s = table.get(key)
        if s is None:
            hint = _nearest(key, table)
            problems.append(f"{where}: {key}: unknown key{hint}")
            continue
        problem = _type_problem(s, value)
        if problem is None and s.check is not None:
            problem = s.check(value)
            if problem and "(got" not in problem and not isinstance(value, dict | list):
                problem += f" (got {_show(value)})"
        if problem:
            problems.append(f"{where}: {key}: {problem}")
        else:
            good[key] = value
    return good


def _nearest(key: str, table: dict[str, schema.Setting]) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(table), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _read_toml(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """Parse one profile; a problem (one line naming the file) instead of a traceback."""
    try:
        mode = os.lstat(path).st_mode
        if stat.S_ISLNK(mode):  # resolved only then: resolving every profile costs ~0.1 ms each
            real = path.resolve(strict=True)
            if not real.is_relative_to(path.parent.resolve()):
                outside = f"{path}: is a symlink to {real}, outside the profiles directory"
                problems.append(f"{outside}; copy the file in instead")
                return None
            mode = os.stat(real).st_mode
        if not stat.S_ISREG(mode):  # a FIFO or device would block or never end
            problems.append(f"{path}: not a regular file")
            return None
        with open(path, "rb") as f:
            raw = f.read(MAX_PROFILE_BYTES + 1)
    except OSError as e:
        problems.append(f"{path}: cannot read: {e.strerror}")
        return None
    if len(raw) > MAX_PROFILE_BYTES:
        problems.append(f"{path}: larger than {MAX_PROFILE_BYTES // 1024} KiB; a profile is a short file")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        problems.append(f"{path}: not UTF-8 (invalid byte at offset {e.start}); save it as UTF-8")
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        problems.append(f"{path}: invalid TOML: {e}")
    return None


def load_fleet(directory: Path) -> Fleet:
    """Load `directory/*.toml` (and fleet.toml); raise ProfileErrors listing every problem."""
    directory = Path(directory)
    try:
        found = directory.is_dir() and os.access(directory, os.R_OK | os.X_OK)
    except PermissionError:
        found = False
    if not found:
        if os.path.lexists(directory) or not os.access(directory.parent, os.X_OK):
            raise FleetError(
                f"{directory}: cannot read the profiles directory as {os.getuid()} (permission denied); "
                "fix its permissions or pass a directory this user can read"
            )
        raise FleetError(f"{directory}: no such profiles directory (create it or pass the right path)")
    problems: list[str] = []
    defaults, settings = _load_fleet_file(directory / FLEET_FILE, problems)
    raw: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(directory.glob("*.toml")):
        if path.name == FLEET_FILE:
            continue
        doc = _read_toml(path, problems)
        if doc is None:
            continue
        flat = _check_values(_flatten(doc, str(path), problems), schema.BY_KEY, str(path), problems)
        flat.setdefault("name", path.stem)
        if not isinstance(flat["name"], str) or not schema.AGENT_NAME.fullmatch(flat["name"]):
            problems.append(f"{path}: name: {schema._name(flat['name'])} (rename the file or set name)")
            continue
        for s in schema.SETTINGS:
            reported = bool(problems) and any(line.startswith(f"{path}: {s.key}: ") for line in problems)
            if s.required and s.key not in flat and s.key not in defaults and not reported:
                problems.append(f"{path}: {s.key}: missing (required)")
        raw.append((path, {**defaults, **flat}))
    if not raw and not problems:
        raise FleetError(f"{directory}: no profiles (*.toml) found; create one with `fleetctl new NAME`")
    _cross_checks(raw, problems)
    if problems:
        raise ProfileErrors(problems)
    profiles = tuple(_build(path, flat) for path, flat in raw)
    return Fleet(directory=directory, profiles=_ordered(profiles), settings=settings)


def _load_fleet_file(path: Path, problems: list[str]) -> tuple[dict[str, Any], FleetSettings]:
    if not path.exists():
        return {}, FleetSettings()
    doc = _read_toml(path, problems)
    if doc is None:
        return {}, FleetSettings()
    defaults_doc = doc.pop("defaults", {})
    where = str(path)
    inheritable = {k: s for k, s in schema.BY_KEY.items() if s.inheritable}
    defaults = _check_values(
        _flatten(defaults_doc, where, problems), inheritable, f"{where}: defaults", problems
    )
    flat: dict[str, Any] = {}
    for section, value in doc.items():
        if isinstance(value, dict):
            flat.update({f"{section}.{k}": v for k, v in value.items()})
        else:
            flat[section] = value
    good = _check_values(flat, schema.FLEET_BY_KEY, where, problems)
    d = {s.key: s.default for s in schema.FLEET_SETTINGS} | good
    settings = FleetSettings(
        watchdog_interval_minutes=d["watchdog.interval_minutes"],
        groq_model=d["watchdog.groq_model"],
        anthropic_model=d["watchdog.anthropic_model"],
        oversight_interval_minutes=d["oversight.interval_minutes"],
        alerts_dedup_window=float(d["alerts.dedup_window"]),
        alert_channels=tuple(d["alerts.channels"]),
        review_checklist=d["oversight.review_checklist"],
        budget_usd_per_day=_float_or_none(d["budget.usd_per_day"]),
        bulletin_max_age_days=float(d["bulletin.max_age_days"]),
        providers=tuple(d["watchdog.providers"]),
    )
    return defaults, settings


def _cross_checks(raw: list[tuple[Path, dict[str, Any]]], problems: list[str]) -> None:
    names: dict[str, Path] = {}
    taken: list[tuple[int, int, Path]] = []  # (first, last, profile): each agent's port footprint
    # port -> index in `taken` of the first footprint holding it: a lookup per port rather than a
    # comparison with every earlier agent (quadratic at 200 agents, on every command).
    holder: dict[int, int] = {}
    for path, flat in raw:
        if flat["name"] in names:
            problems.append(f"{path}: name: {flat['name']!r} is also used by {names[flat['name']]}")
        names.setdefault(flat["name"], path)
        port = flat.get("port")
        if isinstance(port, int):
            span = flat.get("port_span", 1)
            first, last = port, port + span - 1
            if last > 65535:
                problems.append(f"{path}: port_span: ports {first}-{last} run past 65535 (lower port)")
            clash = min((holder[q] for q in range(first, last + 1) if q in holder), default=None)
            if clash is not None:
                o_first, o_last, o_path = taken[clash]
                mine = str(port) if span == 1 else f"{first}-{last} (port_span {span})"
                theirs = "" if o_first == o_last == port else f" (ports {o_first}-{o_last})"
                problems.append(
                    f"{path}: port: {mine} is also used by {o_path}{theirs} "
                    "(pick another; `fleetctl new` assigns a free one)"
                )
            for q in range(first, last + 1):
                holder.setdefault(q, len(taken))
            taken.append((first, last, path))
    _check_dirs(raw, problems)
    for path, flat in raw:
        for dep in flat.get("after", []):
            if dep not in names:
                problems.append(f"{path}: after: unknown agent {dep!r} (known: {', '.join(sorted(names))})")
            elif dep == flat["name"]:
                problems.append(f"{path}: after: an agent cannot start after itself")
    cycle = _find_cycle({f["name"]: [d for d in f.get("after", []) if d in names] for _, f in raw})
    if cycle:
        problems.append(f"{names[cycle[0]]}: after: ordering cycle {' -> '.join(cycle)}")


# What an agent's read-write dirs must never be or contain: they would undo its isolation.
_NOT_AGENT_DIRS = (
    "~",
    "~/.config",
    "~/.config/fleetctl",
    "~/.local",
    "~/.local/state",
    "~/.local/state/fleetctl",
    "~/.ssh",
)


@functools.cache
def _holds_fleetctl_dir() -> dict[str, str]:
    """Folder -> the first of _NOT_AGENT_DIRS it is or holds (the folder itself and its parents)."""
    import posixpath

    out: dict[str, str] = {}
    for x in _NOT_AGENT_DIRS:
        d = x
        while d:
            out.setdefault(d, x)
            d = posixpath.dirname(d)
    return out


def _check_dirs(raw: list[tuple[Path, dict[str, Any]]], problems: list[str]) -> None:
    """An agent's workspace and config_dir are its own: never $HOME or fleetctl's folders,
    never inside (or around) another agent's, or the sandbox would hand one agent another's."""
    import posixpath

    def norm(v: Any, name: str) -> str | None:
        return posixpath.normpath(v.replace("{name}", name)) if isinstance(v, str) else None

    def within(a: str, b: str) -> bool:
        return a == b or a.startswith(b.rstrip("/") + "/")

    owned: list[tuple[str, str, Path, str]] = []  # (dir, agent, profile, key)
    for path, flat in raw:
        name = flat["name"]
        for key in ("workspace", "config_dir"):
            d = norm(flat.get(key, schema.BY_KEY[key].default), name)
            if d is None:
                continue
            bad = _holds_fleetctl_dir().get(d)
            if bad:
                problems.append(f"{path}: {key}: {d} would give the agent {bad} (pick a folder of its own)")
            owned.append((d, name, path, key))
    # Each folder is looked up with its ancestors in an index, not compared with every other
    # agent's: a pairwise check took 0.2 s at 200 agents, on every command that loads the fleet.
    index: dict[str, list[int]] = {}
    for i, (d, *_) in enumerate(owned):
        index.setdefault(d, []).append(i)
    roots = [k for k in index if k.startswith("/") and not k.strip("/")]
    for d, name, path, key in owned:
        around = [d]
        while (parent := posixpath.dirname(around[-1])) != around[-1]:
            around.append(parent)
        if d.startswith("/"):  # "/" (and normpath's "//") hold every absolute path
            around += roots
        for j in sorted(j for a in dict.fromkeys(around) for j in index.get(a, ())):
            other, other_name = owned[j][0], owned[j][1]
            if other_name != name:
                problems.append(
                    f"{path}: {key}: {d} is inside {other_name}'s {other}: agents must not share folders "
                    "(use the bulletin to share)"
                )


def _find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, []):
            if m == n:
                continue
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _ordered(profiles: tuple[Profile, ...]) -> tuple[Profile, ...]:
    """Dependencies first, then by name: a stable order for install and status."""
    by_name = {p.name: p for p in profiles}
    done: list[Profile] = []
    seen: set[str] = set()

    def add(p: Profile) -> None:
        if p.name in seen:
            return
        seen.add(p.name)
        for dep in p.after:
            add(by_name[dep])
        done.append(p)

    for p in sorted(profiles, key=lambda p: (p.role != "coordinator", p.name)):
        add(p)
    return tuple(done)


# Worked out once, not once per profile: these ran for every agent on every command.
@functools.cache
def _defaults() -> dict[str, Any]:
    return {s.key: s.default for s in schema.SETTINGS}


@functools.cache
def _section_keys(cls: Any, prefix: str) -> tuple[tuple[str, str], ...]:
    return tuple((f, f"{prefix}.{f}") for f in cls._fields)


def _build(path: Path, flat: dict[str, Any]) -> Profile:
    d = _defaults() | flat
    name = d["name"]

    def sub(v: str | None) -> str | None:
        return None if v is None else v.replace("{name}", name)

    def section(cls: type, prefix: str, **over: Any) -> Any:
        kw = {n: d[k] for n, k in _section_keys(cls, prefix) if n not in over}
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in kw.items()}
        return cls(**kw, **over)

    checks = tuple(
        UserCheck(c["name"], tuple(c["command"]), float(c.get("timeout", 30))) for c in d["oversight.checks"]
    )
    return Profile(
        name=name,
        source=path,
        description=d["description"],
        role=d["role"],
        command=tuple(d["command"]),
        port=d["port"],
        port_span=d["port_span"],
        workspace=sub(d["workspace"]) or "",
        config_dir=sub(d["config_dir"]) or "",
        environment=tuple(sorted(d["environment"].items())),
        secrets_file=sub(d["secrets_file"]),
        alternate_secrets_files=tuple(sub(f) or f for f in d["alternate_secrets_files"]),
        after=tuple(d["after"]),
        log_file=d["log_file"],
        health=section(
            Health,
            "health",
            timeout=float(d["health.timeout"]),
            startup_grace=float(d["health.startup_grace"]),
            stable_window=float(d["health.stable_window"]),
        ),
        restart=section(Restart, "restart"),
        resources=section(Resources, "resources", memory_max=_str_or_none(d["resources.memory_max"])),
        sandbox=section(Sandbox, "sandbox"),
        config=section(AgentConfig, "config", schema=sub(d["config.schema"])),
        warmup=section(Warmup, "warmup"),
        watchdog=section(Watchdog, "watchdog"),
        oversight=Oversight(
            usage_path=d["oversight.usage_path"],
            rate_limits=tuple(sorted(d["oversight.rate_limits"].items())),
            inbox_path=d["oversight.inbox_path"],
            checks=checks,
        ),
        cost=section(Cost, "cost"),
        budget=Budget(
            usd_per_day=_float_or_none(d["budget.usd_per_day"]),
            on_exceed=d["budget.on_exceed"],
            spend_rate_factor=float(d["budget.spend_rate_factor"]),
        ),
        kubernetes=section(Kubernetes, "kubernetes", storage=str(d["kubernetes.storage"])),
    )


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _str_or_none(v: Any) -> str | None:
    return None if v is None else str(v)
