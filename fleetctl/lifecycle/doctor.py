"""`fleetctl doctor`: what a real server can get wrong, each with how to fix it."""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run
from fleetctl.fleet import ephemeral, ports
from fleetctl.fleet.profiles import Fleet, load_fleet
from fleetctl.lifecycle import hostcheck


@dataclass(frozen=True)
class Check:
    id: str
    level: str  # "ok" | "warn" | "fail"
    text: str
    fix: str = ""


def diagnose(profiles_dir: Path) -> list[Check]:
    checks: list[Check] = []
    fleet: Fleet | None = None
    try:
        fleet = load_fleet(profiles_dir)
        checks.append(Check("profiles", "ok", f"{len(fleet.profiles)} profiles in {profiles_dir} are valid"))
    except FleetError as e:
        checks.append(Check("profiles", "fail", str(e).splitlines()[0], "fix the profile, see the message"))
    checks += _manager_checks(fleet)
    checks.append(_linger())
    checks.append(_journal(fleet))
    checks.append(_crontab())
    checks.append(_sandbox())
    if fleet:
        checks += (
            _ports(fleet)
            + [_port_range(fleet)]
            + _secrets(fleet)
            + _test_starts(fleet)
            + _isolation(fleet)
            + _identity(fleet)
        )
    return checks


def _test_starts(fleet: Fleet) -> list[Check]:
    """Agents not running are started once as their unit would run them (lifecycle.teststart)."""
    from fleetctl.lifecycle import manifest
    from fleetctl.lifecycle.install import detect_target
    from fleetctl.lifecycle.teststart import test_start
    from fleetctl.systemd.manager import SystemdManager
    from fleetctl.systemd.render import Target

    out = []
    try:
        with SystemdManager() as mgr:
            target, _ = detect_target(mgr)
            fallback = set(manifest.load().sandbox_fallback)
            infos = mgr.units([paths.unit_name(p.name) for p in fleet.profiles])
            for p in fleet.profiles:
                if infos[paths.unit_name(p.name)].active_state in ("active", "activating", "reloading"):
                    continue
                t = Target(target.systemd_version, userns=False) if p.name in fallback else target
                r = test_start(mgr, p, t)
                fix = "see the cause above; `fleetctl logs " + p.name + "` has the agent's own lines"
                out.append(Check("test-start", "ok" if r.ok else "fail", f"{p.name}: {r.text}", fix))
    except FleetError as e:
        out.append(Check("test-start", "warn", f"agents could not be test-started: {e}"))
    return out


def _isolation(fleet: Fleet) -> list[Check]:
    """Per agent: is it kept out of the rest of $HOME, and systemd's exposure score."""
    from fleetctl.lifecycle.isolation import describe_all, grouped, isolation_off

    installed = [p for p in fleet.profiles if isolation_off(p) != "not installed"]
    off = {p.name: bool(isolation_off(p)) for p in installed}
    lines = describe_all(installed)
    out = [
        Check("isolation", "ok", line)
        for line in grouped({n: line for n, line in lines.items() if not off[n]})
    ]
    out += [
        Check(
            "isolation",
            "warn",
            line,
            "they can read other agents' files and secrets; see docs/sandbox.md",
        )
        for line in grouped({n: line for n, line in lines.items() if off[n]})
    ]
    return out


def _identity(fleet: Fleet) -> list[Check]:
    """A warning only: agents that do not read SOUL/CONSTITUTION/HEARTBEAT/MEMORY keep working."""
    from fleetctl.fleet.identity import missing

    by_files: dict[tuple[str, ...], list[str]] = {}
    for p in fleet.profiles:
        gone = tuple(missing(p))
        if gone:
            by_files.setdefault(gone, []).append(p.name)
    out = [
        Check(
            "identity",
            "warn",
            f"no {', '.join(gone)} in the workspace of: {', '.join(names)}",
            "fleetctl new writes them for new agents; copy them from another agent's workspace, "
            "or ignore this for agents that do not use them",
        )
        for gone, names in by_files.items()
    ]
    return out or [Check("identity", "ok", "every agent has SOUL, CONSTITUTION, HEARTBEAT and MEMORY files")]


def _manager_checks(fleet: Fleet | None) -> list[Check]:
    from fleetctl.systemd.manager import SystemdManager

    try:
        with SystemdManager() as mgr:
            v = mgr.version_number()
            out = [Check("manager", "ok", f"systemd user manager reachable at {paths.bus_address()}")]
            if v >= 254:
                out.append(
                    Check("systemd-version", "ok", f"systemd {v}: RestartSteps=/RestartMaxDelaySec= used")
                )
            else:
                out.append(
                    Check(
                        "systemd-version",
                        "ok",
                        f"systemd {v}: no RestartSteps= (needs 254); fixed RestartSec= is used",
                    )
                )
            return out
    except FleetError as e:
        from fleetctl.systemd.manager import linger_fix

        return [
            Check("manager", "fail", str(e), f"{linger_fix(hostcheck.current_user())}, then log in again")
        ]


_SANDBOX_FIX = (
    "units fall back to NoNewPrivileges-level sandboxing; to allow namespaces on Ubuntu 24.04: an "
    "AppArmor profile for the agent, or sysctl kernel.apparmor_restrict_unprivileged_userns=0"
)


def _sandbox() -> Check:
    """Measured: a short transient unit with the agents' namespace directives, and its /proc."""
    from fleetctl.lifecycle import sandbox
    from fleetctl.systemd.manager import SystemdManager

    problem = hostcheck.userns_problem()
    try:
        with SystemdManager() as mgr:
            verdict = sandbox.probe(mgr, private_users=os.geteuid() != 0 and problem is None)
    except FleetError as e:
        return Check("sandbox", "warn", f"sandbox not measured (no manager: {e})".splitlines()[0])
    if verdict.in_effect:
        return Check(
            "sandbox", "ok", "measured: a probe unit got its own mount namespace; units are sandboxed"
        )
    if verdict.in_effect is None:
        return Check(
            "sandbox", "warn", f"sandbox not measured: {verdict.detail}", "run `fleetctl doctor --debug`"
        )
    why = f" ({problem})" if problem else ""
    if verdict.namespace_exit:
        return Check(
            "sandbox", "warn", f"namespace sandboxing unavailable{why}: {verdict.detail}", _SANDBOX_FIX
        )
    return Check(
        "sandbox",
        "warn",
        f"namespace sandboxing NOT applied{why}: a probe unit {verdict.detail}",
        _SANDBOX_FIX
        if problem
        else "check that user namespaces are allowed (`fleetctl install` renders "
        "PrivateUsers=yes where they are)",
    )


def _linger() -> Check:
    from fleetctl.systemd.manager import linger_enabled, linger_fix

    user = hostcheck.current_user()
    if linger_enabled(user):
        return Check("linger", "ok", f"lingering on for {user}: agents run without a login and start at boot")
    return Check(
        "linger",
        "fail",
        f"lingering off for {user}: agents stop at logout and do not start at boot",
        linger_fix(user),
    )


def _journal(fleet: Fleet | None) -> Check:
    from fleetctl.systemd.journal import journal_readable

    ok, text = journal_readable()
    from fleetctl.lifecycle import manifest

    try:
        installed_with_files = manifest.load().log_files
    except FleetError:
        installed_with_files = False
    uses_file = installed_with_files or (fleet is not None and any(p.log_file for p in fleet.profiles))
    if ok:
        return Check("journal", "ok", f"{text}; the watchdog reads agents' lines from the journal")
    if uses_file:
        return Check(
            "journal",
            "warn",
            f"{text.split('; fix: ')[0]}; install made the agents write per-agent log files, which "
            "`fleetctl logs` and the watchdog read",
            text.partition("; fix: ")[2],
        )
    return Check(
        "journal",
        "fail",
        text,
        "set Storage=persistent in /etc/systemd/journald.conf and restart systemd-journald, "
        "or set log_file = true in the profiles",
    )


def _crontab() -> Check:
    if shutil.which("crontab") is None:
        return Check(
            "crontab",
            "fail",
            "no crontab command: the watchdog cannot be scheduled",
            "apt-get install cron (Debian/Ubuntu) or dnf install cronie",
        )
    proc = run(["crontab", "-l"], check=False, timeout=10)
    if proc.returncode == 0 or "no crontab" in proc.stderr:
        from fleetctl.lifecycle.cron import current_block

        if current_block() is None:
            return Check(
                "crontab",
                "warn",
                "crontab available, but no fleetctl block: nothing runs the watchdog",
                "fleetctl install",
            )
        return Check("crontab", "ok", "crontab has the fleetctl block (watchdog and oversee)")
    return Check(
        "crontab",
        "fail",
        f"crontab -l failed: {proc.stderr.strip()[:120]}",
        "check /etc/cron.allow and /etc/cron.deny",
    )


def _ports(fleet: Fleet) -> list[Check]:
    out = []
    for p in fleet.profiles:
        h = ports.holder(p.port) if ports.port_in_use(p.port) else None
        if h is None:
            continue
        if h.unit == paths.unit_name(p.name):
            continue
        out.append(
            Check(
                "port",
                "fail",
                f"{p.name}: port {p.port} is held by pid {h.pid} ({h.command})",
                "stop that process or give the agent another port",
            )
        )
    if not out:
        out.append(Check("port", "ok", "every profile port is free or held by its own agent"))
    return out


def _port_range(fleet: Fleet, proc: Path = ephemeral.PROC) -> Check:
    """An agent's port the kernel may hand to an outgoing connection while the agent restarts."""
    try:
        low, high, reserved = ephemeral.kernel_ranges(proc)
    except (OSError, ValueError) as e:
        return Check("port-range", "warn", f"could not read the kernel's ephemeral port range: {e}")
    # Every port of an agent's footprint (port_span) can be taken, not only the first.
    owner = {q: p.name for p in fleet.profiles for q in range(p.port, p.port + p.port_span)}
    open_ports = ephemeral.exposed(owner, low, high, reserved)
    if not open_ports:
        return Check(
            "port-range", "ok", f"no agent port is in the kernel's ephemeral range {low}-{high} unreserved"
        )
    by_agent: dict[str, list[tuple[int, int]]] = {}
    for q in open_ports:
        by_agent.setdefault(owner[q], []).append((q, q))
    names = ", ".join(f"{name} ({ephemeral.as_list(qs)})" for name, qs in by_agent.items())
    spec = ephemeral.as_list([(q, q) for q in open_ports] + reserved)  # the setting replaces the list
    return Check(
        "port-range",
        "warn",
        f"ports in the kernel's ephemeral range {low}-{high}: {names}; an outgoing connection can "
        "take one while its agent restarts, and the agent then cannot listen",
        f"as root: echo 'net.ipv4.ip_local_reserved_ports = {spec}' > /etc/sysctl.d/60-fleetctl.conf "
        f"&& sysctl --system; or give the agents ports below {low}",
    )


def _secrets(fleet: Fleet) -> list[Check]:
    out = []
    for p in fleet.profiles:
        for f in filter(None, (p.secrets_file, *p.alternate_secrets_files)):
            path = paths.expand(f)
            if path.exists() and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                out.append(
                    Check("secrets", "fail", f"{p.name}: {path} is readable by others", f"chmod 600 {path}")
                )
    return out
