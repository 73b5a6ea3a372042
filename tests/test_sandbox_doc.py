"""docs/sandbox.md tells the truth: its directive table is the one render uses."""

from __future__ import annotations

from pathlib import Path

from fleetctl.systemd import directives

DOC = (Path(__file__).parent.parent / "docs" / "sandbox.md").read_text()


def test_directive_table_is_generated_from_the_render_table() -> None:
    assert directives.markdown_table() in DOC


def test_every_directive_rendered_is_in_the_table() -> None:
    from fleetctl.fleet.profiles import load_fleet
    from fleetctl.systemd.render import render_unit

    root = Path(__file__).parent.parent / "profiles"
    unit = render_unit(load_fleet(root).get("coder"))
    section = unit.split("# Sandboxing", 1)[1].split("[Install]")[0]
    names = {
        line.split("=", 1)[0] for line in section.splitlines() if "=" in line and not line.startswith("#")
    }
    documented = {d.name for d in directives.DIRECTIVES}
    # The $HOME binds are ProtectHome='s row (the table above the hardening table explains them).
    assert names - documented == {"BindPaths", "BindReadOnlyPaths", "InaccessiblePaths"}
