"""`fleetctl cost`: what each agent spent, from the usage `oversee` records."""

from __future__ import annotations

import time
from pathlib import Path

import click

from fleetctl.cli.common import emit_json, handle_errors, main, profiles_option, resolve_profiles
from fleetctl.cli.watchdog import parse_since


@main.command()
@click.option(
    "--since",
    default="24h",
    show_default=True,
    help="Window: 30m, 24h, 7d or an ISO date/time (UTC); hour granularity, a week is kept.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned).")
@profiles_option
@handle_errors
def cost(since: str, as_json: bool, profiles_dir: Path | None) -> None:
    """Tokens and USD per agent, model and provider over a window, and the fleet total."""
    from fleetctl.cost.summary import cost_report, table
    from fleetctl.fleet.profiles import load_fleet

    report = cost_report(load_fleet(resolve_profiles(profiles_dir)), parse_since(since), time.time())
    if as_json:
        emit_json(report.to_dict())
        return
    for line in table(report, since):
        click.echo(line)
