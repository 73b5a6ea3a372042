"""What every command shares: the group, error handling, JSON output, the profiles option."""

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
from fleetctl.common.errors import FleetError

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
        "--profiles",
        "profiles_dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Profiles folder (default: ./profiles, else the folder of the last install).",
    )(f)


def resolve_profiles(profiles_dir: Path | None) -> Path:
    from fleetctl.lifecycle.manifest import default_profiles_dir

    return profiles_dir if profiles_dir is not None else default_profiles_dir()
