"""The command line: click and nothing else. Each command calls one function and renders it.

`common` holds the group and what every command shares; each other module adds one family of
commands to it, and is imported only when one of its commands runs (`common.COMMAND_MODULES`).
`entry` is the console script; `plain`, `status` and `watchdog_run` need no click (see entry.py
for why).
Arrows point one way: command modules import `common` and the core, never this package's
`__init__`, and the core never imports the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["main"]


def __getattr__(name: str) -> Any:
    # `from fleetctl.cli import main` gives the click group, imported on first use, so that
    # importing fleetctl.cli.entry does not import click.
    if name == "main":
        from fleetctl.cli.common import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
