"""Who holds a TCP port: a stale copy of the same agent, another agent, or a foreign process.

Read from /proc (net/tcp{,6} for the listening socket's inode, then /proc/PID/fd for its
owner, /proc/PID/cgroup for its unit). Processes of other users are invisible without root;
then the holder is reported as unknown.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

LISTEN = "0A"


@dataclass(frozen=True)
class Holder:
    pid: int | None
    command: str
    unit: str | None  # the systemd unit the process belongs to, when it has one


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def holder(port: int) -> Holder | None:
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return Holder(pid, _cmdline(pid), unit_of(pid))
            except OSError:
                continue
    return Holder(None, "(unknown: owned by a process we cannot inspect)", None)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:200]


def unit_of(pid: int) -> str | None:
    """The innermost *.service in the process's cgroup path (name=systemd or unified)."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        path = line.split(":", 2)[2]
        services = [part for part in path.split("/") if part.endswith(".service")]
        if services and services[-1] != "user@0.service" and not services[-1].startswith("user@"):
            return services[-1]
    return None
