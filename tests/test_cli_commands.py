"""The CLI's command table: each command is defined where `COMMAND_MODULES` says, and running one
imports only its own module."""

from __future__ import annotations

import importlib
import subprocess
import sys

from fleetctl.cli.common import COMMAND_MODULES, main


def test_the_table_names_the_module_of_every_command() -> None:
    for module in set(COMMAND_MODULES.values()):
        importlib.import_module(module)
    defined = {name: cmd.callback.__module__ for name, cmd in main.commands.items() if cmd.callback}
    assert defined == COMMAND_MODULES


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleetctl", "--help"], capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.split("Commands:\n", 1)[1].splitlines() if line.strip()}
    assert listed == set(COMMAND_MODULES)


RUN = """
import sys
from fleetctl.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
except BaseException:
    pass  # no manager here: only which modules the dispatch imported matters
print(" ".join(sorted(m for m in sys.modules if m.startswith("fleetctl.cli."))))
"""


def test_a_command_imports_only_its_own_module(tmp_path) -> None:  # type: ignore[no-untyped-def]
    for argv, expected in (
        (["status", "--json", "--profiles", str(tmp_path)], "fleet status"),
        (["incidents", "--json"], "watchdog watchdog_run"),
        (["config", "status", "--profiles", str(tmp_path)], "configs"),
    ):
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(tmp_path)}
        out = subprocess.run(
            [sys.executable, "-c", RUN, *argv], capture_output=True, text=True, env=env, check=True
        ).stdout
        want = {"common", "plain", *expected.split()}  # common and plain: every command's
        got = out.strip().splitlines()[-1]
        assert got == " ".join(sorted(f"fleetctl.cli.{m}" for m in want)), argv


PIPE = """
import sys
from fleetctl.cli.common import handle_errors
@handle_errors
def speak():
    for i in range(100000):
        print("agent", i)
speak()
"""


def test_a_closed_pipe_ends_the_command_quietly() -> None:
    # `fleetctl status | head -1`: no error line, no "Exception ignored" from the last flush.
    proc = subprocess.Popen(
        [sys.executable, "-c", PIPE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline() == "agent 0\n"
    proc.stdout.close()
    assert proc.stderr.read() == ""
    assert proc.wait(timeout=30) == 141
