"""The dashboard's ASGI application (Starlette): pages, their JSON twins, and the actions.

Pages are static HTML shipped in the package; their script fetches the JSON twin (`/` reads
`/agents.json`, `/feed.json`, `/alerts.json`; `/agent/NAME` reads `/agent/NAME.json`) and polls
it every few seconds, so what a script can read is exactly what a person sees. Endpoints are
plain functions (Starlette runs them in its thread pool): D-Bus and the health probes block.
"""

from __future__ import annotations

import html
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from fleetctl.common.errors import FleetError
from fleetctl.dashboard import data, security
from fleetctl.dashboard.redact import fleet_redactor, scrub
from fleetctl.diagnosis.redact import Redactor
from fleetctl.fleet.profiles import Fleet, load_fleet

log = logging.getLogger(__name__)

POLL_SECONDS = 3
FLEET_TTL = 5.0  # profiles are re-read this often: an edited fleet shows without a restart
SNAPSHOT_TTL = 1.0  # every open page polls; one D-Bus read and probe round serves them all
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Settings:
    profiles_dir: Path
    bind: str = "127.0.0.1"
    port: int = 8377
    actions: bool = False
    access_token: str | None = None  # required on every request when set
    action_token: str = field(default_factory=security.new_action_token)
    manager_address: str | None = None  # None: the user's bus, as every command uses


class _Cache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._at = 0.0
        self._value: Any = None

    def get(self, make: Callable[[], Any]) -> Any:
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.ttl:
                self._value = make()
                self._at = time.monotonic()
            return self._value

    def clear(self) -> None:
        with self._lock:
            self._value = None


class _Guard:
    """ASGI middleware: the Host check on loopback, the access token elsewhere (or when given),
    and the security headers on every response."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.s = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal: Response | None = None
        if security.is_loopback(self.s.bind) and not security.host_allowed(
            headers.get("host", ""), self.s.bind
        ):
            refusal = JSONResponse({"error": "unknown Host; use http://127.0.0.1:PORT/"}, 421)
        elif self.s.access_token is not None and not security._same(
            security.presented_token(headers), self.s.access_token
        ):
            refusal = JSONResponse(
                {"error": "this dashboard needs its access token"},
                401,
                headers={"WWW-Authenticate": 'Basic realm="fleetctl dashboard", charset="UTF-8"'},
            )
        if refusal is not None:
            await refusal(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                have = {k.lower() for k, _ in message.get("headers", [])}
                extra = [
                    (k.lower().encode(), v.encode())
                    for k, v in HEADERS.items()
                    if k.lower().encode() not in have
                ]
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        await self.app(scope, receive, with_headers)


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.query_params.get(name, default))
    except ValueError:
        raise FleetError(f"query parameter {name}: not a number") from None


def create_app(s: Settings) -> Starlette:
    fleet_cache = _Cache(FLEET_TTL)
    snapshot = _Cache(SNAPSHOT_TTL)
    static = resources.files("fleetctl.dashboard") / "static"

    def fleet() -> Fleet:
        return fleet_cache.get(lambda: load_fleet(s.profiles_dir))  # type: ignore[no-any-return]

    def manager() -> Any:
        from fleetctl.systemd.manager import SystemdManager

        return SystemdManager(address=s.manager_address)

    def out(doc: dict[str, Any], f: Fleet | None = None) -> JSONResponse:
        return JSONResponse(scrub(doc, fleet_redactor(f or fleet())))

    def guarded(fn: Callable[[Request], Response]) -> Callable[[Request], Response]:
        def run(request: Request) -> Response:
            try:
                return fn(request)
            except FleetError as e:
                try:  # an error message may quote a log line or a config value: scrub it too
                    said = fleet_redactor(fleet()).redact(str(e))
                except (FleetError, OSError):
                    said = Redactor().redact(str(e))
                return JSONResponse({"error": said}, 404 if "unknown agent" in str(e) else 400)

        return run

    def page(name: str, request: Request, **fill: str) -> Response:
        text = (static / name).read_text()
        values = {
            "ACTIONS": "on" if s.actions else "off",
            "ACTION_TOKEN": s.action_token if s.actions else "",
            "POLL": str(POLL_SECONDS),
            **fill,
        }
        for k, v in values.items():
            text = text.replace("{{" + k + "}}", html.escape(v, quote=True))
        response = HTMLResponse(text)
        if s.actions:
            response.set_cookie(
                security.CSRF_COOKIE, s.action_token, httponly=True, samesite="strict", path="/"
            )
        return response

    # --- pages and their JSON twins ---------------------------------------------------------

    def index(request: Request) -> Response:
        return page("index.html", request)

    def agent_page(request: Request) -> Response:
        name = request.path_params["name"]
        f = fleet()
        if name not in f.names:
            return HTMLResponse(f"<p>unknown agent {html.escape(name)}</p>", 404)
        return page("agent.html", request, AGENT=name)

    def agents_json(request: Request) -> Response:
        def make() -> dict[str, Any]:
            with manager() as mgr:
                return data.agents(fleet(), mgr)

        doc = snapshot.get(make) | {"actions": s.actions}
        return out(doc)

    def agent_json(request: Request) -> Response:
        with manager() as mgr:
            doc = data.agent(fleet(), request.path_params["name"], mgr, page=_int(request, "page", 1))
        return out(doc | {"actions": s.actions})

    def feed_json(request: Request) -> Response:
        kinds = tuple(k for k in request.query_params.get("kind", "").split(",") if k) or data.KINDS
        unknown = set(kinds) - set(data.KINDS)
        if unknown:
            raise FleetError(f"kind: unknown {', '.join(sorted(unknown))} (one of {', '.join(data.KINDS)})")
        doc = data.feed(
            fleet(),
            agent=request.query_params.get("agent") or None,
            kinds=kinds,
            page=_int(request, "page", 1),
            per_page=_int(request, "per_page", data.PER_PAGE),
        )
        return out(doc)

    def cron_json(request: Request) -> Response:
        return out(data.cron(fleet()))

    def alerts_json(request: Request) -> Response:
        return out(data.alerts(fleet()))

    # --- actions ------------------------------------------------------------------------------

    def act(request: Request, what: str, do: Callable[[Fleet, str], list[str]]) -> Response:
        client = request.client.host if request.client else "?"
        name = request.path_params["name"]
        if not s.actions:
            log.warning("dashboard: refused %s %s from %s: actions are off", what, name, client)
            return JSONResponse({"error": "actions are off: start the dashboard with --actions"}, 403)
        origin = f"{request.url.scheme}://{request.headers.get('host', '')}"
        why = security.action_refusal(request.headers, request.cookies, s.action_token, origin)
        if why is not None:
            log.warning("dashboard: refused %s %s from %s: %s", what, name, client, why)
            return JSONResponse({"error": why}, 403)
        f = fleet()
        f.get(name)
        try:
            lines = do(f, name)
        except FleetError as e:
            log.warning("dashboard: %s %s (from %s) failed: %s", what, name, client, e)
            return out({"ok": False, "error": str(e)}, f)
        finally:
            snapshot.clear()
        for line in lines:
            log.warning("dashboard: %s %s (from %s): %s", what, name, client, line)
        return out({"ok": True, "lines": lines}, f)

    def restart(request: Request) -> Response:
        from fleetctl.lifecycle.control import control

        return act(request, "restart", lambda f, n: control("restart", f.directory, [n], False))

    def ack(request: Request) -> Response:
        from fleetctl.healing.hold import ack as do_ack

        # As `fleetctl ack`: unmask, reset the failed state, start and wait until healthy.
        return act(request, "ack", lambda f, n: do_ack(f.directory, n, say=lambda _: None))

    def rollback(request: Request) -> Response:
        from fleetctl.configs.apply import rollback as do_rollback

        version = request.query_params.get("version")

        def run(f: Fleet, n: str) -> list[str]:
            said: list[str] = []
            result = do_rollback(
                f.get(n), int(version) if version else None, "rolled back from the dashboard", say=said.append
            )
            return [*said, result.message]

        return act(request, "rollback", run)

    routes = [
        Route("/", guarded(index)),
        Route("/agents.json", guarded(agents_json)),
        Route("/feed.json", guarded(feed_json)),
        Route("/cron.json", guarded(cron_json)),
        Route("/alerts.json", guarded(alerts_json)),
        Route("/agent/{name}.json", guarded(agent_json)),
        Route("/agent/{name}", guarded(agent_page)),
        Route("/actions/restart/{name}", guarded(restart), methods=["POST"]),
        Route("/actions/ack/{name}", guarded(ack), methods=["POST"]),
        Route("/actions/rollback/{name}", guarded(rollback), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]

    def warm() -> None:
        """What the first page load would otherwise wait for: the incident log, the redactor,
        the first D-Bus read and probe round (and the imports behind them)."""
        try:
            with manager() as mgr:
                snapshot.get(lambda: data.agents(fleet(), mgr))
            fleet_redactor(fleet())
        except (FleetError, OSError) as e:
            log.debug("warm-up: %s", e)  # the request that needs it will say so

    app = Starlette(routes=routes, middleware=[Middleware(_Guard, settings=s)])
    app.state.warm = warm
    return app
