"""Alert channels and dispatch against a real HTTP receiver on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import httpx
import pytest
from http_receiver import Receiver

from fleetctl.alerts import CHANNELS, discord, ntfy, slack, telegram, validate_channels, webhook
from fleetctl.alerts.base import DeliveryError
from fleetctl.alerts.dispatch import AlertState, DispatchReport, process, send_now
from fleetctl.alerts.model import TRUNCATION_MARKER, Alert

NOW = 1_714_564_800.0  # 2024-05-01 12:00:00 UTC
FIX = "fleetctl restart coder"
BOT_TOKEN = "123456:AAF-sEcReT-bot-token-xyz"
SLACK_SECRET_PATH = "/services/T000/B000/sEcReTsLaCkPaTh"


def make_alert(
    agent: str = "coder", check: str = "agent-down", severity: str = "critical", **kw: Any
) -> Alert:
    kw.setdefault("summary", "fleet-coder.service is failed (exit-code 1)")
    kw.setdefault("fix", FIX)
    kw.setdefault("time", NOW)
    return Alert(agent=agent, check=check, severity=severity, **kw)  # type: ignore[arg-type]


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client() as c:
        yield c


class Sleeps(list[float]):
    """Records backoff sleeps instead of sleeping, so retry tests take milliseconds."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def hook(name: str = "hook", env: str = "HOOK_URL") -> dict[str, Any]:
    return {"type": "webhook", "name": name, "url_env": env, "timeout": 2}


def run(
    current: list[Alert], rx: Receiver, state: Path, now: float, sleeps: Sleeps | None = None, **kw: Any
) -> DispatchReport:
    kw.setdefault("channels", [hook()])
    kw.setdefault("secrets", {"HOOK_URL": rx.url + "/hook"})
    return process(current, state_dir=state, now=now, sleep=sleeps if sleeps is not None else Sleeps(), **kw)


# --- the message --------------------------------------------------------------------------------


def test_text_names_agent_check_severity_what_and_fix() -> None:
    text = make_alert().text()
    assert text.splitlines()[0] == "CRITICAL agent-down on coder"
    assert "Seen: fleet-coder.service is failed (exit-code 1)" in text
    assert f"Run: {FIX}" in text
    assert "2024-05-01 12:00:00 UTC" in text
    resolved = make_alert().resolved(NOW + 60).text()
    assert resolved.startswith("RESOLVED agent-down on coder (was critical)")
    assert "Run:" not in resolved


def test_text_cut_keeps_the_fix_and_marks_the_cut() -> None:
    text = make_alert(summary="x" * 10_000).text(500)
    assert len(text) <= 500
    assert TRUNCATION_MARKER in text
    assert f"Run: {FIX}" in text


def test_fleet_wide_alert_reads_as_fleet() -> None:
    alert = make_alert(agent="", check="watchdog-stale", severity="warning")
    assert alert.key == "watchdog-stale:"
    assert alert.title() == "WARNING watchdog-stale on fleet"


# --- each channel's payload as received -----------------------------------------------------------


def test_slack_payload(rx: Receiver, client: httpx.Client) -> None:
    cfg = {"type": "slack", "name": "ops", "url_env": "SLACK_WEBHOOK_URL"}
    alert = make_alert(summary="exit <1> & core dumped")
    slack.send(alert, cfg, {"SLACK_WEBHOOK_URL": rx.url + SLACK_SECRET_PATH}, client)
    (req,) = rx.requests
    assert (req.method, req.path) == ("POST", SLACK_SECRET_PATH)
    assert req.header("content-type") == "application/json"
    body = req.json()
    assert body["text"].startswith("CRITICAL agent-down on coder")
    assert "exit &lt;1&gt; &amp; core dumped" in body["text"]  # Slack's control characters escaped
    assert FIX in body["text"]
    (block,) = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    assert block["text"]["text"] == body["text"]


def test_slack_section_stays_within_3000_even_when_escaping_grows_it(
    rx: Receiver, client: httpx.Client
) -> None:
    cfg = {"type": "slack", "name": "ops", "url_env": "U"}
    slack.send(make_alert(summary="<&>" * 2000), cfg, {"U": rx.url + "/s"}, client)
    text = rx.requests[0].json()["blocks"][0]["text"]["text"]
    assert len(text) <= slack.SECTION_LIMIT
    assert FIX in text


def test_discord_payload_capped_at_2000(rx: Receiver, client: httpx.Client) -> None:
    cfg = {"type": "discord", "name": "dc", "url_env": "DISCORD_WEBHOOK_URL"}
    alert = make_alert(summary="@everyone " + "y" * 5000)
    discord.send(alert, cfg, {"DISCORD_WEBHOOK_URL": rx.url + "/api/webhooks/1/tok"}, client)
    (req,) = rx.requests
    assert req.path == "/api/webhooks/1/tok"
    body = req.json()
    assert len(body["content"]) <= 2000
    assert TRUNCATION_MARKER in body["content"] and FIX in body["content"]
    assert body["allowed_mentions"] == {"parse": []}


def test_ntfy_payload(rx: Receiver, client: httpx.Client) -> None:
    cfg = {
        "type": "ntfy",
        "name": "phone",
        "server": rx.url,
        "topic": "fleet-alerts",
        "token_env": "NTFY_TOKEN",
    }
    ntfy.send(make_alert(), cfg, {"NTFY_TOKEN": "tk_abc123"}, client)
    ntfy.send(make_alert().resolved(NOW + 60), cfg, {"NTFY_TOKEN": "tk_abc123"}, client)
    firing, resolved = rx.requests
    assert (firing.method, firing.path) == ("POST", "/fleet-alerts")
    assert firing.text() == make_alert().text()
    assert firing.header("title") == "CRITICAL agent-down on coder"
    assert firing.header("priority") == "5"
    assert firing.header("tags") == "rotating_light,fleetctl,agent-down"
    assert firing.header("authorization") == "Bearer tk_abc123"
    assert resolved.header("priority") == "2"
    assert (resolved.header("tags") or "").startswith("white_check_mark")


def test_ntfy_default_server_and_utf8_title(rx: Receiver, client: httpx.Client) -> None:
    assert ntfy.DEFAULT_SERVER == "https://ntfy.sh"
    cfg = {"type": "ntfy", "name": "phone", "server": rx.url + "/", "topic": "t"}
    ntfy.send(make_alert(agent="kódér"), cfg, {}, client)
    (req,) = rx.requests
    assert req.path == "/t" and req.header("authorization") is None
    assert str(make_header(decode_header(req.header("title") or ""))) == "CRITICAL agent-down on kódér"


def test_ntfy_body_capped_in_bytes(rx: Receiver, client: httpx.Client) -> None:
    cfg = {"type": "ntfy", "name": "phone", "server": rx.url, "topic": "t"}
    ntfy.send(make_alert(summary="é" * 5000), cfg, {}, client)
    body = rx.requests[0].body
    assert len(body) <= ntfy.BODY_LIMIT_BYTES
    assert FIX in body.decode()


def test_telegram_payload(rx: Receiver, client: httpx.Client) -> None:
    cfg = {
        "type": "telegram",
        "name": "tg",
        "token_env": "TELEGRAM_BOT_TOKEN",
        "chat_id": -100123,
        "base_url": rx.url,
    }
    telegram.send(make_alert(), cfg, {"TELEGRAM_BOT_TOKEN": BOT_TOKEN}, client)
    (req,) = rx.requests
    assert (req.method, req.path) == ("POST", f"/bot{BOT_TOKEN}/sendMessage")
    body = req.json()
    assert body["chat_id"] == -100123
    assert body["text"] == make_alert().text()


def test_telegram_ok_false_is_a_failure(rx: Receiver, client: httpx.Client) -> None:
    rx.respond(200, {"ok": False, "description": "Bad Request: chat not found"})
    cfg = {"type": "telegram", "name": "tg", "token_env": "T", "chat_id": 1, "base_url": rx.url}
    with pytest.raises(DeliveryError, match="chat not found") as e:
        telegram.send(make_alert(), cfg, {"T": BOT_TOKEN}, client)
    assert not e.value.retryable
    assert BOT_TOKEN not in str(e.value)


def test_webhook_payload(rx: Receiver, client: httpx.Client) -> None:
    cfg = {**hook(), "token_env": "HOOK_TOKEN"}
    webhook.send(make_alert(), cfg, {"HOOK_URL": rx.url + "/inbox", "HOOK_TOKEN": "s3cr3t"}, client)
    (req,) = rx.requests
    assert req.path == "/inbox"
    assert req.header("authorization") == "Bearer s3cr3t"
    assert (req.header("user-agent") or "").startswith("fleetctl/")
    body = req.json()
    assert body == {
        "version": 1,
        "source": "fleetctl",
        "key": "agent-down:coder",
        "agent": "coder",
        "check": "agent-down",
        "severity": "critical",
        "state": "firing",
        "summary": "fleet-coder.service is failed (exit-code 1)",
        "fix": FIX,
        "time": NOW,
        "time_iso": "2024-05-01T12:00:00Z",
        "since": None,
        "title": "CRITICAL agent-down on coder",
        "text": make_alert().text(),
    }


def test_every_channel_module_has_the_same_two_functions() -> None:
    for module in CHANNELS.values():
        assert callable(module.send) and callable(module.validate)


# --- failures -------------------------------------------------------------------------------------


def test_http_500_is_retryable_400_is_not(rx: Receiver, client: httpx.Client) -> None:
    secrets = {"HOOK_URL": rx.url + "/h"}
    rx.respond(503, "try later", times=1)
    with pytest.raises(DeliveryError, match="HTTP 503: try later") as e:
        webhook.send(make_alert(), hook(), secrets, client)
    assert e.value.retryable
    rx.respond(400, "invalid_payload", times=1)
    with pytest.raises(DeliveryError, match="HTTP 400") as e:
        webhook.send(make_alert(), hook(), secrets, client)
    assert not e.value.retryable


def test_timeout_is_a_delivery_error(rx: Receiver, client: httpx.Client) -> None:
    rx.respond(200, delay=1.0, times=1)
    with pytest.raises(DeliveryError, match="timed out after 0.2s") as e:
        webhook.send(make_alert(), {**hook(), "timeout": 0.2}, {"HOOK_URL": rx.url + "/h"}, client)
    assert e.value.retryable


def test_missing_secret_names_the_variable(client: httpx.Client) -> None:
    with pytest.raises(DeliveryError, match="SLACK_WEBHOOK_URL is not set") as e:
        slack.send(make_alert(), {"type": "slack", "name": "ops", "url_env": "SLACK_WEBHOOK_URL"}, {}, client)
    assert not e.value.retryable


# --- dispatch ---------------------------------------------------------------------------------------


def test_new_violation_fires_then_is_deduplicated_within_window_then_reminded(
    rx: Receiver, tmp_path: Path
) -> None:
    a = make_alert()
    first = run([a], rx, tmp_path, NOW)
    assert [d.key for d in first.sent] == ["agent-down:coder"] and first.ok
    second = run([make_alert(time=NOW + 600)], rx, tmp_path, NOW + 600)
    assert second.sent == [] and second.deduplicated == ["agent-down:coder"]
    assert len(rx.requests) == 1
    third = run([make_alert(time=NOW + 3600)], rx, tmp_path, NOW + 3600)
    assert [d.note for d in third.sent] == ["reminder"]
    reminder = rx.requests[1].json()
    assert reminder["since"] == NOW and "Open since: 2024-05-01 12:00:00 UTC (reminder)" in reminder["text"]
    # The window restarts from the reminder.
    assert run([make_alert()], rx, tmp_path, NOW + 3700).deduplicated == ["agent-down:coder"]


def test_raised_severity_is_sent_at_once(rx: Receiver, tmp_path: Path) -> None:
    run([make_alert(severity="warning")], rx, tmp_path, NOW)
    report = run([make_alert(severity="critical")], rx, tmp_path, NOW + 60)
    assert [d.note for d in report.sent] == ["severity raised"]
    assert rx.requests[-1].json()["severity"] == "critical"


def test_cleared_violation_sends_resolved_once_and_is_forgotten(rx: Receiver, tmp_path: Path) -> None:
    run([make_alert(), make_alert(agent="writer")], rx, tmp_path, NOW)
    report = run([make_alert(agent="writer")], rx, tmp_path, NOW + 300)
    assert report.resolved == ["agent-down:coder"]
    assert [(d.key, d.state) for d in report.sent] == [("agent-down:coder", "resolved")]
    body = rx.requests[-1].json()
    assert body["state"] == "resolved" and body["text"].startswith("RESOLVED agent-down on coder")
    again = run([make_alert(agent="writer")], rx, tmp_path, NOW + 600)
    assert again.sent == [] and again.resolved == []
    assert set(AlertState.load(tmp_path).open) == {"agent-down:writer"}


def test_receiver_down_keeps_alert_in_outbox_and_delivers_next_run(rx: Receiver, tmp_path: Path) -> None:
    rx.stop()  # connection refused
    sleeps = Sleeps()
    down = run([make_alert()], rx, tmp_path, NOW, sleeps)
    assert down.sent == [] and not down.ok
    assert [d.key for d in down.failed] == ["agent-down:coder"]
    assert "ConnectError" in down.failed[0].note
    assert [(d.key, d.channel) for d in down.queued] == [("agent-down:coder", "hook")]
    assert sleeps == [0.5, 1.0]  # three tries with backoff
    (entry,) = AlertState.load(tmp_path).outbox
    assert entry.attempts == 1 and "ConnectError" in entry.last_error

    rx.start()  # back, same port
    up = run([make_alert()], rx, tmp_path, NOW + 300)
    assert [(d.key, d.note) for d in up.sent] == [("agent-down:coder", "from outbox")]
    assert up.deduplicated == ["agent-down:coder"]  # delivered once, not twice
    assert up.ok and AlertState.load(tmp_path).outbox == []
    assert len(rx.requests) == 1 and rx.requests[0].json()["state"] == "firing"


def test_outbox_keeps_order_firing_before_resolved(rx: Receiver, tmp_path: Path) -> None:
    rx.stop()
    run([make_alert()], rx, tmp_path, NOW)
    report = run([], rx, tmp_path, NOW + 300)
    assert [d.state for d in report.queued] == ["firing", "resolved"]
    rx.start()
    run([], rx, tmp_path, NOW + 600)
    assert [r.json()["state"] for r in rx.requests] == ["firing", "resolved"]


def test_retries_within_the_run(rx: Receiver, tmp_path: Path) -> None:
    rx.respond(500, "boom", times=2)
    sleeps = Sleeps()
    report = run([make_alert()], rx, tmp_path, NOW, sleeps)
    assert len(report.sent) == 1 and report.ok
    assert len(rx.requests) == 3 and sleeps == [0.5, 1.0]


def test_non_retryable_failure_is_not_hammered_but_kept(rx: Receiver, tmp_path: Path) -> None:
    rx.respond(404, "no_service", times=1)
    sleeps = Sleeps()
    report = run([make_alert()], rx, tmp_path, NOW, sleeps)
    assert len(rx.requests) == 1 and sleeps == []
    assert "HTTP 404: no_service" in report.failed[0].note
    assert len(report.queued) == 1


def test_a_down_channel_is_tried_once_per_run_and_others_still_get_alerts(
    rx: Receiver, tmp_path: Path
) -> None:
    with Receiver() as dead:
        dead.stop()
        channels = [hook("dead", "DEAD_URL"), hook("live", "HOOK_URL")]
        secrets = {"DEAD_URL": dead.url + "/x", "HOOK_URL": rx.url + "/hook"}
        sleeps = Sleeps()
        report = run(
            [make_alert(), make_alert(agent="writer")],
            rx,
            tmp_path,
            NOW,
            sleeps,
            channels=channels,
            secrets=secrets,
        )
    assert sleeps == [0.5, 1.0]  # one retry cycle for the dead channel, not one per alert
    assert sorted((d.key, d.channel) for d in report.sent) == [
        ("agent-down:coder", "live"),
        ("agent-down:writer", "live"),
    ]
    assert [d.channel for d in report.queued] == ["dead", "dead"]
    assert report.failed[1].note.startswith("not tried: failed earlier in this run")
    assert len(rx.requests) == 2


def test_outbox_cap_drops_oldest_and_reports_it(rx: Receiver, tmp_path: Path) -> None:
    rx.stop()
    alerts = [make_alert(agent=f"a{i}") for i in range(3)]
    report = run(alerts, rx, tmp_path, NOW, outbox_limit=2)
    assert [d.key for d in report.dropped] == ["agent-down:a0"]
    assert "outbox full (limit 2)" in report.dropped[0].note
    assert any(line.startswith("DROPPED: agent-down:a0") for line in report.lines())
    assert [e.alert.key for e in AlertState.load(tmp_path).outbox] == ["agent-down:a1", "agent-down:a2"]


def test_outbox_entry_for_a_removed_channel_is_dropped_and_reported(rx: Receiver, tmp_path: Path) -> None:
    rx.stop()
    run([make_alert()], rx, tmp_path, NOW)
    rx.start()
    report = run([make_alert()], rx, tmp_path, NOW + 60, channels=[hook("other")])
    assert [(d.channel, d.note) for d in report.dropped] == [
        ("hook", "channel 'hook' is no longer configured")
    ]


def test_send_now_goes_through_retries_and_outbox(rx: Receiver, tmp_path: Path) -> None:
    rx.stop()
    escalation = make_alert(
        check="restart-loop", summary="restarted 5 times in 10 minutes", fix="fleetctl logs coder"
    )
    sleeps = Sleeps()
    report = send_now(escalation, [hook()], {"HOOK_URL": rx.url + "/hook"}, tmp_path, NOW, sleep=sleeps)
    assert sleeps == [0.5, 1.0] and [d.key for d in report.queued] == ["restart-loop:coder"]
    assert AlertState.load(tmp_path).open == {}  # one-offs are not tracked as open violations
    rx.start()
    later = run([], rx, tmp_path, NOW + 300)
    assert [d.note for d in later.sent] == ["from outbox"]
    assert rx.requests[0].json()["check"] == "restart-loop"


def test_unreadable_state_is_set_aside_and_alerting_goes_on(rx: Receiver, tmp_path: Path) -> None:
    (tmp_path / "alerts.json").write_text("{not json")
    report = run([make_alert()], rx, tmp_path, NOW)
    assert len(report.sent) == 1
    assert report.problems and "started afresh" in report.problems[0]
    assert list(tmp_path.glob("alerts.json.corrupt-*"))


def test_state_file_is_private_and_versioned(rx: Receiver, tmp_path: Path) -> None:
    run([make_alert()], rx, tmp_path, NOW)
    path = tmp_path / "alerts.json"
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert json.loads(path.read_text())["version"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_invalid_channels_refuse_to_dispatch(rx: Receiver, tmp_path: Path) -> None:
    from fleetctl.common.errors import FleetError

    with pytest.raises(FleetError, match=r"alerts.channels\[0\]: url: secrets never go in fleet.toml"):
        run(
            [make_alert()], rx, tmp_path, NOW, channels=[{"type": "slack", "name": "x", "url": "https://h/s"}]
        )


# --- secrets never leak -----------------------------------------------------------------------------


def test_tokens_never_appear_in_logs_report_or_state(
    rx: Receiver, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # as `fleetctl --debug` would: httpx logs every URL at INFO
    channels = [
        {
            "type": "telegram",
            "name": "tg",
            "token_env": "TELEGRAM_BOT_TOKEN",
            "chat_id": 1,
            "base_url": rx.url,
        },
        {"type": "slack", "name": "ops", "url_env": "SLACK_WEBHOOK_URL"},
        {"type": "ntfy", "name": "phone", "server": rx.url, "topic": "t", "token_env": "NTFY_TOKEN"},
    ]
    secrets = {
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "SLACK_WEBHOOK_URL": rx.url + SLACK_SECRET_PATH,
        "NTFY_TOKEN": "tk_sEcReTnTfYtOkEn",
    }
    rx.respond(500, "internal error", times=3 * 3)  # every try of every channel fails
    failed = run([make_alert()], rx, tmp_path, NOW, channels=channels, secrets=secrets)
    ok = run([make_alert()], rx, tmp_path, NOW + 60, channels=channels, secrets=secrets)  # outbox delivers
    rx.stop()
    down = run([], rx, tmp_path, NOW + 120, channels=channels, secrets=secrets)  # connection refused
    assert len(failed.failed) == 3 and len(ok.sent) == 3 and len(down.queued) == 3
    assert any("HTTP Request: POST" in r.getMessage() for r in caplog.records)  # httpx did log URLs

    everything = "\n".join(
        [caplog.text, (tmp_path / "alerts.json").read_text()]
        + [line for r in (failed, ok, down) for line in r.lines()]
        + [json.dumps(r.to_dict()) for r in (failed, ok, down)]
    )
    for secret in (BOT_TOKEN, "sEcReTsLaCkPaTh", "tk_sEcReTnTfYtOkEn"):
        assert secret not in everything


# --- validate ---------------------------------------------------------------------------------------


def test_validate_rejects_a_url_in_toml_and_says_use_url_env() -> None:
    secret_url = "https://hooks.slack.com/services/T0/B0/sEcReT"
    for module, kind in ((slack, "slack"), (discord, "discord"), (webhook, "webhook")):
        problems = module.validate({"type": kind, "name": "x", "url": secret_url})
        assert any(p.startswith("url: secrets never go in fleet.toml") and "url_env" in p for p in problems)
        assert any(p.startswith("url_env: required") for p in problems)
        assert not any(secret_url in p or "sEcReT" in p for p in problems)  # never echo the value


def test_validate_rejects_a_secret_in_an_env_key() -> None:
    problems = slack.validate(
        {"type": "slack", "name": "x", "url_env": "https://hooks.slack.com/services/T/B/S"}
    )
    assert problems == [
        "url_env: must be the name of an environment variable or secrets-file key (like ALERT_TOKEN), "
        "not the secret itself"
    ]


def test_validate_per_channel() -> None:
    assert slack.validate({"type": "slack", "name": "ops", "url_env": "SLACK_WEBHOOK_URL"}) == []
    assert (
        discord.validate({"type": "discord", "name": "d", "url_env": "DISCORD_WEBHOOK_URL", "timeout": 5})
        == []
    )
    assert ntfy.validate({"type": "ntfy", "name": "n", "topic": "fleet-alerts"}) == []
    assert (
        telegram.validate(
            {"type": "telegram", "name": "t", "token_env": "TELEGRAM_BOT_TOKEN", "chat_id": "@ops"}
        )
        == []
    )
    assert webhook.validate({"type": "webhook", "name": "w", "url_env": "U", "token_env": "T"}) == []

    tg = telegram.validate({"type": "telegram", "name": "t", "token": "123:abc", "base_url": "ftp://x"})
    assert "token: secrets never go in fleet.toml" in tg[0] and "token_env" in tg[0]
    assert "token_env: required (the name of the environment variable holding the secret)" in tg
    assert "chat_id: required" in tg
    assert "base_url: must be an http(s) URL" in tg
    assert any(
        "must not hold the bot token" in p
        for p in telegram.validate(
            {
                "type": "telegram",
                "name": "t",
                "token_env": "T",
                "chat_id": 1,
                "base_url": "https://x/bot123:abc",
            }
        )
    )

    n = ntfy.validate(
        {"type": "ntfy", "name": "n", "topic": "bad topic!", "server": "https://u:p@ntfy.example"}
    )
    assert "topic: must be 1-64 letters, digits, '-' or '_'" in n
    assert "server: must not hold credentials or a query; name secrets with token_env" in n

    odd = slack.validate({"type": "slack", "name": "", "url_env": "U", "colour": "red", "timeout": "5s"})
    assert "name: required (a non-empty string)" in odd
    assert any(p.startswith("colour: unknown key") for p in odd)
    assert "timeout: must be a positive number of seconds" in odd


def test_validate_channels_locates_problems_and_catches_duplicates() -> None:
    problems = validate_channels(
        [
            {"type": "slack", "name": "ops", "url_env": "A"},
            {"type": "slack", "name": "ops", "url_env": "B"},
            {"type": "pager", "name": "p"},
            {"type": "ntfy", "name": "n"},
        ]
    )
    assert problems == [
        "alerts.channels[1]: name: 'ops' is used by another channel",
        "alerts.channels[2]: type: must be one of slack, discord, ntfy, telegram, webhook",
        "alerts.channels[3]: topic: required",
    ]


def test_every_delivery_is_in_the_sent_log_newest_first(rx: Receiver, tmp_path: Path) -> None:
    from fleetctl.alerts.dispatch import SENT_LOG, read_sent

    first = make_alert()
    run([first], rx, tmp_path, NOW)
    rx.respond(503, times=10)
    other = make_alert(agent="qa")
    run([first, other], rx, tmp_path, NOW + 60)  # qa's alert fails: queued, not in the log
    rx.respond(200)
    run([first, other], rx, tmp_path, NOW + 120)  # delivered from the outbox
    got = read_sent(tmp_path)
    assert [(d["agent"], d["channel"], d["note"]) for d in got] == [
        ("qa", "hook", "from outbox"),
        ("coder", "hook", ""),
    ]
    assert got[1]["check"] == "agent-down" and got[1]["state"] == "firing"
    assert stat.S_IMODE((tmp_path / SENT_LOG).stat().st_mode) == 0o600
