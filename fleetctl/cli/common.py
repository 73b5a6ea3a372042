"""What every click command shares: the group, error handling, the profiles option (and, from
`plain`, JSON output and the profiles folder)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from fleetctl import __version__
from fleetctl.cli.plain import EXIT_INTERNAL, emit_json, fail, log_to_stderr, resolve_profiles

__all__ = ["EXIT_INTERNAL", "emit_json", "handle_errors", "main", "profiles_option", "resolve_profiles"]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn any error into one clean line and an exit code (plain.fail); tracebacks only with
    --debug (a closed pipe and Ctrl-C are not bugs: no traceback for those)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = logging.getLogger().isEnabledFor(logging.DEBUG)
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except (KeyboardInterrupt, BrokenPipeError) as e:
            fail(e)
        except Exception as e:
            if debug:
                raise
            fail(e)

    return wrapper  # type: ignore[return-value]


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
    log_to_stderr(debug)


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
