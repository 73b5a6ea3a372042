"""The sandbox section of a unit: deny by default, per-directive relax, the directive table."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.fleet.profiles import ProfileErrors, load_fleet
from fleetctl.systemd import directives
from fleetctl.systemd.render import BASELINE, Target, render_unit


def _unit(tmp_path: Path, body: str, target: Target = BASELINE) -> list[str]:
    (tmp_path / "a.toml").write_text(body)
    return render_unit(load_fleet(tmp_path).get("a"), target).splitlines()


def _value(lines: list[str], key: str) -> list[str]:
    return next(line for line in lines if line.startswith(key + "=")).split("=", 1)[1].split()


def test_home_is_empty_but_for_the_agents_own_dirs_bulletin_and_shim(tmp_path: Path) -> None:
    lines = _unit(tmp_path, 'command = ["{python}", "-m", "x"]\nport = 48520\n')
    assert "ProtectHome=tmpfs" in lines and "PrivateUsers=yes" in lines
    assert _value(lines, "BindPaths") == ["%h/agents/a/workspace", "%h/agents/a/config"]
    ro = _value(lines, "BindReadOnlyPaths")
    assert ro == ["-%h/.local/state/fleetctl/bulletin", "-%E/fleetctl/bin"]
    # Nothing of fleetctl's config (credentials) or state (config store, incidents) is bound.
    assert not any(".config/fleetctl" in p or p.endswith("/fleetctl") for p in ro)
    assert "-%h/.ssh" in _value(lines, "InaccessiblePaths")
    assert "MemoryDenyWriteExecute=yes" in lines  # Python has no JIT


def test_runtime_under_home_is_bound_read_only(tmp_path: Path) -> None:
    body = (
        'command = ["~/.nvm/versions/node/v24.16.0/bin/node",'
        ' "~/.npm-global/lib/node_modules/openclaw/dist/index.js", "--ws", "~/agents/a/workspace/x"]\n'
        'port = 48520\n[sandbox]\nread_only_paths = ["~/models"]\n'
    )
    lines = _unit(tmp_path, body)
    assert _value(lines, "BindReadOnlyPaths") == [
        "-%h/.local/state/fleetctl/bulletin",
        "-%h/.nvm/versions/node/v24.16.0",
        "-%h/.npm-global/lib/node_modules",
        "-%h/models",
    ]
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in lines)  # V8 JITs


def test_install_target_binds_fleetctls_interpreter(tmp_path: Path) -> None:
    target = Target(runtime_paths=("%h/.local/pipx/venvs/fleetctl",))
    lines = _unit(tmp_path, 'command = ["{python}", "-m", "x"]\nport = 48520\n', target)
    assert "-%h/.local/pipx/venvs/fleetctl" in _value(lines, "BindReadOnlyPaths")


@settings(deadline=None)
@given(st.sets(st.sampled_from(directives.RELAXABLE), max_size=6))
def test_relax_turns_off_exactly_the_named_directives(relax: set[str]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        names = ", ".join(f'"{n}"' for n in sorted(relax))
        lines = _unit(Path(d), f'command = ["{{python}}"]\nport = 48520\n[sandbox]\nrelax = [{names}]\n')
    rendered = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    for d_ in directives.DIRECTIVES:
        if d_.scope == directives.OFF:
            assert d_.name not in rendered
        elif d_.name == "ProtectHome":
            assert ("ProtectHome=tmpfs" in lines) is (d_.name not in relax)
            assert ("ProtectHome=read-only" in lines) is (d_.name in relax)
        else:
            assert (d_.name in rendered) is (d_.name not in relax), d_.name


def test_unknown_relax_name_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        'command = ["/bin/a"]\nport = 48520\n[sandbox]\nrelax = ["RestrictSUID"]\n'
    )
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    (line,) = e.value.problems
    assert line.startswith(
        f"{tmp_path / 'a.toml'}: sandbox.relax: unknown sandbox directive(s) 'RestrictSUID'"
    )
    assert "RestrictSUIDSGID" in line


def test_fallback_says_isolation_is_off(tmp_path: Path) -> None:
    lines = _unit(tmp_path, 'command = ["/bin/a"]\nport = 48520\n', Target(userns=False))
    assert any("isolation OFF" in line for line in lines)
    assert "SystemCallFilter=@system-service" in lines and "ProtectHome=tmpfs" not in lines


@pytest.mark.parametrize(
    "body,problem",
    [
        # Not normalized: refused before the folder check can see them.
        ('workspace = "~/"\n', "workspace: must be a normalized path"),
        ('config_dir = "~/.local/state/fleetctl/x/.."\n', "config_dir: must be a normalized path"),
        ('config_dir = "~/.config"\n', "config_dir: ~/.config would give the agent ~/.config "),
        ('config_dir = "~/.local/state/fleetctl"\n', "would give the agent ~/.local/state/fleetctl "),
        ('workspace = "~/agents/b/workspace/sub"\n', "is inside b's ~/agents/b/workspace"),
        ('workspace = "~/agents"\n', "~/agents/b/workspace is inside a's ~/agents"),
    ],
)
def test_agents_never_share_or_expose_folders(tmp_path: Path, body: str, problem: str) -> None:
    (tmp_path / "a.toml").write_text('command = ["/bin/a"]\nport = 48520\n' + body)
    (tmp_path / "b.toml").write_text('command = ["/bin/a"]\nport = 48540\n')
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    assert any(problem in p for p in e.value.problems), e.value.problems


@pytest.mark.parametrize(
    "command,bound",
    [
        ("~/agent.sh", "-%h/agent.sh"),
        ("/root/agent", "-/root/agent"),
        ("/home/ann/agent", "-/home/ann/agent"),
        ("/home/ann/bin/agent", "-/home/ann/bin/agent"),
        ("/home/ann/tools/bin/agent", "-/home/ann/tools"),
        ("~/apps/bot/run.js", "-%h/apps/bot"),
    ],
)
def test_runtime_root_is_never_a_home_folder_itself(tmp_path: Path, command: str, bound: str) -> None:
    lines = _unit(tmp_path, f'command = ["{command}"]\nport = 48520\n')
    assert _value(lines, "BindReadOnlyPaths")[1:] == [bound]


def test_without_hardening_only_the_isolation_rows_stay(tmp_path: Path) -> None:
    lines = _unit(tmp_path, 'command = ["/bin/a"]\nport = 48520\n', Target(hardening=False))
    keys = {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}
    namespace_rows = {d.name for d in directives.DIRECTIVES if d.scope == directives.NAMESPACE}
    assert keys & namespace_rows == set(directives.ISOLATION)
    assert "SystemCallFilter" in keys and "BindPaths" in keys
