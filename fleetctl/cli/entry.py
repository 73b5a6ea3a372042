"""The `fleetctl` command's entry point (and `python -m fleetctl`).

`fleetctl status` is what people, scripts and dashboards run most, often in a loop, and on a
small VPS importing click is a third of its run time at 50 agents (docs/benchmarks.md). So the
plain forms `status [--json] [--profiles DIR]` run `cli.status.show` directly; every other
command line, including any status line with something else in it (--help, --debug, a typo),
goes to click, which parses it and says what is wrong. tests/test_cli_entry.py checks that
both routes give the same output.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main() -> None:
    plain = status_request(sys.argv[1:])
    if plain is None:
        from fleetctl.cli.common import main as click_main

        click_main()
        return
    from fleetctl.cli.plain import fail
    from fleetctl.cli.status import show

    try:
        show(*plain)
    except (Exception, KeyboardInterrupt) as e:
        fail(e)


def status_request(args: list[str]) -> tuple[Path | None, bool] | None:
    """(profiles dir, as_json) when `args` is exactly `status [--json] [--profiles DIR]` in any
    order, each option once; None for anything else."""
    if args[:1] != ["status"]:
        return None
    profiles: str | None = None
    as_json = False
    rest = iter(args[1:])
    for arg in rest:
        if arg == "--json" and not as_json:
            as_json = True
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
    return (Path(profiles) if profiles is not None else None, as_json)
