"""The command line: click and nothing else. Each command calls one function and renders it.

`common` holds the group and what every command shares; each other module adds one family of
commands to it, and is imported only when one of its commands runs (`common.COMMAND_MODULES`).
Arrows point one way: command modules import `common` and the core, never this package's
`__init__`, and the core never imports the CLI.
"""

from fleetctl.cli.common import main

__all__ = ["main"]
