"""Commands for the fleet: render, new, install, uninstall, status, start/stop/restart, logs, doctor."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from fleetctl.cli.common import (
    handle_errors,
    main,
    profiles_option,
    resolve_profiles,
    warn_if_root,
)
from fleetctl.common import paths
from fleetctl.common.errors import FleetError


@main.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("units"), show_default=True)
@click.option("--check", is_flag=True, help="Fail when the output folder is out of date; write nothing.")
@click.option(
    "--systemd-version", type=int, default=None, help="Render for this systemd version (default 252)."
)
@click.option("--no-userns", is_flag=True, help="Render for a host without user namespaces.")
@click.option(
    "--watchdog-output",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the watchdog's artefacts go (default: watchdog/ beside --output).",
)
@handle_errors
def render(
    profiles_dir: Path | None,
    output: Path,
    check: bool,
    systemd_version: int | None,
    no_userns: bool,
    watchdog_output: Path | None,
) -> None:
    """Render unit files from PROFILES_DIR (default ./profiles) into --output, and the watchdog's
    crontab block into watchdog/."""
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.lifecycle import cron
    from fleetctl.systemd.render import BASELINE, Target, write_units

    target = Target(systemd_version or BASELINE.systemd_version, userns=not no_userns)
    folder = resolve_profiles(profiles_dir)
    result = write_units(folder, output, target, check=check)
    for line in result.lines:
        click.echo(line)
    s = load_fleet(folder).settings
    wd_dir = watchdog_output if watchdog_output is not None else output.parent / "watchdog"
    said, wd_drift = cron.write_artefact(
        s.watchdog_interval_minutes, s.oversight_interval_minutes, wd_dir, check=check
    )
    click.echo(said)
    if check and (result.drift or wd_drift):
        stale = [str(output)] * bool(result.drift) + [str(wd_dir)] * wd_drift
        raise FleetError(f"{' and '.join(stale)} out of date; run `fleetctl render`")


@main.command("new")
@click.argument("name")
@profiles_option
@click.option(
    "--role",
    type=click.Choice(["specialist", "coordinator"]),
    default="specialist",
    show_default=True,
    help="A coordinator gets the first port of the range and the fleet's inbox; specialists follow.",
)
@click.option(
    "--description", "-d", default="", help="One line on what the agent does (the unit's Description=)."
)
@click.option("--after", multiple=True, help="Agent that must start first (repeatable).")
@click.option(
    "--command",
    "command",
    default=None,
    help='The agent\'s command line, e.g. "/usr/bin/agent --port {port}".',
)
@click.option(
    "--template",
    type=click.Choice(["openclaw"]),
    default=None,
    help="Fill a profile for a known agent from what is installed here (finds the package and a Node).",
)
@handle_errors
def new(
    name: str,
    profiles_dir: Path | None,
    role: str,
    description: str,
    after: tuple[str, ...],
    command: str | None,
    template: str | None,
) -> None:
    """Write a new profile NAME.toml with the next free port (footprints never overlap), and the
    agent's identity files (SOUL.md, CONSTITUTION.md, HEARTBEAT.md, MEMORY.md) in its workspace,
    never over one."""
    import shlex

    from fleetctl.fleet.identity import scaffold
    from fleetctl.fleet.new import new_profile
    from fleetctl.fleet.profiles import load_fleet

    directory = resolve_profiles(profiles_dir)
    path = new_profile(
        directory,
        name,
        role,
        description,
        shlex.split(command) if command else None,
        list(after),
        template=template,
        say=click.echo,
    )
    click.echo(f"wrote {path}")
    profile = load_fleet(directory).get(name)
    for f in scaffold(profile):
        click.echo(f"wrote {f}")


@main.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option("--prune", is_flag=True, help="Stop and remove units whose profile is gone.")
@click.option("--dry-run", is_flag=True, help="Print what would change; change nothing.")
@click.option("--no-wait", is_flag=True, help="Do not wait for the agents' health endpoints.")
@handle_errors
def install(profiles_dir: Path | None, prune: bool, dry_run: bool, no_wait: bool) -> None:
    """Install the fleet in PROFILES_DIR as user units, start it, wait until healthy."""
    from fleetctl.lifecycle.install import install as do_install

    warn_if_root()
    do_install(resolve_profiles(profiles_dir), prune=prune, dry_run=dry_run, say=click.echo, wait=not no_wait)


@main.command()
@click.option("--purge", is_flag=True, help="Also delete the workspaces and config dirs install created.")
@handle_errors
def uninstall(purge: bool) -> None:
    """Stop and remove everything fleetctl installed (and nothing else)."""
    from fleetctl.lifecycle.install import uninstall as do_uninstall

    warn_if_root()
    do_uninstall(purge=purge, say=click.echo)


@main.command()
@profiles_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned).")
@handle_errors
def status(profiles_dir: Path | None, as_json: bool) -> None:
    """One row per agent: state, PID, port, health, restarts, uptime, memory."""
    from fleetctl.cli.status import show

    show(profiles_dir, as_json)


def _control(verb: str, agents: tuple[str, ...], all_: bool, profiles_dir: Path | None) -> None:
    from fleetctl.lifecycle.control import control

    warn_if_root()
    if not agents and not all_:
        raise click.UsageError(f"name the agents to {verb}, or pass --all")
    for line in control(verb, resolve_profiles(profiles_dir), list(agents), all_, say=click.echo):
        click.echo(line)


_HELP = {
    "stop": "Stop agents and wait for the job to finish.",
    "start": "Start agents and wait until they are healthy (exit 1 with their last log lines if "
    "not). A failed unit's start-limit state is reset first. A held agent is refused: `fleetctl ack`.",
    "restart": "Restart agents and wait until they are healthy (exit 1 with their last log lines "
    "if not). A failed unit's start-limit state is reset first.",
}

for _verb in ("start", "stop", "restart"):

    def _make(verb: str) -> None:
        @main.command(verb, help=_HELP[verb])
        @click.argument("agents", nargs=-1)
        @click.option("--all", "all_", is_flag=True, help="Every agent in the fleet.")
        @profiles_option
        @handle_errors
        def cmd(agents: tuple[str, ...], all_: bool, profiles_dir: Path | None) -> None:
            _control(verb, agents, all_, profiles_dir)

    _make(_verb)


@main.command()
@click.argument("agent")
@click.option("-n", "--lines", default=50, show_default=True, help="How many lines.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines.")
@profiles_option
@handle_errors
def logs(agent: str, lines: int, follow: bool, profiles_dir: Path | None) -> None:
    """Show an agent's log lines: the journal, else its log file; exits 1 when there are none."""
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.systemd import journal

    p = load_fleet(resolve_profiles(profiles_dir)).get(agent)
    unit = paths.unit_name(p.name)
    got = journal.agent_tail(p.name, lines)
    if follow:
        argv = journal.follow_argv(unit, lines)
        if got.source == "log-file":  # the journal has none of its lines for this user
            argv = ["tail", "-n", str(lines), "-F", str(paths.agent_log_file(p.name))]
        os.execvp(argv[0], argv)
    for line in got.lines:
        click.echo(line)
    if not got.lines:
        raise FleetError(
            f"no log lines for {unit} (tried the journal and {paths.agent_log_file(p.name)}); "
            "see `fleetctl doctor`"
        )


@main.command()
@profiles_option
@handle_errors
def doctor(profiles_dir: Path | None) -> None:
    """Check the host and the fleet; say how to fix each problem."""
    from fleetctl.lifecycle.doctor import diagnose

    checks = diagnose(resolve_profiles(profiles_dir))
    marks = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    for c in checks:
        click.echo(f"{marks[c.level]}  {c.id:<16} {c.text}")
        if c.fix and c.level != "ok":
            click.echo(f"      {'':<16} fix: {c.fix}")
    if any(c.level == "fail" for c in checks):
        sys.exit(1)
