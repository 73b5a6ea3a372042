"""`fleetctl export kubernetes`: the same profiles as Kubernetes manifests."""

from __future__ import annotations

from pathlib import Path

import click

from fleetctl.cli.common import handle_errors, main, resolve_profiles
from fleetctl.common.errors import FleetError


@main.group()
def export() -> None:
    """Carry the fleet to another platform."""


@export.command()
@click.argument("profiles_dir", required=False, type=click.Path(path_type=Path))
@click.option(
    "--output", "-o", type=click.Path(path_type=Path), default=Path("export/kubernetes"), show_default=True
)
@click.option("--namespace", "-n", default=None, help="Put every object in this namespace.")
@click.option("--check", is_flag=True, help="Fail when the output folder is out of date; write nothing.")
@handle_errors
def kubernetes(profiles_dir: Path | None, output: Path, namespace: str | None, check: bool) -> None:
    """Write Deployments, Services, claims, ConfigMaps and a kustomization for PROFILES_DIR."""
    from fleetctl.export.kubernetes import write_export

    result = write_export(resolve_profiles(profiles_dir), output, namespace, check=check)
    for line in result.lines:
        click.echo(line)
    if check:
        if result.drift:
            raise FleetError(
                f"{output} is out of date ({len(result.drift)} file(s)); run `fleetctl export kubernetes`"
            )
        return  # a check names drift only; the warnings came when the files were written
    for line in result.warnings:
        click.echo(f"fleetctl: warning: {line}", err=True)
    if result.secrets:
        click.echo("Create each agent's Secret before `kubectl apply -k` (values stay out of the manifests):")
        for command in result.secrets:
            click.echo(f"  {command}")
