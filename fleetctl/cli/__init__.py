"""The command line: click and nothing else. Each command calls one function and renders it.

`common` holds the group and what every command shares; each other module adds one family of
commands to it. Arrows point one way: command modules import `common` and the core, never this
package's `__init__`, and the core never imports the CLI.
"""

from fleetctl.cli import configs, cost, dashboard, export, fleet  # noqa: F401  (their decorators register the commands)
from fleetctl.cli.common import main
from fleetctl.cli.oversight import register as _register_oversight
from fleetctl.cli.watchdog import register as _register_watchdog

_register_oversight(main)
_register_watchdog(main)

__all__ = ["main"]
