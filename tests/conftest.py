"""Shared fixtures. `user_manager` is the real systemd user manager (one per session).

The whole test session runs in its own network namespace with only loopback (set up in
`pytest_configure`), so agents, fake LLMs and receivers never collide with ports on the host;
`HOST_NETNS` / `on_host_network()` reach the host's network when a test needs it. The manager
runs as the unprivileged test user (tests/usermanager.py); `fleetctl` runs the CLI as that user.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from usermanager import UserManager, started_managers  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
CLONE_NEWNET = 0x40000000
EPHEMERAL_FROM = 49152  # the session namespace's first ephemeral port (IANA's dynamic range)
HOST_NETNS: str | None = None  # a path naming the host's network namespace, for nsenter --net=


def pytest_configure(config: pytest.Config) -> None:
    """Move the session into a private network namespace before any thread starts.

    Network namespaces belong to threads: threads started later (fake servers) inherit it, and
    so do the test managers. FLEET_TB_HOST_NET=1 keeps the host's network.
    """
    global HOST_NETNS
    if os.geteuid() == 0 and not config.option.basetemp:
        # The test user must reach tmp_path; /tmp/pytest-of-root is 0700 and every pytest run
        # on the host resets it, so this session's temp dirs live in a root of their own.
        config.option.basetemp = tempfile.mkdtemp(prefix="fleetctl-pytest-")
        config.add_cleanup(lambda: shutil.rmtree(config.option.basetemp, ignore_errors=True))
    if os.geteuid() != 0 or os.environ.get("FLEET_TB_HOST_NET") == "1" or shutil.which("ip") is None:
        return
    import ctypes

    host = os.open("/proc/self/ns/net", os.O_RDONLY)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        os.close(host)
        return  # no netns here: the test bed check below says what is missing
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    # The example fleet listens on fixed ports in 48391-48600, inside the kernel's default
    # ephemeral range (32768-60999): a free_port() of an earlier test, or the local end of any
    # outgoing connection, could hold one when an example agent binds it (EADDRINUSE, seen once
    # in CI). In this namespace ephemeral ports start above them.
    try:
        Path("/proc/sys/net/ipv4/ip_local_port_range").write_text(f"{EPHEMERAL_FROM} 60999\n")
    except OSError:
        pass  # test_testbed says so: the example ports then stay inside the ephemeral range
    HOST_NETNS = f"/proc/{os.getpid()}/fd/{host}"


def on_host_network(argv: list[str]) -> list[str]:
    """argv prefix that runs a command in the host's network namespace (outside the session's)."""
    assert HOST_NETNS, "the session has no private network namespace"
    return ["nsenter", f"--net={HOST_NETNS}", "--", *argv]


def _testbed_missing() -> str | None:
    if os.geteuid() != 0:
        return "needs root: the systemd test manager runs in private mount/cgroup/pid namespaces"
    for tool in ("unshare", "nsenter", "setpriv", "journalctl", "ip"):
        if shutil.which(tool) is None:
            return f"needs {tool}"
    if not Path("/lib/systemd/systemd").exists():
        return "needs systemd installed (/lib/systemd/systemd)"
    if not Path("/sys/fs/cgroup/systemd/cgroup.procs").exists():
        return "needs the hybrid cgroup layout (/sys/fs/cgroup/systemd and /sys/fs/cgroup/unified)"
    return None


def require_testbed() -> None:
    """Skip with a reason on a laptop; under CI=true a missing test bed is a failure."""
    reason = _testbed_missing()
    if reason:
        if IN_CI:
            pytest.fail(f"CI=true but the systemd test bed is unavailable: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def user_manager() -> Iterator[UserManager]:
    """The session's manager: the test user's, journald with persistent per-user files."""
    require_testbed()
    manager = UserManager()
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


@pytest.fixture(scope="session")
def user_manager_volatile() -> Iterator[UserManager]:
    """A second manager whose journald keeps volatile storage (Storage=volatile): the test user
    can read none of its units' journal lines, as on a host without /var/log/journal."""
    require_testbed()
    manager = UserManager(journal="volatile")
    manager.start()
    try:
        yield manager
    finally:
        manager.stop()


# mypy from a cold cache (a fresh clone, as in CI) takes ~20 s of one core, and most of the
# suite waits on timers (cron minutes, grace periods, stability windows). So when
# test_linter[mypy] is among the tests, mypy starts as soon as they are collected and runs beside
# them; the test waits for it and asserts on its result as before.
EARLY_LINTERS = {"mypy": [sys.executable, "-m", "mypy", "fleetctl"]}
_early: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = {item.nodeid.rsplit("::", 1)[-1] for item in items}
    for name, argv in EARLY_LINTERS.items():
        if f"test_linter[{name}]" not in selected or name in _early:
            continue
        fd, out = tempfile.mkstemp(prefix=f"fleetctl-{name}-")
        with os.fdopen(fd, "wb") as f:
            proc = subprocess.Popen(
                argv, cwd=REPO, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT
            )
        _early[name] = (proc, Path(out))
    config.add_cleanup(_stop_early_linters)


def early_linter(name: str) -> subprocess.CompletedProcess[str] | None:
    """What the linter started at collection printed and returned (None if it was not started)."""
    got = _early.pop(name, None)
    if got is None:
        return None
    proc, out = got
    code = proc.wait()
    text = out.read_text(errors="replace")
    out.unlink(missing_ok=True)
    return subprocess.CompletedProcess(proc.args, code, text, "")


def _stop_early_linters() -> None:
    """A linter whose test never ran (deselected at the last moment, session interrupted)."""
    for proc, out in _early.values():
        proc.kill()
        proc.wait()
        out.unlink(missing_ok=True)
    _early.clear()


@pytest.fixture(autouse=True)
def _no_cron_left_running() -> Iterator[None]:
    """A test that starts a bed's cron daemon stops it: left running, it would run every later
    test's installed crontab (a `fleetctl watchdog` racing the test's own runs for the lock)."""
    yield
    left = [m for m in started_managers() if m.cron is not None]
    for m in left:
        m.stop_cron()
    assert not left, "the test left the bed's cron daemon running (call stop_cron())"


REPO = Path(__file__).parent.parent


class Fleetctl:
    """Runs the real `fleetctl` command as the test user inside the test manager's namespaces.

    Files the test wrote as root (its tmp_path, the user's HOME) are handed to the user before
    each command, as if the user had written them.
    """

    def __init__(self, manager: UserManager, owned: tuple[Path, ...] = ()) -> None:
        self.manager = manager
        self.owned = (*owned, manager.home)
        self.env = manager.ns_env(FLEETCTL_QUIET_ROOT="1", PYTHONPATH=str(REPO))

    def __call__(self, *args: str, check: bool = True, timeout: float = 180, **env: str):  # type: ignore[no-untyped-def]
        self.manager.give(*self.owned)
        proc = self.manager.run(
            [sys.executable, "-m", "fleetctl", *args], env={**self.env, **env}, timeout=timeout
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"fleetctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        """Start fleetctl in the background, in its own session: os.killpg(p.pid, ...) reaches
        the fleetctl that nsenter forked (nsenter passes no signal on)."""
        self.manager.give(*self.owned)
        return subprocess.Popen(
            [*self.manager.user_argv(), sys.executable, "-m", "fleetctl", *args],
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def systemd(self):  # type: ignore[no-untyped-def]
        """An in-process D-Bus client on the test manager's user bus."""
        return user_bus_client(self.manager)

    def unit(self, agent: str):  # type: ignore[no-untyped-def]
        with self.systemd() as mgr:
            return mgr.units([f"fleet-{agent}.service"])[f"fleet-{agent}.service"]

    def wait_past_grace(self, agent: str, grace: float) -> None:
        """Until the agent is out of its start-up grace, counted from its unit's start as the
        watchdog counts it (a fixed sleep would add the grace to the time it took to get up)."""
        start = self.unit(agent).active_enter_timestamp / 1e6
        time.sleep(max(0.0, start + grace + 0.2 - time.time()))


def user_bus_client(manager: UserManager):  # type: ignore[no-untyped-def]
    """A SystemdManager in this (root) process on the user's bus (see UserManager.as_user)."""
    from fleetctl.systemd.manager import SystemdManager

    with manager.as_user():
        return SystemdManager(address=manager.bus_address)


@pytest.fixture
def fleetctl(user_manager: UserManager, tmp_path: Path) -> Iterator[Fleetctl]:
    """fleetctl against the session's manager; everything it installed is gone afterwards."""
    runner = Fleetctl(user_manager, (tmp_path,))
    try:
        yield runner
    finally:
        clean_up(runner)


def clean_up(runner: Fleetctl) -> None:
    """Uninstall, empty the crontab and the user's fleetctl dirs; fail if a unit still runs."""
    user_manager = runner.manager
    runner("uninstall", "--purge", check=False)
    user_manager.run(["crontab", "-r"], env=runner.env)  # the namespace's private crontab
    home = user_manager.home
    for d in (".local/state/fleetctl", ".config/fleetctl", "agents"):
        shutil.rmtree(home / d, ignore_errors=True)
    with runner.systemd() as mgr:
        left = [u for u in mgr.list_units("fleet-") if mgr.units([u])[u].active_state != "inactive"]
    assert not left, f"units left running: {left}"


@pytest.fixture
def example_profiles(tmp_path: Path) -> Path:
    """A private copy of the example fleet, so a test may edit it."""
    dest = tmp_path / "profiles"
    shutil.copytree(REPO / "profiles", dest, ignore=shutil.ignore_patterns("examples"))
    return dest


def wait_for(pred: Callable[[], object], timeout: float = 20.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until pred() is truthy and return its value; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """fleetctl's paths follow HOME and the XDG variables at call time: point them into
    tmp_path (a fresh home, nothing of the runner's config, state or profiles folder)."""
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "FLEETCTL_PROFILES"):
        monkeypatch.delenv(var, raising=False)
    return h
