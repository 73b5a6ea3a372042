"""Agent ports the kernel may give away: inside its ephemeral range and not reserved.

Linux picks the local port of every outgoing TCP connection from
net.ipv4.ip_local_port_range (32768-60999 by default). While an agent is down, for a restart
say, any outgoing connection on the host (an agent calling its LLM, apt, a backup) can get the
agent's port as its local end; the agent then cannot listen until that connection ends, and
systemd counts the failed starts toward the start limit. Ports listed in
net.ipv4.ip_local_reserved_ports are never handed out that way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc/sys/net/ipv4")


def parse_reserved(text: str) -> list[tuple[int, int]]:
    """ip_local_reserved_ports ("8080,9000-9010"; empty for none) as inclusive (low, high)
    ranges; ValueError for anything else."""
    out = []
    for item in text.strip().split(","):
        item = item.strip()
        if not item:
            continue
        low, _, high = item.partition("-")
        a, b = int(low), int(high or low)
        if not 0 <= a <= b <= 65535:
            raise ValueError(f"not a port range: {item!r}")
        out.append((a, b))
    return out


def exposed(ports: Iterable[int], low: int, high: int, reserved: list[tuple[int, int]]) -> list[int]:
    """The ports, sorted, that lie in [low, high] and in no reserved range."""
    return sorted({p for p in ports if low <= p <= high and not any(a <= p <= b for a, b in reserved)})


def as_list(ranges: Iterable[tuple[int, int]]) -> str:
    """Inclusive ranges merged and written as the kernel's lists are: "48391-48396,48400"."""
    merged: list[list[int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return ",".join(f"{a}-{b}" if b > a else str(a) for a, b in merged)


def kernel_ranges(proc: Path = PROC) -> tuple[int, int, list[tuple[int, int]]]:
    """(low, high, reserved) as this network namespace has them; OSError or ValueError when
    they cannot be read."""
    low, high = (int(x) for x in (proc / "ip_local_port_range").read_text().split())
    try:
        reserved = parse_reserved((proc / "ip_local_reserved_ports").read_text())
    except FileNotFoundError:  # kernels before 2.6.35
        reserved = []
    return low, high, reserved
