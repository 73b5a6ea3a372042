"""The sandbox directive table: every directive fleetctl considers for an agent unit.

One row per directive: the line render writes, whether it needs a mount/user namespace (so it
is dropped on hosts that cannot build one), why it is on, or why it is left out, and what it
costs a Node agent such as OpenClaw. `sandbox.relax` in a profile names rows to turn off; the
table in docs/sandbox.md is kept equal to this one by tests/test_sandbox_doc.py.

Pure data: the schema imports it to validate `sandbox.relax`, so it imports nothing of fleetctl.
"""

from __future__ import annotations

from typing import NamedTuple

# Where a row applies.
ANY = "any"  # works in any user unit: seccomp, prctl, umask; no namespace needed
NAMESPACE = "namespace"  # needs the unit's user + mount namespace (dropped on fallback hosts)
OFF = "off"  # never rendered: the reason says why


class Directive(NamedTuple):
    """One sandbox directive: what render writes, where it applies, and why."""

    name: str
    value: str  # what render writes after "name=" ("" for OFF rows)
    scope: str
    why: str  # why on, or for OFF rows why it is left out
    node: str = "none seen (test Node agent)"  # what it costs or breaks for Node / OpenClaw
    relaxable: bool = True
    more: tuple[str, ...] = ()  # further values, each its own line (systemd merges them)

    @property
    def lines(self) -> list[str]:
        return [f"{self.name}={v}" for v in (self.value, *self.more)]


D = Directive
DIRECTIVES: tuple[Directive, ...] = (
    D("NoNewPrivileges", "yes", ANY, "setuid binaries cannot raise the agent's privileges"),
    D("LockPersonality", "yes", ANY, "no switching the execution domain (personality(2))"),
    D("RestrictRealtime", "yes", ANY, "no realtime scheduling that could starve the host"),
    D(
        "RestrictSUIDSGID",
        "yes",
        ANY,
        "the agent cannot create setuid/setgid files",
        "OpenClaw's state lock calls openat2(RESOLVE_BENEATH), which this filter answers ENOSYS: "
        "OpenClaw exits 78; relax it for OpenClaw",
    ),
    D(
        "SystemCallFilter",
        "@system-service",
        ANY,
        "only the system calls an ordinary service makes (no mount, reboot, module loading, ...), "
        "and of those not @privileged (chown, setuid, ...) nor @resources (setrlimit, "
        "setpriority, CPU affinity)",
        "none seen with the test Node agent (Node 20); a native addon making unusual calls gets EPERM",
        more=("~@privileged @resources",),
    ),
    D("SystemCallErrorNumber", "EPERM", ANY, "a filtered call fails with EPERM instead of killing the agent"),
    D("SystemCallArchitectures", "native", ANY, "no 32-bit or foreign-ABI system calls"),
    D(
        "RestrictNamespaces",
        "yes",
        ANY,
        "the agent cannot create namespaces of its own",
        "Chromium's own sandbox needs user namespaces: OpenClaw's browser tool must run Chromium "
        "with --no-sandbox or relax this",
    ),
    D(
        "RestrictAddressFamilies",
        "AF_UNIX AF_INET AF_INET6",
        ANY,
        "only local sockets and IP; no netlink, packet or Bluetooth sockets",
        "os.networkInterfaces() needs a netlink socket (getifaddrs), which is refused",
    ),
    D("UMask", "0077", ANY, "files the agent creates are private to the user"),
    D("KeyringMode", "private", ANY, "the agent gets its own kernel keyring, not the user's"),
    D(
        "MemoryDenyWriteExecute",
        "yes",
        ANY,
        "no writable-and-executable memory; on only for Python commands ({python} or python3*), "
        "whose runtime has no JIT",
        "V8 JIT-compiles JavaScript: Node aborts at start, so never rendered for other runtimes",
    ),
    D("PrivateUsers", "yes", NAMESPACE, "a user manager builds the other namespaces only inside one"),
    D("PrivateTmp", "yes", NAMESPACE, "a private /tmp and /var/tmp"),
    D("ProtectSystem", "strict", NAMESPACE, "the whole file system is read-only to the agent"),
    D(
        "ProtectHome",
        "tmpfs",
        NAMESPACE,
        "$HOME is empty except the agent's workspace and config dir (read-write), the bulletin and "
        "its runtime (read-only); relaxed, it is read-only and shows everything",
        "~/.cache is not writable: point XDG_CACHE_HOME into the workspace",
    ),
    D("PrivateDevices", "yes", NAMESPACE, "a minimal /dev: no disks, no raw devices"),
    D("PrivateIPC", "yes", NAMESPACE, "own System V IPC and POSIX message queues"),
    D("PrivateMounts", "yes", NAMESPACE, "mounts made by the agent stay inside its namespace"),
    D("ProtectHostname", "yes", NAMESPACE, "the agent cannot change the host name"),
    D("ProtectClock", "yes", NAMESPACE, "the agent cannot set the clock"),
    D("ProtectKernelModules", "yes", NAMESPACE, "no kernel module loading"),
    D("ProtectControlGroups", "yes", NAMESPACE, "/sys/fs/cgroup is read-only"),
    D("ProtectProc", "invisible", NAMESPACE, "other users' processes are hidden in /proc"),
    D(
        "CapabilityBoundingSet",
        "",
        NAMESPACE,
        "no capabilities, even inside its user namespace",
    ),
    D(
        "ProtectKernelLogs",
        "",
        OFF,
        "failed with 226/NAMESPACE in the test-bed manager (systemd 252, kernel 6.18)",
        relaxable=False,
    ),
    D(
        "ProtectKernelTunables",
        "",
        OFF,
        "failed with 226/NAMESPACE in the test-bed manager (systemd 252, kernel 6.18)",
        relaxable=False,
    ),
    D(
        "ProcSubset",
        "",
        OFF,
        "hides /proc/cpuinfo and /proc/stat, which Node's os.cpus() reads",
        relaxable=False,
    ),
    D(
        "IPAddressDeny",
        "",
        OFF,
        "needs cgroup BPF programs, which an unprivileged user manager cannot attach; and agents "
        "must reach their LLM API",
        relaxable=False,
    ),
    D(
        "PrivateNetwork",
        "",
        OFF,
        "agents listen on 127.0.0.1 for health checks and call their providers over the network",
        relaxable=False,
    ),
)

BY_NAME = {d.name: d for d in DIRECTIVES}
# The namespace rows that make the isolation; the other namespace rows are hardening, which
# install drops first when a host fails the unit with 226/NAMESPACE.
ISOLATION = ("PrivateUsers", "PrivateTmp", "ProtectSystem", "ProtectHome")
RELAXABLE = tuple(d.name for d in DIRECTIVES if d.relaxable)


def markdown_table() -> str:
    """docs/sandbox.md carries this table verbatim (tests/test_sandbox_doc.py)."""
    rows = [
        "| directive | on | why (or why not) | Node / OpenClaw | relax |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d in DIRECTIVES:
        if d.scope == OFF:
            on = "off"
        elif d.name == "MemoryDenyWriteExecute":
            on = "Python only"
        else:
            on = "yes" if d.scope == ANY else "yes (namespaces)"
        shown = " ".join(f"`{line}`" for line in d.lines) if d.scope != OFF else f"`{d.name}=`"
        relax = f'`relax = ["{d.name}"]`' if d.relaxable else "-"
        node = d.node.replace("|", "/") if d.scope != OFF else "-"
        rows.append(f"| {shown} | {on} | {d.why.replace('|', '/')} | {node} | {relax} |")
    return "\n".join(rows) + "\n"
