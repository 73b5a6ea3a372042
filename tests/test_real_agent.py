"""A real Node program as the agent, in the real systemd test manager, profiled by
`fleetctl new --template openclaw` from an nvm-style npm install the test builds.

It exercises what broke real OpenClaw gateways: Node by absolute path (the bin shim's
`#!/usr/bin/env node` is never used), a cache under the sandbox, a gateway that restarts itself
by exiting 0, a readiness endpoint, a validator that needs the agent's PATH and must not touch
the live config; then self-exit vs a deliberate stop in the watchdog, and the real cause of a
failed start in install and doctor.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Fleetctl, wait_for
from test_templates import SYSTEM_NODE, npm_global
from usermanager import free_port

pytestmark = pytest.mark.skipif(not SYSTEM_NODE.exists(), reason="needs /usr/bin/node (apt nodejs)")

NVM_NODE = "v20.20.2"


@dataclass
class Gateway:
    fc: Fleetctl
    profiles: Path
    port: int
    home: Path

    def run(self, *args: str, check: bool = True):  # type: ignore[no-untyped-def]
        where = [str(self.profiles)] if args[0] == "install" else ["--profiles", str(self.profiles)]
        return self.fc(*args, *where, check=check)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=3) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, ""
        except OSError:
            return 0, ""

    def post(self, path: str) -> int:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=3) as r:
            return r.status

    @property
    def live_config(self) -> Path:
        return self.home / ".openclaw-gw" / "openclaw.json"

    def journal(self) -> str:
        proc = self.fc.manager.run(
            ["journalctl", "--user-unit=fleet-gw.service", "-o", "cat", "--no-pager"], env=self.fc.env
        )
        return proc.stdout


def _edit(text: str, **values: str) -> str:
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    return text


@pytest.fixture
def gateway(fleetctl: Fleetctl, tmp_path: Path) -> Iterator[Gateway]:
    home = fleetctl.manager.home
    prefix = home / ".nvm" / "versions" / "node" / NVM_NODE
    npm_global(prefix)
    (prefix / "bin" / "node").symlink_to(SYSTEM_NODE)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    gw = Gateway(fleetctl, profiles, free_port(), home)
    try:
        yield gw
    finally:
        fleetctl("uninstall", "--purge", check=False)
        for d in (home / ".nvm", home / ".openclaw-gw"):
            shutil.rmtree(d, ignore_errors=True)


def make_profile(gw: Gateway, **edits: str) -> str:
    """`fleetctl new gw --template openclaw`, then a free port and test-sized waits."""
    out = gw.run("new", "gw", "--template", "openclaw").stdout
    f = gw.profiles / "gw.toml"
    text = _edit(f.read_text(), port=str(gw.port), startup_grace="20", delay="1", **edits)
    f.write_text(text.replace("[health]\n", "[health]\nstable_window = 2\n"))
    gw.live_config.parent.mkdir(parents=True, exist_ok=True)
    gw.live_config.write_text('{"gateway": {}, "readyAfterMs": 1500}\n')
    return out


def test_openclaw_template_end_to_end(gateway: Gateway, tmp_path: Path) -> None:
    gw = gateway
    out = make_profile(gw)
    nvm_bin = gw.home / ".nvm" / "versions" / "node" / NVM_NODE / "bin"
    # fleetctl's own PATH has no nvm: the template found it and says what it found.
    assert "found openclaw 2026.9.6-fake" in out and "found node 20." in out and str(nvm_bin / "node") in out
    print(f"$ fleetctl new gw --template openclaw\n{out}")

    out = gw.run("install").stdout
    print(f"$ fleetctl install\n{out}")
    assert re.search(r"gw: ready after \d", out), out
    # install waited for /readyz (503 for 1.5 s), not just /healthz (200 at once).
    assert gw.get("/readyz")[0] == 200

    unit = gw.fc.unit("gw")
    unit_text = (gw.home / ".config/systemd/user/fleet-gw.service").read_text()
    assert f"ExecStart={nvm_bin / 'node'} " in unit_text  # Node by absolute path, the entry script next
    exe = gw.fc.manager.run(["readlink", f"/proc/{unit.main_pid}/exe"]).stdout.strip()
    assert exe == str(SYSTEM_NODE.resolve())
    # Its cache is under its own dir: ProtectHome=read-only would refuse ~/.cache.
    assert (gw.home / ".openclaw-gw" / "cache" / "openclaw-0" / "boot").is_file()
    assert not (gw.home / ".cache" / "openclaw-0").exists()

    status = gw.run("status").stdout
    print(f"$ fleetctl status\n{status}")
    row = json.loads(gw.run("status", "--json").stdout)["agents"][0]
    assert (row["health"], row["ready"]) == ("ok", "ok") and ", ready" in status

    # It restarts itself by exiting 0; Restart=always brings it back.
    boot = gw.get("/boot")[1]
    assert gw.post("/restart") == 202
    wait_for(lambda: gw.get("/boot")[1] not in ("", boot), 20, "the gateway back after its own exit 0")
    assert gw.fc.unit("gw").n_restarts >= 1

    # A bad key: the validator (which needs the agent's PATH) refuses it, on a copy.
    bad = tmp_path / "bad.json"
    bad.write_text('{"gateway": {}, "bogus": 1}\n')
    live_before = gw.live_config.read_bytes()
    proc = gw.run("config", "apply", "gw", str(bad), check=False)
    print(f"$ fleetctl config apply gw bad.json\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 1
    assert "validator failed (exit 1)" in proc.stderr and 'Unrecognized key: "bogus"' in proc.stderr
    assert "\x1b" not in proc.stderr and "cannot run" not in proc.stderr
    assert gw.live_config.read_bytes() == live_before
    assert "config reload skipped" not in gw.journal()

    good = tmp_path / "good.json"
    good.write_text('{"gateway": {}, "agents": {}, "readyAfterMs": 500}\n')
    proc = gw.run("config", "apply", "gw", str(good))
    print(f"$ fleetctl config apply gw good.json\n{proc.stdout}")
    assert "gw: ready; watching 2s for stability" in proc.stdout
    assert "gw: stable for 2s" in proc.stdout and "now last-known-good" in proc.stdout
    assert "\x1b" not in gw.run("logs", "gw").stdout


def test_self_exit_is_acted_on_and_a_deliberate_stop_is_left_alone(gateway: Gateway) -> None:
    gw = gateway
    make_profile(gw, policy='"on-failure"')
    gw.run("install")
    gw.run("watchdog")  # baseline

    # Exit 0 by itself under Restart=on-failure: down, and never "all good".
    gw.post("/restart")
    wait_for(lambda: gw.fc.unit("gw").active_state == "inactive", 20, "the gateway down after exit 0")
    proc = gw.run("watchdog", check=False)
    print(proc.stdout, proc.stderr)
    assert "gw: exited by itself" in proc.stdout and "and stayed down" in proc.stdout
    assert "(1 failing); 1 action(s)" in proc.stdout and "-> restart -> healthy" in proc.stdout
    wait_for(lambda: gw.get("/healthz")[0] == 200, 20, "the watchdog starting it again")

    # fleetctl stop: a stop job; the watchdog leaves it down.
    gw.run("stop", "gw")
    proc = gw.run("watchdog")
    assert gw.fc.unit("gw").active_state == "inactive" and "exited by itself" not in proc.stdout

    # systemctl --user stop: the same.
    gw.run("start", "gw")
    gw.fc.manager.run(["systemctl", "--user", "stop", "fleet-gw.service"], env=gw.fc.env, check=True)
    proc = gw.run("watchdog")
    assert gw.fc.unit("gw").active_state == "inactive" and "exited by itself" not in proc.stdout


def test_install_and_doctor_name_the_sandbox_not_the_config(gateway: Gateway) -> None:
    gw = gateway
    make_profile(gw)
    f = gw.profiles / "gw.toml"
    # Without XDG_CACHE_HOME it writes ~/.cache. Deny-by-default gives it a throwaway home where
    # that works; with ProtectHome relaxed to the real home, read-only, it cannot.
    text = re.sub(r"^XDG_CACHE_HOME = .*\n", "", f.read_text(), flags=re.M)
    f.write_text(text.replace('relax = ["RestrictSUIDSGID"]', 'relax = ["RestrictSUIDSGID", "ProtectHome"]'))
    assert '"ProtectHome"' in f.read_text()
    (gw.home / ".cache").mkdir(exist_ok=True)  # as in most homes: the agent would add openclaw-0

    doctor = gw.run("doctor", check=False)
    print(f"$ fleetctl doctor\n{doctor.stdout}")
    line = next(x for x in doctor.stdout.splitlines() if "test-start" in x)
    assert line.startswith("FAIL") and "gw: test start: " in line
    assert ("read-only" in line or "does not exist" in line) and "rejected its config" not in line
    assert (
        "fleetctl-doctor-gw"
        not in gw.fc.manager.run(
            ["systemctl", "--user", "list-units", "--all", "--no-legend"], env=gw.fc.env
        ).stdout
    )

    proc = gw.run("install", check=False)
    print(f"$ fleetctl install\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 1
    said = next(x for x in proc.stderr.splitlines() if "not healthy: gw:" in x)
    assert "exited 78, not because of its config" in said, said
    assert "ProtectHome=read-only" in said or "does not exist (" in said, said
    assert "rejected its config" not in proc.stdout + proc.stderr
