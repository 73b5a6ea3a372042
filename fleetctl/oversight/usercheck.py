"""User-defined checks: a profile's `[[oversight.checks]]` commands. Non-zero exit = violation.

Only commands written in the profile run here, as argv (no shell) through fleetctl.common.runcmd;
nothing an LLM or an agent says is ever executed. `{name} {port} {workspace} {config_dir}`
expand as in `command`; FLEET_AGENT and FLEET_PORT are also set, so a script can ask the agent.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run
from fleetctl.fleet.profiles import Profile, UserCheck
from fleetctl.lifecycle.agentenv import expand  # the placeholders as the unit fills them
from fleetctl.oversight.model import USER_CHECK_PREFIX, Violation

Mask = Callable[[str], str]
OUTPUT_MAX = 300  # one line for an alert; the full output is the user's to get by running it


def last_line(stdout: str, stderr: str) -> str:
    """The last non-empty line, from stderr if it has one (where failures are usually told)."""
    for text in (stderr, stdout):
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return ""


def run_check(p: Profile, c: UserCheck, mask: Mask = str) -> Violation | None:
    argv = [expand(p, a) for a in c.command]
    env = {**os.environ, "FLEET_AGENT": p.name, "FLEET_PORT": str(p.port)}
    workspace = paths.expand(p.workspace)
    cwd = str(workspace) if workspace.is_dir() else None
    # The argv may hold a token: the fix line leaves the host in alerts, so it is masked too.
    fix = mask(f"run it by hand: {shlex.join(argv)}")[:OUTPUT_MAX]
    try:
        proc = run(argv, timeout=c.timeout, env=env, check=False, cwd=cwd)
    except FleetError as e:  # not found, timed out: runcmd's message names the command
        return Violation.of(f"{USER_CHECK_PREFIX}{c.name}", p.name, mask(str(e))[:OUTPUT_MAX], fix)
    if proc.returncode == 0:
        return None
    said = mask(last_line(proc.stdout, proc.stderr))[:OUTPUT_MAX] or "(no output)"
    return Violation.of(f"{USER_CHECK_PREFIX}{c.name}", p.name, f"exit {proc.returncode}: {said}", fix)


def run_all(profiles: Sequence[Profile], masks: dict[str, Mask]) -> list[Violation]:
    jobs = [(p, c) for p in profiles for c in p.oversight.checks]
    if not jobs:
        return []
    # Concurrent: a slow check (up to its timeout) must not delay every other one.
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        results = list(pool.map(lambda j: run_check(j[0], j[1], masks.get(j[0].name, str)), jobs))
    return [v for v in results if v is not None]
