"""What every command shares: the group, error handling, JSON output, the profiles option."""

from __future__ import annotations

import importlib
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


EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug or an unforeseen condition, not the user's input


def handle_errors(fn: F) -> F:
    """Turn any error into one clean line and an exit code; tracebacks only with --debug.

    FleetError carries its own message and code; an OSError names the file and the reason; any
    other exception is a fleetctl bug, said so in one line (exit 70) with the way to see more."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except FleetError as e:
            if debug:
                raise
            click.echo(f"fleetctl: {e}", err=True)
            sys.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("fleetctl: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # `fleetctl status | head`: the reader has all it wanted. Quietly, as a shell tool
            # does; stdout goes to /dev/null so the interpreter's last flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE, what the shell reports for a command killed by it
        except OSError as e:
            if debug:
                raise
            where = " -> ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
            click.echo(f"fleetctl: {where + ': ' if where else ''}{e.strerror or e}", err=True)
            sys.exit(1)
        except Exception as e:
            if debug:
                raise
            click.echo(
                f"fleetctl: internal error: {type(e).__name__}: {e} (run again with --debug for the "
                "traceback, and report it)",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, indent=2, sort_keys=True))


# Command -> the module that defines it. Only the module of the command being run is imported:
# `fleetctl status` (run by scripts and dashboards, timed in bench/) must not pay for the
# exporter's, the dashboard's or the config store's imports. tests/test_cli_commands.py checks
# this table against what the modules define.
COMMAND_MODULES = {
    **dict.fromkeys(
        ("render", "new", "install", "uninstall", "status", "start", "stop", "restart", "logs", "doctor"),
        "fleetctl.cli.fleet",
    ),
    "config": "fleetctl.cli.configs",
    "cost": "fleetctl.cli.cost",
    "dashboard": "fleetctl.cli.dashboard",
    "export": "fleetctl.cli.export",
    **dict.fromkeys(("oversee", "metrics"), "fleetctl.cli.oversight"),
    **dict.fromkeys(("watchdog", "incidents", "ack"), "fleetctl.cli.watchdog"),
}


class LazyGroup(click.Group):
    """click's documented pattern for lazily loaded subcommands: a command module is imported
    when its command is looked up, and its decorators add the command to this group."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMAND_MODULES, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            importlib.import_module(COMMAND_MODULES[cmd_name])
        return self.commands.get(cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
        help="Profiles folder (default: the installed fleet's, else ./profiles).",
    )(f)


def known_agent(agent: str, profiles_dir: Path | None) -> None:
    """Refuse a name that is no agent of the fleet (a typo must not look like "nothing to do")."""
    from fleetctl.fleet.profiles import load_fleet

    load_fleet(resolve_profiles(profiles_dir)).get(agent)


def resolve_profiles(profiles_dir: Path | None) -> Path:
    """--profiles, else the fleet fleetctl acts on by default; a note on stderr when a
    ./profiles folder here is not that fleet, so nobody acts on one fleet believing it the other."""
    from fleetctl.lifecycle.manifest import default_profiles_dir, shadowed_profiles_note

    if profiles_dir is not None:
        return profiles_dir
    chosen = default_profiles_dir()
    note = shadowed_profiles_note(chosen)
    if note:
        click.echo(f"fleetctl: {note}", err=True)
    return chosen
