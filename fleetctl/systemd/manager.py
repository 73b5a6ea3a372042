"""Client for the systemd user manager (org.freedesktop.systemd1 on the user bus) and for
logind's lingering switch (system bus). Everything goes over D-Bus; we never parse systemctl.
"""

from __future__ import annotations

import os
import pwd
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from jeepney import DBusAddress, MatchRule, Properties, new_method_call

from fleetctl.common import paths
from fleetctl.common.errors import FleetError
from fleetctl.systemd.bus import DBusError, Reply, StringCall, connect, connect_peer

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
PROPERTIES_IFACE = "org.freedesktop.DBus.Properties"
MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name=SYSTEMD, interface=MANAGER_IFACE)

LOGIND = DBusAddress(
    "/org/freedesktop/login1", bus_name="org.freedesktop.login1", interface="org.freedesktop.login1.Manager"
)
LINGER_DIR = Path("/var/lib/systemd/linger")
SYSTEM_BUS_DEFAULT = "unix:path=/run/dbus/system_bus_socket"

# systemd's "no value" for unsigned 64-bit properties such as MemoryCurrent.
UINT64_UNSET = 2**64 - 1
JOB_TIMEOUT = 90.0  # matches systemd's default TimeoutStartSec/TimeoutStopSec
RELOAD_TIMEOUT = 120.0  # a reload re-reads every unit; slow disks make it take a while

# The replies that mean "nobody is serving systemd on this bus".
_UNREACHABLE = {
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
}

# Read property by property: GetAll on the Service interface returns ~10 kB per unit (every
# exec and cgroup setting) and jeepney's pure-Python parser needs ~3 ms a unit for that; the
# ~16 single Gets a unit are several times cheaper, and pipelined they cost one round trip.
_UNIT_PROPS = (
    "LoadState",
    "ActiveState",
    "SubState",
    "ActiveEnterTimestamp",
    "InactiveEnterTimestamp",
    "StateChangeTimestamp",
    "FragmentPath",
    "UnitFileState",
    "NeedDaemonReload",
    "InvocationID",
)
_SERVICE_PROPS = ("Result", "MainPID", "NRestarts", "ExecMainStatus", "ExecMainCode", "MemoryCurrent")

Change = tuple[str, str, str]  # (type, file, destination) as EnableUnitFiles reports it


class UnitInfo(NamedTuple):
    """A unit's state as systemd reports it over D-Bus (property names in snake case)."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str  # Service.Result: "success", "exit-code", "signal", ... ("" for non-services)
    main_pid: int
    n_restarts: int
    exec_main_status: int
    exec_main_code: int  # CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3, 0 if never ran
    active_enter_timestamp: int  # µs since the epoch, 0 if never
    inactive_enter_timestamp: int
    state_change_timestamp: int
    memory_current: int | None  # None when systemd does not know (no memory accounting)
    fragment_path: str
    unit_file_state: str
    need_daemon_reload: bool
    invocation_id: str  # hex, "" if the unit never ran


class UnitStatus(NamedTuple):
    """What `status` shows of a unit: the few properties it reads, and nothing else."""

    name: str
    load_state: str
    active_state: str
    sub_state: str
    result: str
    main_pid: int
    n_restarts: int
    exec_main_status: int
    active_enter_timestamp: int
    memory_current: int | None


# Read per unit by `statuses`; load, active and sub state come in bulk from ListUnitsByPatterns.
_STATUS_PROPS = (
    (SERVICE_IFACE, "Result"),
    (SERVICE_IFACE, "MainPID"),
    (SERVICE_IFACE, "NRestarts"),
    (SERVICE_IFACE, "ExecMainStatus"),
    (UNIT_IFACE, "ActiveEnterTimestamp"),
    (SERVICE_IFACE, "MemoryCurrent"),
)


def _unreachable_hint(address: str, reason: str) -> str:
    return (
        f"cannot reach the systemd user manager at {address} ({reason}): "
        "is 'systemctl --user' available for this user? "
        f"For cron/ssh sessions enable lingering: {linger_fix(_user())}"
    )


def _user() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return os.environ.get("USER") or str(os.getuid())


def version_number(version: str) -> int:
    """Leading release number of a systemd version string: "252.38-1~deb12u1" -> 252."""
    m = re.match(r"\s*v?(\d+)", version)
    if not m:
        raise FleetError(f"cannot make sense of the systemd version {version!r}")
    return int(m.group(1))


class SystemdManager:
    """The user's systemd manager. Open it once per command; use it as a context manager."""

    def __init__(self, address: str | None = None, timeout: float = 30.0, private: bool = False) -> None:
        """`private=True`: talk to the manager on its private socket
        ($XDG_RUNTIME_DIR/systemd/private, as `systemctl --user` does) when this user may open
        it, which spares every call the bus daemon's hop; otherwise, and always when `address`
        is given, the user's bus. systemd sends its signals to every private connection unasked
        (JobRemoved included), so jobs work on either."""
        self.timeout = timeout
        self._subscribed = False
        if private and address is None:
            socket = str(paths.runtime_dir() / "systemd" / "private")
            try:
                self._bus = connect_peer(socket, lambda why: why)
                self.address = self._bus.address
                return
            except FleetError:
                pass  # not this user's manager, or an older layout: the bus serves as well
        self.address = address or paths.bus_address()
        self._bus = connect(self.address, lambda why: _unreachable_hint(self.address, why))

    def __enter__(self) -> SystemdManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._bus.close()

    # --- plain calls -----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        signature: str | None = None,
        body: tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> tuple[Any, ...]:
        try:
            return self._bus.call(new_method_call(MANAGER, method, signature, body), timeout or self.timeout)
        except DBusError as e:
            raise self._error(e, method) from None

    def _error(self, e: DBusError, doing: str) -> FleetError:
        if e.name in _UNREACHABLE:
            return FleetError(_unreachable_hint(self.address, e.text or e.name))
        return FleetError(f"systemd {doing}: {e.text or e.name}")

    def version(self) -> str:
        try:
            (variant,) = self._bus.call(Properties(MANAGER).get("Version"), self.timeout)
        except DBusError as e:
            raise self._error(e, "Version") from None
        return str(variant[1])

    def version_number(self) -> int:
        return version_number(self.version())

    def environment(self) -> dict[str, str]:
        """The manager's own environment (Manager.Environment): every unit starts from it."""
        try:
            (variant,) = self._bus.call(Properties(MANAGER).get("Environment"), self.timeout)
        except DBusError as e:
            raise self._error(e, "Environment") from None
        return dict(item.split("=", 1) for item in variant[1] if "=" in item)

    def reload(self) -> None:
        """daemon-reload. The reply only comes once the reload is complete."""
        self._call("Reload", timeout=RELOAD_TIMEOUT)

    def reset_failed(self, name: str) -> None:
        self._call("ResetFailedUnit", "s", (name,))

    def kill(self, name: str, signal: int, whom: str = "main") -> None:
        """Send `signal` to the unit's processes; whom is "main", "control" or "all"."""
        self._call("KillUnit", "ssi", (name, whom, int(signal)))

    def enable(self, unit_file_names: Sequence[str]) -> list[Change]:
        """Create the [Install] symlinks. Like `systemctl enable`, follow with reload()."""
        _carries_install_info, changes = self._call(
            "EnableUnitFiles", "asbb", (list(unit_file_names), False, True)
        )
        return [tuple(c) for c in changes]

    def disable(self, unit_file_names: Sequence[str]) -> list[Change]:
        (changes,) = self._call("DisableUnitFiles", "asb", (list(unit_file_names), False))
        return [tuple(c) for c in changes]

    def list_units(self, prefix: str) -> list[str]:
        """Names of loaded units starting with `prefix` (sorted)."""
        (units,) = self._call("ListUnitsByPatterns", "asas", ([], [prefix + "*"]))
        # The pattern is a glob, so a prefix holding '*', '?' or '[' may over-match: recheck.
        return sorted(u[0] for u in units if u[0].startswith(prefix))

    # --- many units' properties -----------------------------------------------------------------
    def units(self, names: Iterable[str]) -> dict[str, UnitInfo]:
        """Properties of many units in two pipelined round trips: load all, then read all.

        A unit systemd has garbage-collected (inactive, nothing refers to it) comes back
        freshly loaded: its timestamps are 0 and its invocation id "", even if it once ran.
        """
        wanted = list(dict.fromkeys(names))
        # RefUnit pins each unit while we read it: otherwise systemd garbage-collects an
        # unreferenced inactive unit between our calls and every Get loads it from disk again
        # (3x slower). LoadUnit rather than escaping names into object paths ourselves; it
        # also says why a name is invalid.
        first: list[StringCall] = []
        for n in wanted:
            first += [_manager_call("RefUnit", n), _manager_call("LoadUnit", n)]
        try:
            loaded = self._calls(first)[1::2]
            unit_paths = [self._ok(r, f"LoadUnit {n}")[0] for n, r in zip(wanted, loaded, strict=True)]
            return self._read(wanted, unit_paths)
        finally:
            # systemd handles a connection's calls in order, so these come after the reads;
            # no reply wanted (and none for names whose RefUnit failed).
            self._bus.send_no_reply([_manager_call("UnrefUnit", n, no_reply=True) for n in wanted])

    def statuses(self, names: Iterable[str]) -> dict[str, UnitStatus]:
        """What `status` shows, for many services, in as few calls as systemd allows.

        One ListUnitsByPatterns gives every loaded unit's load, active and sub state and its
        object path; then six pipelined Gets per unit. A unit systemd does not have loaded is
        inactive with nothing to show (a stopped unit is garbage-collected, a failed one is not):
        LoadUnit and its three states say whether its file exists, everything else is zero."""
        wanted = list(dict.fromkeys(names))
        if not wanted or not all(n.endswith(".service") for n in wanted):
            raise FleetError("statuses: services only")
        # The names are the patterns: unit names hold no glob characters we would not want.
        (units,) = self._call("ListUnitsByPatterns", "asas", ([], wanted))
        asked = set(wanted)
        loaded = {u[0]: (u[2], u[3], u[4], u[6]) for u in units if u[0] in asked}
        msgs = [
            StringCall(SYSTEMD, loaded[n][3], PROPERTIES_IFACE, "Get", (iface, prop))
            for n in wanted
            if n in loaded
            for iface, prop in _STATUS_PROPS
        ]
        replies = iter(self._calls(msgs) if msgs else [])
        out: dict[str, UnitStatus] = {}
        for n in wanted:
            if n not in loaded:
                continue
            v = {prop: self._ok(next(replies), f"reading {prop} of {n}")[0][1] for _, prop in _STATUS_PROPS}
            memory = v["MemoryCurrent"]
            load, active, sub, _path = loaded[n]
            out[n] = UnitStatus(
                n,
                load,
                active,
                sub,
                v["Result"],
                v["MainPID"],
                v["NRestarts"],
                v["ExecMainStatus"],
                v["ActiveEnterTimestamp"],
                None if memory == UINT64_UNSET else memory,
            )
        missing = [n for n in wanted if n not in loaded]
        if missing:
            out.update(self._unloaded_statuses(missing))
        return {n: out[n] for n in wanted}

    def _unloaded_statuses(self, names: list[str]) -> dict[str, UnitStatus]:
        loaded = self._calls([_manager_call("LoadUnit", n) for n in names])
        unit_paths = [self._ok(r, f"LoadUnit {n}")[0] for n, r in zip(names, loaded, strict=True)]
        states = ("LoadState", "ActiveState", "SubState")
        msgs = [
            StringCall(SYSTEMD, path, PROPERTIES_IFACE, "Get", (UNIT_IFACE, prop))
            for path in unit_paths
            for prop in states
        ]
        replies = iter(self._calls(msgs))
        out = {}
        for n in names:
            load, active, sub = (self._ok(next(replies), f"reading {s} of {n}")[0][1] for s in states)
            out[n] = UnitStatus(n, load, active, sub, "", 0, 0, 0, 0, None)
        return out

    def properties(self, name: str, iface: str, props: Sequence[str]) -> dict[str, Any]:
        """Raw values of some properties of one unit, as the manager reports them."""
        (unit_path,) = self._call("LoadUnit", "s", (name,))
        msgs = [StringCall(SYSTEMD, unit_path, PROPERTIES_IFACE, "Get", (iface, prop)) for prop in props]
        replies = self._calls(msgs)
        return {
            prop: self._ok(r, f"reading {prop} of {name}")[0][1]
            for prop, r in zip(props, replies, strict=True)
        }

    def _read(self, names: list[str], unit_paths: list[str]) -> dict[str, UnitInfo]:
        keys: list[tuple[str, str]] = []
        msgs: list[StringCall] = []
        for name, path in zip(names, unit_paths, strict=True):
            for iface, props in _interfaces(name):
                for prop in props:
                    keys.append((name, prop))
                    msgs.append(StringCall(SYSTEMD, path, PROPERTIES_IFACE, "Get", (iface, prop)))
        values: dict[str, dict[str, Any]] = {n: {} for n in names}
        for (name, prop), reply in zip(keys, self._calls(msgs), strict=True):
            values[name][prop] = self._ok(reply, f"reading {prop} of {name}")[0][1]  # (sig, value)
        return {n: _unit_info(n, values[n]) for n in names}

    def _calls(self, msgs: Sequence[Any], timeout: float | None = None) -> list[Reply]:
        return self._bus.call_many(msgs, timeout or self.timeout)

    def _ok(self, reply: Reply, doing: str) -> tuple[Any, ...]:
        if isinstance(reply, DBusError):
            raise self._error(reply, doing)
        return reply

    # --- jobs -------------------------------------------------------------------------------------
    def start(self, names: Sequence[str], timeout: float = JOB_TIMEOUT) -> dict[str, str]:
        return self._jobs("StartUnit", names, timeout)

    def stop(self, names: Sequence[str], timeout: float = JOB_TIMEOUT) -> dict[str, str]:
        return self._jobs("StopUnit", names, timeout)

    def restart(self, names: Sequence[str], timeout: float = JOB_TIMEOUT) -> dict[str, str]:
        return self._jobs("RestartUnit", names, timeout)

    def try_restart(self, names: Sequence[str], timeout: float = JOB_TIMEOUT) -> dict[str, str]:
        return self._jobs("TryRestartUnit", names, timeout)

    def start_transient(
        self,
        name: str,
        argv: Sequence[str],
        properties: Sequence[tuple[str, tuple[str, Any]]],
        timeout: float = 30,
    ) -> str:
        """Start a transient service running `argv` with `properties` ((name, (signature,
        value)) pairs); wait for its start job and return the job result ("done", "failed").
        A failed one stays loaded (for its ExecMainStatus) until reset_failed."""
        props = [
            ("ExecStart", ("a(sasb)", [(argv[0], list(argv), False)])),
            *properties,
        ]
        self._subscribe()
        self._bus.drop_signals()
        deadline = time.monotonic() + timeout
        (job,) = self._call("StartTransientUnit", "ssa(sv)a(sa(sv))", (name, "fail", props, []))
        return self._wait_jobs("StartTransientUnit", {job: name}, deadline, timeout)[name]

    def _jobs(self, method: str, names: Sequence[str], timeout: float) -> dict[str, str]:
        """Enqueue one job per unit, wait for all; unit -> job result ("done", "failed", ...).

        On a new connection the subscription to job signals goes out in the same batch as the
        jobs (each is handled in order), so queuing them costs one round trip, not three: the
        watchdog opens a connection per agent it fixes, when the manager is busiest."""
        wanted = list(dict.fromkeys(names))
        setup = self._subscribe_calls()
        # Nothing of ours is pending now, so older JobRemoved signals are of no interest.
        self._bus.drop_signals()
        deadline = time.monotonic() + timeout
        replies = self._calls([*setup, *(_manager_call(method, n, "replace") for n in wanted)])
        self._subscribed_by(replies[: len(setup)])
        pending: dict[str, str] = {}  # job object path -> unit
        errors: list[str] = []
        for n, r in zip(wanted, replies[len(setup) :], strict=True):
            if isinstance(r, DBusError):
                errors.append(str(self._error(r, f"{method} {n}")))
            else:
                pending[r[0]] = n
        results = self._wait_jobs(method, pending, deadline, timeout)
        if errors:  # reported after the other jobs finished, so the state is settled
            raise FleetError("; ".join(errors))
        return results

    def _subscribe(self) -> None:
        self._subscribed_by(self._calls(self._subscribe_calls()))

    def _subscribed_by(self, replies: list[Reply]) -> None:
        for r in replies:
            self._ok(r, "subscribing to systemd's job signals")
        self._subscribed = True

    def _subscribe_calls(self) -> list[Any]:
        """The calls that subscribe this connection to JobRemoved (on the bus, systemd only
        emits job signals once a client has subscribed); none once it is."""
        if self._subscribed:
            return []
        rule = MatchRule(
            type="signal", interface=MANAGER_IFACE, member="JobRemoved", path="/org/freedesktop/systemd1"
        )
        if self._bus.peer:  # no bus daemon to ask; systemd sends them anyway (bus_foreach_bus)
            self._bus.keep(rule)
            return [_manager_call("Subscribe")]
        return [self._bus.match_call(rule), _manager_call("Subscribe")]

    def _wait_jobs(
        self, method: str, pending: dict[str, str], deadline: float, timeout: float
    ) -> dict[str, str]:
        results: dict[str, str] = {}
        while pending:
            try:
                signal = self._bus.next_signal(deadline)
            except TimeoutError:
                left = ", ".join(sorted(pending.values()))
                raise FleetError(
                    f"systemd {method}: timed out after {timeout:g}s waiting for {left}"
                ) from None
            _job_id, job, _unit, result = signal.body
            if job in pending:  # key by the name asked for: the signal has an alias's real name
                results[pending.pop(job)] = result
        return results


def _manager_call(method: str, *args: str, no_reply: bool = False) -> StringCall:
    return StringCall(SYSTEMD, MANAGER.object_path, MANAGER_IFACE, method, args, no_reply)


def _interfaces(name: str) -> list[tuple[str, tuple[str, ...]]]:
    # Only services have the Service interface; asking another unit for it is an error.
    if name.endswith(".service"):
        return [(UNIT_IFACE, _UNIT_PROPS), (SERVICE_IFACE, _SERVICE_PROPS)]
    return [(UNIT_IFACE, _UNIT_PROPS)]


def _unit_info(name: str, props: dict[str, Any]) -> UnitInfo:
    memory = props.get("MemoryCurrent", UINT64_UNSET)
    return UnitInfo(
        name=name,
        load_state=props["LoadState"],
        active_state=props["ActiveState"],
        sub_state=props["SubState"],
        result=props.get("Result", ""),
        main_pid=props.get("MainPID", 0),
        n_restarts=props.get("NRestarts", 0),
        exec_main_status=props.get("ExecMainStatus", 0),
        exec_main_code=props.get("ExecMainCode", 0),
        active_enter_timestamp=props["ActiveEnterTimestamp"],
        inactive_enter_timestamp=props["InactiveEnterTimestamp"],
        state_change_timestamp=props["StateChangeTimestamp"],
        memory_current=None if memory == UINT64_UNSET else memory,
        fragment_path=props["FragmentPath"],
        unit_file_state=props["UnitFileState"],
        need_daemon_reload=bool(props["NeedDaemonReload"]),
        invocation_id=bytes(props["InvocationID"]).hex(),
    )


# --- lingering (logind, system bus) -------------------------------------------------------------------
def linger_fix(user: str) -> str:
    """The one command every message gives for lingering (logind lets a user set their own in an
    active session; elsewhere polkit asks for root)."""
    return f"loginctl enable-linger {user} (as root if it asks for a password)"


def linger_enabled(user: str) -> bool:
    """logind keeps a user's manager running without a login iff this flag file exists."""
    return (LINGER_DIR / user).exists()


def enable_linger(user: str) -> None:
    """SetUserLinger through logind; any failure says which command to run instead."""
    fallback = f"run: {linger_fix(user)}"
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        raise FleetError(f"cannot enable lingering: no such user {user!r}") from None
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or SYSTEM_BUS_DEFAULT
    bus = connect(
        address,
        lambda why: f"cannot enable lingering for {user}: no system bus at {address} ({why}); {fallback}",
    )
    try:
        # interactive=False: we cannot answer a polkit password prompt from here.
        bus.call(new_method_call(LOGIND, "SetUserLinger", "ubb", (uid, True, False)))
    except DBusError as e:
        raise FleetError(
            f"cannot enable lingering for {user} via logind ({e.text or e.name}); {fallback}"
        ) from None
    finally:
        bus.close()
