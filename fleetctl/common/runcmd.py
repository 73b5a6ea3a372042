"""The one way fleetctl runs other programs: argv lists, no shell, stdin from /dev/null."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Mapping, Sequence

from fleetctl.common.errors import FleetError

log = logging.getLogger(__name__)


def run(
    argv: Sequence[str],
    *,
    timeout: float = 30,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    cwd: str | None = None,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv; on failure raise FleetError naming the command as a copy-pasteable line."""
    line = shlex.join(argv)
    log.debug("run: %s", line)
    try:
        proc = subprocess.run(
            list(argv),
            stdin=None if input is not None else subprocess.DEVNULL,
            input=input,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
    except FileNotFoundError:
        raise FleetError(f"{argv[0]}: command not found (needed for: {line})") from None
    except subprocess.TimeoutExpired:
        raise FleetError(f"timed out after {timeout:g}s: {line}") from None
    if check and proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or [""]
        raise FleetError(f"failed (exit {proc.returncode}): {line}: {last[0]}")
    return proc
