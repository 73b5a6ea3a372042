"""Find an npm package and a Node that satisfies its `engines.node`, as absolute paths.

A unit must not look Node up through PATH at run time: an npm bin shim (`#!/usr/bin/env node`)
finds whichever Node comes first in the manager's PATH, often the distribution's older one.
So the profile runs Node by absolute path with the package's entry script. Where we look, in
order: the package's own bin shim on PATH (resolved through its symlink), `npm root -g`, nvm,
fnm and volta install trees, and the usual global prefixes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from fleetctl.common.errors import FleetError
from fleetctl.common.runcmd import run

_VERSION = re.compile(r"^v?(\d+\.\d+\.\d+)")


@dataclass(frozen=True)
class Package:
    name: str
    root: Path  # the package directory (holds package.json)
    version: str
    entry: Path  # the script its bin names
    engines_node: str  # the npm range, "" when the package sets none


@dataclass(frozen=True)
class Node:
    path: Path
    version: str


@dataclass(frozen=True)
class Found:
    package: Package
    node: Node
    rejected: tuple[str, ...] = field(default=())  # Nodes seen that do not satisfy engines

    def lines(self) -> list[str]:
        pkg = self.package
        out = [
            f"found {pkg.name} {pkg.version} in {pkg.root} (entry {pkg.entry})",
            f"found node {self.node.version} at {self.node.path}"
            + (f" (satisfies engines.node {pkg.engines_node!r})" if pkg.engines_node else ""),
        ]
        out += [f"skipped {r}" for r in self.rejected]
        return out


def _home() -> Path:
    return Path(os.environ.get("HOME") or os.path.expanduser("~"))


def _path_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get("PATH", "").split(os.pathsep) if d.startswith("/")]


def _glob_sorted(base: Path, pattern: str) -> list[Path]:
    try:
        return sorted(base.glob(pattern), reverse=True)  # newest version first, roughly
    except OSError:
        return []


def module_roots() -> list[Path]:
    """Every node_modules directory a global npm install may have used, best first."""
    home = _home()
    roots: list[Path] = []
    for d in _path_dirs():  # <prefix>/bin on PATH -> <prefix>/lib/node_modules
        roots.append(d.parent / "lib" / "node_modules")
    npm = shutil.which("npm")
    if npm:
        try:
            proc = run([npm, "root", "-g"], timeout=15, check=False)
            if proc.returncode == 0 and proc.stdout.strip().startswith("/"):
                roots.append(Path(proc.stdout.strip()))
        except FleetError:
            pass
    roots += _glob_sorted(home / ".nvm" / "versions" / "node", "*/lib/node_modules")
    fnm = home / ".local" / "share" / "fnm" / "node-versions"
    roots += _glob_sorted(fnm, "*/installation/lib/node_modules")
    roots += [
        home / ".npm-global" / "lib" / "node_modules",
        home / ".local" / "lib" / "node_modules",
        home / ".volta" / "tools" / "shared",
        Path("/usr/local/lib/node_modules"),
        Path("/usr/lib/node_modules"),
    ]
    seen: set[Path] = set()
    return [r for r in roots if not (r in seen or seen.add(r)) and r.is_dir()]  # type: ignore[func-returns-value]


def _node_candidates(package: Package) -> list[Path]:
    home = _home()
    found: list[Path] = []
    # Next to the package's own prefix first: `npm i -g` with that Node put it there.
    prefix = package.root.parent.parent.parent  # <prefix>/lib/node_modules/<name>
    found.append(prefix / "bin" / "node")
    found += [d / "node" for d in _path_dirs()]
    found += _glob_sorted(home / ".nvm" / "versions" / "node", "*/bin/node")
    found += _glob_sorted(home / ".local" / "share" / "fnm" / "node-versions", "*/installation/bin/node")
    found += _glob_sorted(home / ".volta" / "tools" / "image" / "node", "*/bin/node")
    found += [Path("/usr/local/bin/node"), Path("/usr/bin/node")]
    out: list[Path] = []
    for c in found:
        if c not in out and c.is_file() and os.access(c, os.X_OK):
            out.append(c)
    return out


def read_package(root: Path, bin_name: str) -> Package:
    try:
        meta = json.loads((root / "package.json").read_text())
    except (OSError, ValueError) as e:
        raise FleetError(f"{root / 'package.json'}: unreadable ({e})") from None
    bins = meta.get("bin") or {}
    entry = bins if isinstance(bins, str) else bins.get(bin_name) or next(iter(bins.values()), None)
    if not entry:
        raise FleetError(f"{root / 'package.json'}: bin: names no {bin_name!r} script")
    engines = meta.get("engines") or {}
    return Package(
        name=str(meta.get("name") or root.name),
        root=root,
        version=str(meta.get("version") or "?"),
        entry=(root / entry).resolve(),
        engines_node=str(engines.get("node") or ""),
    )


def find_package(name: str, bin_name: str | None = None) -> Package:
    bin_name = bin_name or name
    # The bin shim on PATH is the user's own choice: follow its symlink into the package.
    shim = shutil.which(bin_name)
    if shim:
        real = Path(shim).resolve()
        for parent in real.parents:
            if (parent / "package.json").is_file() and parent.parent.name == "node_modules":
                if parent.name == name:
                    return read_package(parent, bin_name)
                break
    tried = module_roots()
    for root in tried:
        if (root / name / "package.json").is_file():
            return read_package(root / name, bin_name)
    where = ", ".join(str(r) for r in tried) or "no global node_modules directory found"
    raise FleetError(
        f"npm package {name!r} not found (looked on PATH and in {where}); install it with "
        f"`npm install -g {name}` or put its bin directory on PATH"
    )


def node_version(node: Path) -> str | None:
    try:
        proc = run([str(node), "--version"], timeout=15, check=False)
    except FleetError:
        return None
    m = _VERSION.match(proc.stdout.strip())
    return m.group(1) if proc.returncode == 0 and m else None


def satisfies(version: str, engines: str) -> bool:
    if not engines:
        return True
    import nodesemver

    return bool(nodesemver.satisfies(version, engines, loose=True))


def find(name: str, bin_name: str | None = None) -> Found:
    """The package and the first Node (in search order) satisfying its engines.node, or FleetError."""
    pkg = find_package(name, bin_name)
    good: list[Node] = []
    rejected: list[str] = []
    for path in _node_candidates(pkg):
        version = node_version(path)
        if version is None:
            rejected.append(f"{path}: `node --version` failed")
        elif satisfies(version, pkg.engines_node):
            good.append(Node(path, version))
        else:
            rejected.append(f"node {version} at {path}: {pkg.name} needs {pkg.engines_node}")
    if not good:
        seen = "; ".join(rejected) or "none found"
        raise FleetError(
            f"{pkg.root / 'package.json'}: engines.node: no Node satisfies {pkg.engines_node!r} "
            f"({seen}); install one (e.g. `nvm install 24`) and run this again"
        )
    # The first in search order: the Node beside the package's own prefix is the one npm used.
    return Found(pkg, good[0], tuple(rejected))
