"""`fleetctl new`: a new profile with the next free port, validated with the fleet first."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import tomli_w

from fleetctl.common.atomic import write_atomic
from fleetctl.common.errors import FleetError
from fleetctl.fleet import schema
from fleetctl.fleet.profiles import FLEET_FILE, load_fleet

COORDINATOR_PORT = 48391
FIRST_SPECIALIST_PORT = 48520
SPACING = 20


Footprint = tuple[int, int]  # first and last port an agent uses


def next_port(used: Iterable[int | Footprint], role: str, span: int = 1) -> int:
    """The coordinator gets 48391; specialists take the first slot past the highest footprint.

    Never a gap left by a removed agent: ports of running agents must never move, and a
    recycled port could still be held by the old agent's lingering process. A footprint
    (port … port+span-1) never overlaps another's.
    """
    taken = [u if isinstance(u, tuple) else (u, u) for u in used]

    def free(port: int) -> bool:
        return all(port + span - 1 < first or port > last for first, last in taken)

    if role == "coordinator" and free(COORDINATOR_PORT):
        return COORDINATOR_PORT
    ends = [last for first, last in taken if first >= FIRST_SPECIALIST_PORT]
    port = FIRST_SPECIALIST_PORT
    if ends:
        port += ((max(ends) - FIRST_SPECIALIST_PORT) // SPACING + 1) * SPACING
    while not free(port):
        port += SPACING
    if port + span - 1 > 65535:
        raise FleetError("no free port left in the fleet's layout; set port by hand")
    return port


def new_profile(
    directory: Path,
    name: str,
    role: str = "specialist",
    description: str = "",
    command: list[str] | None = None,
    after: list[str] | None = None,
    template: str | None = None,
    say: Callable[[str], None] | None = None,
) -> Path:
    directory = Path(directory)
    problem = schema._name(name)
    if problem:
        raise FleetError(f"{name}: name: {problem}")
    target = directory / f"{name}.toml"
    if target.exists():
        raise FleetError(f"{target}: already exists (edit it, or pick another name)")
    if template and command:
        raise FleetError(f"{target}: --template {template} writes its own command; leave out --command")
    used: list[Footprint] = []
    has_profiles = directory.is_dir() and any(p.name != FLEET_FILE for p in directory.glob("*.toml"))
    if has_profiles:
        used = [(p.port, p.port + p.port_span - 1) for p in load_fleet(directory).profiles]
    if template:
        from fleetctl.fleet import templates

        filled = templates.discover(template)  # before anything is written: it may fail
        for line in filled.found:
            (say or print)(line)
        port = next_port(used, role, span=templates.OPENCLAW_SPAN)
        text = templates.render(template, filled, port, description, role)
        if after:
            text = text.replace("\nport = ", f"\nafter = {templates.toml_list(after)}\nport = ", 1)
    else:
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
        head = f"# Agent profile for {name}. Keys: see `fleetctl new --help` and the README.\n"
        text = head + tomli_w.dumps(doc)
    directory.mkdir(parents=True, exist_ok=True)
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
