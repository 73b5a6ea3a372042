"""Real agents out of the box, without systemd: the openclaw template and its discovery of the
package and a Node (against npm layouts the tests build), port footprints, sandbox.relax,
[environment] placeholders, naming the real cause of a failed start, the validator's world,
ANSI stripping, and self-exit vs deliberate stop in the watchdog's classification."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.cli import main
from fleetctl.common.ansi import strip_ansi
from fleetctl.common.errors import FleetError
from fleetctl.configs.formats import ConfigInvalid, ValidatorUnavailable, run_validator
from fleetctl.fleet import nodefind, templates
from fleetctl.fleet.new import next_port
from fleetctl.fleet.profiles import ProfileErrors, load_fleet
from fleetctl.healing.observe import classify
from fleetctl.lifecycle.cause import explain
from fleetctl.systemd.manager import UnitInfo
from fleetctl.systemd.render import render_unit

NODE_AGENT = Path(__file__).parent / "node_agent"
SYSTEM_NODE = Path("/usr/bin/node")
needs_node = pytest.mark.skipif(not SYSTEM_NODE.exists(), reason="needs /usr/bin/node (apt nodejs)")


def npm_global(prefix: Path, engines: str | None = None) -> Path:
    """What `npm install -g openclaw` leaves under a prefix: the package and its bin symlink."""
    pkg = prefix / "lib" / "node_modules" / "openclaw"
    shutil.copytree(NODE_AGENT, pkg)
    if engines is not None:
        meta = (pkg / "package.json").read_text().replace('">=20.0.0"', f'"{engines}"')
        (pkg / "package.json").write_text(meta)
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    (prefix / "bin" / "openclaw").symlink_to("../lib/node_modules/openclaw/openclaw.mjs")
    return pkg


def fake_node(bindir: Path, version: str) -> Path:
    """A `node` that only answers --version: an old distribution Node, say."""
    bindir.mkdir(parents=True, exist_ok=True)
    node = bindir / "node"
    node.write_text(f"#!/bin/sh\necho v{version}\n")
    node.chmod(0o755)
    return node


# --- the template and its discovery ------------------------------------------------------------
def test_example_profile_is_the_template() -> None:
    assert templates.EXAMPLE_PATH.read_text() == templates.example_text(), (
        "profiles/examples/openclaw.toml drifted from the template; run python -m fleetctl.fleet.templates"
    )


@needs_node
def test_finds_the_package_through_its_shim_and_skips_a_node_too_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = npm_global(tmp_path / "prefix")
    fake_node(tmp_path / "old" / "bin", "18.19.0")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'prefix' / 'bin'}:{tmp_path / 'old' / 'bin'}:/usr/bin:/bin")
    found = nodefind.find("openclaw")
    assert found.package.root == pkg and found.package.entry == pkg / "openclaw.mjs"
    assert found.package.engines_node == ">=20.0.0"
    assert found.node.path == SYSTEM_NODE  # the PATH's first node is too old
    assert any("18.19.0" in r and "needs >=20.0.0" in r for r in found.rejected)


@needs_node
def test_finds_an_nvm_install_with_no_path_help(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    prefix = home / ".nvm" / "versions" / "node" / "v20.20.2"
    npm_global(prefix)
    (prefix / "bin" / "node").symlink_to(SYSTEM_NODE)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    found = nodefind.find("openclaw")
    # The Node beside the package's own prefix wins: that is the one npm installed it with.
    assert found.node.path == prefix / "bin" / "node"


@needs_node
def test_no_node_satisfies_engines_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npm_global(tmp_path / "prefix", engines=">=24.16.0")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'prefix' / 'bin'}:/usr/bin:/bin")
    with pytest.raises(FleetError, match=r"engines.node: no Node satisfies '>=24.16.0'.*/usr/bin/node"):
        nodefind.find("openclaw")


def test_package_missing_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    with pytest.raises(FleetError, match="npm package 'openclaw' not found.*npm install -g openclaw"):
        nodefind.find("openclaw")


@needs_node
def test_new_with_template_writes_a_working_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = npm_global(tmp_path / "prefix")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", f"{tmp_path / 'prefix' / 'bin'}:/usr/bin:/bin")
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "a.toml").write_text('command = ["/bin/agent"]\nport = 48520\n')
    runner = CliRunner()
    result = runner.invoke(main, ["new", "gw", "--template", "openclaw", "--profiles", str(profiles)])
    assert result.exit_code == 0, result.output
    assert f"found openclaw 2026.9.6-fake in {pkg}" in result.output
    assert "found node 20." in result.output and "/usr/bin/node" in result.output
    p = load_fleet(profiles).get("gw")
    assert p.command[:2] == ("/usr/bin/node", str(pkg / "openclaw.mjs"))
    assert (p.port_span, p.restart.policy, p.restart.stop_timeout) == (111, "always", 330.0)
    assert p.restart.kill_mode == "mixed" and p.sandbox.relax == ("RestrictSUIDSGID",)
    assert p.port >= 48521  # past a's footprint
    assert dict(p.environment)["XDG_CACHE_HOME"] == "{config_dir}/cache"
    # A second gateway lands past the first one's whole footprint.
    result = runner.invoke(main, ["new", "gw2", "--template", "openclaw", "--profiles", str(profiles)])
    assert result.exit_code == 0, result.output
    q = load_fleet(profiles).get("gw2")
    assert q.port >= p.port + 111


# --- port footprints ---------------------------------------------------------------------------
footprints = st.lists(
    st.tuples(st.integers(min_value=2000, max_value=2600), st.integers(min_value=1, max_value=150)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(footprints)
def test_validation_refuses_exactly_the_overlapping_footprints(spans: list[tuple[int, int]]) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for i, (port, span) in enumerate(spans):
            Path(d, f"a{i}.toml").write_text(f'command = ["/bin/agent"]\nport = {port}\nport_span = {span}\n')
        overlap = any(
            a[0] <= b[0] + b[1] - 1 and b[0] <= a[0] + a[1] - 1
            for i, a in enumerate(spans)
            for b in spans[i + 1 :]
        )
        if overlap:
            with pytest.raises(ProfileErrors, match="is also used by"):
                load_fleet(Path(d))
        else:
            load_fleet(Path(d))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=200), min_size=1, max_size=8))
def test_next_port_never_overlaps_a_footprint(spans: list[int]) -> None:
    taken: list[tuple[int, int]] = [(48391, 48391)]
    for span in spans:
        port = next_port(taken, "specialist", span)
        last = port + span - 1
        assert all(last < a or port > b for a, b in taken), (port, span, taken)
        assert port > max(b for _, b in taken)  # never a gap left behind: ports never move
        taken.append((port, last))


def test_overlap_message_names_both_footprints(tmp_path: Path) -> None:
    (tmp_path / "gw.toml").write_text('command = ["/bin/agent"]\nport = 48620\nport_span = 111\n')
    (tmp_path / "qa.toml").write_text('command = ["/bin/agent"]\nport = 48640\n')
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    assert "qa.toml: port: 48640 is also used by" in str(e.value) and "(ports 48620-48730)" in str(e.value)


# --- rendering: sandbox.relax and [environment] placeholders -------------------------------------
def test_relax_leaves_out_one_directive_and_keeps_the_rest(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(
        'command = ["/bin/agent"]\nport = 48520\n[sandbox]\nrelax = ["RestrictSUIDSGID", "ProtectHome"]\n'
        '[environment]\nXDG_CACHE_HOME = "{config_dir}/cache"\nWHERE = "~/x/{name}-{port}"\nPCT = "50%"\n'
    )
    text = render_unit(load_fleet(tmp_path).get("a"))
    directives = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(line.startswith("RestrictSUIDSGID=") for line in directives)
    # A relaxed ProtectHome shows the home read-only instead of hiding it behind a tmpfs.
    assert "ProtectHome=tmpfs" not in directives and "ProtectHome=read-only" in directives
    for kept in ("NoNewPrivileges=yes", "RestrictRealtime=yes", "ProtectSystem=strict", "PrivateTmp=yes"):
        assert kept in directives
    env = next(line for line in directives if line.startswith("Environment="))
    assert "XDG_CACHE_HOME=%h/agents/a/config/cache" in env
    assert '"WHERE=%h/x/a-48520"' in env or "WHERE=%h/x/a-48520" in env
    assert "PCT=50%%" in env


def test_relax_refuses_an_unknown_directive(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('command = ["/bin/agent"]\nport = 48520\n[sandbox]\nrelax = ["Bogus"]\n')
    with pytest.raises(ProfileErrors, match=r"a.toml: sandbox.relax: unknown sandbox directive\(s\) 'Bogus'"):
        load_fleet(tmp_path)


# --- the real cause -------------------------------------------------------------------------------
def info(
    status: int, code: int = 1, active: str = "failed", sub: str = "failed", result: str = "exit-code"
) -> UnitInfo:
    return UnitInfo(
        name="fleet-gw.service",
        load_state="loaded",
        active_state=active,
        sub_state=sub,
        result=result,
        main_pid=0,
        n_restarts=0,
        exec_main_status=status,
        exec_main_code=code,
        active_enter_timestamp=0,
        inactive_enter_timestamp=0,
        state_change_timestamp=0,
        memory_current=None,
        fragment_path="",
        unit_file_state="",
        need_daemon_reload=False,
        invocation_id="ab",
    )


@pytest.fixture
def gw(tmp_path: Path):  # type: ignore[no-untyped-def]
    shutil.copy(templates.EXAMPLE_PATH, tmp_path / "gw.toml")
    return load_fleet(tmp_path).get("gw")


@pytest.mark.parametrize(
    ("status", "lines", "says"),
    [
        (
            78,
            ["Unable to create fallback OpenClaw temp dir: /home/u/.cache/openclaw-0: EROFS read-only"],
            "exited 78, not because of its config: the sandbox keeps a path it writes read-only",
        ),
        (78, ["lock failed: openat2 ENOSYS Function not implemented"], 'relax = ["RestrictSUIDSGID"]'),
        (1, ["Error: node:sqlite is unavailable; use 24.16+"], "interpreter is the wrong version"),
        (78, ["Invalid config at /x/openclaw.json: unknown key"], "exited 78: the agent rejected its config"),
        (203, ["Failed to execute /usr/local/bin/node: No such file or directory"], "203/EXEC"),
        (200, ["Changing to the requested working directory failed: No such file or directory"], "200/CHDIR"),
        (226, [], "226/NAMESPACE"),
    ],
)
def test_explain_names_the_real_cause(gw, status: int, lines: list[str], says: str) -> None:  # type: ignore[no-untyped-def]
    text = explain(gw, info(status), lines)
    assert says in text, text
    if status == 78 and "rejected" not in says:
        assert "rejected its config" not in text


# --- self-exit vs a stop job --------------------------------------------------------------------------
def test_self_exit_is_failing_and_a_stop_job_is_not(gw) -> None:  # type: ignore[no-untyped-def]
    down = info(0, active="inactive", sub="dead", result="success")
    assert classify(gw, down, None, 0.0, "exited")[0] == "failing"
    assert "exited by itself (exit status 0)" in classify(gw, down, None, 0.0, "exited")[1]
    assert classify(gw, down, None, 0.0, "stop-job") == (
        "stopped",
        "stopped on purpose (a stop job: fleetctl stop or systemctl --user stop)",
    )
    assert classify(gw, down, None, 0.0, "unknown")[0] == "stopped"


# --- the validator ---------------------------------------------------------------------------------
def test_validator_that_cannot_run_is_not_a_config_verdict(tmp_path: Path) -> None:
    with pytest.raises(ValidatorUnavailable, match="exit 127"):
        run_validator(["/bin/sh", "-c", "echo 'node: not found' >&2; exit 127"], timeout=10)
    # The wrong Node: its complaint is about the runtime, not the config.
    wrong = "echo 'Error: node:sqlite is unavailable; use 24.16+' >&2; exit 1"
    with pytest.raises(ValidatorUnavailable, match="interpreter is missing or the wrong version"):
        run_validator(["/bin/sh", "-c", wrong], timeout=10)
    script = tmp_path / "v"
    script.write_text("echo hi\n")  # not executable
    with pytest.raises(ValidatorUnavailable):
        run_validator([str(script)], timeout=10)


def test_validator_keeps_its_whole_output_without_escapes() -> None:
    code = (
        "import sys; print('\\x1b[31mConfig invalid\\x1b[0m: Unrecognized key \"bogus\"', file=sys.stderr);"
        "[print(f'checked section {i}', file=sys.stderr) for i in range(5)]; sys.exit(1)"
    )
    with pytest.raises(ConfigInvalid) as e:
        run_validator([sys.executable, "-c", code], timeout=30)
    assert 'Unrecognized key "bogus"' in e.value.output  # the reason, early in the output
    summary = str(e.value)  # one line, ending in the last three lines only
    assert "\n" not in summary
    assert summary.endswith(": checked section 2 | checked section 3 | checked section 4")
    assert "\x1b" not in e.value.output


def test_validator_runs_with_the_agents_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its PATH and Environment= come from the profile, not from fleetctl's (cron's) PATH."""
    from fleetctl.configs.apply import validate_candidate

    tools = tmp_path / "agent-bin"
    tools.mkdir()
    helper = tools / "agent-helper"
    helper.write_text("#!/bin/sh\necho helper ok\n")
    helper.chmod(0o755)
    check = tmp_path / "check.sh"
    check.write_text(
        "#!/bin/sh\n"
        "agent-helper >/dev/null || exit 127\n"  # only on the agent's PATH
        '[ "$MODE" = strict ] || { echo "no MODE" >&2; exit 127; }\n'  # the unit's Environment=
        'grep -q bogus "$1" && { echo "bogus key in $1" >&2; exit 1; }\n'
        '[ "$1" = "$FLEET_CONFIG_FILE" ] || exit 3\n'
        'case "$1" in "$FLEET_CONFIG_DIR"/*) exit 4;; esac\n'  # never the live config dir
        "exit 0\n"
    )
    check.chmod(0o755)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # cron's: no agent-bin
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.toml").write_text(
        f'command = ["/bin/agent"]\nport = 48520\n[environment]\nPATH = "{tools}:/usr/bin:/bin"\n'
        f'MODE = "strict"\n[config]\nfile = "config.json"\nvalidate_command = ["{check}", "{{file}}"]\n'
    )
    p = load_fleet(tmp_path / "p").get("a")
    validate_candidate(p, b'{"ok": 1}', "a: config.json")
    with pytest.raises(ConfigInvalid, match="exit 1") as e:
        validate_candidate(p, b'{"bogus": 1}', "a: config.json")
    assert "bogus key in" in e.value.output
    # The copy lives in fleetctl's state dir, 0700, and is gone afterwards.
    scratch = home / ".local/state/fleetctl/validate"
    assert stat.S_IMODE(os.stat(scratch).st_mode) == 0o700 and not list(scratch.iterdir())
    assert not (home / "agents/a/config/config.json").exists()


def test_strip_ansi() -> None:
    raw = "\x1b[1;31mred\x1b[0m \x1b]0;title\x07x \x1b]8;;http://a\x1b\\link\x1b]8;;\x1b\\ \x1b(B."
    assert strip_ansi(raw) == "red x link ."
    from fleetctl.diagnosis.redact import Redactor

    assert Redactor([], []).redact("\x1b[32mok\x1b[0m") == "ok"


def test_watchdog_never_reads_a_broken_validator_as_a_bad_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetctl.healing.evidence import config_problem

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "a.toml").write_text(
        'command = ["/bin/agent"]\nport = 48520\n[config]\nfile = "config.json"\n'
        'validate_command = ["/nonexistent/openclaw", "config", "validate"]\n'
    )
    p = load_fleet(tmp_path / "p").get("a")
    (tmp_path / "agents/a/config").mkdir(parents=True)
    (tmp_path / "agents/a/config/config.json").write_text("{}")
    valid, detail = config_problem(p)
    assert valid is None and "validator cannot run" in detail, detail


sgr = st.lists(st.integers(min_value=0, max_value=255), max_size=4).map(
    lambda ns: "\x1b[" + ";".join(map(str, ns)) + "m"
)
escapes = st.one_of(
    sgr,
    st.sampled_from(
        ["\x1b[2K", "\x1b[1A", "\x1b[?25l", "\x1b(B", "\x1b]0;title\x07", "\x1b]8;;http://x\x1b\\"]
    ),
)
plain = st.text(st.characters(blacklist_characters="\x1b\x9b", blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(plain, escapes), max_size=6), plain)
def test_strip_ansi_leaves_exactly_the_text(parts: list[tuple[str, str]], last: str) -> None:
    coloured = "".join(text + esc for text, esc in parts) + last
    assert strip_ansi(coloured) == "".join(text for text, _ in parts) + last
