"""The `fleetctl` command's entry point (and `python -m fleetctl`).

Two commands run without click. `fleetctl status` is what people, scripts and dashboards run
most, often in a loop, and on a small VPS importing click is a third of its run time at 50
agents (docs/benchmarks.md). `fleetctl watchdog` is what cron runs every minute, and a run that
finds a hung agent ends a fixed time after its first look: every millisecond before that look
is a millisecond longer outage. So the plain forms `status [--json] [--profiles DIR]` and
`watchdog [--json] [--quiet] [--profiles DIR]` run their plain functions directly; every other
command line, including any such line with something else in it (--help, --debug, a typo),
goes to click, which parses it and says what is wrong. tests/test_cli_entry.py checks that
both routes read the same lines the same way and print the same.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NamedTuple

# Command -> the flags its plain form may carry (each at most once, besides --profiles DIR).
PLAIN_FLAGS = {"status": ("--json",), "watchdog": ("--json", "--quiet")}


class PlainRequest(NamedTuple):
    command: str
    profiles_dir: Path | None
    flags: frozenset[str]


def main() -> None:
    plain = plain_request(sys.argv[1:])
    if plain is None:
        from fleetctl.cli.common import main as click_main

        click_main()
        return
    from fleetctl.cli.plain import fail

    try:
        if plain.command == "status":
            from fleetctl.cli.status import show

            show(plain.profiles_dir, "--json" in plain.flags)
        else:
            from fleetctl.cli.watchdog_run import watchdog

            sys.exit(watchdog(plain.profiles_dir, "--json" in plain.flags, "--quiet" in plain.flags))
    except (Exception, KeyboardInterrupt) as e:
        fail(e)


def plain_request(args: list[str]) -> PlainRequest | None:
    """The request when `args` is exactly a command of PLAIN_FLAGS with some of its flags and
    at most one --profiles DIR, in any order, each option once; None for anything else."""
    if not args or args[0] not in PLAIN_FLAGS:
        return None
    allowed = PLAIN_FLAGS[args[0]]
    profiles: str | None = None
    flags: set[str] = set()
    rest = iter(args[1:])
    for arg in rest:
        if arg in allowed and arg not in flags:
            flags.add(arg)
        elif arg == "--profiles" and profiles is None:
            profiles = next(rest, None)
            if profiles is None:
                return None
        elif arg.startswith("--profiles=") and profiles is None:
            profiles = arg.removeprefix("--profiles=")
        else:
            return None
    if profiles is not None and (not profiles or profiles.startswith("-")):
        return None  # click's reading of these is the reference: let it decide
    return PlainRequest(args[0], Path(profiles) if profiles is not None else None, frozenset(flags))
