"""A normal user's `systemd --user` manager, journald, user D-Bus and cron, in private namespaces.

These machines do not boot systemd as PID 1. As root we can still run the real thing, the way
a fleetctl user has it: a fresh sub-cgroup (so the manager can never adopt the host's
processes), then `unshare --mount --cgroup --pid`, private tmpfs over /sys/fs/cgroup, /run,
/var/log/journal and /var/spool/cron, journald first (persistent storage, so it keeps per-user
journal files, or volatile on request), and `systemd --user` running as the unprivileged test
user (uid 1500) inside `user.slice/user-1500.slice/user@1500.service`, its cgroup delegated to
that user, so journald tags `_SYSTEMD_USER_UNIT`.

The runtime dir (`/run/user/1500` inside) is a bind mount of a host temp dir, so the test
process can reach the user bus and the manager's private socket from outside. Anything that
needs the namespace's view (journal, /proc, crontab) runs through `UserManager.run`, which
enters the namespaces with nsenter and becomes the test user with setpriv. docs/testbed.md
says how tests use it; FLEET_TB_ROOT=1 runs the old root manager instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

CGROUP_V1 = Path("/sys/fs/cgroup/systemd")
CGROUP_V2 = Path("/sys/fs/cgroup/unified")

# PID 1 of the namespace: mounts, journald, then the manager. It stays a shell that waits so
# that killing it (from outside, with SIGKILL) tears the whole pid namespace down.
# FLEET_TB_UID/GID/USER: who the manager runs as; FLEET_TB_JOURNAL: persistent or volatile.
_INIT = r"""
set -eu
U=$FLEET_TB_UID; G=$FLEET_TB_GID
if [ "$FLEET_TB_NETNS" = 1 ]; then ip link set lo up; fi
mount -t tmpfs -o mode=755 tmpfs /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
# The interpreter may live under root's 0700 HOME (pyenv): show the user that tree only.
if [ -n "$FLEET_TB_EXPOSE" ]; then
  mount --bind "$FLEET_TB_EXPOSE" "$FLEET_TB_BASE/expose"
  mount -t tmpfs -o mode=755 tmpfs "$(dirname "$FLEET_TB_EXPOSE")"
  mkdir -p "$FLEET_TB_EXPOSE"
  mount --bind "$FLEET_TB_BASE/expose" "$FLEET_TB_EXPOSE"
fi
# A private /run: journald's sockets, the user's runtime dir, cron's pid file.
mount -t tmpfs -o mode=755 tmpfs /run
ln -s /dev/shm /run/shm
mkdir -m 1777 /run/lock
# /run/systemd/unit-root: where a user manager (systemd 252) builds a unit's mount namespace.
mkdir -p /run/systemd/system /run/systemd/unit-root /run/systemd/journald.conf.d /run/log /run/user
mkdir -m 0700 /run/user/$U
mount --bind "$FLEET_TB_RUNTIME" /run/user/$U
# The user exists in this namespace only, with the bed's HOME (cron and PAM read passwd).
mount --bind "$FLEET_TB_PASSWD" /etc/passwd
mount --bind "$FLEET_TB_GROUP" /etc/group
# Never let the test journald write into the host's persistent journal: a private tmpfs,
# set up as a Debian/Ubuntu package leaves it (root:systemd-journal, setgid, ACLs by journald).
if [ -d /var/log/journal ]; then
  mount -t tmpfs -o mode=2755 tmpfs /var/log/journal
else
  mount -t tmpfs -o mode=755 tmpfs /var/log
  mkdir -m 2755 /var/log/journal
fi
chgrp systemd-journal /var/log/journal 2>/dev/null || true
if [ "$FLEET_TB_JOURNAL" = volatile ]; then
  printf '[Journal]\nStorage=volatile\n' > /run/systemd/journald.conf.d/50-testbed.conf
fi
mkdir -p /var/spool/cron
mount -t tmpfs -o mode=755 tmpfs /var/spool/cron
mkdir -m 1730 /var/spool/cron/crontabs
chgrp crontab /var/spool/cron/crontabs 2>/dev/null || true
/lib/systemd/systemd-journald &
for i in $(seq 100); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.05; done
# What systemd-journal-flush.service does at boot: move to /var/log/journal (when persistent).
journalctl --flush 2>/dev/null || true
for h in systemd unified; do
  d=/sys/fs/cgroup/$h/user.slice/user-$U.slice/user@$U.service
  mkdir -p "$d"
  # Delegation, as logind/user@.service do it: the user owns its manager's cgroup.
  for f in "$d" "$d/cgroup.procs" "$d/cgroup.threads" "$d/cgroup.subtree_control" "$d/tasks"; do
    [ -e "$f" ] && chown "$U:$G" "$f"
  done
done
( for h in systemd unified; do
    echo $BASHPID > /sys/fs/cgroup/$h/user.slice/user-$U.slice/user@$U.service/cgroup.procs
  done
  if [ "$U" = 0 ]; then
    XDG_RUNTIME_DIR=/run/user/0 exec /lib/systemd/systemd --user --log-target=journal-or-kmsg
  fi
  exec setpriv --reuid="$U" --regid="$G" --init-groups -- \
    env -i PATH="$PATH" HOME="$HOME" USER="$FLEET_TB_USER" LOGNAME="$FLEET_TB_USER" \
    XDG_RUNTIME_DIR=/run/user/$U LANG=C.UTF-8 \
    /lib/systemd/systemd --user --log-target=journal-or-kmsg ) &
echo ready > "$FLEET_TB_RUNTIME/../init-started"
wait
"""


class UserManagerError(RuntimeError):
    pass


TEST_UID = 1500
TEST_USER = "fleettest"


def bed_uid() -> int:
    """Who the test manager runs as: uid 1500 unless FLEET_TB_ROOT=1 asks for the old root bed
    (kept for reproducing what a root user manager does differently)."""
    if os.environ.get("FLEET_TB_ROOT") == "1":
        return 0
    return int(os.environ.get("FLEET_TB_UID", str(TEST_UID)))


def ensure_user(uid: int) -> tuple[str, int]:
    """The host account for `uid` (created with useradd when missing): its name and gid."""
    import pwd

    if uid == 0:
        return "root", 0
    try:
        pw = pwd.getpwuid(uid)
    except KeyError:
        # -M -N: no home on the host (each bed gives it its own), no same-named group needed.
        subprocess.run(
            ["useradd", "-u", str(uid), "-M", "-N", "-g", "users", "-d", "/nonexistent", "-s", "/bin/bash",
             f"{TEST_USER}{uid}" if uid != TEST_UID else TEST_USER],
            check=False, capture_output=True,
        )  # fmt: skip
        pw = pwd.getpwuid(uid)  # another run may have created it meanwhile: either way it exists
    return pw.pw_name, pw.pw_gid


class UserManager:
    """One private systemd user manager. Use `start()` then `stop()` (or as a context manager).

    By default the manager runs as the unprivileged test user (uid 1500), as on a real host:
    `user` / `uid` say who, `run()` runs a command as that user inside the namespaces
    (`as_root=True` for what only root may do there), `give()` hands files a test wrote as root
    to the user. `journal` is "persistent" (Debian's default: per-user journal files) or
    "volatile" (journald keeps lines in /run only: a normal user reads none of them).
    """

    def __init__(
        self,
        base: Path | None = None,
        *,
        uid: int | None = None,
        journal: str = "persistent",
        netns: bool = False,
    ) -> None:
        # Not under /tmp: units use PrivateTmp=, which would hide a HOME kept there. /home is
        # where a real user's HOME is, so ProtectHome= is exercised as on a real host.
        self.base = Path(base or tempfile.mkdtemp(prefix="fleetctl-testbed-", dir="/home"))
        self.uid = bed_uid() if uid is None else uid
        self.user, self.gid = ensure_user(self.uid)
        self.journal = journal
        self.netns = netns  # a network namespace of its own (pytest gives the whole session one)
        self.runtime_dir = self.base / "runtime"
        self.home = self.base / "home"
        self.cgroup_name = f"fleetctl-test-{uuid.uuid4().hex[:12]}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ns_pid: int | None = None
        self.cron: subprocess.Popen[bytes] | None = None

    @property
    def xdg_runtime_dir(self) -> str:
        """XDG_RUNTIME_DIR as seen inside the namespaces."""
        return f"/run/user/{self.uid}"

    # --- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> None:
        for p in (CGROUP_V1, CGROUP_V2):
            if not (p / "cgroup.procs").exists():
                raise UserManagerError(f"{p} is not a mounted cgroup hierarchy")
        self.base.chmod(0o755)  # the user must reach its HOME below it
        self.runtime_dir.mkdir(mode=0o700, parents=True)
        self.home.mkdir(mode=0o700, parents=True)
        os.chown(self.runtime_dir, self.uid, self.gid)
        os.chown(self.home, self.uid, self.gid)
        self._write_identity()
        for p in self._cgroups():
            p.mkdir()
        env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home),
            "USER": "root",
            "LOGNAME": "root",
            "FLEET_TB_RUNTIME": str(self.runtime_dir),
            "FLEET_TB_UID": str(self.uid),
            "FLEET_TB_GID": str(self.gid),
            "FLEET_TB_USER": self.user,
            "FLEET_TB_JOURNAL": self.journal,
            "FLEET_TB_PASSWD": str(self.base / "passwd"),
            "FLEET_TB_GROUP": str(self.base / "group"),
            "FLEET_TB_BASE": str(self.base),
            "FLEET_TB_EXPOSE": "",
            "FLEET_TB_NETNS": "1" if self.netns else "0",
        }
        hidden = _hidden_interpreter_dir() if self.uid != 0 else None
        if hidden is not None:
            (self.base / "expose").mkdir()
            env["FLEET_TB_EXPOSE"] = str(hidden)
        cgroups = [str(p / "cgroup.procs") for p in self._cgroups()]
        # The launcher moves itself into the sub-cgroup *before* unshare, so the cgroup
        # namespace root (and so everything the manager can see or touch) is that sub-cgroup.
        launcher = (
            "for f in " + " ".join(cgroups) + '; do echo $$ > "$f"; done; '
            "exec unshare "
            + ("--net " if self.netns else "")
            + "--mount --cgroup --pid --fork --mount-proc --propagation private "
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
                tail = self._log_tail()
                self.stop()
                raise UserManagerError(f"test manager not ready in {timeout}s: {tail}")
            time.sleep(0.05)
        self.ns_pid = self._find_ns_init()
        self._wait_bus(deadline)
        _started.add(self)

    def stop(self) -> None:
        _started.discard(self)
        if self.proc is not None:
            if self.ns_pid:
                _kill(self.ns_pid)
            _kill(self.proc.pid)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None
        self.stop_cron()
        self._remove_cgroups()
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> UserManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start_cron(self) -> None:
        """Start a real cron daemon in the namespaces (it runs the user's crontab there).

        Only the spool's crontabs run: the host's system crontabs (/etc/crontab, /etc/cron.d)
        are hidden from it in a mount namespace of its own, so no host job runs as root in the
        bed (and none shows in a test's processes or logs). `stop_cron()` ends it; teardown does
        too."""
        if self.cron is not None:
            return
        hide = "mount -t tmpfs tmpfs /etc/cron.d && mount --bind /dev/null /etc/crontab"
        hide += " && exec cron -f"
        self.cron = subprocess.Popen(
            [
                *self.nsenter_argv(as_root=True),
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                hide,
            ],
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            stdin=subprocess.DEVNULL,
            stdout=open(self.base / "cron.log", "wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        # cron notices a changed crontab by the spool's mtime in whole seconds: a crontab
        # written in the second it read the spool would go unseen. Let that second pass.
        time.sleep(1.1)
        if self.cron.poll() is not None:
            raise UserManagerError(f"cron exited at once: {(self.base / 'cron.log').read_text()[-500:]}")

    def stop_cron(self) -> None:
        """Stop the cron daemon `start_cron()` started, and the jobs it is running."""
        if self.cron is None:
            return
        for pid in reversed(_descendants(self.cron.pid)):
            _kill(pid)
        _kill(self.cron.pid)
        self.cron.wait(timeout=10)
        self.cron = None

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
            "USER": self.user,
            "LOGNAME": self.user,
            "XDG_RUNTIME_DIR": self.xdg_runtime_dir,
            "DBUS_SESSION_BUS_ADDRESS": f"unix:path={self.xdg_runtime_dir}/bus",
            "LANG": "C.UTF-8",
        }
        env.update(extra)
        return env

    def nsenter_argv(self, as_root: bool = False, cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """argv prefix that runs a command inside the namespaces, as the test user (or as root)."""
        assert self.ns_pid, "manager not started"
        argv = ["nsenter", f"--target={self.ns_pid}", "--mount", "--pid", "--cgroup"]
        if self.netns:
            argv.append("--net")
        if cwd is not None:  # nsenter --mount starts in /; --wd keeps the caller's directory
            argv.append(f"--wd={cwd}")
        argv.append("--")
        if not as_root and self.uid != 0:
            argv += ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]
        return argv

    def user_argv(self, cwd: str | os.PathLike[str] | None = None) -> list[str]:
        """argv prefix that runs a command as the test user inside the namespaces."""
        return self.nsenter_argv(as_root=False, cwd=cwd)

    def run(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        timeout: float = 120,
        check: bool = False,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        as_root: bool = False,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespaces (sees the private /proc, journal, crontab), as the
        test user unless as_root."""
        return subprocess.run(
            [*self.nsenter_argv(as_root=as_root, cwd=cwd), *argv],
            env=dict(env) if env is not None else self.ns_env(),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    @contextlib.contextmanager
    def as_user(self) -> Iterator[None]:
        """Run a block of this (root) process with the test user's effective ids.

        For opening the user's D-Bus socket in-process: its dbus-daemon admits only its own uid,
        the kernel records the peer's ids at connect, and jeepney authenticates with geteuid().
        The connection stays usable after the ids are restored.
        """
        if self.uid == 0:
            yield
            return
        os.setegid(self.gid)
        os.seteuid(self.uid)
        try:
            yield
        finally:
            os.seteuid(0)
            os.setegid(0)

    def give(self, *paths: Path) -> None:
        """Make files a test wrote as root the test user's, as if the user had written them."""
        if self.uid == 0:
            return
        for top in paths:
            if not top.exists():
                continue
            for dirpath, dirnames, filenames in os.walk(top):
                os.chown(dirpath, self.uid, self.gid)
                for n in filenames + dirnames:
                    os.chown(os.path.join(dirpath, n), self.uid, self.gid, follow_symlinks=False)
            # The user must reach `top`: its parents may be root's 0700 temp dirs.
            for parent in top.resolve().parents:
                if parent == Path("/"):
                    break
                st = parent.stat()
                if st.st_uid == 0 and not st.st_mode & 0o001:
                    parent.chmod(st.st_mode | 0o011)

    def _write_identity(self) -> None:
        """passwd/group for inside the namespaces: the host's, with the user's HOME set to ours."""
        lines = []
        for line in Path("/etc/passwd").read_text().splitlines():
            f = line.split(":")
            if len(f) == 7 and f[2] == str(self.uid):
                f[5] = str(self.home)
                line = ":".join(f)
            lines.append(line)
        (self.base / "passwd").write_text("\n".join(lines) + "\n")
        (self.base / "passwd").chmod(0o644)
        shutil.copyfile("/etc/group", self.base / "group")
        (self.base / "group").chmod(0o644)

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


def _hidden_interpreter_dir() -> Path | None:
    """The directory below a closed one (e.g. /root/.pyenv under a 0700 /root) on the way to
    this interpreter, or None when any user can reach it."""
    import sys

    target = Path(os.path.realpath(sys.executable))
    for parent in reversed(target.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            child = target.parents[target.parents.index(parent) - 1] if parent != target.parent else target
            return child
    return None


_started: set[UserManager] = set()


def started_managers() -> list[UserManager]:
    """The managers started in this process and not stopped yet."""
    return list(_started)


_handed_out: set[int] = set()


def copy_checkout(repo: Path, dest: Path) -> None:
    """The files git would check out (tracked, and new ones it does not ignore), copied to
    `dest`: a user's own checkout, for what runs ./install.sh as that user."""
    files = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-co", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for rel in files:
        if (repo / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, dest / rel)


def install_as_user(m: UserManager, repo: Path) -> Path:
    """`repo` copied to the bed user's home and installed by that user with ./install.sh, as the
    quickstart does (a venv in ~/.local/share/fleetctl, the system's python3); that venv's
    python. Benchmarks run fleetctl and the demo agents with it: it starts without this
    machine's site hooks (an editable install's import finder, a CA-bundle .pth) and with the
    package's .pyc files, as on a user's server."""
    checkout = m.home / "src" / "fleetctl"
    copy_checkout(repo, checkout)
    m.give(m.home / "src")
    env = m.ns_env(PATH="/usr/bin:/bin")
    r = m.run(["sh", "./install.sh"], env=env, cwd=checkout, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"install.sh failed: {r.stdout[-2000:]} {r.stderr[-2000:]}")
    return m.home / ".local/share/fleetctl/venv/bin/python"


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


def _descendants(pid: int) -> list[int]:
    """Every process below pid (host pids), parents before their children."""
    got = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    out: list[int] = []
    for k in map(int, got):
        out += [k, *_descendants(k)]
    return out


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
        print(
            "run this as root (e.g. `su -c 'python3 tests/usermanager.py shell'` or with sudo): the "
            "private systemd manager needs mount, cgroup and pid namespaces",
            file=sys.stderr,
        )
        return 1
    repo = Path(__file__).resolve().parent.parent
    profiles = Path(argv[0]).resolve() if argv else repo / "profiles"
    manager = UserManager(netns=True)  # the example ports may be in use on this machine
    try:
        manager.start()
        env = manager.ns_env(
            FLEETCTL_QUIET_ROOT="1",
            PS1="(fleetctl-testbed) \\u:\\w$ ",
            TERM=os.environ.get("TERM") or "xterm",  # sudo and su may not pass it; bash needs one
        )
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        # A copy the user owns, as a user's own checkout would be (the original stays root's).
        mine = manager.home / "profiles"
        shutil.copytree(profiles, mine, ignore=shutil.ignore_patterns("examples"))
        manager.give(mine)
        profiles = mine
        installed = subprocess.run(
            [*manager.user_argv(), sys.executable, "-m", "fleetctl", "install", str(profiles)],
            env=env,
            cwd=repo,
        )
        if installed.returncode != 0:
            print(
                f"fleetctl install failed (exit {installed.returncode}): see above; nothing is left running",
                file=sys.stderr,
            )
            return installed.returncode
        print(
            f"\nA private systemd user manager runs the fleet; HOME={manager.home}.\n"
            "Try: fleetctl status, fleetctl logs coder, systemctl --user status fleet-coder, "
            "fleetctl doctor.\nExit the shell to tear it all down.\n"
        )
        subprocess.run([*manager.user_argv(cwd=repo), "bash", "--norc", "-i"], env=env)
    finally:
        manager.stop()
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] != ["shell"]:
        print("usage: python3 tests/usermanager.py shell [PROFILES_DIR]", file=sys.stderr)
        raise SystemExit(2)
    raise SystemExit(_shell_main(sys.argv[2:]))
