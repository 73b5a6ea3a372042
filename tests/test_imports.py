"""Import direction: no module imports one that imports it back, and the core never imports the CLI.

Imports are read from the source (every `import` and `from ... import`, also those inside
functions), so a lazy import counts: it is still an arrow, only a later one.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "fleetctl"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(path: Path, known: set[str]) -> set[str]:
    """fleetctl modules that `path` imports; `from pkg import mod` counts as importing pkg.mod."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out.update(subs or ({node.module} & known))
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(path, known) - {name} for name, path in mods.items()}


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    seen, stack = {start}, [[start]]
    while stack:
        route = stack.pop()
        for nxt in sorted(graph.get(route[-1], ())):
            if nxt == goal:
                return [*route, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*route, nxt])
    return None


def test_the_import_graph_has_no_cycles() -> None:
    graph = _graph()
    cycles = []
    for a, targets in graph.items():
        for b in targets:
            back = _reaches(graph, b, a)
            if back:
                cycles.append(" -> ".join([a, *back]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles)))


def test_the_core_never_imports_the_cli() -> None:
    graph = _graph()
    bad = [
        f"{mod} imports {dep}"
        for mod, deps in graph.items()
        if not mod.startswith("fleetctl.cli") and mod != "fleetctl.__main__"
        for dep in deps
        if dep.startswith("fleetctl.cli")
    ]
    assert not bad, "\n".join(bad)


def test_the_graph_reader_sees_a_cycle(tmp_path: Path) -> None:
    # The check above must be able to fail: two modules that import each other are found.
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("from fleetctl.x import b\n")
    b.write_text("def f():\n    import fleetctl.x.a\n")
    known = {"fleetctl.x.a", "fleetctl.x.b"}
    graph = {"fleetctl.x.a": _imports(a, known), "fleetctl.x.b": _imports(b, known)}
    assert _reaches(graph, "fleetctl.x.b", "fleetctl.x.a") == ["fleetctl.x.b", "fleetctl.x.a"]
    assert _reaches(graph, "fleetctl.x.a", "fleetctl.x.b") == ["fleetctl.x.a", "fleetctl.x.b"]
