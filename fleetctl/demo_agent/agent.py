"""The bundled stand-in agent: `python -m fleetctl.demo_agent`.

It is what the example fleet runs and what tests break on purpose (bad config, crashes, slow
starts, bad API keys, memory hogs, rate limits). The standard library only, and only what
serving needs is imported at start: the agent must start in well under the watchdog's health
timeout, and every import is paid again by each agent the watchdog restarts (server.py). Every
event is one flushed line on stdout (errors on stderr), so the journal shows it in order even
when the unit is killed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import socketserver
import sys
import threading
import time

from fleetctl import __version__
from fleetctl.demo_agent.server import Agent, make_server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

EX_CONFIG = 78  # sysexits.h: tells "fix the config" apart from a crash, for whoever reads the status


def _num(v: Any) -> bool:  # bool is an int subclass, but `"exit_after": true` is a mistake
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


_SPEC: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "greeting": ("a string", lambda v: isinstance(v, str)),
    "exit_after": ("a number >= 0", _num),
    "startup_delay": ("a number >= 0", _num),
    "log_lines": ("a list of strings", lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v)),
    "require_api_key": ("true or false", lambda v: isinstance(v, bool)),
    "memory_hog_mb": ("an integer >= 0", lambda v: _num(v) and isinstance(v, int)),
}


class ConfigError(Exception):
    pass


def load_config(path: str | os.PathLike[str] | None) -> tuple[dict[str, Any], str | None]:
    """Parse and validate the config file; (config, sha256 of its bytes). Missing -> ({}, None)."""
    if path is None:
        return {}, None
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return {}, None
    except OSError as e:
        raise ConfigError(f"{path}: {e.strerror}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: line {e.lineno} column {e.colno}: {e.msg}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 (byte {e.start})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a JSON object")
    for key, value in data.items():
        if key not in _SPEC:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join(sorted(_SPEC))})")
        if not _SPEC[key][1](value):
            raise ConfigError(f"{path}: {key}: must be {_SPEC[key][0]}, got {json.dumps(value)}")
    import hashlib  # only with a config file: it loads OpenSSL, ~5 ms of every start otherwise

    return data, hashlib.sha256(raw).hexdigest()


class Args:
    """The settings: from the environment systemd gives the unit, flags overriding them."""

    def __init__(self, **flags: str | None) -> None:
        env = os.environ
        self.name = env.get("FLEET_AGENT", "demo")
        self.port = env.get("FLEET_PORT")
        # Loopback on a host; a pod sets FLEET_HOST=0.0.0.0 so probes and its Service reach it.
        self.host = env.get("FLEET_HOST") or "127.0.0.1"
        self.config_dir = env.get("FLEET_CONFIG_DIR")
        self.config_file = "config.json"
        self.workspace = env.get("FLEET_WORKSPACE")
        self.__dict__.update({k: v for k, v in flags.items() if v is not None})


def parse_args(argv: list[str] | None) -> Args:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        return Args()  # as systemd runs it: argparse (and its imports) only for a command line
    import argparse

    p = argparse.ArgumentParser(prog="python -m fleetctl.demo_agent", description=__doc__)
    p.add_argument("--name")
    p.add_argument("--port")
    p.add_argument("--host")
    p.add_argument("--config-dir")
    p.add_argument("--config-file", help="name inside the config dir")
    p.add_argument("--workspace")
    return Args(**vars(p.parse_args(argv)))


class Signals:
    """SIGTERM/SIGHUP recorded by the handler, acted on by the main thread between waits.

    Installed before anything slow (startup_delay, memory hog) so that a stop during start-up
    is still a clean exit 0 rather than death by signal.
    """

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.pending: set[int] = set()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.pending.add(signum)  # never touch the server here: shutdown() from a handler deadlocks
        self.wake.set()

    def wait(self, timeout: float | None) -> set[int]:
        """Sleep until a signal or the timeout; return (and forget) what arrived."""
        if not self.pending:
            self.wake.wait(timeout)
        self.wake.clear()
        got, self.pending = self.pending, set()
        return got


def _config_path(config_dir: str | None, config_file: str) -> str | None:
    """An absolute --config-file stands alone; a relative one lives in the config dir."""
    if os.path.isabs(config_file):
        return config_file
    return os.path.join(config_dir, config_file) if config_dir else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signals = Signals()
    cfg_path = _config_path(args.config_dir, args.config_file)
    a = Agent(args.name, cfg_path, args.workspace or None)
    try:
        port = args.port or ""
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"port must be 1-65535 (FLEET_PORT or --port), got {args.port!r}")
        a.config, a.config_hash = load_config(cfg_path)
    except ConfigError as e:
        a.log(f"config error: {e}", err=True)
        return EX_CONFIG
    a.log(f"starting (pid {os.getpid()}, version {__version__})")
    if a.config_hash is None:
        where = f"no config file at {cfg_path}" if cfg_path else "no config dir (FLEET_CONFIG_DIR)"
        a.log(f"{where}; running with defaults")
    for line in a.config.get("log_lines", []):
        print(line, flush=True)  # verbatim on purpose: tests inject hostile text this way
    if a.config.get("require_api_key") and not os.environ.get("DEMO_API_KEY", "").startswith("sk-valid"):
        a.log("upstream error: 401 Unauthorized: invalid API key", err=True)
        return 1
    hog = b"\x5a" * (a.config.get("memory_hog_mb", 0) << 20)  # filled, so the pages are really resident
    if hog:
        a.log(f"holding {len(hog) >> 20} MB")
    delay_end = time.monotonic() + a.config.get("startup_delay", 0)
    early: set[int] = set()
    while (left := delay_end - time.monotonic()) > 0 and signal.SIGTERM not in early:
        early |= signals.wait(left)
    if signal.SIGTERM in early:
        a.log("stopping")
        return 0
    signals.pending |= early  # a SIGHUP during the delay is still honoured once serving
    return serve(a, args.host, int(port), signals)


def serve(a: Agent, host: str, port: int, signals: Signals) -> int:
    try:
        server = make_server(a, port, host)
    except OSError as e:
        a.log(f"fatal: cannot listen on {host}:{port}: {e.strerror}", err=True)
        return 1
    # poll_interval=None: the server thread sleeps in select() until a connection comes, so an
    # idle agent costs no CPU (a 50 ms poll cost 1.2 ms of CPU a second, per agent).
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": None}, daemon=True).start()
    a.log(f"listening on {host}:{port}")
    try:
        while True:
            exit_after = a.config.get("exit_after")
            left = None if exit_after is None else a.started + exit_after - time.monotonic()
            if left is not None and left <= 0:
                a.log("fatal: simulated crash", err=True)
                return 1
            got = signals.wait(left)
            if signal.SIGTERM in got:
                a.log("stopping")
                return 0
            if signal.SIGHUP in got:
                reload(a)
    finally:
        _shutdown(server)
        server.server_close()


def _shutdown(server: socketserver.TCPServer) -> None:
    """shutdown() only sets a flag the serving loop checks between select() calls, and that loop
    blocks with no timeout: connect to the server to wake it until it has seen the flag."""
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    host, port = server.socket.getsockname()[:2]
    deadline = time.monotonic() + 5
    while stopper.is_alive() and time.monotonic() < deadline:
        try:
            socket.create_connection((str(host), int(port)), timeout=0.5).close()
        except OSError:
            pass
        stopper.join(0.05)


def reload(a: Agent) -> None:
    a.log("reloading config")
    try:
        config, digest = load_config(a.config_path)
    except ConfigError as e:
        a.log(f"config error: {e}; keeping the previous config", err=True)
        return
    with a.lock:
        a.config, a.config_hash = config, digest
    a.log(f"config reloaded (sha256 {digest})")


if __name__ == "__main__":
    sys.exit(main())
