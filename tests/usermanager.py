"""A real `systemd --user` manager, journald and user D-Bus in private namespaces.

These machines do not boot systemd as PID 1. As root we can still run the real thing:
a fresh sub-cgroup (so the manager can never adopt the host's processes), then
`unshare --mount --cgroup --pid`, private tmpfs over /sys/fs/cgroup, /run/systemd, /run/log
and /var/spool/cron, journald first, and `systemd --user` inside
`user.slice/user-0.slice/user@0.service` so journald tags `_SYSTEMD_USER_UNIT`.

The runtime dir (`/run/user/0` inside) is a bind mount of a host temp dir, so the test
process can reach the user bus and the manager's private socket from outside. Anything that
needs the namespace's view (journal, /proc, crontab) runs through `UserManager.run`, which
enters the namespaces with nsenter.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup/systemd")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")

# PID 1 of the namespace: mounts, journald, then the manager. It stays a shell that waits so
# that killing it (from outside, with SIGKILL) tears the whole pid namespace down.
_INIT = r"""
set -eu
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
mount -t tmpfs -o mode=755 tmpfs /run/systemd
mkdir -p /run/systemd/system
mount -t tmpfs -o mode=755 tmpfs /run/user
mkdir -m 0700 /run/user/0
mount --bind "$FLEET_TB_RUNTIME" /run/user/0
mount -t tmpfs -o mode=755 tmpfs /run/log
# Never let the test journald write into the host's persistent journal.
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=2755 tmpfs /var/log/journal; fi
mkdir -p /var/spool/cron
mount -t tmpfs -o mode=755 tmpfs /var/spool/cron
mkdir -m 1730 /var/spool/cron/crontabs
chgrp crontab /var/spool/cron/crontabs 2>/dev/null || true
/lib/systemd/systemd-journald &
for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
for h in systemd unified; do
  d=/sys/fs/cgroup/$h/user.slice/user-0.slice/user@0.service
  mkdir -p "$d"
done
( for h in systemd unified; do
    echo $BASHPID > /sys/fs/cgroup/$h/user.slice/user-0.slice/user@0.service/cgroup.procs
  done
  exec /lib/systemd/systemd --user --log-target=journal-or-kmsg ) &
echo ready > "$FLEET_TB_RUNTIME/../init-started"
wait
"""


class UserManagerError(RuntimeError):
    pass


class UserManager:
    """One private systemd user manager. Use `start()` then `stop()` (or as a context manager)."""

    def __init__(self, base: Path | None = None) -> None:
        # Not under /tmp: units use PrivateTmp=, which would hide a HOME kept there. /home is
        # where a real user's HOME is, so ProtectHome= is exercised as on a real host.
        self.base = Path(base or tempfile.mkdtemp(prefix="fleetctl-testbed-", dir="/home"))
        self.runtime_dir = self.base / "runtime"
        self.home = self.base / "home"
        self.cgroup_name = f"fleetctl-test-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ns_pid: int | None = None

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        for p in (CGROUP_V1, CGROUP_V2):
            if not (p / "cgroup.procs").exists():
                raise UserManagerError(f"{p} is not a mounted cgroup hierarchy")
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.home.mkdir(mode=0o700, parents=True)
        for p in self._cgroups():
            p.mkdir()
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "USER": "root",
            "LOGNAME": "root",
            "XDG_RUNTIME_DIR": "/run/user/0",
            "FLEET_TB_RUNTIME": str(self.runtime_dir),
        }
        cgroups = [str(p / "cgroup.procs") for p in self._cgroups()]
        # The launcher moves itself into the sub-cgroup *before* unshare, so the cgroup
        # namespace root (and so everything the manager can see or touch) is that sub-cgroup.
        launcher = (
            "for f in " + " ".join(cgroups) + '; do echo $$ > "$f"; done; '
            "exec unshare --mount --cgroup --pid --fork --mount-proc --propagation private "
            "bash -c " + _shell_quote(_INIT)
        )
        self.proc = subprocess.Popen(
            ["bash", "-c", launcher],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=open(self.base / "init.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        private = self.runtime_dir / "systemd" / "private"
        while not private.exists():
            if self.proc.poll() is not None:
                raise UserManagerError(f"test manager exited early: {self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise UserManagerError(f"test manager not ready in {timeout}s: {self._log_tail()}")
            time.sleep(0.05)
        self.ns_pid = self._find_ns_init()
        self._wait_bus(deadline)

    def stop(self) -> None:
        if self.proc is not None:
            if self.ns_pid:
                _kill(self.ns_pid)
            _kill(self.proc.pid)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self._remove_cgroups()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> UserManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- using it --------------------------------------------------------------------------
    @property
    def bus_address(self) -> str:
        return f"unix:path={self.runtime_dir}/bus"

    def host_env(self, **extra: str) -> dict[str, str]:
        """Environment for a process on the host side that talks to this manager's bus."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime_dir),
            "DBUS_SESSION_BUS_ADDRESS": self.bus_address,
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def ns_env(self, **extra: str) -> dict[str, str]:
        """Environment for a process inside the namespaces, as a login shell would have it."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "USER": "root",
            "LOGNAME": "root",
            "XDG_RUNTIME_DIR": "/run/user/0",
            "DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/0/bus",
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def nsenter_argv(self) -> list[str]:
        assert self.ns_pid, "manager not started"
        return ["nsenter", f"--target={self.ns_pid}", "--mount", "--pid", "--cgroup", "--"]

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = False,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespaces (sees the private /proc, journal, crontab)."""
        nsenter = self.nsenter_argv()
        if cwd is not None:  # nsenter --mount starts in /; --wd keeps the caller's directory
            nsenter = [*nsenter[:-1], f"--wd={cwd}", "--"]
        return subprocess.run(
            [*nsenter, *argv],
            env=dict(env) if env is not None else self.ns_env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    # --- internals ---------------------------------------------------------------------------
    def _cgroups(self) -> list[Path]:
        return [CGROUP_V1 / self.cgroup_name, CGROUP_V2 / self.cgroup_name]

    def _find_ns_init(self) -> int:
        # The unshare'd child is PID 1 of the new namespace; its host PID is the only pid in
        # our sub-cgroup whose NSpid line reads "<host> 1".
        for pid in (CGROUP_V2 / self.cgroup_name / "cgroup.procs").read_text().split():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            for line in status.splitlines():
                if line.startswith("NSpid:") and line.split()[-1] == "1" and len(line.split()) > 2:
                    return int(pid)
        raise UserManagerError("could not find the namespace's init process")

    def _wait_bus(self, deadline: float) -> None:
        # dbus.socket is socket-activated by the manager; it shows up shortly after start-up.
        bus = self.runtime_dir / "bus"
        while not bus.exists():
            if time.monotonic() > deadline:
                raise UserManagerError(f"user bus socket never appeared: {self._log_tail()}")
            time.sleep(0.05)

    def _remove_cgroups(self) -> None:
        for root in (CGROUP_V1, CGROUP_V2):
            top = root / self.cgroup_name
            if not top.exists():
                continue
            deadline = time.monotonic() + 10
            while True:
                left = _rmdir_tree(top)
                if not left:
                    break
                if time.monotonic() > deadline:
                    raise UserManagerError(f"could not remove {top}: {left}")
                for pid in _pids_in(top):
                    _kill(pid)
                time.sleep(0.05)

    def _log_tail(self) -> str:
        try:
            return (self.base / "init.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on now, never the same one twice in this process.

    The test managers share the host's network namespace with every other test run, so tests
    never use fixed ports; the kernel may hand out a just-released port again, hence the set.
    """
    import socket

    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def _shell_quote(s: str) -> str:
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _pids_in(top: Path) -> list[int]:
    pids: list[int] = []
    for procs in top.rglob("cgroup.procs"):
        try:
            pids += [int(p) for p in procs.read_text().split()]
        except OSError:
            pass
    return pids


def _rmdir_tree(top: Path) -> list[str]:
    """Remove a cgroup tree bottom-up; return what could not be removed yet."""
    left: list[str] = []
    dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for d in [*dirs, top]:
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError:
            left.append(str(d))
    return left


def _shell_main(argv: list[str]) -> int:
    """`python3 tests/usermanager.py shell [PROFILES]`: try fleetctl without a systemd host.

    Starts a private manager (as root), installs the example fleet into it and opens a shell
    inside its namespaces with the environment a user session would have. Exiting the shell
    tears everything down.
    """
    import sys

    if os.geteuid() != 0:
        print("run as root: the private systemd manager needs mount/cgroup/pid namespaces", file=sys.stderr)
        return 1
    repo = Path(__file__).resolve().parent.parent
    profiles = Path(argv[0]).resolve() if argv else repo / "profiles"
    manager = UserManager()
    try:
        manager.start()
        env = manager.ns_env(FLEETCTL_QUIET_ROOT="1", PS1="(fleetctl-testbed) \\w# ")
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        subprocess.run(
            [*manager.nsenter_argv(), sys.executable, "-m", "fleetctl", "install", str(profiles)],
            env=env,
            cwd=repo,
        )
        print(
            f"\nA private systemd user manager runs the fleet; HOME={manager.home}.\n"
            "Try: fleetctl status, fleetctl logs coder, systemctl --user status fleet-coder, "
            "fleetctl doctor.\nExit the shell to tear it all down.\n"
        )
        nsenter = manager.nsenter_argv()
        subprocess.run([*nsenter[:-1], f"--wd={repo}", "--", "bash", "--norc", "-i"], env=env)
    finally:
        manager.stop()
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["shell"]:
        print("usage: python3 tests/usermanager.py shell [PROFILES_DIR]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_shell_main(sys.argv[2:]))
