"""`fleetctl new`: a new profile with the next free port, validated with the fleet first."""

from __future__ import annotations

import tempfile
from pathlib import Path

import tomli_w

from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.fleet import schema
from fleetctl.fleet.profiles import FLEET_FILE, load_fleet

COORDINATOR_PORT = 48391
FIRST_SPECIALIST_PORT = 48520
SPACING = 20


def next_port(used: set[int], role: str) -> int:
    """The coordinator gets 48391; specialists take the slot after the highest one in use.

    Never a gap left by a removed agent: ports of running agents must never move, and a
    recycled port could still be held by the old agent's lingering process.
    """
    if role == "coordinator" and COORDINATOR_PORT not in used:
        return COORDINATOR_PORT
    slots = [p for p in used if p >= FIRST_SPECIALIST_PORT and (p - FIRST_SPECIALIST_PORT) % SPACING == 0]
    port = max(slots) + SPACING if slots else FIRST_SPECIALIST_PORT
    while port in used:
        port += SPACING
    if port > 65535:
        raise FleetError("no free port left in the fleet's layout; set port by hand")
    return port


def new_profile(
    directory: Path,
    name: str,
    role: str = "specialist",
    description: str = "",
    command: list[str] | None = None,
    after: list[str] | None = None,
) -> Path:
    directory = Path(directory)
    problem = schema._name(name)
    if problem:
        raise FleetError(f"{name}: name: {problem}")
    target = directory / f"{name}.toml"
    if target.exists():
        raise FleetError(f"{target}: already exists (edit it, or pick another name)")
    directory.mkdir(parents=True, exist_ok=True)
    used: set[int] = set()
    has_profiles = any(p.name != FLEET_FILE for p in directory.glob("*.toml"))
    if has_profiles:
        used = {p.port for p in load_fleet(directory).profiles}
    if not command and not _fleet_default_command(directory):
        raise FleetError(
            f'{target}: command: pass --command "/path/to/agent --port {{port}}" '
            f"({directory / FLEET_FILE} sets no [defaults] command)"
        )
    doc: dict[str, object] = {"description": description, "role": role, "port": next_port(used, role)}
    if command:
        doc["command"] = command
    if after:
        doc["after"] = after
    text = f"# Agent profile for {name}. Keys: see `fleetctl new --help` and the README.\n" + tomli_w.dumps(
        doc
    )
    _validate_with_fleet(directory, target.name, text)
    write_atomic(target, text, mode=0o644)
    return target


def _validate_with_fleet(directory: Path, filename: str, text: str) -> None:
    """Load the fleet as it would be with the new file, in a scratch copy: nothing half-written."""
    with tempfile.TemporaryDirectory() as scratch:
        s = Path(scratch)
        for f in directory.glob("*.toml"):
            (s / f.name).write_bytes(f.read_bytes())
        (s / filename).write_text(text)
        try:
            load_fleet(s)
        except FleetError as e:
            raise FleetError(str(e).replace(str(s), str(directory))) from None


def _fleet_default_command(directory: Path) -> bool:
    import tomllib

    try:
        with (directory / FLEET_FILE).open("rb") as f:
            return "command" in tomllib.load(f).get("defaults", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
