"""Click commands `oversee` and `metrics`; registered on `main` when imported.

Kept apart so each command module stays a list of thin adapters; the commands follow the same
rules: one function call, its result rendered as text or a versioned JSON document.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from fleetctl.cli.common import emit_json, handle_errors, main, profiles_option, resolve_profiles


@main.command()
@profiles_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (versioned).")
@click.option(
    "--metrics-output",
    type=click.Path(path_type=Path),
    default=None,
    help="Prometheus textfile to refresh (default: <state dir>/metrics/fleetctl.prom).",
)
@handle_errors
def oversee(profiles_dir: Path | None, as_json: bool, metrics_output: Path | None) -> None:
    """One oversight pass: check the fleet, alert, tell the coordinator (cron: every 5 min).

    Exit 0: the pass completed (violations, if any, were alerted). 1: something could not
    be checked or told (a check error, an alert still queued, an inbox refusing); those
    lines go to stderr. 75: another pass is running.
    """
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.oversight.run import oversee as run_pass

    report = run_pass(load_fleet(resolve_profiles(profiles_dir)), metrics_output)
    if as_json:
        emit_json(report.to_dict())
    else:
        for line in report.lines():
            click.echo(line)
    for line in report.trouble():
        click.echo(f"fleetctl oversee: {line}", err=True)
    if not report.ok:
        sys.exit(1)


@main.command()
@profiles_option
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path),
    default=None,
    help="The .prom file (default: <state dir>/metrics/fleetctl.prom).",
)
@handle_errors
def metrics(profiles_dir: Path | None, output: Path | None) -> None:
    """Write Prometheus metrics for node_exporter's textfile collector, atomically."""
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.oversight.run import metrics as write_metrics

    click.echo(f"wrote {write_metrics(load_fleet(resolve_profiles(profiles_dir)), output)}")
