"""The README and docs/ tell the truth: the test command CI runs, every profile key, the units,
the example profile, and links that lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from fleetctl.fleet import schema

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
PROFILES_DOC = (ROOT / "docs" / "profiles.md").read_text()


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r'^TEST_COMMAND="(.+)"$', ci, re.M)
    assert command, ".ci/run must define TEST_COMMAND"
    assert re.search(rf"^{re.escape(command.group(1))}\s+#", README, re.M), "README quickstart must show it"


def test_key_tables_are_generated_from_the_schema() -> None:
    assert schema.markdown_table(schema.SETTINGS) in PROFILES_DOC
    assert schema.markdown_table(schema.FLEET_SETTINGS) in PROFILES_DOC


def test_profiles_doc_shows_the_current_coder_unit() -> None:
    assert (ROOT / "units" / "fleet-coder.service").read_text().rstrip() in PROFILES_DOC


def test_readme_shows_the_example_profile_as_it_is() -> None:
    shown = re.search(r"```toml\n# profiles/coder.toml\n(.*?)```", README, re.S)
    assert shown, "README shows profiles/coder.toml"
    assert shown.group(1) == (ROOT / "profiles" / "coder.toml").read_text()


def test_every_relative_link_leads_to_a_file() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for doc in docs:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_stays_a_front_door() -> None:
    # Reference material lives in docs/; the README is what a newcomer reads in ten minutes.
    assert len(README) < 14000, f"README is {len(README)} characters; move reference to docs/"
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / page).is_file(), page
