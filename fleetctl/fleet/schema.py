"""The profile schema: one table drives parsing, defaults, validation messages and docs.

A key is "section.key" ("port" for top-level ones). `fleet.toml`'s [defaults] may set any key
marked `inheritable`; a profile's own value wins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]  # returns a problem ("must be ...") or None


@dataclass(frozen=True)
class Setting:
    key: str
    kind: str  # "str" | "int" | "number" | "bool" | "list[str]" | "list[int]" | "table[str]" | "list[table]"
    default: Any = None
    required: bool = False
    inheritable: bool = True
    check: Check | None = None
    doc: str = ""


AGENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?$")
PERCENT = re.compile(r"^[0-9]+%$")
SECRETISH = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.I)
PLACEHOLDERS = ("{port}", "{name}", "{workspace}", "{config_dir}", "{python}")


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be a positive number of seconds"


def _nonnegative(v: Any) -> str | None:
    return None if v >= 0 else "must be zero or more"


def _port(v: Any) -> str | None:
    return None if 1024 <= v <= 65535 else f"must be a port between 1024 and 65535 (got {v})"


def _name(v: Any) -> str | None:
    if AGENT_NAME.match(v):
        return None
    return f"must be lowercase letters, digits and '-', starting with a letter, at most 40 (got {v!r})"


def _http_path(v: Any) -> str | None:
    return None if v.startswith("/") and " " not in v else f"must be a URL path starting with '/' (got {v!r})"


def _user_path(v: Any) -> str | None:
    if v.startswith("/") or v.startswith("~/"):
        return None if "\n" not in v else "must not contain a newline"
    return f"must be an absolute path or start with '~/' (got {v!r})"


def _exit_statuses(v: Any) -> str | None:
    bad = [s for s in v if not 0 <= s <= 255]
    return f"exit statuses must be 0-255 (got {bad})" if bad else None


def _size(v: Any) -> str | None:
    return None if SIZE.match(str(v)) else f'must be a size such as "512M" or "2G" (got {v!r})'


def _percent(v: Any) -> str | None:
    return None if PERCENT.match(v) else f'must be a percentage such as "50%" or "200%" (got {v!r})'


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)} (got {v!r})"

    return check


def _environment(v: Any) -> str | None:
    for k, val in v.items():
        if not ENV_NAME.match(k):
            return f"{k!r} is not a valid environment variable name"
        if SECRETISH.search(k):
            return f"{k} looks like a secret; put it in secrets_file (a 0600 env file), not in the profile"
        if "\n" in val:
            return f"{k}: value must not contain a newline"
    return None


PLACEHOLDER = re.compile(r"\{[a-z_]*\}")


def _command(v: Any) -> str | None:
    if not v:
        return "must be a non-empty list: the program and its arguments"
    for i, arg in enumerate(v):
        for ph in PLACEHOLDER.findall(arg):
            if ph not in PLACEHOLDERS:
                return f"command[{i}]: unknown placeholder {ph} (known: {' '.join(PLACEHOLDERS)})"
            if ph == "{python}" and (i != 0 or arg != ph):
                return "{python} may only stand alone as command[0]"
    exe = v[0]
    if exe == "{python}" or exe.startswith("/") or exe.startswith("~/"):
        return None
    return (
        f"command[0] {exe!r} is not an absolute path; write the full path "
        f'(see `command -v {exe}`) or "{{python}}" for fleetctl\'s interpreter'
    )


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
        if "api_key_env" in p and not ENV_NAME.match(p["api_key_env"]):
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
    S("description", "str", "", inheritable=False, doc="one line shown in status and the unit"),
    S(
        "role",
        "str",
        "specialist",
        check=_one_of("coordinator", "specialist"),
        inheritable=False,
        doc="coordinator gets the inbox and the bulletin; others are specialists",
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
    S("environment", "table[str]", {}, check=_environment, doc="extra non-secret environment"),
    S("secrets_file", "str", None, check=_user_path, doc="KEY=VALUE env file, mode 0600"),
    S("alternate_secrets_files", "list[str]", [], doc="credentials the watchdog may switch to"),
    S("after", "list[str]", [], inheritable=False, doc="agents that start before this one"),
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
        doc="seconds a (re)started agent gets to become and stay healthy",
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
    S("restart.steps", "int", None, check=_positive, doc="RestartSteps (systemd >= 254)"),
    S("restart.burst", "int", 5, check=_positive, doc="StartLimitBurst"),
    S("restart.interval", "number", 300.0, check=_positive, doc="StartLimitIntervalSec"),
    S(
        "restart.bad_config_exit_statuses",
        "list[int]",
        [],
        check=_exit_statuses,
        doc="RestartPreventExitStatus: never restart-loop on these",
    ),
    S("restart.success_exit_statuses", "list[int]", [], check=_exit_statuses, doc="SuccessExitStatus"),
    S("restart.max_restarts_per_hour", "int", 3, check=_positive, doc="watchdog flap limit"),
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
    S("resources.tasks_max", "int", None, check=_positive, doc="TasksMax="),
    S("sandbox.enabled", "bool", True, doc="systemd sandboxing in the unit; false turns it off"),
    S("sandbox.read_write_paths", "list[str]", [], doc="extra writable paths under ProtectSystem=strict"),
    S("config.file", "str", None, doc="the agent's own config file, inside config_dir"),
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
