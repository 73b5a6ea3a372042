"""The test bed itself: the manager is a normal user's, the session has its own network, cron
runs inside. What every end-to-end test relies on, checked once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from conftest import REPO, Fleetctl, on_host_network, wait_for
from usermanager import UserManager

from fleetctl.fleet.profiles import load_fleet

pytestmark = pytest.mark.systemd

# Holds every given port on the host's loopback (one already held by something else on the
# host, e.g. a real fleet, is just as occupied).
HOLDER = """
import errno, socket, sys, time
socks = []
for port in sys.argv[1:]:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", int(port))); s.listen(); socks.append(s)
    except OSError as e:
        if e.errno != errno.EADDRINUSE:
            raise
print("holding", flush=True)
time.sleep(600)
"""


def test_manager_is_the_test_users(user_manager: UserManager) -> None:
    m = user_manager
    if os.environ.get("FLEET_TB_ROOT") == "1":
        pytest.skip("FLEET_TB_ROOT=1 asked for the old root bed")
    assert m.uid != 0 and m.user != "root"
    who = m.run(["sh", "-c", "id -u; echo $HOME; stat -c %u /run/user/$(id -u)"], check=True).stdout.split()
    assert who == [str(m.uid), str(m.home), str(m.uid)]
    pid = m.run(["systemctl", "--user", "show", "-p", "MainPID", "--value", "init.scope"]).stdout.strip()
    if pid and pid != "0":
        status = m.run(["cat", f"/proc/{pid}/status"], check=True).stdout
        assert f"Uid:\t{m.uid}\t" in status
    cgroup = m.run(
        ["sh", "-c", "stat -c %u /sys/fs/cgroup/unified/user.slice/user-*.slice/user@*.service"], as_root=True
    )
    assert cgroup.stdout.split() == [str(m.uid)]  # delegated
    # The user reads its own journal (per-user file on persistent storage).
    own = m.run(["journalctl", "--user", "-n", "5", "-o", "json", "--no-pager"], check=True).stdout
    assert any(json.loads(line).get("_UID") == str(m.uid) for line in own.splitlines())


def test_session_has_its_own_network(user_manager: UserManager) -> None:
    if conftest.HOST_NETNS is None:
        pytest.skip("FLEET_TB_HOST_NET=1: the session uses the host's network")
    assert os.readlink("/proc/self/ns/net") == os.readlink(f"/proc/{user_manager.ns_pid}/ns/net")
    assert os.readlink("/proc/self/ns/net") != os.readlink(conftest.HOST_NETNS)


def test_example_ports_are_below_the_sessions_ephemeral_ports(user_manager: UserManager) -> None:
    # The example fleet binds fixed ports; the kernel hands out ephemeral ones (free_port(), the
    # local end of every outgoing connection). In the session's namespace the two never meet.
    if conftest.HOST_NETNS is None:
        pytest.skip("the session has no network namespace of its own")
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = {p.port for p in load_fleet(REPO / "profiles").profiles}
    assert max(ports) < low == conftest.EPHEMERAL_FROM, (sorted(ports), low)
    from usermanager import free_port

    assert all(free_port() >= low for _ in range(50))


def test_example_fleet_runs_while_the_host_holds_its_ports(
    fleetctl: Fleetctl, example_profiles: Path
) -> None:
    """The example ports (48391, 48520, ...) are taken on the host; the test user's fleet in the
    session's own network namespace still gets them."""
    if conftest.HOST_NETNS is None:
        pytest.skip("FLEET_TB_HOST_NET=1: the session uses the host's network")
    ports = sorted(p.port for p in load_fleet(REPO / "profiles").profiles)
    assert 48520 in ports
    holder = subprocess.Popen(
        on_host_network([sys.executable, "-c", HOLDER, *map(str, ports)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding", holder.stderr
        fleetctl("install", str(example_profiles))
        rows = json.loads(fleetctl("status", "--json", "--profiles", str(example_profiles)).stdout)["agents"]
        assert sorted(r["health"] for r in rows) == ["ok"] * len(ports), rows
        assert holder.poll() is None  # the host's holder kept its ports all along
    finally:
        holder.kill()
        holder.wait()


def test_cron_runs_the_users_crontab(user_manager: UserManager) -> None:
    """`start_cron()` runs a real cron daemon inside the namespaces; it runs the user's jobs."""
    m = user_manager
    mark = m.home / "cron-ran"
    m.start_cron()
    m.run(["crontab", "-"], input=f"* * * * * id -u > {mark}\n", check=True)
    try:
        ps = m.run(["ps", "-eo", "pid,user,args"], as_root=True).stdout
        what = f"cron to run the job; processes:\n{ps}"
        wait_for(lambda: mark.exists() and mark.read_text().strip(), 75, what)
        assert mark.read_text().strip() == str(m.uid)
    finally:
        # The daemon must not outlive the test: left running, it would run every later test's
        # installed crontab (`fleetctl watchdog` racing the test's own runs for the lock).
        m.stop_cron()
        m.run(["crontab", "-r"])
        mark.unlink(missing_ok=True)
