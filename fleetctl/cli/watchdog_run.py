"""`fleetctl watchdog`, without click: the click command (cli/watchdog.py) and the entry point's
direct route (entry.py), which cron's line takes, both call `watchdog`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fleetctl.cli.plain import emit_json, log_to_stderr, resolve_profiles, say

EXIT_ATTENTION = 2  # the run completed, but an agent needs a human (held, or a fix that failed)


def watchdog(profiles_dir: Path | None, as_json: bool, quiet: bool) -> int:
    """One run; its report on stdout. The exit status: 0, or EXIT_ATTENTION."""
    from fleetctl.healing.run import run

    log_to_stderr()  # a no-op after click's main has set it up (with --debug, say)
    report = run(resolve_profiles(profiles_dir), say=(lambda _: None) if as_json else say)
    if as_json:
        emit_json(report.to_dict())
    elif not (quiet and report.ok and not report.records):
        say(summary(report))
    return 0 if report.ok else EXIT_ATTENTION


def summary(report: Any) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in sorted(report.counts.items()))
    verdict = "all good" if report.ok else "NEEDS ATTENTION"
    if report.held:
        verdict += f" (held: {', '.join(report.held)}; `fleetctl ack AGENT` after fixing)"
    for p in report.problems:
        verdict += f"\nproblem: {p}"
    return (
        f"watchdog: checked {report.agents_checked} agents in {report.duration:.1f}s "
        f"({counts}); {report.actions} action(s); {verdict}"
    )
