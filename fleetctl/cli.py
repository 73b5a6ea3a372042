"""The command line: click and nothing else. Each command calls one function and renders it."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetctl import __version__
from fleetctl.errors import FleetError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn FleetError into one clean line and an exit code; tracebacks only with --debug."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FleetError as e:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                raise
            click.echo(f"fleetctl: {e}", err=True)
            sys.exit(e.exit_code)

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fleetctl")
@click.option("--debug", is_flag=True, help="Log every step and show tracebacks.")
def main(debug: bool) -> None:
    """Run a fleet of AI agents as user-level systemd units."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def warn_if_root() -> None:
    """Commands that act on the user manager warn as root: agents belong to a normal user."""
    if os.geteuid() == 0 and not os.environ.get("FLEETCTL_QUIET_ROOT"):
        click.echo(
            "fleetctl: warning: running as root; agents belong to an unprivileged user "
            "(run fleetctl as that user; FLEETCTL_QUIET_ROOT=1 silences this)",
            err=True,
        )


def profiles_option(f: F) -> F:
    return click.option(
        "--profiles", "profiles_dir", type=click.Path(path_type=Path), default=None,
        help="Profiles folder (default: ./profiles, else the folder of the last install).",
    )(f)


def resolve_profiles(profiles_dir: Path | None) -> Path:
    from fleetctl.manifest import default_profiles_dir

    return profiles_dir if profiles_dir is not None else default_profiles_dir()


@main.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option("--output", "-o", type=click.Path(path_type=Path), default=Path("units"), show_default=True)
@click.option("--check", is_flag=True, help="Fail when the output folder is out of date; write nothing.")
@click.option("--systemd-version", type=int, default=None, help="Render for this systemd version (default 252).")
@click.option("--no-userns", is_flag=True, help="Render for a host without user namespaces.")
@handle_errors
def render(profiles_dir: Path | None, output: Path, check: bool, systemd_version: int | None,
           no_userns: bool) -> None:
    """Render unit files from PROFILES_DIR (default ./profiles) into --output."""
    from fleetctl.render import BASELINE, Target, write_units

    target = Target(systemd_version or BASELINE.systemd_version, userns=not no_userns)
    result = write_units(resolve_profiles(profiles_dir), output, target, check=check)
    for line in result.lines:
        click.echo(line)
    if check and result.drift:
        raise FleetError(f"{output} is out of date ({len(result.drift)} unit(s)); run `fleetctl render`")


@main.command("new")
@click.argument("name")
@profiles_option
@click.option("--role", type=click.Choice(["specialist", "coordinator"]), default="specialist")
@click.option("--description", "-d", default="")
@click.option("--after", multiple=True, help="Agent that must start first (repeatable).")
@click.option("--command", "command", default=None, help='The agent\'s command line, e.g. "/usr/bin/agent --port {port}".')
@handle_errors
def new(name: str, profiles_dir: Path | None, role: str, description: str, after: tuple[str, ...],
        command: str | None) -> None:
    """Write a new profile NAME.toml with the next free port."""
    import shlex

    from fleetctl.newprofile import new_profile

    path = new_profile(resolve_profiles(profiles_dir), name, role, description,
                       shlex.split(command) if command else None, list(after))
    click.echo(f"wrote {path}")
