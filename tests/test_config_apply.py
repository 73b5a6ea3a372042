"""Config changes as migrations, against the real systemd test manager and the demo agent."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from conftest import Fleetctl
from test_watchdog_support import STABLE_WINDOW
from usermanager import free_port


@pytest.fixture
def agent(fleetctl: Fleetctl, tmp_path: Path) -> tuple[Path, Path]:
    """One demo agent 'solo' installed with config version 1 ({"greeting": "v1"})."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "solo.toml").write_text(
        f'command = ["{{python}}", "-m", "fleetctl.demo_agent"]\nport = {free_port()}\n'
        "[restart]\ndelay = 1\nbad_config_exit_statuses = [78]\n"
        f'[health]\nstartup_grace = 3\nstable_window = {STABLE_WINDOW}\n[config]\nfile = "config.json"\n'
    )
    cfg = fleetctl.manager.home / "agents/solo/config"
    cfg.mkdir(parents=True)
    (cfg / "config.json").write_text('{"greeting": "v1"}\n')
    fleetctl("install", str(profiles))
    return profiles, cfg


def stable_window(profiles: Path, seconds: float) -> None:
    """Set solo's stability window: the apply under it is verified for that long."""
    f = profiles / "solo.toml"
    f.write_text(re.sub(r"(?m)^stable_window = .*$", f"stable_window = {seconds:g}", f.read_text()))


def history(fleetctl: Fleetctl, profiles: Path) -> dict:
    return json.loads(fleetctl("config", "history", "solo", "--json", "--profiles", str(profiles)).stdout)


def test_good_change_becomes_last_known_good(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path
) -> None:
    profiles, cfg = agent
    h = history(fleetctl, profiles)
    assert h["current"] == 1 and h["last_known_good"] == 1 and h["versions"][0]["source"] == "install"
    before = fleetctl.unit("solo").active_enter_timestamp
    new = tmp_path / "new.json"
    new.write_text('{"greeting": "v2"}\n')
    out = fleetctl("config", "apply", "solo", str(new), "--reason", "friendlier", "--profiles", str(profiles))
    assert "version 2 healthy; now last-known-good" in out.stdout
    assert fleetctl.unit("solo").active_enter_timestamp > before
    h = history(fleetctl, profiles)
    assert (h["current"], h["last_known_good"]) == (2, 2)
    assert h["versions"][1]["reason"] == "friendlier" and h["versions"][1]["verified"] is True
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v2"}


def test_change_that_kills_the_agent_rolls_back(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path
) -> None:
    profiles, cfg = agent
    bad = tmp_path / "bad.json"
    bad.write_text('{"greeting": "v2", "require_api_key": true}\n')  # parses; the agent exits 1
    proc = fleetctl("config", "apply", "solo", str(bad), "--profiles", str(profiles), check=False)
    assert proc.returncode == 1
    assert "rolled back to version 1, agent healthy again" in proc.stderr
    assert "401 Unauthorized" in proc.stderr  # the agent's own error line
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v1"}
    h = history(fleetctl, profiles)
    assert (h["current"], h["last_known_good"]) == (1, 1)
    assert [v["verified"] for v in h["versions"]] == [True, False]
    st = json.loads(fleetctl("status", "--json", "--profiles", str(profiles)).stdout)["agents"][0]
    assert st["health"] == "ok"


@pytest.mark.parametrize(
    "content,message",
    [
        ('{"greeting": "v2",,}', "line 1, column 19"),
        (b'{"greeting": "caf\xe9"}', "not UTF-8"),
    ],
)
def test_invalid_file_is_refused_before_anything_is_touched(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path, content: str | bytes, message: str
) -> None:
    profiles, cfg = agent
    before = fleetctl.unit("solo").active_enter_timestamp
    bad = tmp_path / "bad.json"
    bad.write_bytes(content.encode() if isinstance(content, str) else content)
    proc = fleetctl("config", "apply", "solo", str(bad), "--profiles", str(profiles), check=False)
    assert proc.returncode == 1 and message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert fleetctl.unit("solo").active_enter_timestamp == before  # not restarted
    assert history(fleetctl, profiles)["current"] == 1
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v1"}


def test_hand_edit_is_kept_as_drift_before_rollback(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path
) -> None:
    profiles, cfg = agent
    (cfg / "config.json").write_text('{"greeting": "edited by hand at 3am"}\n')
    out = fleetctl("config", "status", "--profiles", str(profiles)).stdout
    assert "solo: version 1, last-known-good 1; DRIFT" in out
    diff = fleetctl("config", "diff", "solo", "--profiles", str(profiles)).stdout
    assert "+" in diff and "edited by hand at 3am" in diff
    fleetctl("config", "rollback", "solo", "--profiles", str(profiles))
    h = history(fleetctl, profiles)
    kept = [v for v in h["versions"] if v["source"] == "manual-edit"]
    assert len(kept) == 1 and kept[0]["version"] == 2 and not kept[0]["verified"]
    assert h["current"] == 1
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v1"}
    assert (
        "edited by hand at 3am"
        in fleetctl("config", "diff", "solo", "2", "1", "--profiles", str(profiles)).stdout
    )


def test_apply_killed_mid_verification_leaves_a_whole_version(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path
) -> None:
    profiles, cfg = agent
    # The kill must land before the verification could end: a window far longer than the
    # kill takes, even on a busy host.
    stable_window(profiles, 10)
    new = tmp_path / "new.json"
    new.write_text('{"greeting": "v2"}\n')
    proc = fleetctl.spawn("config", "apply", "solo", str(new), "--profiles", str(profiles))
    assert proc.stdout is not None
    for line in proc.stdout:  # wait until the new version is written and verification runs
        if "restarting and verifying" in line:
            break
    # nsenter forks fleetctl (it enters a pid namespace): kill the whole group, not just nsenter.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v2"}  # whole, never a mix
    h = history(fleetctl, profiles)
    assert (h["current"], h["last_known_good"]) == (2, 1)  # never promoted without verification
    stable_window(profiles, STABLE_WINDOW)
    fleetctl("config", "rollback", "solo", "--profiles", str(profiles))
    assert json.loads((cfg / "config.json").read_text()) == {"greeting": "v1"}


def test_two_applies_at_once_one_is_refused(
    fleetctl: Fleetctl, agent: tuple[Path, Path], tmp_path: Path
) -> None:
    profiles, _ = agent
    # The first apply holds the agent's lock through its verification: long enough that the
    # second, started at the same time, always finds it held, even on a busy host (where the
    # two start-ups may drift a second or two apart).
    stable_window(profiles, 5)
    files = []
    for i in (2, 3):
        f = tmp_path / f"v{i}.json"
        f.write_text(json.dumps({"greeting": f"v{i}"}))
        files.append(f)
    procs = [fleetctl.spawn("config", "apply", "solo", str(f), "--profiles", str(profiles)) for f in files]
    results = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 75], results
    refused = next(r for r in results if r[2] == 75)
    assert "another config change for solo is in progress" in refused[1]


def test_config_diff_masks_every_secret_of_the_fleet(fleetctl: Fleetctl, agent: tuple[Path, Path]) -> None:
    """Not only the agent's own secrets: a config can quote another agent's key (a shared
    gateway token), in any spelling."""
    import base64

    profiles, cfg = agent
    peer_key = "peer-gateway-token-8c1f2e"
    peer_env = fleetctl.manager.home / "peer.env"
    peer_env.write_text(f"GATEWAY_TOKEN={peer_key}\n")
    peer_env.chmod(0o600)
    (profiles / "peer.toml").write_text(
        f'command = ["/bin/true"]\nport = {free_port()}\nsecrets_file = "~/peer.env"\n'
    )
    b64 = base64.b64encode(peer_key.encode()).decode()
    (cfg / "config.json").write_text(
        json.dumps({"greeting": "v1", "upstream": peer_key, "basic": b64}) + "\n"
    )
    diff = fleetctl("config", "diff", "solo", "--profiles", str(profiles)).stdout
    assert '"upstream": "[REDACTED]"' in diff
    assert peer_key not in diff and b64 not in diff
