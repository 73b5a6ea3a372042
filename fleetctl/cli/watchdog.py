"""Click commands for the watchdog: `watchdog`, `incidents`, `ack`; registered on `main` when
imported. Like the other command modules, nothing here but argument handling and rendering.
"""

from __future__ import annotations

import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from fleetctl.cli.common import emit_json, handle_errors, known_agent, main, profiles_option, resolve_profiles
from fleetctl.cli.watchdog_run import watchdog as run_watchdog

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime | None = None) -> float:
    """ "90m", "2h", "7d" (ago) or an ISO date/time (UTC unless it says otherwise) -> epoch seconds."""
    now = now or datetime.now(UTC)
    m = _RELATIVE.match(text.strip().lower())
    if m:
        return (now - timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])).timestamp()
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 30m, 2h, 7d or a date such as 2024-05-01T12:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _cell(v: Any, width: int) -> str:
    s = "-" if v is None else str(v)
    return s if len(s) <= width else s[: width - 1] + "~"


def incident_rows(records: list[dict[str, Any]]) -> list[str]:
    out = [f"{'TIME':<21} {'AGENT':<14} {'ACTION':<19} {'RESULT':<9} {'BY':<17} SYMPTOM / DETAIL"]
    for r in records:
        by = r.get("provider") and f"{r['provider']}{'*' if r.get('fallback') else ''}"
        out.append(
            f"{_cell(r.get('time'), 21):<21} {_cell(r.get('agent'), 14):<14} "
            f"{_cell(r.get('action'), 19):<19} {_cell(r.get('verification'), 9):<9} {_cell(by, 17):<17} "
            f"{r.get('symptom', '')}"
        )
        if r.get("detail"):
            out.append(f"{'':<21} {'':<14} {'':<19} {'':<9} {'':<17} -> {r['detail']}")
    if len(out) == 1:
        return ["no incidents recorded"]
    out.append("BY: who diagnosed (a provider's name, or rules); * = fell back along the chain")
    return out


@main.command()
@profiles_option
@click.option("--json", "as_json", is_flag=True, help="Print the run's report as JSON.")
@click.option(
    "--quiet", is_flag=True, help="Print nothing when all is well and nothing was done (cron's line)."
)
@handle_errors
def watchdog(profiles_dir: Path | None, as_json: bool, quiet: bool) -> None:
    """Check every agent; diagnose and fix confirmed failures (cron runs this).

    Exit status: 0 all good, 2 an agent needs a human, 75 another run holds the lock.
    """
    code = run_watchdog(profiles_dir, as_json, quiet)
    if code:
        sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (versioned).")
@click.option("--agent", default=None, help="Only this agent's incidents.")
@click.option("--since", default=None, help="Only newer ones: 30m, 2h, 7d or an ISO date/time (UTC).")
@profiles_option
@handle_errors
def incidents(as_json: bool, agent: str | None, since: str | None, profiles_dir: Path | None) -> None:
    """What the watchdog saw and did, oldest first."""
    from fleetctl.healing import incidents as log

    if agent is not None:
        known_agent(agent, profiles_dir)

    records = log.read(agent=agent, since=parse_since(since) if since else None)
    if as_json:
        emit_json({"version": 1, "incidents": records})
        return
    for line in incident_rows(records):
        click.echo(line)


@main.command()
@click.argument("agent")
@click.option("--no-start", is_flag=True, help="Only clear the hold and unmask; do not start the agent.")
@profiles_option
@handle_errors
def ack(agent: str, no_start: bool, profiles_dir: Path | None) -> None:
    """Clear AGENT's hold: unmask its unit, reset its failed state and start it.

    Fails (non-zero, with the agent's last log lines) when it does not come up healthy.
    """
    from fleetctl.healing.hold import ack as do_ack

    for line in do_ack(resolve_profiles(profiles_dir), agent, start=not no_start, say=click.echo):
        click.echo(line)
