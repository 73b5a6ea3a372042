"""The entry point's direct route for `status`: it takes exactly the command lines click would
read the same way, it does not import click, and both routes print the same."""

from __future__ import annotations

import json
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
from fleetctl.cli.entry import status_request

WORDS = [
    "status",
    "--json",
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


def _click_reading(args: list[str]) -> tuple[Path | None, bool] | None:
    """What click makes of `args`: (profiles_dir, as_json) for a status command, else None."""
    try:
        ctx = click_main.make_context("fleetctl", list(args), resilient_parsing=False)
        with warnings.catch_warnings():  # click 8.2 deprecates protected_args; 8.1 needs it
            warnings.simplefilter("ignore", DeprecationWarning)
            pending = [*ctx.protected_args, *ctx.args]
        name, cmd, rest = click_main.resolve_command(ctx, pending)
        if name != "status" or cmd is None or ctx.params.get("debug"):
            return None
        sub = cmd.make_context(name, rest, parent=ctx)
    except (click.exceptions.Exit, click.ClickException):
        return None
    return sub.params["profiles_dir"], sub.params["as_json"]


@given(st.lists(st.sampled_from(WORDS), max_size=6))
def test_the_direct_route_takes_only_what_click_reads_the_same(args: list[str]) -> None:
    mine = status_request(args)
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
    ],
)
def test_the_plain_forms_take_the_direct_route(args: list[str]) -> None:
    assert status_request(args) is not None


RUN = """
import sys
sys.argv = ["fleetctl", *sys.argv[1:]]
from fleetctl.cli.entry import main
try:
    main()
finally:
    print("click imported" if "click" in sys.modules else "no click", file=sys.stderr)
"""


def test_the_direct_route_does_not_import_click_and_fails_as_click_does(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
    missing = str(tmp_path / "nowhere")
    direct = subprocess.run(
        [sys.executable, "-c", RUN, "status", "--profiles", missing], capture_output=True, text=True, env=env
    )
    assert direct.stderr.splitlines()[-1] == "no click"
    via_click = subprocess.run(
        [sys.executable, "-c", RUN, "status", "--profiles", missing, "--json", "--json"],  # twice: click's
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
