"""The profile schema: one table drives parsing, defaults, validation messages and docs.

A key is "section.key" ("port" for top-level ones). `fleet.toml`'s [defaults] may set any key
marked `inheritable`; a profile's own value wins.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable
from typing import Any, NamedTuple

from fleetctl.systemd import directives

Check = Callable[[Any], str | None]  # returns a problem ("must be ...") or None


class Setting(NamedTuple):
    """One profile key: its type, default and what it means (docs/profiles.md is made from these)."""

    key: str
    kind: str  # "str" | "int" | "number" | "bool" | "list[str]" | "list[int]" | "table[str]" | "list[table]"
    default: Any = None
    required: bool = False
    inheritable: bool = True
    check: Check | None = None
    doc: str = ""


# Patterns are applied with fullmatch: `$` alone also matches before a trailing newline.
AGENT_NAME = re.compile(r"[a-z][a-z0-9-]{0,39}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SIZE = re.compile(r"[0-9]+(\.[0-9]+)?[KMGT]?")
PERCENT = re.compile(r"[0-9]+%")
RESERVED_ENV = "FLEET_"  # fleetctl sets FLEET_AGENT & co.; the watchdog trusts FLEET_AGENT
PATH_MAX = 4096  # bytes, as systemd's path_is_valid() counts them
NAME_MAX = 255  # bytes per path component
SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
PLACEHOLDERS = ("{port}", "{name}", "{workspace}", "{config_dir}", "{python}")


# --- text that reaches a unit file ---------------------------------------------------------
# systemd ends a unit-file line at LF, CR and NUL, drops a line that is not valid UTF-8 in its
# own sense (which excludes the Unicode noncharacters), and joins a line ending in a backslash
# with the next one. Text it cannot hold exactly is refused here; what it can hold is quoted and
# escaped by fleetctl.systemd.render.
def unprintable(ch: str) -> bool:
    """Control characters (C0, DEL, C1), line/paragraph separators, surrogates, noncharacters."""
    o = ord(ch)
    if unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
        return True
    return 0xFDD0 <= o <= 0xFDEF or (o & 0xFFFE) == 0xFFFE


def _show_char(ch: str) -> str:
    return f"U+{ord(ch):04X}"


def unit_text_problem(v: str, controls: bool = False) -> str | None:
    """Why `v` cannot be written into a unit file; None if it can.

    controls=True: the value goes in a C-escaped quoted string (Environment=, ExecStart=), where
    control characters other than NUL can be expressed; else (Description=, paths) none can.
    """
    for ch in v:
        o = ord(ch)
        if o == 0:
            return "must not contain a NUL character (U+0000)"
        if controls and unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
            continue
        if unprintable(ch):
            return f"must not contain control or non-character {_show_char(ch)}"
    return None


def _description(v: Any) -> str | None:
    problem = unit_text_problem(v)
    if problem is None and v.rstrip(" ").endswith("\\"):
        problem = "must not end with a backslash (systemd would join the next line to it)"
    return problem


def _finite(v: Any) -> str | None:
    return None if math.isfinite(v) and abs(v) < 2**53 else "must be a finite number"


def _positive(v: Any) -> str | None:
    return _finite(v) or (None if v > 0 else "must be a positive number of seconds")


def _nonnegative(v: Any) -> str | None:
    return _finite(v) or (None if v >= 0 else "must be zero or more")


def _count(v: Any) -> str | None:
    return None if 0 < v < 2**31 else "must be a positive whole number below 2147483648"


def _port(v: Any) -> str | None:
    return None if 1024 <= v <= 65535 else f"must be a port between 1024 and 65535 (got {v})"


def _name(v: Any) -> str | None:
    if AGENT_NAME.fullmatch(v):
        return None
    return f"must be lowercase letters, digits and '-', starting with a letter, at most 40 (got {v!r})"


def _span(v: Any) -> str | None:
    return None if 1 <= v <= 1000 else f"must be a number of ports between 1 and 1000 (got {v})"


def _http_path(v: Any) -> str | None:
    if v.startswith("/") and not any(c.isspace() or unprintable(c) for c in v):
        return None
    return f"must be a URL path starting with '/', without spaces or control characters (got {v!r})"


def path_problem(v: str) -> str | None:
    """Why a relative or absolute path cannot be used as is; None if it can."""
    problem = unit_text_problem(v)
    if problem:
        return problem
    if "$" in v:
        return "must not contain '$' (paths are not expanded: write ~/ for the home directory)"
    if ":" in v:
        return "must not contain ':' (systemd's BindPaths= reads it as source:destination)"
    if v != v.strip() or v.endswith("\\"):
        return "must not start or end with whitespace or end with a backslash"
    parts = v.split("/")
    body = parts[1:] if v.startswith("/") else parts
    if any(part in ("", ".", "..") for part in body):
        return "must be a normalized path: no '.' or '..' components, no '//', no trailing '/'"
    if len(v.encode()) >= PATH_MAX or any(len(part.encode()) > NAME_MAX for part in parts):
        return f"is too long (at most {PATH_MAX - 1} bytes, {NAME_MAX} per component)"
    return None


def _user_path(v: Any) -> str | None:
    if not (v.startswith("/") or v.startswith("~/")):
        return f"must be an absolute path or start with '~/' (got {v!r})"
    return path_problem(v)


def _user_paths(v: Any) -> str | None:
    for i, path in enumerate(v):
        problem = _user_path(path)
        if problem:
            return f"[{i}] {problem}" if "(got" in problem else f"[{i}] {problem} (got {path!r})"
    return None


def _relative_file(v: Any) -> str | None:
    """config.file: a file inside config_dir, named relative to it."""
    if v.startswith("/") or v.startswith("~"):
        return f"must be a file name relative to config_dir, not an absolute path (got {v!r})"
    if not v:
        return "must not be empty"
    return path_problem(v)


def _positive_amount(v: Any) -> str | None:
    return None if v > 0 else f"must be a positive amount (got {v})"


def _env_name(v: Any) -> str | None:
    return None if ENV_NAME.match(v) else f"must be an environment variable name (got {v!r})"


def _exit_statuses(v: Any) -> str | None:
    bad = [s for s in v if not 0 <= s <= 255]
    return f"exit statuses must be 0-255 (got {bad})" if bad else None


def _size(v: Any) -> str | None:
    return None if SIZE.fullmatch(str(v)) else f'must be a size such as "512M" or "2G" (got {v!r})'


def _percent(v: Any) -> str | None:
    return None if PERCENT.fullmatch(v) else f'must be a percentage such as "50%" or "200%" (got {v!r})'


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"

    return check


def _environment(v: Any) -> str | None:
    for k, val in v.items():
        if not ENV_NAME.fullmatch(k):
            return f"{k!r} is not a valid environment variable name"
        if k.startswith(RESERVED_ENV):
            return f"{k}: names starting with {RESERVED_ENV} are set by fleetctl; pick another name"
        if SECRETISH.search(k):
            return f"{k} looks like a secret; put it in secrets_file (a 0600 env file), not in the profile"
        problem = unit_text_problem(val, controls=True)
        if problem:
            return f"{k}: value {problem}"
    return None


def _names(v: Any) -> str | None:
    bad = [n for n in v if not AGENT_NAME.fullmatch(n)]
    return f"{bad[0]!r} is not an agent name" if bad else None


PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def _command(v: Any) -> str | None:
    if not v:
        return "must be a non-empty list: the program and its arguments"
    for i, arg in enumerate(v):
        problem = unit_text_problem(arg, controls=True)
        if problem:
            return f"command[{i}]: {problem}"
        for ph in PLACEHOLDER.findall(arg):
            if ph not in PLACEHOLDERS:
                return f"command[{i}]: unknown placeholder {ph} (known: {' '.join(PLACEHOLDERS)})"
            if ph == "{python}" and (i != 0 or arg != ph):
                return "{python} may only stand alone as command[0]"
    exe = v[0]
    if exe == "{python}":
        return None
    if exe.startswith("/") or exe.startswith("~/"):
        problem = path_problem(exe)
        if problem is None and any(c in exe for c in "\"'\\"):
            # systemd unquotes the executable, then refuses one holding these ("special characters").
            problem = "the program's path must not contain quotes or backslashes (systemd refuses them)"
        return f"command[0]: {problem}" if problem else None
    return (
        f"command[0] {exe!r} is not an absolute path; write the full path "
        f'(see `command -v {exe}`) or "{{python}}" for fleetctl\'s interpreter'
    )


def _pod_command(v: Any) -> str | None:
    for i, arg in enumerate(v):
        for ph in PLACEHOLDER.findall(arg):
            if ph not in PLACEHOLDERS:
                return f"[{i}]: unknown placeholder {ph} (known: {' '.join(PLACEHOLDERS)})"
    return None


def _checks(v: Any) -> str | None:
    for i, c in enumerate(v):
        if set(c) - {"name", "command", "timeout"}:
            return f"[{i}]: unknown key(s) {sorted(set(c) - {'name', 'command', 'timeout'})}"
        if not isinstance(c.get("name"), str) or not isinstance(c.get("command"), list) or not c["command"]:
            return f"[{i}]: needs name (string) and command (non-empty list of strings)"
        if not all(isinstance(a, str) for a in c["command"]):
            return f"[{i}].command: must be a list of strings"
        t = c.get("timeout", 30)
        if isinstance(t, bool) or not isinstance(t, int | float) or t <= 0:
            return f"[{i}].timeout: must be a positive number of seconds"
    return None


def _relax(v: Any) -> str | None:
    unknown = [d for d in v if d not in directives.RELAXABLE]
    if unknown:
        return (
            f"unknown sandbox directive(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(directives.RELAXABLE)}; see docs/sandbox.md)"
        )
    return None


def _paths(v: Any) -> str | None:
    for i, path in enumerate(v):
        problem = _user_path(path)
        if problem:
            return f"[{i}]: {problem}"
    return None


PROVIDER_TYPES = ("groq", "anthropic", "openai")
PROVIDER_KEYS = {"type", "name", "model", "base_url", "api_key_env"}


def _providers(v: Any) -> str | None:
    """[[watchdog.providers]]: the diagnosis chain, in order; see docs/providers.md."""
    names: set[str] = set()
    for i, p in enumerate(v):
        if set(p) - PROVIDER_KEYS:
            return f"[{i}]: unknown key(s) {sorted(set(p) - PROVIDER_KEYS)} (known: {sorted(PROVIDER_KEYS)})"
        bad = [k for k, val in p.items() if not isinstance(val, str) or not val.strip()]
        if bad:
            return f"[{i}].{bad[0]}: must be a non-empty string"
        kind = p.get("type")
        if kind not in PROVIDER_TYPES:
            return f"[{i}].type: must be one of {', '.join(PROVIDER_TYPES)} (got {kind!r})"
        if kind == "openai" and not ("base_url" in p and "model" in p):
            return f'[{i}]: type = "openai" needs base_url (e.g. "http://127.0.0.1:11434/v1") and model'
        url = p.get("base_url", "http://x")
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            return f"[{i}].base_url: must be an http:// or https:// URL (got {url!r})"
        if "api_key_env" in p and not ENV_NAME.fullmatch(p["api_key_env"]):
            return (
                f"[{i}].api_key_env: must be the NAME of an environment variable, not the key (got a value)"
            )
        name = p.get("name", kind)
        if not AGENT_NAME.match(name) or name == "rules":
            return f"[{i}].name: must be lowercase letters, digits and '-', and not \"rules\" (got {name!r})"
        if name in names:
            return f'[{i}].name: "{name}" is declared twice; give each provider its own name'
        names.add(name)
    return None


def _rates(v: Any) -> str | None:
    for k, val in v.items():
        if isinstance(val, bool) or not isinstance(val, int) or val <= 0:
            return f"{k}: must be a positive whole number of requests per minute"
    return None


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("name", "str", inheritable=False, check=_name, doc="agent name; defaults to the file name"),
    S(
        "description",
        "str",
        "",
        inheritable=False,
        check=_description,
        doc="one line shown in status and the unit",
    ),
    S(
        "role",
        "str",
        "specialist",
        check=_one_of("coordinator", "specialist"),
        inheritable=False,
        doc="coordinator gets oversee's inbox POSTs; every agent reads the bulletin",
    ),
    S(
        "command",
        "list[str]",
        required=True,
        check=_command,
        doc="argv; {port} {name} {workspace} {config_dir} expand, {python} is fleetctl's interpreter",
    ),
    S(
        "port",
        "int",
        required=True,
        inheritable=False,
        check=_port,
        doc="the agent listens on 127.0.0.1:port; unique in the fleet",
    ),
    S(
        "port_span",
        "int",
        1,
        check=_span,
        doc="ports the agent uses from port on (port … port+span-1); footprints may not overlap",
    ),
    S(
        "workspace",
        "str",
        "~/agents/{name}/workspace",
        check=_user_path,
        doc="working directory (created 0700); {name} expands",
    ),
    S(
        "config_dir",
        "str",
        "~/agents/{name}/config",
        check=_user_path,
        doc="the agent's own config directory (created 0700)",
    ),
    S(
        "environment",
        "table[str]",
        {},
        check=_environment,
        doc="extra non-secret environment; {name} {port} {workspace} {config_dir} and a leading ~/ expand",
    ),
    S("secrets_file", "str", None, check=_user_path, doc="KEY=VALUE env file, mode 0600"),
    S(
        "alternate_secrets_files",
        "list[str]",
        [],
        check=_user_paths,
        doc="credentials the watchdog may switch to",
    ),
    S("after", "list[str]", [], inheritable=False, check=_names, doc="agents that start before this one"),
    S("log_file", "bool", False, doc="also append output to a per-agent log file"),
    S(
        "health.path",
        "str",
        "/health",
        check=_http_path,
        doc="GET path that answers expected_status when the agent is alive",
    ),
    S(
        "health.ready_path",
        "str",
        None,
        check=_http_path,
        doc="optional readiness path (e.g. OpenClaw /readyz)",
    ),
    S("health.timeout", "number", 2.0, check=_positive, doc="seconds per health probe"),
    S("health.expected_status", "int", 200, doc="HTTP status that means healthy"),
    S(
        "health.startup_grace",
        "number",
        30.0,
        check=_positive,
        doc="seconds a (re)started agent gets to become healthy (and ready)",
    ),
    S(
        "health.stable_window",
        "number",
        10.0,
        check=_positive,
        doc="after a restart or config change, seconds it must then stay up before it counts as good",
    ),
    S(
        "restart.policy",
        "str",
        "on-failure",
        check=_one_of("on-failure", "always", "on-abnormal", "no"),
        doc="Restart=",
    ),
    S("restart.delay", "number", 5.0, check=_positive, doc="RestartSec"),
    S("restart.max_delay", "number", None, check=_positive, doc="RestartMaxDelaySec (systemd >= 254)"),
    S("restart.steps", "int", None, check=_count, doc="RestartSteps (systemd >= 254)"),
    S("restart.burst", "int", 5, check=_count, doc="StartLimitBurst"),
    S("restart.interval", "number", 300.0, check=_positive, doc="StartLimitIntervalSec"),
    S(
        "restart.bad_config_exit_statuses",
        "list[int]",
        [],
        check=_exit_statuses,
        doc="RestartPreventExitStatus: never restart-loop on these",
    ),
    S("restart.success_exit_statuses", "list[int]", [], check=_exit_statuses, doc="SuccessExitStatus"),
    S("restart.max_restarts_per_hour", "int", 3, check=_count, doc="watchdog flap limit"),
    S(
        "restart.kill_mode",
        "str",
        "control-group",
        check=_one_of("control-group", "mixed", "process"),
        doc="KillMode= (OpenClaw: mixed)",
    ),
    S("restart.stop_timeout", "number", 30.0, check=_positive, doc="TimeoutStopSec"),
    S("resources.memory_max", "str", None, check=_size, doc="MemoryMax="),
    S("resources.cpu_quota", "str", None, check=_percent, doc="CPUQuota="),
    S("resources.tasks_max", "int", None, check=_count, doc="TasksMax="),
    S("sandbox.enabled", "bool", True, doc="systemd sandboxing in the unit; false turns it off"),
    S(
        "sandbox.read_write_paths",
        "list[str]",
        [],
        check=_user_paths,
        doc="extra writable paths under ProtectSystem=strict",
    ),
    S(
        "sandbox.read_only_paths",
        "list[str]",
        [],
        check=_user_paths,
        doc="more of $HOME the agent may read (its runtime, data); the rest of $HOME is hidden",
    ),
    S(
        "sandbox.relax",
        "list[str]",
        [],
        check=_relax,
        doc="sandbox directives to turn off, keeping the rest (e.g. RestrictSUIDSGID); see docs/sandbox.md",
    ),
    S(
        "config.file",
        "str",
        None,
        check=_relative_file,
        doc="the agent's own config file, inside config_dir",
    ),
    S("config.format", "str", "json", check=_one_of("json", "json5", "toml"), doc="json, json5 or toml"),
    S("config.schema", "str", None, check=_user_path, doc="JSON Schema file the config must satisfy"),
    S("config.validate_command", "list[str]", [], doc="argv that validates the config (exit 0 = ok)"),
    S("warmup.path", "str", "/warmup", check=_http_path, doc="where the warm-up prompt is POSTed"),
    S("warmup.prompt", "str", None, doc="sent after the watchdog restarts the agent"),
    S("watchdog.redact", "list[str]", [], doc="extra regexes redacted before logs leave the machine"),
    S("oversight.usage_path", "str", None, check=_http_path, doc="endpoint reporting provider usage"),
    S("oversight.rate_limits", "table[int]", {}, check=_rates, doc="max requests/minute per provider"),
    S("oversight.inbox_path", "str", None, check=_http_path, doc="coordinator inbox (POST)"),
    S("oversight.checks", "list[table]", [], check=_checks, doc="user commands; non-zero = violation"),
    S(
        "cost.path",
        "str",
        None,
        check=_http_path,
        doc="endpoint reporting tokens and USD (OpenClaw: /api/diagnostics/prometheus); see docs/cost.md",
    ),
    S("cost.format", "str", "prometheus", check=_one_of("prometheus", "json"), doc="prometheus or json"),
    S(
        "cost.token_env",
        "str",
        None,
        check=_env_name,
        doc="variable in the secrets file holding the endpoint's bearer token",
    ),
    S(
        "budget.usd_per_day",
        "number",
        None,
        check=_positive_amount,
        doc="daily budget in USD (alerts at 80/100 %)",
    ),
    S(
        "budget.on_exceed",
        "str",
        "alert",
        check=_one_of("alert", "stop"),
        doc='"stop" stops and holds the agent at 100 %',
    ),
    S(
        "budget.spend_rate_factor",
        "number",
        5.0,
        check=_nonnegative,
        doc="warn when spend/hour exceeds this multiple of its 24 h average (0: off)",
    ),
    S(
        "kubernetes.image",
        "str",
        None,
        doc="container image for `fleetctl export kubernetes`; it must hold the command",
    ),
    S(
        "kubernetes.command",
        "list[str]",
        [],
        check=_pod_command,
        doc="argv in the pod when it must differ (e.g. listen on 0.0.0.0); default: command",
    ),
    S("kubernetes.storage", "str", "1G", check=_size, doc="size of the agent's PersistentVolumeClaim"),
)

BY_KEY = {s.key: s for s in SETTINGS}
SECTIONS = sorted({s.key.split(".")[0] for s in SETTINGS if "." in s.key})

# fleet.toml: fleet-wide settings (not per agent).
FLEET_SETTINGS: tuple[Setting, ...] = (
    S(
        "watchdog.interval_minutes",
        "int",
        1,
        check=_positive,
        doc="how often cron runs `fleetctl watchdog` (the full pass only on a confirmed failure)",
    ),
    S("watchdog.groq_model", "str", "llama-3.1-8b-instant", doc="first diagnosis model (needs GROQ_API_KEY)"),
    S(
        "watchdog.anthropic_model",
        "str",
        "claude-haiku-4-5",
        doc="fallback diagnosis model (needs ANTHROPIC_API_KEY)",
    ),
    S(
        "watchdog.providers",
        "list[table]",
        [],
        check=_providers,
        doc="diagnosis chain in order (type groq/anthropic/openai, name, model, base_url, api_key_env); "
        "default Groq, Anthropic; the rules always answer last",
    ),
    S(
        "oversight.review_checklist",
        "str",
        None,
        check=_user_path,
        doc="checklist file an LLM reviews the coordinator's recent log against (off when unset)",
    ),
    S("oversight.interval_minutes", "int", 5, check=_positive, doc="how often cron runs `fleetctl oversee`"),
    S(
        "alerts.dedup_window",
        "number",
        3600.0,
        check=_positive,
        doc="seconds before an open violation is re-sent",
    ),
    S("alerts.channels", "list[table]", [], doc="alert channels, see Alerts"),
    S(
        "budget.usd_per_day",
        "number",
        None,
        check=_positive_amount,
        doc="the whole fleet's daily budget in USD (alerts at 80/100 %)",
    ),
    S(
        "bulletin.max_age_days",
        "number",
        7.0,
        check=lambda v: None if v > 0 else "must be a positive number of days",
        doc="bulletin entries older than this move to a dated archive file at each oversee pass",
    ),
)
FLEET_BY_KEY = {s.key: s for s in FLEET_SETTINGS}


def markdown_table(settings: tuple[Setting, ...]) -> str:
    """The reference table in the README is generated from here (tests/test_readme.py)."""

    def show(s: Setting) -> str:
        if s.required:
            return "required"
        if s.default in (None, [], {}):
            return "-"
        if isinstance(s.default, bool):
            return f"`{str(s.default).lower()}`"
        return "`" + repr(s.default).replace("'", '"') + "`"

    rows = ["| key | type | default | what it is |", "| --- | --- | --- | --- |"]
    rows += [f"| `{s.key}` | {s.kind} | {show(s)} | {s.doc.replace('|', '/')} |" for s in settings]
    return "\n".join(rows) + "\n"
