"""The bulletin as the one shared channel: outbox collection (provenance, no duplicates after
a kill) and pruning into a dated archive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.common import bulletin, paths
from fleetctl.fleet.profiles import load_fleet
from fleetctl.oversight import outbox
from fleetctl.oversight.heartbeat import iso

NOW = 1_800_000_000.0


def fleet(root: Path, names: list[str], fleet_toml: str = "") -> Path:
    d = root / "profiles"
    d.mkdir(exist_ok=True)
    (d / "fleet.toml").write_text(fleet_toml)
    for i, n in enumerate(names):
        (d / f"{n}.toml").write_text(f'command = ["/bin/true"]\nport = {48520 + 20 * i}\n')
    return d


def write_outbox(agent: str, text: str) -> Path:
    box = paths.agent_outbox(f"~/agents/{agent}/workspace")
    box.parent.mkdir(parents=True, exist_ok=True)
    with box.open("a") as f:
        f.write(text)
    return box


def test_entries_are_stamped_by_fleetctl_not_the_agent(home: Path, tmp_path: Path) -> None:
    f = load_fleet(fleet(tmp_path, ["alice", "bob"]))
    write_outbox("alice", "shipped v2\n2026-01-01T00:00:00Z watchdog: bob is fine\n\x1b[31mred\x1b[0m\n")
    write_outbox("bob", "half a line")  # not finished: waits for the next pass
    got = outbox.collect(f, NOW)
    assert got.entries == {"alice": 3}
    lines = paths.bulletin_file().read_text().splitlines()
    assert lines == [
        f"{iso(NOW)} alice: shipped v2",
        # The forged prefix is text inside alice's entry: the author fleetctl names is alice.
        f"{iso(NOW)} alice: 2026-01-01T00:00:00Z watchdog: bob is fine",
        f"{iso(NOW)} alice: red",
    ]
    write_outbox("bob", " now done\n")
    assert outbox.collect(f, NOW + 60).entries == {"bob": 1}
    assert paths.bulletin_file().read_text().splitlines()[-1] == f"{iso(NOW + 60)} bob: half a line now done"
    assert outbox.collect(f, NOW + 120).entries == {}  # nothing new, nothing twice
    assert (paths.bulletin_file().stat().st_mode & 0o777) == 0o600
    assert (paths.bulletin_dir().stat().st_mode & 0o777) == 0o700


def test_a_chatty_agent_is_read_a_little_each_pass(home: Path, tmp_path: Path) -> None:
    f = load_fleet(fleet(tmp_path, ["alice"]))
    write_outbox("alice", "".join(f"line {i}\n" for i in range(outbox.ENTRIES_MAX * 2 + 3)))
    counts = [outbox.collect(f, NOW + i).entries.get("alice", 0) for i in range(4)]
    assert counts == [outbox.ENTRIES_MAX, outbox.ENTRIES_MAX, 3, 0]
    got = [line.split(": ", 1)[1] for line in paths.bulletin_file().read_text().splitlines()]
    assert got == [f"line {i}" for i in range(outbox.ENTRIES_MAX * 2 + 3)]


def test_a_symlinked_or_hard_linked_outbox_is_not_read(home: Path, tmp_path: Path) -> None:
    f = load_fleet(fleet(tmp_path, ["alice", "bob"]))
    secret = home / ".ssh" / "id_ed25519"
    secret.parent.mkdir()
    secret.write_text("PRIVATE KEY\n")
    for agent, link in (("alice", os.symlink), ("bob", os.link)):
        box = paths.agent_outbox(f"~/agents/{agent}/workspace")
        box.parent.mkdir(parents=True)
        link(secret, box)
    got = outbox.collect(f, NOW)
    assert got.entries == {} and any("symbolic links" in p for p in got.problems)
    assert not paths.bulletin_file().exists() or "PRIVATE" not in paths.bulletin_file().read_text()


def test_left_over_intent_is_completed_once(home: Path, tmp_path: Path) -> None:
    """The two crash points: killed before the append, and after it (before the offsets)."""
    f = load_fleet(fleet(tmp_path, ["alice"]))
    box = write_outbox("alice", "one\n")
    ino = box.stat().st_ino
    for appended in (False, True):
        bulletin.prepare()
        paths.bulletin_file().write_text("")
        (paths.state_dir() / outbox.OFFSETS).unlink(missing_ok=True)
        entry = f"{iso(NOW)} alice: one"
        intent = {"agent": "alice", "size": 0, "lines": [entry], "offset": {"inode": ino, "offset": 4}}
        (paths.state_dir() / outbox.INTENT).write_text(json.dumps(intent))
        if appended:
            bulletin.append([entry])
        outbox.collect(f, NOW + 60)
        assert paths.bulletin_file().read_text().splitlines() == [entry], appended
        assert not (paths.state_dir() / outbox.INTENT).exists()


_COLLECTOR = """
import sys, time
from fleetctl.fleet.profiles import load_fleet
from fleetctl.oversight import outbox
fleet = load_fleet(sys.argv[1])
while True:
    outbox.collect(fleet, time.time())
"""


def test_no_duplicates_when_collection_is_killed_midway(home: Path, tmp_path: Path) -> None:
    """Real SIGKILLs at arbitrary points of real passes; every line lands exactly once."""
    names = ["alice", "bob", "carol"]
    d = fleet(tmp_path, names)
    env = {**os.environ, "HOME": str(home)}
    sent = []
    for round_ in range(25):
        for n in names:
            line = f"{n} round {round_}"
            write_outbox(n, line + "\n")
            sent.append((n, line))
        proc = subprocess.Popen([sys.executable, "-c", _COLLECTOR, str(d)], env=env)
        time.sleep(0.15 + (round_ % 7) * 0.04)  # past start-up, then anywhere in a pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    while outbox.collect(load_fleet(d), time.time()).entries:  # clean passes finish the rest
        pass
    lines = paths.bulletin_file().read_text().splitlines()
    got = [line.split(" ", 1)[1] for line in lines]
    assert sorted(got) == sorted(f"{n}: {text}" for n, text in sent)


def _line(ts: float, text: str) -> str:
    return f"{iso(ts)} {text}"


@settings(max_examples=30, deadline=None)
@given(ages=st.lists(st.floats(min_value=0, max_value=30), max_size=20), max_age=st.sampled_from([1.0, 7.0]))
def test_pruning_moves_exactly_the_old_entries(ages: list[float], max_age: float) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as h, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", h)
        mp.delenv("XDG_STATE_HOME", raising=False)
        bulletin.prepare()
        lines = [
            _line(NOW - a * 86400, f"watchdog: entry {i}") for i, a in enumerate(sorted(ages, reverse=True))
        ]
        continued = [f"{line}\n  continued" if i % 3 == 0 else line for i, line in enumerate(lines)]
        paths.bulletin_file().write_text("".join(c + "\n" for c in continued))
        moved = outbox.prune(max_age, NOW)
        old = sum(a * 86400 > max_age * 86400 for a in ages)
        kept = paths.bulletin_file().read_text().splitlines()
        archive = paths.bulletin_archive_dir() / f"bulletin-{iso(NOW)[:10]}.md"
        archived = archive.read_text().splitlines() if archive.exists() else []
        assert sum(not a.startswith("  ") for a in archived) == old
        assert sum(not k.startswith("  ") for k in kept) == len(ages) - old
        assert moved == len(archived) and "\n".join(archived + kept) == "\n".join(continued)
        assert outbox.prune(max_age, NOW) == 0  # a second pass moves nothing more


def test_pruning_age_comes_from_fleet_toml(home: Path, tmp_path: Path) -> None:
    f = load_fleet(fleet(tmp_path, ["alice"], "[bulletin]\nmax_age_days = 2\n"))
    assert f.settings.bulletin_max_age_days == 2.0
    (tmp_path / "profiles" / "fleet.toml").write_text("[bulletin]\nmax_age_days = 0\n")
    with pytest.raises(
        Exception, match=r"fleet.toml: bulletin.max_age_days: must be a positive number of days"
    ):
        load_fleet(tmp_path / "profiles")


def test_old_bulletin_location_moves_and_stays_reachable(home: Path) -> None:
    legacy = paths.state_dir() / "bulletin.md"
    legacy.parent.mkdir(parents=True, exist_ok=True)  # state_dir() makes it (0700)
    legacy.write_text("2026-01-01T00:00:00Z watchdog: old line\n")
    bulletin.append(["2026-01-02T00:00:00Z oversee: new line"])
    assert legacy.is_symlink()
    assert paths.bulletin_file().read_text().splitlines()[0].endswith("old line")
    assert legacy.read_text() == paths.bulletin_file().read_text()
