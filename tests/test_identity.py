"""Identity files: `fleetctl new` scaffolds them, never over an existing file; doctor warns."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.cli import main
from fleetctl.fleet import identity
from fleetctl.fleet.profiles import load_fleet
from fleetctl.lifecycle.doctor import _identity


def new(profiles: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["new", *args, "--profiles", str(profiles), "--command", "/bin/agent"])
    assert result.exit_code == 0, result.output
    return result.output


def test_new_writes_the_four_files_from_role_and_description(home: Path, tmp_path: Path) -> None:
    out = new(tmp_path / "p", "planner", "--role", "coordinator", "-d", "Plans the sprint")
    ws = home / "agents" / "planner" / "workspace"
    for name in identity.FILES:
        assert f"wrote {ws / name}" in out
        assert (ws / name).stat().st_mode & 0o777 == 0o600
    soul = (ws / "SOUL.md").read_text()
    assert "**planner**" in soul and "coordinator" in soul and "Plans the sprint" in soul
    assert "L0" in (ws / "MEMORY.md").read_text() and "L3" in (ws / "MEMORY.md").read_text()
    assert "BULLETIN" in (ws / "HEARTBEAT.md").read_text() and "MEMORY" in (ws / "HEARTBEAT.md").read_text()
    assert "1. " in (ws / "CONSTITUTION.md").read_text()
    assert ws.stat().st_mode & 0o777 == 0o700


@settings(max_examples=15, deadline=None)
@given(existing=st.sets(st.sampled_from(identity.FILES)), text=st.text(min_size=0, max_size=50))
def test_scaffold_never_overwrites(existing: set[str], text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d, pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", d)
        (Path(d) / "p").mkdir()
        (Path(d) / "p" / "a.toml").write_text('command = ["/bin/a"]\nport = 48520\n')
        p = load_fleet(Path(d) / "p").get("a")
        ws = Path(d) / "agents" / "a" / "workspace"
        ws.mkdir(parents=True)
        for name in existing:
            (ws / name).write_bytes(text.encode())
        regular = set(existing)
        if "SOUL.md" not in existing:  # a dangling link is an existing name too
            os.symlink(Path(d) / "elsewhere", ws / "SOUL.md")
            existing = existing | {"SOUL.md"}
        written = identity.scaffold(p)
        assert {f.name for f in written} == set(identity.FILES) - existing
        for name in regular:
            assert (ws / name).read_bytes() == text.encode()
        assert not (Path(d) / "elsewhere").exists()


def test_doctor_warns_for_agents_missing_them(home: Path, tmp_path: Path) -> None:
    new(tmp_path / "p", "writer")
    (tmp_path / "p" / "old.toml").write_text('command = ["/bin/a"]\nport = 48999\n')
    checks = _identity(load_fleet(tmp_path / "p"))
    assert [(c.level, c.text.rsplit(": ", 1)[1]) for c in checks] == [("warn", "old")]
    assert "SOUL.md, CONSTITUTION.md, HEARTBEAT.md, MEMORY.md" in checks[0].text
