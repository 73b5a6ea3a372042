"""Why an agent did not come up, in words that point at the fix.

Exit 78 (EX_CONFIG) is what many agents use for any start-up failure, so "rejected its config"
is said only when nothing more specific shows. The facts, in order: systemd's own exec
failure statuses (200-245: the manager could not even set the process up), then the agent's
and the manager's log lines (a path the sandbox keeps read-only, a system call the seccomp
filter refuses, an interpreter that is missing or too old, a path that does not exist).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fleetctl.common.interp import MISSING_INTERPRETER, WRONG_RUNTIME
from fleetctl.fleet.profiles import Profile
from fleetctl.systemd.manager import UnitInfo

# systemd's EXIT_* codes for failures while setting up the process (man systemd.exec).
EXEC_STATUS = {
    200: ("CHDIR", "the working directory could not be entered (missing, or hidden by the sandbox)"),
    203: ("EXEC", "the program could not be executed (missing, not executable, or no #! interpreter)"),
    204: ("MEMORY", "out of memory while setting up the process"),
    209: ("STDOUT", "the output (log file) could not be opened"),
    214: ("SETSCHEDULER", "a scheduling setting was refused"),
    217: ("USER", "the user could not be resolved"),
    218: ("CAPABILITIES", "capabilities could not be set"),
    226: ("NAMESPACE", "the sandbox's mount namespace could not be set up (user namespaces refused?)"),
    227: ("NO_NEW_PRIVILEGES", "NoNewPrivileges= could not be applied"),
    228: ("SECCOMP", "the seccomp filter could not be installed"),
    230: ("PERSONALITY", "LockPersonality=/the personality could not be applied"),
    233: ("RUNTIME_DIRECTORY", "a runtime directory could not be created"),
    243: ("CREDENTIALS", "credentials could not be set up"),
}
EXEC_SETUP = range(200, 246)

_PATH = r"(['\"]?)(/[^\s'\"]+|~/[^\s'\"]+)\1"


@dataclass(frozen=True)
class Rule:
    kind: str  # "sandbox" | "interpreter" | "path"
    pattern: re.Pattern[str]
    says: str  # {path} and {line} are filled in


RULES: tuple[Rule, ...] = (
    Rule(
        "sandbox",
        re.compile(r"EROFS|read-only file system", re.I),
        "the sandbox keeps a path it writes read-only (ProtectHome=read-only / ProtectSystem=strict){path}: "
        'point its caches into the agent\'s own dirs (e.g. XDG_CACHE_HOME = "{{config_dir}}/cache") '
        "or add the path to sandbox.read_write_paths",
    ),
    Rule(
        "sandbox",
        re.compile(r"ENOSYS|function not implemented", re.I),
        "a system call was refused by the sandbox's seccomp filter (RestrictSUIDSGID= refuses "
        'openat2, for one): keep the rest with sandbox.relax = ["RestrictSUIDSGID"]',
    ),
    Rule(
        "sandbox",
        re.compile(r"(EACCES|permission denied).*(/home/|~/|/\.cache|/\.config|/\.local)", re.I),
        "the sandbox denies access to a path in the home directory{path}: use the agent's own "
        "dirs or sandbox.read_write_paths",
    ),
    Rule(
        "interpreter",
        MISSING_INTERPRETER,
        "the #! interpreter is not on the unit's PATH: run the interpreter by absolute path "
        "(`fleetctl new NAME --template openclaw` finds one)",
    ),
    Rule(
        "interpreter",
        WRONG_RUNTIME,
        "the interpreter is the wrong version for the agent (the unit found an older Node): "
        "run a Node that satisfies the package's engines by absolute path",
    ),
    Rule(
        "path",
        re.compile(r"ENOENT|No such file or directory", re.I),
        "a path it needs does not exist{path}",
    ),
)


def _find_path(line: str) -> str:
    m = re.search(_PATH, line)
    return f" ({m.group(2).rstrip(':,;.')})" if m else ""


def from_logs(lines: Sequence[str], p: Profile | None = None) -> tuple[str, str] | None:
    """(kind, explanation with the telling line) from the newest line that matches a rule."""
    for line in reversed(lines):
        for rule in RULES:
            if rule.pattern.search(line):
                text = rule.says.replace("{path}", _find_path(line)).replace("{{config_dir}}", "{config_dir}")
                if rule.kind == "path" and p is not None and _read_only_there(p, line):
                    text += (
                        ", and the sandbox keeps the home directory read-only there (ProtectHome=read-only), "
                        "so the agent cannot create it: point it into the agent's own dirs "
                        '(e.g. XDG_CACHE_HOME = "{config_dir}/cache") or add it to sandbox.read_write_paths'
                    )
                return rule.kind, f"{text}; log: {line.strip()[:200]}"
    return None


def _read_only_there(p: Profile, line: str) -> bool:
    """Is the path in `line` inside the home but outside every path the unit makes writable?"""
    from fleetctl.common import paths

    m = re.search(_PATH, line)
    if not m or not p.sandbox.enabled or "ProtectHome" in p.sandbox.relax:
        return False
    path = paths.expand(m.group(2).rstrip(":,;."))
    home = paths.home()
    writable = [paths.expand(d) for d in (p.workspace, p.config_dir, *p.sandbox.read_write_paths)]
    return path.is_relative_to(home) and not any(path.is_relative_to(w) for w in writable)


def explain(p: Profile, info: UnitInfo, lines: Sequence[str]) -> str:
    """One line: what stopped the agent, the cause named as precisely as the facts allow."""
    status = info.exec_main_status
    exited = info.exec_main_code == 1
    if exited and status in EXEC_SETUP:
        name, what = EXEC_STATUS.get(status, (str(status), "systemd could not set up the process"))
        detail = from_logs(lines, p)
        extra = f"; {detail[1]}" if detail else ""
        return f"failed before the agent ran ({status}/{name}): {what}{extra}"
    found = from_logs(lines, p)
    if exited and status in p.restart.bad_config_exit_statuses:
        if found:
            return f"exited {status}, not because of its config: {found[1]}"
        clean = "its log shows no sandbox, interpreter or path error"
        return f"exited {status}: the agent rejected its config ({clean})"
    how = f"exit status {status}" if exited else f"signal {status}" if info.exec_main_code else "never ran"
    head = f"unit failed ({info.result}, {how})" if info.active_state == "failed" else f"stopped ({how})"
    return f"{head}: {found[1]}" if found else head
