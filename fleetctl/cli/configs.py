"""`fleetctl config`: validate, apply, verify, keep a last-known-good, roll back."""

from __future__ import annotations

from pathlib import Path

import click

from fleetctl.cli.common import (
    emit_json,
    handle_errors,
    main,
    profiles_option,
    resolve_profiles,
)
from fleetctl.common import paths
from fleetctl.common.errors import FleetError


@main.group()
def config() -> None:
    """Agent configs: validate, apply, verify, keep a last-known-good, roll back."""


def _profile(agent: str, profiles_dir: Path | None):  # type: ignore[no-untyped-def]
    from fleetctl.fleet.profiles import load_fleet

    return load_fleet(resolve_profiles(profiles_dir)).get(agent)


@config.command("apply")
@click.argument("agent")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--reason", default="applied by hand", show_default=True, help="Recorded in the history.")
@profiles_option
@handle_errors
def config_apply(agent: str, file: Path, reason: str, profiles_dir: Path | None) -> None:
    """Validate FILE, install it as AGENT's config, restart, verify; roll back if unhealthy."""
    from fleetctl.configs.apply import apply
    from fleetctl.configs.formats import ConfigInvalid

    try:
        result = apply(_profile(agent, profiles_dir), file, reason, say=click.echo)
    except ConfigInvalid as e:
        if not e.output:
            raise
        # The one-line verdict, then everything the validator said: the reason may be early.
        click.echo(f"fleetctl: {e}", err=True)
        click.echo("validator output:", err=True)
        for line in e.output.splitlines():
            click.echo(f"  {line}", err=True)
        raise SystemExit(e.exit_code) from None
    click.echo(result.message)


@config.command("rollback")
@click.argument("agent")
@click.argument("version", type=int, required=False)
@click.option("--reason", default="rolled back by hand", show_default=True)
@profiles_option
@handle_errors
def config_rollback(agent: str, version: int | None, reason: str, profiles_dir: Path | None) -> None:
    """Restore VERSION (default: last-known-good), restart and verify."""
    from fleetctl.configs.apply import rollback

    click.echo(rollback(_profile(agent, profiles_dir), version, reason, say=click.echo).message)


@config.command("history")
@click.argument("agent")
@click.option("--json", "as_json", is_flag=True)
@profiles_option
@handle_errors
def config_history(agent: str, as_json: bool, profiles_dir: Path | None) -> None:
    """Every recorded version of AGENT's config."""
    from dataclasses import asdict

    from fleetctl.configs.apply import store_for

    store = store_for(_profile(agent, profiles_dir))
    versions = store.history()
    cur, lkg = store.current(), store.last_known_good()
    if as_json:
        emit_json(
            {
                "version": 1,
                "current": cur and cur.version,
                "last_known_good": lkg and lkg.version,
                "versions": [asdict(v) for v in versions],
            }
        )
        return
    click.echo(f"{'VERSION':<8} {'TIME':<21} {'SOURCE':<12} {'VERIFIED':<9} REASON")
    for v in versions:
        marks = ("*" if cur and v.version == cur.version else " ") + (
            "G" if lkg and v.version == lkg.version else " "
        )
        click.echo(
            f"{v.version:<6}{marks} {v.time[:19]:<21} {v.source:<12} "
            f"{'yes' if v.verified else 'no':<9} {v.reason}"
        )
    click.echo("* current   G last-known-good")


@config.command("diff")
@click.argument("agent")
@click.argument("v1", type=int, required=False)
@click.argument("v2", type=int, required=False)
@profiles_option
@handle_errors
def config_diff(agent: str, v1: int | None, v2: int | None, profiles_dir: Path | None) -> None:
    """Unified diff (secrets masked): V1..V2, or last-known-good..current, or current..disk."""
    from fleetctl.configs.apply import managed_names, masker, store_for
    from fleetctl.configs.diff import unified_diff
    from fleetctl.configs.files import read_managed

    p = _profile(agent, profiles_dir)
    store = store_for(p)
    if v1 is None:
        cur = store.current()
        if cur is None:
            raise FleetError(f"{agent}: no config version recorded yet")
        a, b = store.get(cur.version), read_managed(paths.expand(p.config_dir), managed_names(p))
        labels = (f"version {cur.version}", "on disk")
    else:
        right = v2 if v2 is not None else (store.current().version if store.current() else v1)  # type: ignore[union-attr]
        a, b, labels = store.get(v1), store.get(right), (f"version {v1}", f"version {right}")
    click.echo(unified_diff(a, b, labels, mask=masker(p)) or "no differences", nl=False)


@config.command("status")
@profiles_option
@handle_errors
def config_status(profiles_dir: Path | None) -> None:
    """Applied version, last-known-good and drift for every agent."""
    from fleetctl.configs.apply import config_status as one
    from fleetctl.fleet.profiles import load_fleet

    for p in load_fleet(resolve_profiles(profiles_dir)).profiles:
        click.echo(one(p))
