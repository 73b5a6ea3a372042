"""Bad profiles: each problem is one line naming the file and the key; nothing is written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.cli import main
from fleetctl.common.errors import FleetError
from fleetctl.fleet.new import new_profile, next_port
from fleetctl.fleet.profiles import ProfileErrors, load_fleet

EXAMPLE = Path(__file__).parent.parent / "profiles"
GOOD = 'command = ["/usr/bin/agent", "--port", "{port}"]\nport = 48520\n'


def write(d: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (d / name).write_text(text)
    return d


BAD = [
    ("duplicate port", {"a.toml": GOOD, "b.toml": GOOD}, "b.toml: port: 48520 is also used by"),
    (
        "port too low",
        {"a.toml": GOOD.replace("48520", "80")},
        "a.toml: port: must be a port between 1024 and 65535 (got 80)",
    ),
    (
        "port too high",
        {"a.toml": GOOD.replace("48520", "70000")},
        "a.toml: port: must be a port between 1024 and 65535 (got 70000)",
    ),
    ("unknown key", {"a.toml": GOOD + "colour = 'blue'\n"}, "a.toml: colour: unknown key"),
    (
        "unknown key in section",
        {"a.toml": GOOD + "[health]\ntimout = 3\n"},
        "a.toml: health.timout: unknown key (did you mean health.timeout?)",
    ),
    (
        "wrong type",
        {"a.toml": GOOD + '[health]\ntimeout = "5s"\n'},
        'a.toml: health.timeout: must be a number (got "5s")',
    ),
    (
        "negative timeout",
        {"a.toml": GOOD + "[health]\ntimeout = -1\n"},
        "a.toml: health.timeout: must be a positive number of seconds (got -1)",
    ),
    ("missing command", {"a.toml": "port = 48520\n"}, "a.toml: command: missing (required)"),
    ("missing port", {"a.toml": 'command = ["/bin/true"]\n'}, "a.toml: port: missing (required)"),
    (
        "empty command",
        {"a.toml": "command = []\nport = 48520\n"},
        "a.toml: command: must be a non-empty list",
    ),
    (
        "relative command",
        {"a.toml": 'command = ["agent"]\nport = 48520\n'},
        "a.toml: command: command[0] 'agent' is not an absolute path",
    ),
    (
        "unknown placeholder",
        {"a.toml": 'command = ["/bin/a", "{prot}"]\nport = 48520\n'},
        "a.toml: command: command[1]: unknown placeholder {prot}",
    ),
    ("after unknown", {"a.toml": GOOD + 'after = ["ghost"]\n'}, "a.toml: after: unknown agent 'ghost'"),
    (
        "after cycle",
        {
            "a.toml": GOOD + 'after = ["b"]\n',
            "b.toml": GOOD.replace("48520", "48540") + 'after = ["c"]\n',
            "c.toml": GOOD.replace("48520", "48560") + 'after = ["a"]\n',
        },
        "after: ordering cycle a -> b -> c -> a",
    ),
    ("after self", {"a.toml": GOOD + 'after = ["a"]\n'}, "a.toml: after: an agent cannot start after itself"),
    ("bad name", {"Bad_Name.toml": GOOD}, "Bad_Name.toml: name: must be lowercase"),
    (
        "secret in environment",
        {"a.toml": GOOD + '[environment]\nGROQ_API_KEY = "gsk_x"\n'},
        "a.toml: environment: GROQ_API_KEY looks like a secret; put it in secrets_file",
    ),
    (
        "relative workspace",
        {"a.toml": GOOD + 'workspace = "ws"\n'},
        "a.toml: workspace: must be an absolute path or start with '~/'",
    ),
    ("invalid toml", {"a.toml": "port = \n"}, "a.toml: invalid TOML:"),
    (
        "bad exit status",
        {"a.toml": GOOD + "[restart]\nbad_config_exit_statuses = [300]\n"},
        "a.toml: restart.bad_config_exit_statuses: exit statuses must be 0-255",
    ),
    (
        "bad memory",
        {"a.toml": GOOD + '[resources]\nmemory_max = "lots"\n'},
        'a.toml: resources.memory_max: must be a size such as "512M"',
    ),
    (
        "bad fleet default",
        {"fleet.toml": "[defaults]\nport = 1\n", "a.toml": GOOD},
        "fleet.toml: defaults: port: unknown key",
    ),
]


@pytest.mark.parametrize("files,expected", [(f, e) for _, f, e in BAD], ids=[i for i, _, _ in BAD])
def test_bad_profile_is_one_line_naming_file_and_key(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    write(tmp_path, files)
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    assert any(expected in line for line in e.value.problems), e.value.problems
    for line in e.value.problems:
        assert "\n" not in line and str(tmp_path) in line


@pytest.mark.parametrize("files,expected", [(f, e) for _, f, e in BAD[:6]], ids=[i for i, _, _ in BAD[:6]])
def test_bad_profile_install_writes_nothing(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    profiles = tmp_path / "p"
    profiles.mkdir()
    write(profiles, files)
    home = tmp_path / "home"
    home.mkdir()
    result = CliRunner().invoke(
        main,
        ["install", str(profiles)],
        env={"HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_STATE_HOME": "", "FLEETCTL_QUIET_ROOT": "1"},
    )
    assert result.exit_code != 0
    assert expected in result.output
    assert list(home.rglob("*")) == []


def test_render_with_bad_profile_writes_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"a.toml": GOOD, "b.toml": GOOD})
    out = tmp_path / "units"
    result = CliRunner().invoke(main, ["render", str(tmp_path), "-o", str(out)])
    assert result.exit_code == 1 and "port: 48520 is also used by" in result.output
    assert not out.exists()


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    write(tmp_path, {"a.toml": "port = 80\ncolour = 1\n", "b.toml": 'command = ["x"]\nport = 48520\n'})
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    assert len(e.value.problems) >= 4


def test_example_fleet_loads_with_defaults() -> None:
    fleet = load_fleet(EXAMPLE)
    assert fleet.names[0] == "coordinator"  # dependencies first
    assert sorted(fleet.names) == ["coder", "coordinator", "deployer", "qa", "researcher", "reviewer"]
    coder = fleet.get("coder")
    assert coder.port == 48520 and coder.command[0] == "{python}"
    assert coder.workspace == "~/agents/coder/workspace"
    assert coder.restart.bad_config_exit_statuses == (78,)
    assert fleet.get("coordinator").port == 48391
    assert {p.port for p in fleet.profiles} == {48391, 48520, 48540, 48560, 48580, 48600}
    with pytest.raises(FleetError, match="unknown agent 'ghost'"):
        fleet.get("ghost")


def test_openclaw_example_is_valid(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "examples" / "openclaw.toml", tmp_path / "gateway.toml")
    p = load_fleet(tmp_path).get("gateway")
    assert p.config_dir == "~/.openclaw-gateway"
    assert p.restart.success_exit_statuses == (0, 143)
    assert p.config.validate_command[-2:] == ("config", "validate")


def test_next_port_never_moves_existing_ports() -> None:
    assert next_port(set(), "coordinator") == 48391
    assert next_port({48391}, "specialist") == 48520
    assert next_port({48391, 48520, 48540}, "specialist") == 48560
    # A gap left by a removed agent is not reused: the old process may still hold it.
    assert next_port({48391, 48520, 48580}, "specialist") == 48600
    assert next_port({48391, 48520}, "coordinator") == 48540


def test_new_profile_gets_next_port_and_validates(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLE, tmp_path / "p", ignore=shutil.ignore_patterns("examples"))
    path = new_profile(tmp_path / "p", "writer", description="Writes docs", after=["coordinator"])
    fleet = load_fleet(tmp_path / "p")
    assert fleet.get("writer").port == 48620 and path.name == "writer.toml"
    with pytest.raises(FleetError, match="already exists"):
        new_profile(tmp_path / "p", "writer")
    with pytest.raises(FleetError, match="after: unknown agent 'ghost'"):
        new_profile(tmp_path / "p", "other", after=["ghost"])
    assert not (tmp_path / "p" / "other.toml").exists()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 40), st.integers(1, 6)), max_size=12))
def test_port_clash_check_names_the_first_earlier_footprint(spans: list[tuple[int, int]]) -> None:
    """The per-port index reports what comparing each footprint with every earlier one would."""
    from fleetctl.fleet import profiles as pr

    raw = [
        (Path(f"p{i}.toml"), {"name": f"n{i}", "port": port, "port_span": span})
        for i, (port, span) in enumerate(spans)
    ]
    got: list[str] = []
    pr._cross_checks(raw, got)
    want = []
    for i, (port, span) in enumerate(spans):
        last = port + span - 1
        earlier = [j for j, (p, s) in enumerate(spans[:i]) if port <= p + s - 1 and p <= last]
        if earlier:
            want.append((f"p{i}.toml", f"p{earlier[0]}.toml"))
    clashes = [g for g in got if ": port: " in g]
    assert [(g.split(":")[0], g.split(" is also used by ")[1].split()[0]) for g in clashes] == want


_SEGMENT = st.sampled_from(["a", "b", "ab", "{name}", ".", "..", "agents", ""])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["/", "//", "~/", "", "/srv/"]),
            st.lists(_SEGMENT, max_size=4),
            st.sampled_from(["workspace", "config_dir"]),
        ),
        max_size=8,
    )
)
def test_shared_folder_check_finds_every_pair(dirs: list[tuple[str, list[str], str]]) -> None:
    """The indexed check reports exactly what comparing every folder with every other would."""
    import posixpath

    from fleetctl.fleet import profiles as pr

    raw = [
        (Path(f"p{i}.toml"), {"name": f"n{i % 3}", key: root + "/".join(parts)})
        for i, (root, parts, key) in enumerate(dirs)
    ]
    got: list[str] = []
    pr._check_dirs(raw, got)

    def within(a: str, b: str) -> bool:
        return a == b or a.startswith(b.rstrip("/") + "/")

    want: list[str] = []
    owned = []
    for path, flat in raw:
        for key in ("workspace", "config_dir"):
            v = flat.get(key, pr.schema.BY_KEY[key].default)
            if isinstance(v, str):
                d = posixpath.normpath(v.replace("{name}", flat["name"]))
                if any(within(x, d) for x in pr._NOT_AGENT_DIRS):
                    want.append("bad")
                owned.append((d, flat["name"], path, key))
    for d, name, path, key in owned:
        for other, other_name, _, _ in owned:
            if other_name != name and within(d, other):
                want.append(f"{path}: {key}: {d} is inside {other_name}'s {other}")
    assert ["bad" if "would give" in g else g.split(": agents must")[0] for g in got] == want
