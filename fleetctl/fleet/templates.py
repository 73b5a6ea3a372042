"""Profile templates for real agents: `fleetctl new NAME --template openclaw`.

A template is filled with what was found on this machine (nodefind) and written as TOML with
its comments. `profiles/examples/openclaw.toml` is the same template filled with the usual
`npm install -g` paths; tests/test_templates.py keeps the two in step, and
`python -m fleetctl.fleet.templates` rewrites the example.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OPENCLAW_SPAN = 111  # gateway on port, browser control on port+2, CDP ports up to port+110


@dataclass(frozen=True)
class Filled:
    node: str  # absolute path of the Node that runs the agent
    entry: str  # the package's entry script
    found: tuple[str, ...] = ()  # what discovery found, as comment lines


EXAMPLE = Filled(
    node="/usr/local/bin/node",
    entry="/usr/local/lib/node_modules/openclaw/openclaw.mjs",
    found=(
        "the usual `npm install -g openclaw` paths; `fleetctl new NAME --template openclaw`",
        "writes this file with the Node and package it finds on your machine",
    ),
)
EXAMPLE_PATH = Path(__file__).resolve().parents[2] / "profiles" / "examples" / "openclaw.toml"
EXAMPLE_PORT = 48620

TEMPLATES = ("openclaw",)


def _s(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(_s(v) for v in values) + "]"


def openclaw(filled: Filled, port: int, description: str = "", role: str = "specialist") -> str:
    search = [str(Path(filled.node).parent), "/usr/local/bin", "/usr/bin", "/bin"]
    agent_path = ":".join(dict.fromkeys(search))
    run = [filled.node, filled.entry]
    command = [*run, "--profile", "{name}", "gateway", "run", "--port", "{port}", "--bind", "loopback"]
    on_copy = ["/usr/bin/env", "OPENCLAW_CONFIG_PATH={file}"]
    validate = [*on_copy, *run, "--profile", "{name}", "config", "validate"]
    found = "\n".join(f"#   {line}" for line in filled.found)
    return f"""\
# An OpenClaw gateway (npm `openclaw`), from fleetctl's openclaw template. Found:
{found}
description = {_s(description or "OpenClaw gateway")}
role = {_s(role)}
port = {port}
# OpenClaw derives more ports from its base: browser control on port+2, CDP up to port+110.
port_span = {OPENCLAW_SPAN}
# Node by absolute path with the entry script: no PATH lookup (the bin shim's
# `#!/usr/bin/env node` would find whichever Node comes first, often too old).
command = {toml_list(command)}
# `--profile NAME` keeps OpenClaw's state and config in ~/.openclaw-NAME/.
config_dir = "~/.openclaw-{{name}}"
workspace = "~/.openclaw-{{name}}/workspace"
secrets_file = "~/.config/fleetctl/secrets/{{name}}.env"

[environment]
# The same Node first for anything OpenClaw spawns by name.
PATH = {_s(agent_path)}
# ProtectHome=read-only makes ~/.cache read-only: caches live in the agent's own dir.
XDG_CACHE_HOME = "{{config_dir}}/cache"
npm_config_cache = "{{config_dir}}/cache/npm"

[health]
path = "/healthz"
ready_path = "/readyz"   # 503 until the gateway is ready: install and config apply wait for it
timeout = 3.0
startup_grace = 45        # ~10 s to ready on a quiet host; slack for a busy one

[restart]
# OpenClaw restarts itself after some config edits by exiting 0: always start it again.
policy = "always"
delay = 5
# 78 (EX_CONFIG) means an invalid or missing config: restarting cannot fix it.
bad_config_exit_statuses = [78]
# 143: Node's exit after SIGTERM when it has no handler left; a clean stop, not a failure.
success_exit_statuses = [0, 143]
# It plans its drain from the unit's TimeoutStopUSec: up to 315 s plus 15 s of cleanup.
stop_timeout = 330
kill_mode = "mixed"

[resources]
memory_max = "1536M"  # ~0.8 GB RSS in normal use

[sandbox]
# Its state lock calls openat2(..., RESOLVE_BENEATH); RestrictSUIDSGID's seccomp filter
# answers ENOSYS and the gateway exits 78. Every other directive stays.
relax = ["RestrictSUIDSGID"]

[config]
file = "openclaw.json"
format = "json5"
# Validates the candidate copy ({{file}}), never the live file the gateway hot-reloads.
validate_command = {toml_list(validate)}
"""


def render(template: str, filled: Filled, port: int, description: str = "", role: str = "specialist") -> str:
    if template != "openclaw":
        raise ValueError(template)
    return openclaw(filled, port, description, role)


def example_text() -> str:
    return render("openclaw", EXAMPLE, EXAMPLE_PORT, "OpenClaw gateway for the coder agent")


def discover(template: str) -> Filled:
    """Fill `template` from this machine; FleetError says what is missing and how to get it."""
    from fleetctl.fleet import nodefind

    found = nodefind.find("openclaw")
    return Filled(str(found.node.path), str(found.package.entry), tuple(found.lines()))


if __name__ == "__main__":  # python -m fleetctl.fleet.templates: rewrite the example profile
    from fleetctl.common.atomic import write_atomic

    write_atomic(EXAMPLE_PATH, example_text(), mode=0o644)
    print(f"wrote {EXAMPLE_PATH}")
