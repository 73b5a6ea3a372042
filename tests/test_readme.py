"""The README tells the truth: the test command CI runs, every profile key, the units."""

from __future__ import annotations

import re
from pathlib import Path

from fleetctl.fleet import schema

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.M)
    assert command, ".ci/run must define TEST_COMMAND"
    assert re.search(rf"^{re.escape(command.group(1))}\s+#", README, re.M), "README quickstart must show it"


def test_readme_key_tables_are_generated_from_the_schema() -> None:
    assert schema.markdown_table(schema.SETTINGS) in README
    assert schema.markdown_table(schema.FLEET_SETTINGS) in README


def test_readme_shows_the_current_coder_unit() -> None:
    assert (ROOT / "units" / "fleet-coder.service").read_text().rstrip() in README
