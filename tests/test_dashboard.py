"""The dashboard without a browser: its security rules, pagination, the feed from real state
files, the app over HTTP (Starlette's test client, no D-Bus needed for these twins), the
unit it installs, and the Grafana dashboard shipped beside it."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetctl.common.errors import FleetError
from fleetctl.dashboard import data, security

ROOT = Path(__file__).parent.parent
TOKEN = "t0ken-0123456789abcdef"


# --- security rules ------------------------------------------------------------------------------


def test_token_file_must_be_private_and_a_real_token(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    os.chmod(f, 0o644)
    with pytest.raises(FleetError, match=r"token.*readable by others; run: chmod 600"):
        security.read_token_file(f)
    os.chmod(f, 0o600)
    assert security.read_token_file(f) == TOKEN
    f.write_text("short\n")
    with pytest.raises(FleetError, match="at least 16"):
        security.read_token_file(f)
    with pytest.raises(FleetError, match="no such token file"):
        security.read_token_file(tmp_path / "missing")


def test_token_is_read_from_bearer_or_basic_auth() -> None:
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert security.presented_token({"authorization": f"Bearer {TOKEN}"}) == TOKEN
    assert security.presented_token({"authorization": f"Basic {basic}"}) == TOKEN
    assert security.presented_token({"authorization": "Basic !!!"}) is None
    assert security.presented_token({}) is None


@given(st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z]{2,6}){1,2}", fullmatch=True), st.integers(1, 65535))
def test_on_loopback_only_loopback_host_names_are_served(name: str, port: int) -> None:
    # DNS rebinding: a site whose name resolves to 127.0.0.1 sends its own name as Host.
    assert not security.host_allowed(f"{name}:{port}", "127.0.0.1")
    for ok in ("127.0.0.1", "localhost", "[::1]"):
        assert security.host_allowed(f"{ok}:{port}", "127.0.0.1")


@given(
    site=st.sampled_from(["cross-site", "same-site", None]),
    origin=st.sampled_from(["http://evil.example", "null", "http://127.0.0.1:1", None]),
    header=st.sampled_from([TOKEN, "wrong", None]),
    cookie=st.sampled_from([TOKEN, "wrong", None]),
)
def test_an_action_needs_token_cookie_and_our_origin(
    site: str | None, origin: str | None, header: str | None, cookie: str | None
) -> None:
    mine = "http://127.0.0.1:8377"
    headers = {
        k: v
        for k, v in {"sec-fetch-site": site, "origin": origin, security.CSRF_HEADER: header}.items()
        if v is not None
    }
    cookies = {security.CSRF_COOKIE: cookie} if cookie is not None else {}
    refused = security.action_refusal(headers, cookies, TOKEN, mine)
    forged = site is not None or origin is not None or header != TOKEN or cookie != TOKEN
    assert (refused is not None) == forged
    same = security.action_refusal(
        {"sec-fetch-site": "same-origin", "origin": mine, security.CSRF_HEADER: TOKEN},
        {security.CSRF_COOKIE: TOKEN},
        TOKEN,
        mine,
    )
    assert same is None


@given(st.integers(0, 300), st.integers(-3, 40), st.integers(-5, 60))
def test_pages_cover_every_item_once_in_order(n: int, page: int, per_page: int) -> None:
    items = list(range(n))
    first = data.page_of(items, page, per_page)
    seen = []
    for p in range(1, first["pages"] + 1):
        got = data.page_of(items, p, per_page)
        assert got["total"] == n and got["pages"] == first["pages"]
        assert len(got["items"]) <= got["per_page"]
        seen += got["items"]
    assert seen == items
    assert 1 <= first["page"] <= first["pages"]


# --- the feed and the app, from real state files -------------------------------------------------


@pytest.fixture
def home(home: Path) -> Path:
    """conftest's private home, and the dashboard's incident cache emptied with it."""
    data.INCIDENTS.__init__()  # type: ignore[misc]
    return home


def _fleet(tmp_path: Path, agents: list[str], secret: str = "") -> Path:
    d = tmp_path / "profiles"
    d.mkdir()
    for i, a in enumerate(agents):
        top = f'secrets_file = "{tmp_path}/{a}.env"\n' if secret else ""
        (d / f"{a}.toml").write_text(f'{top}command = ["/bin/true"]\nport = {47100 + i}\n')
        if secret:
            (tmp_path / f"{a}.env").write_text(f"KEY={secret}\n")
            os.chmod(tmp_path / f"{a}.env", 0o600)
    return d


def _incidents(home: Path, n: int, agents: list[str], symptom: str = "health check failed") -> None:
    state = home / ".local/state/fleetctl"
    state.mkdir(parents=True, exist_ok=True)
    t0 = time.time() - n
    with (state / "incidents.jsonl").open("w") as f:
        for i in range(n):
            ts = t0 + i
            f.write(
                json.dumps(
                    {
                        "schema": 1,
                        "ts": ts,
                        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts)),
                        "agent": agents[i % len(agents)],
                        "symptom": f"{symptom} #{i}",
                        "action": "restart",
                        "verification": "healthy",
                    }
                )
                + "\n"
            )


def test_feed_is_newest_first_paginated_and_filtered(home: Path, tmp_path: Path) -> None:
    from fleetctl.common import paths
    from fleetctl.fleet.profiles import load_fleet

    fleet = load_fleet(_fleet(tmp_path, ["ann", "bob"]))
    _incidents(home, 1000, ["ann", "bob"])
    paths.bulletin_file().parent.mkdir(parents=True, exist_ok=True)
    paths.bulletin_file().write_text(
        "2030-01-01T00:00:00Z oversee: WARNING rate-limit on bob: 90 rpm above 60\n"
        "2030-01-01T00:00:01Z watchdog: ann: restarted (also in the incident log)\n"
        "not a bulletin line\n"
    )
    first = data.feed(fleet)
    assert first["total"] == 1001 and first["pages"] == 21 and len(first["items"]) == 50
    assert first["items"][0]["kind"] == "oversee" and first["items"][0]["agent"] == "bob"
    assert first["items"][1]["text"].startswith("health check failed #999 ")
    stamps = [e["ts"] for e in first["items"]]
    assert stamps == sorted(stamps, reverse=True)
    ann = data.feed(fleet, agent="ann", kinds=("watchdog",), page=2, per_page=10)
    assert ann["total"] == 500 and {e["agent"] for e in ann["items"]} == {"ann"}
    assert ann["items"][0]["text"].startswith("health check failed #978 ")
    with pytest.raises(FleetError, match="unknown agent 'carl'"):
        data.feed(fleet, agent="carl")


def _client(profiles: Path, **kw):  # type: ignore[no-untyped-def]
    from starlette.testclient import TestClient

    from fleetctl.dashboard.app import Settings, create_app

    return TestClient(create_app(Settings(profiles, **kw)), base_url="http://127.0.0.1:8377")


def test_json_twins_are_redacted_and_host_checked(home: Path, tmp_path: Path) -> None:
    canary = "zq7canary3f9a1c2b8d5e"
    profiles = _fleet(tmp_path, ["ann"], secret=canary)
    _incidents(home, 3, ["ann"], symptom=f"log said {canary}")
    c = _client(profiles)
    r = c.get("/feed.json")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert canary not in r.text and "log said [REDACTED]" in r.text
    assert c.get("/cron.json").json()["jobs"]["watchdog"]["stale"] is False
    assert c.get("/alerts.json").json()["outbox"] == []
    assert c.get("/feed.json?kind=nope").status_code == 400
    assert c.get("/feed.json?agent=carl").status_code == 404
    rebound = c.get("/feed.json", headers={"Host": "evil.example:8377"})
    assert rebound.status_code == 421
    page = c.get("/")
    assert page.status_code == 200 and 'content="off"' in page.text
    assert "fleetctl_action" not in page.headers.get("set-cookie", "")


def test_access_token_guards_every_request(home: Path, tmp_path: Path) -> None:
    c = _client(_fleet(tmp_path, ["ann"]), bind="0.0.0.0", access_token=TOKEN)
    for path in ("/", "/feed.json", "/static/app.js"):
        r = c.get(path, headers={"Host": "203.0.113.5:8377"})
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    ok = c.get("/feed.json", headers={"Host": "203.0.113.5:8377"}, auth=("me", TOKEN))
    assert ok.status_code == 200
    assert c.get("/feed.json", headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 401


def test_actions_off_refuse_any_post_and_on_hand_out_a_strict_cookie(home: Path, tmp_path: Path) -> None:
    profiles = _fleet(tmp_path, ["ann"])
    off = _client(profiles)
    for what in ("restart", "ack", "rollback"):
        r = off.post(f"/actions/{what}/ann", headers={"X-Fleetctl-Token": "x"})
        assert r.status_code == 403 and "actions are off" in r.json()["error"]
    on = _client(profiles, actions=True, action_token=TOKEN)
    page = on.get("/")
    assert f'content="{TOKEN}"' in page.text
    cookie = page.headers["set-cookie"]
    assert f"fleetctl_action={TOKEN}" in cookie and "SameSite=strict" in cookie and "HttpOnly" in cookie
    assert on.post("/actions/ack/ann").status_code == 403  # the cookie alone is not enough


# --- the command ---------------------------------------------------------------------------------


def test_non_loopback_bind_needs_a_token_file(tmp_path: Path) -> None:
    from fleetctl.cli import main

    profiles = _fleet(tmp_path, ["ann"])
    r = CliRunner().invoke(main, ["dashboard", "--profiles", str(profiles), "--bind", "0.0.0.0"])
    assert r.exit_code == 1 and "not a loopback address; give --token-file" in r.output
    loose = tmp_path / "token"
    loose.write_text(TOKEN)
    os.chmod(loose, 0o644)
    r = CliRunner().invoke(
        main, ["dashboard", "--profiles", str(profiles), "--bind", "0.0.0.0", "--token-file", str(loose)]
    )
    assert r.exit_code == 1 and "chmod 600" in r.output and TOKEN not in r.output


def test_status_does_not_import_the_web_stack() -> None:
    code = (
        "import sys, fleetctl.cli; print(','.join(m for m in ('starlette', 'uvicorn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_unit_is_sandboxed_and_carries_no_token(tmp_path: Path) -> None:
    from fleetctl.dashboard.unit import render
    from fleetctl.fleet.profiles import load_fleet

    fleet = load_fleet(_fleet(tmp_path, ["ann"]))
    tok = tmp_path / "tok"
    ro = render(fleet, 8377, "127.0.0.1", False, None)
    assert "ProtectSystem=strict" in ro and "ProtectHome=read-only" in ro and "NoNewPrivileges=yes" in ro
    assert "ReadWritePaths" not in ro  # read-only: writes nothing
    rw = render(fleet, 9000, "0.0.0.0", True, tok)
    assert "--actions" in rw and f"--token-file {tok}" in rw
    assert "ReadWritePaths=%h/.local/state/fleetctl" in rw
    assert not rw.startswith("# Generated by fleetctl")  # never taken for an agent's orphan unit
    assert "Namespace sandboxing left out" in render(fleet, 8377, "127.0.0.1", False, None, userns=False)


# --- Grafana -------------------------------------------------------------------------------------


def test_grafana_dashboard_parses_and_names_only_metrics_fleetctl_writes() -> None:
    from fleetctl.oversight.metrics import FleetMetrics, render

    doc = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bfleetctl_[a-z_]+", e)}
    written_src = (ROOT / "fleetctl" / "oversight" / "metrics.py").read_text()
    written = set(re.findall(r'"(fleetctl_[a-z_]+)"', written_src))
    assert used and used <= written, used - written
    required = {"fleetctl_agent_up", "fleetctl_agent_health_latency_seconds", "fleetctl_agent_restarts_total",
                "fleetctl_watchdog_actions_total", "fleetctl_open_violations",
                "fleetctl_watchdog_last_run_timestamp_seconds", "fleetctl_oversee_last_run_timestamp_seconds",
                "fleetctl_agent_cost_usd_today"}  # fmt: skip
    assert required <= used, required - used
    assert render(FleetMetrics()) is not None  # the module the names were read from renders
    assert len({p["id"] for p in doc["panels"]}) == len(doc["panels"])


@settings(max_examples=20)
@given(st.text(min_size=1, max_size=40))
def test_scrub_reaches_every_string(text: str) -> None:
    from fleetctl.dashboard.redact import scrub
    from fleetctl.diagnosis.redact import Redactor

    secret = "s3cr3t-value-" + "x" * 8
    doc = {"a": [f"{text}{secret}", {"b": (secret, 3, None)}], "n": 1.5}
    out = json.dumps(scrub(doc, Redactor([secret])))
    assert secret not in out


def test_alerts_show_what_was_sent_and_what_waits_in_the_outbox(home: Path, tmp_path: Path) -> None:
    from fleetctl.alerts.dispatch import AlertState, OpenViolation, OutboxEntry
    from fleetctl.alerts.model import Alert
    from fleetctl.common import paths

    profiles = _fleet(tmp_path, ["ann"])
    (profiles / "fleet.toml").write_text(
        '[[alerts.channels]]\ntype = "webhook"\nname = "ops"\nurl_env = "OPS_URL"\n'
    )
    now = time.time()
    down = Alert("ann", "agent-down", "critical", "unit failed", "fleetctl logs ann", now - 60)
    state = AlertState(
        open={down.key: OpenViolation(down, now - 60, now - 30)},
        outbox=[OutboxEntry(down, "ops", now - 30, 3, "HTTP 503 from the webhook")],
    )
    paths.state_dir().mkdir(parents=True, exist_ok=True)
    state.save(paths.state_dir())
    from fleetctl.alerts.dispatch import log_sent

    log_sent(paths.state_dir(), [(down, "ops", "")], now - 30)
    doc = _client(profiles).get("/alerts.json").json()
    (delivery,) = doc["deliveries"]  # what went to which channel, when
    assert (delivery["check"], delivery["channel"], delivery["time"]) == ("agent-down", "ops", now - 30)
    assert doc["channels"] == [{"name": "ops", "type": "webhook"}]
    (sent,) = doc["sent"]
    assert (sent["check"], sent["agent"], sent["channels"]) == ("agent-down", "ann", ["ops"])
    (waiting,) = doc["outbox"]
    assert (waiting["channel"], waiting["attempts"], waiting["last_error"]) == (
        "ops",
        3,
        "HTTP 503 from the webhook",
    )


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    from fleetctl.cli import main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(
            main, ["dashboard", "--profiles", str(_fleet(tmp_path, ["ann"])), "--port", str(port)]
        )
    assert r.exit_code == 1
    assert f"--bind 127.0.0.1 --port {port}: cannot listen" in r.output and "--port" in r.output
