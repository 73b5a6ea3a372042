"""Mission Control in a real headless browser against a real fleet in the test manager.

What a person sees: every agent with its state; a stopped agent's row turning red without a
reload; a watchdog action in the feed; a stale watchdog in the cron panel; no secret in the
page or its JSON; POSTs refused when actions are off, and without the token when they are on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest
from conftest import REPO, Fleetctl, wait_for
from dashboard_support import browser, dashboard
from test_watchdog_support import WatchdogFleet
from usermanager import free_port

pytestmark = pytest.mark.systemd

CANARY = "zq7canary3f9a1c2b8d5e"  # a shape no generic pattern knows: only the value layer catches it
JSON_TWINS = ("/agents.json", "/feed.json", "/cron.json", "/alerts.json", "/agent/alpha.json")


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


def _no_canary(base: str, page_html: list[str]) -> None:
    for path in JSON_TWINS:
        body = httpx.get(base + path, trust_env=False, timeout=30).text
        assert CANARY not in body, f"{path} leaks the secret"
    for text in page_html:
        assert CANARY not in text


def test_fleet_page_live_states_feed_cron_and_no_secret(wfleet: WatchdogFleet, tmp_path: Path) -> None:
    wfleet.agent(
        "alpha",
        secrets=f"CANARY_SECRET={CANARY}\n",
        config={"greeting": "hi", "log_lines": [f"loaded key {CANARY} from the env"]},
    )
    wfleet.agent("beta")
    wfleet.agent("gamma")
    wfleet.install()
    wfleet.watchdog()  # a baseline and a fresh heartbeat
    with dashboard(wfleet.fc, "--profiles", str(wfleet.dir)) as srv, browser() as page:
        page.goto(srv.url + "/")
        page.wait_for_selector("body[data-loaded=yes]", timeout=20_000)
        for name in ("alpha", "beta", "gamma"):
            row = page.locator(f"#agent-{name}")
            assert row.get_attribute("data-state") == "active"
            assert row.get_attribute("data-level") == "ok", row.inner_text()
        assert page.locator("#job-watchdog").get_attribute("data-stale") == "no"

        # Stopped behind the page's back: the row turns red on the next poll, no reload.
        page.evaluate("window.__sameDocument = true")
        wfleet.fc("stop", "beta", "--profiles", str(wfleet.dir))
        page.wait_for_selector("#agent-beta[data-level=down]", timeout=15_000)
        assert page.locator("#agent-beta").get_attribute("data-state") == "inactive"
        assert page.evaluate("window.__sameDocument") is True  # the same document: not reloaded
        color = page.eval_on_selector("#agent-beta", "e => getComputedStyle(e).backgroundColor")
        assert color == "rgb(58, 22, 24)"  # the red row

        # A watchdog action (a hung agent restarted) appears in the feed.
        wfleet.wait_past_grace("gamma")
        wfleet.signal("gamma", signal.SIGSTOP)
        wfleet.watchdog(codes=(0, 2))
        assert any(r["action"] == "restart" for r in wfleet.incidents("gamma")), wfleet.incidents()
        page.wait_for_selector("#feed li.kind-watchdog >> text=gamma", timeout=15_000)
        feed = page.locator("#feed").inner_text()
        assert "restart" in feed

        # The watchdog stops running: its heartbeat is an hour old, the cron panel says STALE.
        hb = wfleet.state_dir / "watchdog.heartbeat.json"
        old = time.time() - 3600
        hb.write_text(json.dumps({"ts": old, "time": old, "ok": True}))
        page.wait_for_selector("#job-watchdog[data-stale=yes]", timeout=15_000)
        assert "STALE" in page.locator("#job-watchdog").inner_text()

        # A watchdog hold shows on the row, with its reason, in red.
        state_file = wfleet.state_dir / "watchdog-state.json"
        state = json.loads(state_file.read_text())
        state["agents"].setdefault("alpha", {})["held"] = {
            "since": time.time(),
            "reason": "flapping: 4 restarts",
        }
        state_file.write_text(json.dumps(state))
        page.wait_for_selector("#agent-alpha[data-level=down] .flag.held", timeout=15_000)
        assert page.get_attribute("#agent-alpha .flag.held", "title") == "flapping: 4 restarts"

        # The feed filtered by agent shows that agent only.
        page.select_option("#feed-agent", "gamma")
        # Polled from here: the page's CSP forbids the eval a wait_for_function string needs.
        texts: list[str] = []
        for _ in range(150):
            texts = page.locator("#feed li").all_inner_texts()
            if texts and all("gamma" in x for x in texts):
                break
            time.sleep(0.1)
        assert texts and all("gamma" in x for x in texts), texts
        page.select_option("#feed-agent", "")

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("FLEETCTL_UPDATE_SCREENSHOT"):
            shutil.copy(shot, REPO / "docs" / "dashboard.png")

        # The agent's page: its log lines, redacted; the secret nowhere in page or JSON.
        page.goto(srv.url + "/agent/alpha")
        page.wait_for_selector("body[data-loaded=yes]", timeout=20_000)
        wait_for(lambda: "loaded key" in page.locator("#logs").inner_text(), 15, "alpha's log lines")
        logs = page.locator("#logs").inner_text()
        assert "loaded key [REDACTED] from the env" in logs
        agent_html = page.content()
        page.goto(srv.url + "/")
        page.wait_for_selector("body[data-loaded=yes]", timeout=20_000)
        _no_canary(srv.url, [agent_html, page.content()])

        # Actions are off: a POST from the page itself, token or not, is refused.
        before = wfleet.unit("alpha").invocation_id
        status = page.evaluate(
            "fetch('/actions/restart/alpha', {method: 'POST', headers: {'X-Fleetctl-Token': 'x'}})"
            ".then(r => r.status)"
        )
        assert status == 403
        forged = httpx.post(srv.url + "/actions/restart/alpha", trust_env=False)
        assert forged.status_code == 403 and "actions are off" in forged.json()["error"]
        assert wfleet.unit("alpha").invocation_id == before
        assert page.locator("#agent-alpha button").count() == 0


def test_actions_need_the_token_and_act_like_the_cli(wfleet: WatchdogFleet) -> None:
    wfleet.agent("alpha")
    wfleet.install()
    with dashboard(wfleet.fc, "--profiles", str(wfleet.dir), "--actions") as srv, browser() as page:
        first = wfleet.unit("alpha").invocation_id
        url = srv.url + "/actions/restart/alpha"
        # No token, no cookie: refused.
        r = httpx.post(url, trust_env=False)
        assert r.status_code == 403 and "token" in r.json()["error"]
        # The token without the SameSite cookie (what another site's form could at best do): refused.
        page.goto(srv.url + "/")
        page.wait_for_selector("body[data-loaded=yes]", timeout=20_000)
        token = page.get_attribute('meta[name="fleetctl-action-token"]', "content")
        assert token and len(token) >= 32
        r = httpx.post(url, headers={"X-Fleetctl-Token": token}, trust_env=False)
        assert r.status_code == 403 and "cookie" in r.json()["error"]
        # Token and cookie, but sent from another origin: refused.
        r = httpx.post(
            url,
            headers={
                "X-Fleetctl-Token": token,
                "Origin": "http://evil.example",
                "Cookie": f"fleetctl_action={token}",
            },
            trust_env=False,
        )
        assert r.status_code == 403 and "origin" in r.json()["error"]
        # A page's fetch that forgets the token header (cookie sent by the browser): refused.
        status = page.evaluate("fetch('/actions/restart/alpha', {method: 'POST'}).then(r => r.status)")
        assert status == 403
        assert wfleet.unit("alpha").invocation_id == first

        # The page's own button: restarted through the same function as `fleetctl restart`.
        page.locator("#agent-alpha button", has_text="restart").click()
        wait_for(lambda: wfleet.unit("alpha").invocation_id != first, 30, "alpha restarted")
        wfleet.wait_state("alpha", "active")
        page.wait_for_selector("#action-result >> text=restart fleet-alpha.service: done", timeout=15_000)
        # ack with nothing held says so, as `fleetctl ack` does.
        said = page.evaluate(
            "fetch('/actions/ack/alpha', {method: 'POST', headers: {'X-Fleetctl-Token': "
            "document.querySelector('meta[name=fleetctl-action-token]').content}}).then(r => r.json())"
        )
        assert said["ok"] is True and said["lines"] == ["alpha: not held; nothing to do"]


def test_dashboard_runs_as_its_own_sandboxed_unit(wfleet: WatchdogFleet) -> None:
    wfleet.agent("alpha")
    wfleet.install()
    port = free_port()
    out = wfleet.fc("dashboard", "--install-unit", "--port", str(port), "--profiles", str(wfleet.dir)).stdout
    assert "started fleet-dashboard.service" in out and f"ssh -L {port}:127.0.0.1:{port}" in out
    unit = wfleet.fc.unit("dashboard")
    assert unit.active_state == "active"
    text = (wfleet.home / ".config/systemd/user/fleet-dashboard.service").read_text()
    assert "ProtectSystem=strict" in text and "ProtectHome=read-only" in text
    doc = httpx.get(f"http://127.0.0.1:{port}/agents.json", trust_env=False, timeout=30).json()
    assert "agents" in doc, doc
    assert [(a["agent"], a["active_state"]) for a in doc["agents"]] == [("alpha", "active")]
    # Not an agent: `install --prune` leaves it alone; `uninstall` takes it with the fleet.
    wfleet.fc("install", str(wfleet.dir), "--prune")
    assert wfleet.fc.unit("dashboard").main_pid == unit.main_pid
    said = wfleet.fc("uninstall").stdout
    assert "removed fleet-dashboard.service" in said
    assert not (wfleet.home / ".config/systemd/user/fleet-dashboard.service").exists()


def test_rollback_from_the_page_is_recorded_like_the_command(wfleet: WatchdogFleet, tmp_path: Path) -> None:
    wfleet.agent("alpha", config={"greeting": "v1"})
    wfleet.install()
    v2 = tmp_path / "v2.json"
    v2.write_text(json.dumps({"greeting": "v2"}))
    wfleet.fc("config", "apply", "alpha", str(v2), "--profiles", str(wfleet.dir))
    with dashboard(wfleet.fc, "--profiles", str(wfleet.dir), "--actions") as srv, browser() as page:
        page.goto(srv.url + "/agent/alpha")
        page.wait_for_selector("body[data-loaded=yes]", timeout=20_000)
        said = page.evaluate(
            "fetch('/actions/rollback/alpha?version=1', {method: 'POST', headers: {'X-Fleetctl-Token': "
            "document.querySelector('meta[name=fleetctl-action-token]').content}}).then(r => r.json())"
        )
        assert said["ok"] is True, said
        cfg = wfleet.home / "agents/alpha/config/config.json"
        assert json.loads(cfg.read_text()) == {"greeting": "v1"}
        history = json.loads(
            wfleet.fc("config", "history", "alpha", "--json", "--profiles", str(wfleet.dir)).stdout
        )
        # As after `fleetctl config rollback alpha 1`: version 1 is current again, and the move
        # back is in the feed (the store records it as an event).
        assert (history["current"], history["last_known_good"]) == (1, 1)  # verified again
        page.wait_for_selector("#versions tr.current >> text=1 (current)", timeout=15_000)
        feed = page.evaluate("fetch('/feed.json?agent=alpha').then(r => r.json())")
        assert any("config back to version 1 (was 2)" in item["text"] for item in feed["items"]), feed
