"""The entry point's direct route for `status` and `watchdog`: it takes exactly the command lines
click would read the same way, it does not import click, and both routes print the same."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import click
import pytest
from conftest import Fleetctl
from hypothesis import given
from hypothesis import strategies as st

from fleetctl.cli.common import main as click_main
from fleetctl.cli.entry import PLAIN_FLAGS, PlainRequest, plain_request

WORDS = [
    "status",
    "watchdog",
    "--json",
    "--quiet",
    "--profiles",
    "p",
    "--profiles=q",
    "--profiles=",
    "-",
    "--debug",
    "-h",
    "--help",
    "--json=1",
    "--profile",
    "x y",
    "--",
    "-x",
    "status",
]


def _click_reading(args: list[str]) -> PlainRequest | None:
    """What click makes of `args`, for a command with a direct route; None for anything else."""
    try:
        ctx = click_main.make_context("fleetctl", list(args), resilient_parsing=False)
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            pending = [*ctx.protected_args, *ctx.args]
        name, cmd, rest = click_main.resolve_command(ctx, pending)
        if name not in PLAIN_FLAGS or cmd is None or ctx.params.get("debug"):
            return None
        sub = cmd.make_context(name, rest, parent=ctx)
    except (click.exceptions.Exit, click.ClickException):
        return None
    flags = {"--json": "as_json", "--quiet": "quiet"}
    on = frozenset(f for f, param in flags.items() if sub.params.get(param))
    return PlainRequest(name, sub.params["profiles_dir"], on)


@given(st.lists(st.sampled_from(WORDS), max_size=6))
def test_the_direct_route_takes_only_what_click_reads_the_same(args: list[str]) -> None:
    mine = plain_request(args)
    if mine is not None:
        assert _click_reading(args) == mine


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["status", "--json"],
        ["status", "--profiles", "p"],
        ["status", "--profiles=p", "--json"],
        ["status", "--json", "--profiles", "/srv/fleet"],
        ["watchdog"],
        ["watchdog", "--json", "--profiles", "p"],
        # cron's line (lifecycle/cron.py), word for word
        ["watchdog", "--profiles", "/home/u/.config/fleetctl/profiles", "--quiet"],
    ],
)
def test_the_plain_forms_take_the_direct_route(args: list[str]) -> None:
    assert plain_request(args) == _click_reading(args) is not None


@pytest.mark.parametrize("args", [["status", "--quiet"], ["watchdog", "--quiet", "--quiet"], ["oversee"]])
def test_other_lines_go_to_click(args: list[str]) -> None:
    assert plain_request(args) is None


RUN = """
import sys
sys.argv = ["fleetctl", *sys.argv[1:]]
from fleetctl.cli.entry import main
try:
    main()
finally:
    print("click imported" if "click" in sys.modules else "no click", file=sys.stderr)
"""


@pytest.mark.parametrize("command", sorted(PLAIN_FLAGS))
def test_the_direct_route_does_not_import_click_and_fails_as_click_does(tmp_path: Path, command: str) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
    missing = str(tmp_path / "nowhere")
    direct = subprocess.run(
        [sys.executable, "-c", RUN, command, "--profiles", missing], capture_output=True, text=True, env=env
    )
    assert direct.stderr.splitlines()[-1] == "no click"
    via_click = subprocess.run(
        [sys.executable, "-c", RUN, command, "--profiles", missing, "--json", "--json"],  # twice: click's
        capture_output=True,
        text=True,
        env=env,
    )
    assert via_click.stderr.splitlines()[-1] == "click imported"
    assert direct.returncode == via_click.returncode != 0
    assert direct.stderr.splitlines()[:-1] == via_click.stderr.splitlines()[:-1]
    assert "no such profiles directory" in direct.stderr


VOLATILE = ("health_detail", "health_latency_ms", "uptime_seconds")


def _rows(doc: dict) -> list[dict]:  # type: ignore[type-arg]
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in doc["agents"]]


def test_both_routes_print_the_same_status(fleetctl: Fleetctl, example_profiles: Path) -> None:
    fleetctl("install", str(example_profiles))
    fleetctl("stop", "qa", "--profiles", str(example_profiles))
    m = fleetctl.manager
    # A leading "--" is no plain status line, so it takes click's route (click skips it).
    direct = fleetctl("status", "--json", "--profiles", str(example_profiles))
    click_route = [sys.executable, "-c", RUN, "--", "status", "--json", "--profiles", str(example_profiles)]
    r = m.run(click_route, env=fleetctl.env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines()[-1] == "click imported"
    a, b = json.loads(direct.stdout), json.loads(r.stdout)
    assert _rows(a) == _rows(b) and a["version"] == b["version"]
    jobs = [{j: {k: v for k, v in e.items() if k != "reason"} for j, e in d["jobs"].items()} for d in (a, b)]
    assert jobs[0] == jobs[1]  # the reasons say "installed Ns ago": the seconds move
    assert {row["agent"]: row["active_state"] for row in _rows(a)}["qa"] == "inactive"
    text_direct = fleetctl("status", "--profiles", str(example_profiles)).stdout.splitlines()
    r = m.run(
        [sys.executable, "-c", RUN, "--", "status", "--profiles", str(example_profiles)], env=fleetctl.env
    )
    text_click = r.stdout.splitlines()
    # Same rows and columns; the HEALTH latency and UPTIME cells move between two runs.
    assert [line.split()[:4] for line in text_direct] == [line.split()[:4] for line in text_click]


def test_both_routes_run_the_same_watchdog(fleetctl: Fleetctl, example_profiles: Path) -> None:
    """cron's line takes the direct route: same report, same exit status, same log lines (a
    corrupt state file is logged as an ERROR and makes the run need attention, exit 2)."""
    fleetctl("install", str(example_profiles))
    fleetctl("stop", "qa", "--profiles", str(example_profiles))
    m = fleetctl.manager
    state = m.home / ".local/state/fleetctl/watchdog-state.json"
    profiles = ["--profiles", str(example_profiles)]
    outs = []
    for route in ("direct", "click"):
        state.write_text("{torn")
        m.give(state)
        if route == "direct":
            r = fleetctl("watchdog", "--json", *profiles, check=False)
            assert "click" not in r.stderr
        else:
            r = m.run([sys.executable, "-c", RUN, "--", "watchdog", "--json", *profiles], env=fleetctl.env)
            assert r.stderr.splitlines()[-1] == "click imported"
            r.stderr = "\n".join(r.stderr.splitlines()[:-1]) + "\n"
        doc = json.loads(re.sub(r"corrupt-\d+", "corrupt-N", r.stdout))  # the state's copy, by time
        for volatile in ("time", "ts", "duration_s"):
            doc.pop(volatile)
        logged = [re.sub(r"corrupt-\d+", "corrupt-N", line) for line in r.stderr.splitlines()]
        outs.append((r.returncode, doc, logged))
    assert outs[0] == outs[1]
    code, doc, logged = outs[0]
    assert code == 2 and doc["counts"] == {"healthy": 5, "stopped": 1}, doc
    assert [line.split(":")[0] for line in logged] == ["ERROR fleetctl.healing.state"], logged
    # cron's own line, both ways: a healthy run with --quiet prints nothing and exits 0.
    quiet = fleetctl("watchdog", "--quiet", *profiles)
    via_click = m.run([sys.executable, "-c", RUN, "--", "watchdog", "--quiet", *profiles], env=fleetctl.env)
    assert (quiet.returncode, quiet.stdout) == (via_click.returncode, via_click.stdout) == (0, "")
