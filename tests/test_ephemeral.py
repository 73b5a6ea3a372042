"""Agent ports inside the kernel's ephemeral range: the parsing of the kernel's lists, which
ports are exposed, and what `doctor` says about them (lifecycle/doctor.py, fleet/ephemeral.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.fleet import ephemeral
from fleetctl.fleet.profiles import load_fleet
from fleetctl.lifecycle.doctor import _port_range

_ranges = st.lists(
    st.tuples(st.integers(0, 3000), st.integers(0, 60)).map(lambda t: (t[0], t[0] + t[1])), max_size=6
)


def _ports_of(ranges: list[tuple[int, int]]) -> set[int]:
    return {p for a, b in ranges for p in range(a, b + 1)}


@given(_ranges)
def test_a_written_list_reads_back_as_the_same_ports(ranges: list[tuple[int, int]]) -> None:
    text = ephemeral.as_list(ranges)
    back = ephemeral.parse_reserved(text)
    assert _ports_of(back) == _ports_of(ranges)
    assert all(b + 1 < c for (_, b), (c, _) in zip(back, back[1:], strict=False))  # merged, sorted


@given(st.text(alphabet="0123456789-, x\n", max_size=20))
def test_the_reserved_list_is_read_strictly(text: str) -> None:
    try:
        ranges = ephemeral.parse_reserved(text)
    except ValueError:
        return
    assert all(0 <= a <= b <= 65535 for a, b in ranges)


@given(st.sets(st.integers(1, 3000), max_size=20), st.integers(1, 3000), st.integers(0, 1000), _ranges)
def test_exposed_ports_are_in_the_range_and_not_reserved(
    ports: set[int], low: int, width: int, reserved: list[tuple[int, int]]
) -> None:
    high = low + width
    want = sorted(p for p in ports if low <= p <= high and p not in _ports_of(reserved))
    assert ephemeral.exposed(ports, low, high, reserved) == want


def test_this_kernels_ranges_read() -> None:
    low, high, reserved = ephemeral.kernel_ranges()
    assert 0 < low <= high <= 65535 and all(0 <= a <= b <= 65535 for a, b in reserved)


def _proc(tmp_path: Path, port_range: str, reserved: str | None) -> Path:
    proc = tmp_path / "proc"
    proc.mkdir()
    (proc / "ip_local_port_range").write_text(port_range)
    if reserved is not None:
        (proc / "ip_local_reserved_ports").write_text(reserved)
    return proc


@pytest.mark.parametrize(
    ("port_range", "reserved", "level"),
    [
        ("32768\t60999\n", "\n", "warn"),  # the kernel's default: every example port is in it
        ("49152\t60999\n", "\n", "ok"),  # the example ports (48391 and up) are below it
        ("32768\t60999\n", "1000-2000,48000-49000\n", "ok"),  # all reserved already
        ("garbage\n", "\n", "warn"),
    ],
)
def test_doctor_names_the_exposed_agents_and_the_setting_that_keeps_the_rest(
    tmp_path: Path, example_profiles: Path, port_range: str, reserved: str, level: str
) -> None:
    fleet = load_fleet(example_profiles)
    check = _port_range(fleet, _proc(tmp_path, port_range, reserved))
    assert check.level == level, check
    if level == "ok" or "garbage" in port_range:
        assert "could not read" in check.text or "no agent port" in check.text
        return
    assert all(f"{p.name} ({p.port})" in check.text for p in fleet.profiles)
    spec = check.fix.split("ip_local_reserved_ports = ", 1)[1].split("'", 1)[0]
    assert _ports_of(ephemeral.parse_reserved(spec)) == {p.port for p in fleet.profiles}


def test_doctor_keeps_what_was_reserved_before(tmp_path: Path, example_profiles: Path) -> None:
    # The setting replaces the whole list: the fix must carry the ports reserved already.
    fleet = load_fleet(example_profiles)
    check = _port_range(fleet, _proc(tmp_path, "32768 60999\n", "8080,9000-9010\n"))
    spec = check.fix.split("ip_local_reserved_ports = ", 1)[1].split("'", 1)[0]
    assert _ports_of(ephemeral.parse_reserved(spec)) == (
        {p.port for p in fleet.profiles} | {8080} | set(range(9000, 9011))
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1024, 3000), st.integers(1, 4)), min_size=1, max_size=5),
    st.integers(1024, 3000),
    st.integers(0, 1500),
    _ranges,
)
def test_doctor_covers_every_port_of_every_footprint(
    agents: list[tuple[int, int]], low: int, width: int, reserved: list[tuple[int, int]]
) -> None:
    # Agents with port_span > 1 (a gateway and its helpers) can lose any port of their span.
    with tempfile.TemporaryDirectory() as d:
        profiles = Path(d) / "p"
        profiles.mkdir()
        footprints: dict[str, set[int]] = {}
        next_free = 0
        for i, (port, span) in enumerate(agents):
            port = max(port, next_free)  # footprints may not overlap
            next_free = port + span
            footprints[f"a{i}"] = set(range(port, port + span))
            (profiles / f"a{i}.toml").write_text(f'command = ["/bin/a"]\nport = {port}\nport_span = {span}\n')
        check = _port_range(
            load_fleet(profiles), _proc(Path(d), f"{low} {low + width}\n", ephemeral.as_list(reserved))
        )
    exposed = {q for ports in footprints.values() for q in ports if low <= q <= low + width} - _ports_of(
        reserved
    )
    if not exposed:
        assert check.level == "ok", check
        return
    assert check.level == "warn"
    spec = check.fix.split("ip_local_reserved_ports = ", 1)[1].split("'", 1)[0]
    assert _ports_of(ephemeral.parse_reserved(spec)) == exposed | _ports_of(reserved)
    for name, ports in footprints.items():
        assert (f"{name} (" in check.text) == bool(ports & exposed), (name, check.text)
