"""Hostile profile values against the real systemd user manager.

The invariant: for any profile that validates, the unit the manager loads has exactly the
settings the profile asked for and no others. Values are generated from every class the
renderer must handle (control characters, quotes, backslashes, `%`, `$`, spaces, non-ASCII,
unit-file syntax); each either validates and then reads back over D-Bus exactly, or is refused
with one line naming the file and the key.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import unicodedata
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import wait_for
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from usermanager import UserManager

from fleetctl.cli import main
from fleetctl.common import paths
from fleetctl.fleet.profiles import ProfileErrors, load_fleet
from fleetctl.fleet.schema import unprintable
from fleetctl.systemd.manager import SERVICE_IFACE, UNIT_IFACE, SystemdManager
from fleetctl.systemd.render import PYTHON_SHIM, render_unit

# Members of every class that broke a unit once: line ends, NUL, other C0/C1 controls, the
# Unicode separators and noncharacters, quoting and escaping, specifiers, variables,
# whitespace, non-ASCII, and text that would be unit syntax if it got onto a line of its own.
HOSTILE = [
    "\r",
    "\n",
    "\r\n",
    "\x00",
    "\t",
    "\x01",
    "\x1b[31m",
    "\x7f",
    "\x85",
    "\x9b",
    "\u2028",
    "\u2029",
    "\ufffe",
    "\ufdd0",
    '"',
    "'",
    "\\",
    "\\\\",
    "\\n",
    "\\x41",
    "%",
    "%h",
    "%%",
    "%n",
    "$",
    "$$",
    "$HOME",
    "${HOME}",
    "${",
    " ",
    "  ",
    ";",
    " ; ",
    "#",
    "=",
    "-",
    "+",
    "@",
    "~",
    "é",
    "漢字",
    "\U0001f600",
    "\u00a0",
    "\u202e",
    "[Service]",
    "\rExecStartPre=+/bin/touch /tmp/PWNED\r",
]


def _noncharacter(c: str) -> bool:
    return 0xFDD0 <= ord(c) <= 0xFDEF or (ord(c) & 0xFFFE) == 0xFFFE


# Expressible: what systemd can hold in each place. Anything but NUL and noncharacters in a
# C-escaped word (ExecStart=, Environment=); printable text in Description= and paths, which
# systemd neither unquotes nor unescapes.
CONTROL = {c for c in HOSTILE if any(unicodedata.category(x) in ("Cc", "Zl", "Zp") for x in c)}
word_fragment = st.one_of(
    st.sampled_from([h for h in HOSTILE if "\x00" not in h and not any(map(_noncharacter, h))]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=4).filter(
        lambda t: not any(map(_noncharacter, t))
    ),
)
printable = st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")).filter(
    lambda c: not _noncharacter(c)
)
text_fragment = st.one_of(
    st.sampled_from([h for h in HOSTILE if h not in CONTROL and not any(map(_noncharacter, h))]),
    st.text(printable, max_size=4),
)


def _tidy_end(v: str) -> str:
    # Description= and paths lose trailing whitespace and join a trailing backslash to the next line.
    return v + "x" if v and (v[-1].isspace() or v[-1] == "\\") else v


def _paths(fragment: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    component = (
        st.lists(fragment, min_size=1, max_size=4)
        .map(lambda f: "".join(f).replace("/", "_").replace("$", "S").replace(":", "_"))
        .map(lambda c: c if c.strip(".") else "dot" + c)
    )
    return st.tuples(st.sampled_from(["/", "~/"]), st.lists(component, min_size=1, max_size=3)).map(
        lambda t: t[0] + "/".join(t[1])
    )


word = st.lists(word_fragment, max_size=5).map("".join)
# Spaces around a description are dropped (systemd strips them); a backslash must not end it.
description = st.lists(text_fragment, max_size=5).map(
    lambda f: "".join(f) + ("x" if "".join(f).rstrip(" ").endswith("\\") else "")
)
path = _paths(text_fragment).map(_tidy_end)
env_name = st.from_regex(r"[A-Z][A-Z0-9_]{0,6}", fullmatch=True).filter(
    lambda k: not k.startswith("FLEET_") and not any(w in k for w in ("KEY", "TOKEN", "SECRET", "PASS"))
)
PLACEHOLDER = st.sampled_from(["{port}", "{name}", "{workspace}", "{config_dir}"])


def profiles(
    word: st.SearchStrategy[str],
    description: st.SearchStrategy[str],
    path: st.SearchStrategy[str],
    program: st.SearchStrategy[str],
) -> st.SearchStrategy[dict[str, Any]]:
    argument = st.one_of(word, st.tuples(word, PLACEHOLDER, word).map("".join))
    return st.fixed_dictionaries(
        {
            "description": description,
            "command": st.tuples(
                st.one_of(st.just("{python}"), st.just("/bin/true"), program), st.lists(argument, max_size=4)
            ).map(lambda t: [t[0], *t[1]]),
            "workspace": path,
            "config_dir": path,
            "environment": st.dictionaries(env_name, word, max_size=3),
            "read_write_paths": st.lists(path, max_size=3),
        }
    )


# systemd refuses an executable path holding quotes or a backslash, quoted or not.
program = path.map(lambda v: v.replace('"', "Q").replace("'", "q").replace("\\", "B"))
expressible = profiles(word, description, path, program)
# Anything at all, from the same hostile members: refused or else exact.
anything = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4)), max_size=5).map("".join)
hostile_path = _paths(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=4)))
hostile = profiles(anything, anything, hostile_path, hostile_path)


def toml_str(s: str) -> str:
    """A TOML basic string holding exactly `s` (TOML has no escape for surrogates; none occur)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_profile(d: dict[str, Any], port: int) -> str:
    lines = [
        f"description = {toml_str(d['description'])}",
        "command = [" + ", ".join(map(toml_str, d["command"])) + "]",
        f"port = {port}",
        f"workspace = {toml_str(d['workspace'])}",
        f"config_dir = {toml_str(d['config_dir'])}",
        "[environment]",
        *(f"{k} = {toml_str(v)}" for k, v in d["environment"].items()),
        "[sandbox]",
        "read_write_paths = [" + ", ".join(map(toml_str, d["read_write_paths"])) + "]",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def sd(user_manager: UserManager, monkeypatch: pytest.MonkeyPatch) -> Iterator[SystemdManager]:
    env = user_manager.host_env()
    for key in ("HOME", "XDG_RUNTIME_DIR", "DBUS_SESSION_BUS_ADDRESS"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    with user_manager.as_user():  # the user's bus admits only its own uid
        manager = SystemdManager()
    try:
        yield manager
    finally:
        manager.close()


def expand(path: str, home: Path) -> str:
    return str(home / path[2:]) if path.startswith("~/") else path


def expected_argv(arg: str, d: dict[str, Any], name: str, port: int, home: Path) -> str:
    # The manager reports argv as loaded, before exec-time variable expansion: `$` stays `$$`.
    out = arg.replace("$", "$$")
    return (
        out.replace("{port}", str(port))
        .replace("{name}", name)
        .replace("{workspace}", expand(d["workspace"], home))
        .replace("{config_dir}", expand(d["config_dir"], home))
    )


def manager_log(user_manager: UserManager, unit: str) -> str:
    """What the manager said about the unit (its parse errors name the bad line)."""
    out = user_manager.run(["journalctl", "-o", "cat", "--no-pager", "-n", "200"]).stdout
    return "\n".join(line for line in out.splitlines() if unit in line)


_serial = itertools.count()
EXAMPLES = int(os.environ.get("FLEETCTL_RENDER_EXAMPLES", "100"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(d=expressible)
def test_expressible_values_validate_and_load_exactly(
    d: dict[str, Any], sd: SystemdManager, user_manager: UserManager, tmp_path: Path
) -> None:
    check_round_trip(d, sd, user_manager, tmp_path, must_validate=True)


@SETTINGS
@given(d=hostile)
def test_hostile_values_are_refused_or_load_exactly(
    d: dict[str, Any], sd: SystemdManager, user_manager: UserManager, tmp_path: Path
) -> None:
    check_round_trip(d, sd, user_manager, tmp_path, must_validate=False)


def check_round_trip(
    d: dict[str, Any], sd: SystemdManager, user_manager: UserManager, tmp_path: Path, must_validate: bool
) -> None:
    home = user_manager.home
    name = f"hostile-{uuid.uuid4().hex[:8]}-{next(_serial)}"
    port = 40000 + next(_serial) % 20000
    folder = tmp_path / name
    folder.mkdir()
    profile_file = folder / f"{name}.toml"
    profile_file.write_text(toml_profile(d, port), encoding="utf-8")
    try:
        fleet = load_fleet(folder)
    except ProfileErrors as e:
        assert not must_validate, e
        event("refused")
        # One printable line per problem, naming the file and a key the generator set.
        for line in e.problems:
            assert not any(unprintable(c) for c in line), line
            assert line.startswith(f"{profile_file}: "), line
            key = line.split(": ")[1]
            assert key.split("[")[0].split(".")[0] in (
                "description",
                "command",
                "workspace",
                "config_dir",
                "environment",
                "sandbox",
            ), line
        return
    event("validated")
    p = fleet.get(name)
    text = render_unit(p)
    unit = paths.unit_name(name)
    unit_file = paths.unit_dir() / unit
    unit_file.parent.mkdir(parents=True, exist_ok=True)
    unit_file.write_text(text, encoding="utf-8")
    try:
        # A name the manager has never seen is read from disk by LoadUnit: no reload needed.
        props = sd.properties(unit, UNIT_IFACE, ["LoadState", "LoadError", "Description", "After", "Wants"])
        svc = sd.properties(
            unit,
            SERVICE_IFACE,
            [
                "ExecStart",
                "ExecStartPre",
                "ExecStartPost",
                "ExecStop",
                "ExecStopPost",
                "ExecReload",
                "ExecCondition",
                "Environment",
                "WorkingDirectory",
                "ReadWritePaths",
                "BindPaths",
                "BindReadOnlyPaths",
                "ReadOnlyPaths",
                "InaccessiblePaths",
                "EnvironmentFiles",
                "User",
                "Group",
            ],
        )
    finally:
        unit_file.unlink()
    assert props["LoadState"] == "loaded", (props["LoadError"], text, manager_log(user_manager, unit))
    desc = d["description"].strip(" ")
    assert props["Description"] == f"fleetctl agent {name}" + (f": {desc}" if desc else "")
    assert [u for u in props["After"] if u.startswith("fleet-")] == [] and props["Wants"] == []

    (exec_start,) = svc["ExecStart"]
    exe = str(home / ".config" / PYTHON_SHIM[3:]) if d["command"][0] == "{python}" else None
    want_exe = exe or expand(d["command"][0], home)
    assert exec_start[0] == want_exe
    assert exec_start[1] == [want_exe.replace("$", "$$")] + [
        expected_argv(a, d, name, port, home) for a in d["command"][1:]
    ]
    for other in ("ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload", "ExecCondition"):
        assert svc[other] == [], other
    ws, cfg = expand(d["workspace"], home), expand(d["config_dir"], home)
    assert svc["Environment"] == [
        f"FLEET_AGENT={name}",
        f"FLEET_PORT={port}",
        f"FLEET_WORKSPACE={ws}",
        f"FLEET_CONFIG_DIR={cfg}",
        *(f"{k}={v}" for k, v in sorted(d["environment"].items())),
    ]
    assert svc["WorkingDirectory"] == ws
    # Deny by default (docs/sandbox.md): the agent's own dirs and extra home paths are bound into
    # an empty home; extra paths elsewhere are made writable; nothing else the profile wrote.
    rw = d["read_write_paths"]
    bound = [(ws, ws, False), (cfg, cfg, False)]
    bound += [(expand(w, home), expand(w, home), True) for w in rw if w.startswith("~/")]
    assert [(src, dst, missing_ok) for src, dst, missing_ok, _flags in svc["BindPaths"]] == bound
    assert svc["ReadWritePaths"] == ["-" + expand(w, home) for w in rw if not w.startswith("~/")]
    fleet_owned = (str(home / ".config/fleetctl/bin"), str(home / ".local/state/fleetctl/bulletin"))
    read_only = [src for src, _dst, _missing_ok, _flags in svc["BindReadOnlyPaths"]]
    assert set(read_only) - set(fleet_owned) <= {expand(a, home) for a in d["command"]} | set(
        str(Path(expand(a, home)).parent) for a in d["command"]
    ) or all(s.startswith(fleet_owned) for s in read_only), read_only
    assert svc["ReadOnlyPaths"] == []
    assert all(s.startswith(f"-{home}/") for s in svc["InaccessiblePaths"]), svc["InaccessiblePaths"]
    assert svc["EnvironmentFiles"] == [] and svc["User"] == "" and svc["Group"] == ""


# --- what the process gets at exec time -------------------------------------------------------
DUMP = (
    "import json, os, sys; json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
    "'env': {k: v for k, v in os.environ.items() if k in ('A', 'FLEET_WORKSPACE')}}, "
    "open(os.path.join(os.getcwd(), 'dump.json'), 'w'))"
)


def test_the_process_gets_exactly_the_profile_argv_env_and_directory(
    sd: SystemdManager, user_manager: UserManager, tmp_path: Path
) -> None:
    """`$` and `${VAR}` mean themselves in the command, the environment and the directory."""
    args = ["$HOME", "${HOME}", "$$", "%h", "a b", "x\ny\rz", "", ";", "'\"\\", "{workspace}", "é\u2028"]
    value = "1\n2\r3\t\x1b$HOME %h \\"
    name = f"execdump-{uuid.uuid4().hex[:6]}"
    profile = {
        "description": "d",
        "command": [sys.executable, "-c", DUMP, *args],
        "workspace": f"~/agents/{name}/w s %x",
        "config_dir": f"~/agents/{name}/config",
        "environment": {"A": value},
        "read_write_paths": [],
    }
    (tmp_path / f"{name}.toml").write_text(
        toml_profile(profile, 48000) + "enabled = false\n", encoding="utf-8"
    )
    p = load_fleet(tmp_path).get(name)
    workspace = user_manager.home / f"agents/{name}/w s %x"
    workspace.mkdir(parents=True)
    (user_manager.home / f"agents/{name}/config").mkdir()
    user_manager.give(user_manager.home / "agents" / name)  # the agent runs as the bed's user
    unit = paths.unit_name(name)
    unit_file = paths.unit_dir() / unit
    unit_file.parent.mkdir(parents=True, exist_ok=True)
    unit_file.write_text(render_unit(p), encoding="utf-8")
    try:
        sd.reload()
        sd.start([unit])
        dump = wait_for(
            lambda: (workspace / "dump.json").is_file() and (workspace / "dump.json"), what="dump"
        )
        got = json.loads(wait_for(lambda: dump.read_text(), what="dump written"))
    finally:
        sd.stop([unit])
        unit_file.unlink()
        sd.reload()
        shutil.rmtree(user_manager.home / "agents" / name, ignore_errors=True)
    assert got["argv"] == [a.replace("{workspace}", str(workspace)) for a in args]
    assert got["cwd"] == str(workspace)
    assert got["env"] == {"A": value, "FLEET_WORKSPACE": str(workspace)}


# --- refused at load, nothing written ---------------------------------------------------------
GOOD = 'command = ["/usr/bin/agent"]\nport = 48520\n'


def refused(folder: Path, *expected: str) -> str:
    with pytest.raises(ProfileErrors) as e:
        load_fleet(folder)
    message = str(e.value)
    for text in expected:
        assert text in message, message
    for line in e.value.problems:
        assert line.startswith(str(folder)) and not any(unprintable(c) for c in line), line
    return message


def test_the_issue_examples_are_refused(tmp_path: Path) -> None:
    cases = {
        "desc.toml": GOOD + 'description = "x\\r[Service]\\rExecStartPre=+/bin/touch /tmp/PWNED"\n',
        "slash.toml": GOOD.replace("48520", "48521") + 'description = "eats the next line \\\\"\n',
        "env.toml": GOOD.replace("48520", "48522") + '[environment]\nA = "x\\u0000y"\n',
        "ws.toml": GOOD.replace("48520", "48523") + 'workspace = "/tmp/x\\r[Service]"\n',
        "rw.toml": GOOD.replace("48520", "48524") + '[sandbox]\nread_write_paths = ["/tmp/a\\nb"]\n',
        "var.toml": GOOD.replace("48520", "48525") + 'workspace = "/srv/${USER}/w"\n',
        "cfg.toml": GOOD.replace("48520", "48526") + '[config]\nfile = "../../.bashrc"\n',
        "abs.toml": GOOD.replace("48520", "48527") + '[config]\nfile = "/etc/passwd"\n',
        "reserved.toml": GOOD.replace("48520", "48528") + '[environment]\nFLEET_AGENT = "other"\n',
        "exe.toml": 'command = ["/opt/o\\"d/agent"]\nport = 48529\n',
    }
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
    message = refused(
        tmp_path,
        "desc.toml: description: must not contain control or non-character U+000D",
        "slash.toml: description: must not end with a backslash",
        "env.toml: environment: A: value must not contain a NUL character",
        "ws.toml: workspace: must not contain control",
        "rw.toml: sandbox.read_write_paths: [0] must not contain control",
        "var.toml: workspace: must not contain '$'",
        "cfg.toml: config.file: must be a normalized path",
        "abs.toml: config.file: must be a file name relative to config_dir",
        "reserved.toml: environment: FLEET_AGENT: names starting with FLEET_ are set by fleetctl",
        "exe.toml: command: command[0]: the program's path must not contain quotes",
    )
    assert len(message.splitlines()) == len(cases)


@pytest.mark.parametrize("description", ["", "   ", " padded  "])
def test_descriptions_that_are_only_or_partly_spaces(tmp_path: Path, description: str) -> None:
    (tmp_path / "a.toml").write_text(GOOD + f'description = "{description}"\n')
    text = render_unit(load_fleet(tmp_path).get("a"))
    want = "fleetctl agent a" + (f": {description.strip()}" if description.strip() else "")
    assert f"Description={want}\n" in text


def test_a_space_in_a_writable_path_stays_one_path(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD + '[sandbox]\nread_write_paths = ["/srv/a b"]\n')
    text = render_unit(load_fleet(tmp_path).get("a"))
    assert 'ReadWritePaths="-/srv/a b"' in text


@pytest.mark.parametrize(
    "filename,data,expected",
    [
        ("evil\n.toml", GOOD.encode(), "name: must be lowercase letters"),
        ("latin1.toml", GOOD.encode() + b'description = "caf\xe9"\n', "not UTF-8 (invalid byte at offset"),
        ("big.toml", GOOD.encode() + b"#" * (70 * 1024) + b"\n", "larger than 64 KiB"),
    ],
)
def test_bad_files_are_refused_in_one_line_and_nothing_is_written(
    tmp_path: Path, filename: str, data: bytes, expected: str
) -> None:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / filename).write_bytes(data)
    out = tmp_path / "units"
    result = CliRunner().invoke(main, ["render", str(profiles), "-o", str(out)])
    assert result.exit_code != 0
    assert expected in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert not out.exists()


def test_a_profile_symlinked_from_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.toml"
    outside.write_text(GOOD)
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "a.toml").symlink_to(outside)
    refused(profiles, "a.toml: is a symlink to", "outside the profiles directory")
    (profiles / "a.toml").unlink()
    (profiles / "real.toml").write_text(GOOD)
    (profiles / "b.toml").symlink_to("real.toml")  # inside the folder: allowed
    (profiles / "b.toml").unlink()
    assert load_fleet(profiles).names == ["real"]


def test_a_fifo_named_like_a_profile_is_refused_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.toml")
    refused(tmp_path, "pipe.toml: not a regular file")


def test_a_config_file_symlinked_out_of_config_dir_is_not_read(tmp_path: Path) -> None:
    from fleetctl.configs.apply import validate_current

    secret = tmp_path / "outside.json"
    secret.write_text('{"token": "not for the agent"}')
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "config.json").symlink_to(secret)
    profiles = tmp_path / "p"
    profiles.mkdir()
    (profiles / "a.toml").write_text(GOOD + f'config_dir = "{cfg}"\n[config]\nfile = "config.json"\n')
    problem = validate_current(load_fleet(profiles).get("a"))
    assert problem == "a: config.json: a symlink leading outside the config dir; not read"
