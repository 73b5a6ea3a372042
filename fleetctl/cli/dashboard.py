"""`fleetctl dashboard`: serve Mission Control, or install it as `fleet-dashboard.service`."""

from __future__ import annotations

import errno
import socket
import threading
from pathlib import Path

import click

from fleetctl.cli.common import handle_errors, main, profiles_option, resolve_profiles
from fleetctl.common.errors import FleetError

DEFAULT_PORT = 8377


@main.command()
@profiles_option
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--bind",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback needs --token-file.",
)
@click.option("--actions", is_flag=True, help="Allow restart, ack and config rollback from the page.")
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="A 0600 file holding the access token every request must carry (never on the command line).",
)
@click.option(
    "--install-unit", is_flag=True, help="Write and start fleet-dashboard.service with these options."
)
@click.option("--remove-unit", is_flag=True, help="Stop and remove fleet-dashboard.service.")
@handle_errors
def dashboard(
    profiles_dir: Path | None,
    port: int,
    bind: str,
    actions: bool,
    token_file: Path | None,
    install_unit: bool,
    remove_unit: bool,
) -> None:
    """Serve a live web page of the fleet on 127.0.0.1 (read-only unless --actions).

    Every page has a JSON twin: /agents.json, /agent/NAME.json, /feed.json, /cron.json,
    /alerts.json. From a laptop: ssh -L 8377:127.0.0.1:8377 SERVER, then open
    http://127.0.0.1:8377/.
    """
    from fleetctl.dashboard import security
    from fleetctl.fleet.profiles import load_fleet

    if remove_unit:
        from fleetctl.dashboard.unit import remove_unit as do_remove

        if not do_remove(click.echo):
            click.echo("fleet-dashboard.service: not installed; nothing to do")
        return
    loopback = security.is_loopback(bind)
    token = security.read_token_file(token_file) if token_file is not None else None
    if not loopback and token is None:
        raise FleetError(
            f"--bind {bind}: not a loopback address; give --token-file FILE (mode 0600) so every "
            "request must carry its token, or keep 127.0.0.1 and use an SSH tunnel"
        )
    fleet = load_fleet(resolve_profiles(profiles_dir))
    if install_unit:
        from fleetctl.dashboard.unit import install_unit as do_install

        do_install(fleet, port, bind, actions, token_file, click.echo)
        return
    _serve(fleet.directory, bind, port, actions, token, token_file, loopback)


def _serve(
    profiles: Path,
    bind: str,
    port: int,
    actions: bool,
    token: str | None,
    token_file: Path | None,
    loopback: bool,
) -> None:
    import uvicorn

    from fleetctl.dashboard.app import Settings, create_app

    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((bind, port))
    except OSError as e:
        sock.close()
        hint = "; another program uses it (pick one with --port)" if e.errno == errno.EADDRINUSE else ""
        raise FleetError(f"--bind {bind} --port {port}: cannot listen: {e.strerror}{hint}") from None
    app = create_app(Settings(profiles, bind=bind, port=port, actions=actions, access_token=token))
    host = f"[{bind}]" if ":" in bind else bind
    mode = "actions ON (restart, ack, rollback)" if actions else "read-only"
    click.echo(f"fleetctl dashboard: serving {profiles} on http://{host}:{port}/ ({mode})", err=True)
    if not loopback:
        click.echo(
            f"fleetctl dashboard: {bind} is NOT loopback: every request must carry the token in "
            f"{token_file} (HTTP basic auth password, or Authorization: Bearer)",
            err=True,
        )
    elif token is not None:
        click.echo(f"fleetctl dashboard: every request must carry the token in {token_file}", err=True)
    else:
        click.echo(f"fleetctl dashboard: from a laptop: ssh -L {port}:127.0.0.1:{port} SERVER", err=True)
    # Parse the incident log and read the secrets while nobody waits, not on the first load.
    threading.Thread(target=app.state.warm, daemon=True, name="warm-up").start()
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
    uvicorn.Server(config).run(sockets=[sock])
