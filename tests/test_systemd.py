"""fleetctl.systemd.manager against the real systemd user manager of the test bed."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import socket
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_for
from jeepney import DBusAddress, new_method_call
from jeepney.low_level import MessageFlag
from usermanager import UserManager, free_port

from fleetctl.common.errors import FleetError
from fleetctl.systemd import bus as dbus
from fleetctl.systemd import manager as systemd
from fleetctl.systemd.manager import SystemdManager, UnitInfo, version_number

MakeUnit = Callable[..., str]


# --- fixtures -------------------------------------------------------------------------------
@pytest.fixture
def bus_env(user_manager: UserManager, monkeypatch: pytest.MonkeyPatch) -> UserManager:
    """Point fleetctl (in this process) at the test manager, as a login shell would."""
    env = user_manager.host_env()
    for key in ("HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, env[key])
    return user_manager


@pytest.fixture
def sd(bus_env: UserManager) -> Iterator[SystemdManager]:
    with bus_env.as_user():
        manager = SystemdManager()
    with manager:
        yield manager


@pytest.fixture
def make_unit(sd: SystemdManager, user_manager: UserManager) -> Iterator[MakeUnit]:
    """Write `fleettest-<tag>-<n>.service` files (then reload); all are torn down afterwards."""
    unit_dir = user_manager.home / ".config/systemd/user"
    unit_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    created: list[str] = []

    def make(service: str, install: str = "", reload: bool = True) -> str:
        name = f"fleettest-{tag}-{len(created)}.service"
        text = f"[Unit]\nDescription=fleetctl test {name}\n\n[Service]\n{service}\n"
        if install:
            text += f"\n[Install]\n{install}\n"
        (unit_dir / name).write_text(text)
        user_manager.give(user_manager.home / ".config")  # the user's own unit files
        created.append(name)
        if reload:
            sd.reload()
        return name

    make.tag = tag  # type: ignore[attr-defined]
    yield make
    if created:
        sd.stop(created, timeout=30)
        sd.disable(created)
        for name in created:
            (unit_dir / name).unlink(missing_ok=True)
        sd.reload()
        for name in created:
            _reset_failed_quietly(sd, name)


def _reset_failed_quietly(sd: SystemdManager, name: str) -> None:
    try:
        sd.reset_failed(name)
    except FleetError:
        pass  # already unloaded: nothing left to reset


def http_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def ns_cmdline(user_manager: UserManager, pid: int) -> str:
    # MainPID is a PID in the manager's pid namespace, so look it up from inside.
    r = user_manager.run(["cat", f"/proc/{pid}/cmdline"])
    return r.stdout.replace("\0", " ")


def one(sd: SystemdManager, name: str) -> UnitInfo:
    return sd.units([name])[name]


def count_bus_io(monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], list[int]]:
    """From now on: the number of calls in each socket write, and how many calls had been
    written when each read happened."""
    writes: list[int] = []
    reads_after: list[int] = []
    real_write, real_pump = dbus.Bus._write, dbus.Bus._pump

    def write(self: dbus.Bus, msgs: list[object], serials: list[int]) -> None:
        writes.append(len(msgs))
        real_write(self, msgs, serials)  # type: ignore[arg-type]

    def pump(self: dbus.Bus, deadline: float) -> None:
        reads_after.append(sum(writes))
        real_pump(self, deadline)

    monkeypatch.setattr(dbus.Bus, "_write", write)
    monkeypatch.setattr(dbus.Bus, "_pump", pump)
    return writes, reads_after


SLEEP = "ExecStart=/bin/sleep infinity"


# --- pure ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, number", [("252.38-1~deb12u1", 252), ("255", 255), ("v249.11", 249), (" 240-rc1", 240)]
)
def test_version_number_parses_leading_release(text: str, number: int) -> None:
    assert version_number(text) == number


def test_version_number_rejects_garbage() -> None:
    with pytest.raises(FleetError, match="systemd version"):
        version_number("unknown")


# --- connecting -------------------------------------------------------------------------------------
@pytest.mark.systemd
def test_version_from_manager(sd: SystemdManager) -> None:
    assert sd.version_number() >= 240
    assert sd.version().startswith(str(sd.version_number()))


def test_connect_error_says_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    address = f"unix:path={tmp_path}/nothing/bus"
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", address)
    with pytest.raises(FleetError) as info:
        SystemdManager()
    message = str(info.value)
    assert address in message
    assert "No such file or directory" in message
    assert "loginctl enable-linger" in message
    assert "\n" not in message


def test_connect_falls_back_to_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(FleetError, match=f"unix:path={tmp_path}/bus"):
        SystemdManager()


def test_connect_refused_is_one_fleet_error(tmp_path: Path) -> None:
    # A socket file nobody listens on: ECONNREFUSED rather than ENOENT.
    path = tmp_path / "bus"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
    with pytest.raises(FleetError, match="Connection refused"):
        SystemdManager(f"unix:path={path}")


def test_malformed_address_is_one_fleet_error() -> None:
    with pytest.raises(FleetError, match="cannot reach the systemd user manager"):
        SystemdManager("tcp:host=localhost,port=1")


# --- jobs and properties ----------------------------------------------------------------------------
@pytest.mark.systemd
def test_start_reports_properties_and_stop(
    sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager
) -> None:
    name = make_unit(SLEEP)
    before_us = time.time_ns() // 1000
    assert sd.start([name]) == {name: "done"}

    info = one(sd, name)
    assert (info.load_state, info.active_state, info.sub_state) == ("loaded", "active", "running")
    assert info.main_pid > 0
    assert "sleep infinity" in ns_cmdline(user_manager, info.main_pid)
    assert info.fragment_path == str(user_manager.home / ".config/systemd/user" / name)
    assert len(info.invocation_id) == 32 and int(info.invocation_id, 16)
    assert before_us - 5_000_000 <= info.active_enter_timestamp <= time.time_ns() // 1000
    assert info.memory_current is None or info.memory_current > 0
    assert info.need_daemon_reload is False
    assert info.n_restarts == 0

    assert sd.stop([name]) == {name: "done"}
    info = one(sd, name)
    assert (info.active_state, info.main_pid) == ("inactive", 0)
    # systemd garbage-collects a cleanly stopped unit nothing refers to; LoadUnit then loads
    # it afresh, so its history (timestamps, invocation id) is gone. Status must cope.
    assert (info.active_enter_timestamp, info.invocation_id) == (0, "")


@pytest.mark.systemd
def test_sigkill_is_restarted(sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager) -> None:
    port = free_port()
    name = make_unit(
        f"ExecStart={sys.executable} -m http.server {port} --bind 127.0.0.1\n"
        "Restart=on-failure\nRestartSec=100ms"
    )
    assert sd.start([name]) == {name: "done"}
    wait_for(lambda: http_ok(port), what=f"http.server on {port}")
    first = one(sd, name)
    assert "http.server" in ns_cmdline(user_manager, first.main_pid)

    sd.kill(name, signal.SIGKILL)

    def restarted() -> bool:
        now = one(sd, name)
        return now.n_restarts == 1 and now.sub_state == "running" and now.main_pid != first.main_pid

    wait_for(restarted, what=f"{name} to be restarted")
    wait_for(lambda: http_ok(port), what=f"http.server on {port} after restart")
    after = one(sd, name)
    assert after.invocation_id != first.invocation_id


@pytest.mark.systemd
def test_failing_unit_yields_failed(sd: SystemdManager, make_unit: MakeUnit) -> None:
    name = make_unit("Type=oneshot\nExecStart=/bin/sh -c 'exit 3'")
    assert sd.start([name]) == {name: "failed"}
    info = one(sd, name)
    assert (info.active_state, info.result) == ("failed", "exit-code")
    assert (info.exec_main_code, info.exec_main_status) == (1, 3)  # CLD_EXITED, status 3

    sd.reset_failed(name)
    assert one(sd, name).active_state == "inactive"


@pytest.mark.systemd
def test_many_jobs_at_once(sd: SystemdManager, make_unit: MakeUnit) -> None:
    names = [make_unit(SLEEP) for _ in range(5)]
    assert sd.start(names + names[:1]) == {n: "done" for n in names}  # duplicates collapse
    assert sd.restart(names) == {n: "done" for n in names}
    assert sd.try_restart(names) == {n: "done" for n in names}
    assert sd.stop(names) == {n: "done" for n in names}
    assert sd.try_restart(names[:1]) == {names[0]: "done"}  # no-op on a stopped unit
    assert one(sd, names[0]).active_state == "inactive"
    assert sd.start([]) == {}


@pytest.mark.systemd
def test_a_new_connection_subscribes_with_its_first_jobs(
    bus_env: UserManager, sd: SystemdManager, make_unit: MakeUnit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watchdog opens a connection per agent it fixes: its first restart subscribes to
    the job signals and queues the job in one write, before it reads any reply, and still
    sees its JobRemoved; later jobs on it do not subscribe again."""
    names = [make_unit(SLEEP) for _ in range(2)]
    assert sd.start(names) == dict.fromkeys(names, "done")
    first = {n: one(sd, n).invocation_id for n in names}
    with bus_env.as_user():
        fresh = SystemdManager()
    with fresh:
        writes, reads_after = count_bus_io(monkeypatch)
        assert fresh.restart(names) == dict.fromkeys(names, "done")
        assert writes == [4] and reads_after[0] == 4  # AddMatch, Subscribe, two RestartUnit
        writes.clear()
        assert fresh.restart(names[:1]) == {names[0]: "done"}
        assert writes == [1]
    assert all(one(sd, n).invocation_id not in ("", first[n]) for n in names)


PRIVATE_JOBS = """
import json, sys
from fleetctl.systemd import bus
from fleetctl.systemd.manager import SystemdManager
writes = []
real = bus.Bus._write
bus.Bus._write = lambda self, msgs, serials: (writes.append(len(msgs)), real(self, msgs, serials))[1]
with SystemdManager(private=True) as mgr:
    out = {"address": mgr.address, "restart": mgr.restart(sys.argv[1:]), "stop": mgr.stop(sys.argv[1:])}
print(json.dumps({**out, "writes": writes}))
"""


@pytest.mark.systemd
def test_jobs_on_the_managers_private_socket(
    user_manager: UserManager, make_unit: MakeUnit, sd: SystemdManager
) -> None:
    """On the private socket there is no bus daemon to ask for a match: systemd sends every
    private connection its signals unasked, JobRemoved included, so jobs are waited for as on
    the bus (Subscribe and the jobs in one write). Run inside the bed: systemd refuses a peer
    whose PID it cannot see."""
    names = [make_unit(SLEEP) for _ in range(2)]
    assert sd.start(names) == dict.fromkeys(names, "done")
    first = {n: one(sd, n).invocation_id for n in names}
    env = user_manager.ns_env(PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    r = user_manager.run([sys.executable, "-c", PRIVATE_JOBS, *names], env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["address"] == f"unix:path={user_manager.xdg_runtime_dir}/systemd/private"
    assert doc["restart"] == doc["stop"] == dict.fromkeys(names, "done")
    assert doc["writes"] == [3, 2]  # Subscribe and two RestartUnit; then two StopUnit
    assert all(one(sd, n).active_state == "inactive" for n in names)
    assert all(one(sd, n).invocation_id != first[n] for n in names)


@pytest.mark.systemd
def test_alias_is_reported_under_the_name_asked_for(
    sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager, request: pytest.FixtureRequest
) -> None:
    real = make_unit(SLEEP)
    alias = real.replace(".service", "-alias.service")
    link = user_manager.home / ".config/systemd/user" / alias
    link.symlink_to(real)
    request.addfinalizer(lambda: link.unlink(missing_ok=True))
    sd.reload()
    # JobRemoved carries the real name; callers look results up by the name they passed.
    assert sd.start([alias]) == {alias: "done"}
    info = sd.units([alias])[alias]
    assert (info.name, info.active_state) == (alias, "active")
    assert sd.units([real])[real].invocation_id == info.invocation_id


@pytest.mark.systemd
def test_job_timeout_names_pending_units(sd: SystemdManager, make_unit: MakeUnit) -> None:
    slow = make_unit("Type=oneshot\nExecStart=/bin/sleep 30")
    fast = make_unit(SLEEP)
    with pytest.raises(FleetError, match=f"timed out after 0.5s waiting for {slow}$"):
        sd.start([slow, fast], timeout=0.5)
    assert one(sd, fast).active_state == "active"
    assert sd.stop([slow]) == {slow: "done"}  # the stop job replaces the start job


@pytest.mark.systemd
def test_start_unknown_unit_raises(sd: SystemdManager, make_unit: MakeUnit) -> None:
    good = make_unit(SLEEP)
    missing = f"fleettest-missing-{uuid.uuid4().hex[:8]}.service"
    with pytest.raises(FleetError, match=f"{missing} not found"):
        sd.start([good, missing])
    assert one(sd, good).active_state == "active"  # the good job still ran to completion


@pytest.mark.systemd
def test_kill_not_running_raises(sd: SystemdManager, make_unit: MakeUnit) -> None:
    name = make_unit(SLEEP)
    with pytest.raises(FleetError, match="KillUnit"):
        sd.kill(name, signal.SIGTERM)


@pytest.mark.systemd
def test_enable_disable(sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager) -> None:
    name = make_unit(SLEEP, install="WantedBy=default.target")
    link = user_manager.home / ".config/systemd/user/default.target.wants" / name
    changes = sd.enable([name])
    assert ("symlink", str(link), str(link.parent.parent / name)) in changes
    assert link.is_symlink()
    sd.reload()
    assert one(sd, name).unit_file_state == "enabled"

    assert sd.disable([name]) == [("unlink", str(link), "")]
    assert not link.is_symlink()
    sd.reload()
    assert one(sd, name).unit_file_state == "disabled"


@pytest.mark.systemd
def test_list_units_by_prefix(sd: SystemdManager, make_unit: MakeUnit) -> None:
    names = [make_unit(SLEEP) for _ in range(3)]
    sd.start(names[:2])
    prefix = f"fleettest-{make_unit.tag}-"  # type: ignore[attr-defined]
    # Loaded units only: the never-started one may or may not still be loaded (GC).
    assert set(names[:2]) <= set(sd.list_units(prefix)) <= set(names)
    assert sd.list_units(f"fleettest-{uuid.uuid4().hex}-") == []


# --- pipelined units() vs busctl -------------------------------------------------------------------------
_BUSCTL_PROPS = {
    "load_state": ("Unit", "LoadState"),
    "active_state": ("Unit", "ActiveState"),
    "sub_state": ("Unit", "SubState"),
    "active_enter_timestamp": ("Unit", "ActiveEnterTimestamp"),
    "inactive_enter_timestamp": ("Unit", "InactiveEnterTimestamp"),
    "state_change_timestamp": ("Unit", "StateChangeTimestamp"),
    "fragment_path": ("Unit", "FragmentPath"),
    "unit_file_state": ("Unit", "UnitFileState"),
    "need_daemon_reload": ("Unit", "NeedDaemonReload"),
    "invocation_id": ("Unit", "InvocationID"),
    "result": ("Service", "Result"),
    "main_pid": ("Service", "MainPID"),
    "n_restarts": ("Service", "NRestarts"),
    "exec_main_status": ("Service", "ExecMainStatus"),
    "exec_main_code": ("Service", "ExecMainCode"),
    "memory_current": ("Service", "MemoryCurrent"),
}


UNIT = "org.freedesktop.systemd1.Unit"


def busctl_json(user_manager: UserManager, *args: str) -> list[dict[str, Any]]:
    """busctl inside the namespaces; one JSON document per line (one per property)."""
    r = user_manager.run(["busctl", "--user", "--json=short", *args], check=True)
    return [json.loads(line) for line in r.stdout.splitlines()]


def busctl_unit_path(user_manager: UserManager, name: str) -> str:
    args = [
        "call",
        systemd.SYSTEMD,
        "/org/freedesktop/systemd1",
        systemd.MANAGER_IFACE,
        "LoadUnit",
        "s",
        name,
    ]
    (loaded,) = busctl_json(user_manager, *args)
    return str(loaded["data"][0])


def busctl_info(user_manager: UserManager, name: str) -> dict[str, object]:
    path = busctl_unit_path(user_manager, name)
    info: dict[str, object] = {"name": name}
    for field, (iface, prop) in _BUSCTL_PROPS.items():
        (value,) = busctl_json(
            user_manager, "get-property", systemd.SYSTEMD, path, f"org.freedesktop.systemd1.{iface}", prop
        )
        data = value["data"]
        if field == "invocation_id":
            data = bytes(data).hex()
        if field == "memory_current" and data == systemd.UINT64_UNSET:
            data = None
        info[field] = data
    return info


@pytest.mark.systemd
def test_units_matches_busctl(sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager) -> None:
    running, stopped = make_unit(SLEEP), make_unit(SLEEP)
    failed = make_unit("Type=oneshot\nExecStart=/bin/false")
    sd.start([running, failed])
    missing = f"fleettest-missing-{uuid.uuid4().hex[:8]}.service"
    names = [running, failed, stopped, missing]

    got = sd.units(names)

    assert list(got) == names
    assert got[missing].load_state == "not-found"
    assert got[failed].active_state == "failed"
    for name in names:
        assert got[name]._asdict() == busctl_info(user_manager, name), name


@pytest.mark.systemd
def test_units_of_non_service_and_empty(sd: SystemdManager) -> None:
    assert sd.units([]) == {}
    target = one(sd, "default.target")
    assert target.load_state == "loaded"
    assert (target.main_pid, target.result, target.memory_current) == (0, "", None)


@pytest.mark.systemd
def test_units_invalid_name_raises(sd: SystemdManager) -> None:
    with pytest.raises(FleetError, match="not valid"):
        sd.units(["no spaces allowed"])


@pytest.mark.systemd
def test_units_is_pipelined(sd: SystemdManager, make_unit: MakeUnit, monkeypatch: pytest.MonkeyPatch) -> None:
    names = [make_unit(SLEEP, reload=False) for _ in range(50)]
    sd.reload()
    sd.start(names)
    writes, reads_after = count_bus_io(monkeypatch)
    t0, cpu0 = time.perf_counter(), time.process_time()
    infos = sd.units(names)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0

    assert all(i.active_state == "active" for i in infos.values())
    # 50 x (RefUnit + LoadUnit), 50 x 16 Gets, 50 x UnrefUnit: written a chunk at a time, and
    # a batch's first reply is only awaited once two chunks (or all of the batch) are out.
    assert sum(writes) == 100 + 50 * 16 + 50
    assert len(writes) <= 1 + (50 * 16) // dbus.CHUNK + 1 + 1
    assert reads_after[0] == 100  # the whole first batch
    assert 100 + 2 * dbus.CHUNK in reads_after  # two chunks of the second
    # Loose bounds (other test runs share this machine); serial calls would be ~1000 round trips.
    assert cpu < 0.5 and elapsed < 2.0, f"units() for 50: {elapsed * 1000:.0f} ms, cpu {cpu * 1000:.0f} ms"


@pytest.mark.systemd
def test_units_leaves_no_reference(
    sd: SystemdManager, make_unit: MakeUnit, user_manager: UserManager
) -> None:
    name = make_unit(SLEEP)
    sd.units([name])
    sd.version()  # the bus delivers in order: UnrefUnit has been handled once this returns
    path = busctl_unit_path(user_manager, name)
    (refs,) = busctl_json(user_manager, "get-property", systemd.SYSTEMD, path, UNIT, "Refs")
    assert refs["data"] == []


# --- the hand-made wire format ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [(), ("org.freedesktop.systemd1.Unit", "ActiveState"), ("fleet-ü.service",), ("", "1", "22", "333")],
)
@pytest.mark.parametrize("no_reply", [False, True])
def test_string_call_is_byte_identical_to_jeepney(args: tuple[str, ...], no_reply: bool) -> None:
    address = DBusAddress("/org/freedesktop/systemd1/unit/a_2dx", bus_name="org.x.y", interface="a.b.C")
    msg = new_method_call(address, "Member", "s" * len(args) if args else None, args)
    if no_reply:
        msg.header.flags = MessageFlag.no_reply_expected
    fast = dbus.StringCall("org.x.y", address.object_path, "a.b.C", "Member", args, no_reply=no_reply)
    assert fast.serialise(serial=4242) == msg.serialise(serial=4242)


# --- lingering ----------------------------------------------------------------------------------------------
def test_linger_enabled_reads_flag_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(systemd, "LINGER_DIR", tmp_path)
    assert not systemd.linger_enabled("alice")
    (tmp_path / "alice").touch()
    assert systemd.linger_enabled("alice")


def test_enable_linger_without_system_bus_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/system_bus_socket")
    user = pwd.getpwuid(os.getuid()).pw_name
    fix = re.escape(f"run: loginctl enable-linger {user} (as root if it asks")
    with pytest.raises(FleetError, match=fix):
        systemd.enable_linger(user)


def test_enable_linger_unknown_user() -> None:
    with pytest.raises(FleetError, match="no such user"):
        systemd.enable_linger(f"nobody-{uuid.uuid4().hex[:8]}")
