"""End to end against the real user manager: another agent's secret, printed in the encodings
programs use, goes through a real watchdog pass and a real oversight pass (a model that echoes
it, a user check that prints it) and is found in no file written, no alert received, no inbox
message, no request to the LLM and no line of output; every file that can hold log text is
0600 in a 0700 directory. And a drip-feeding LLM cannot hold a watchdog run past its budget."""

from __future__ import annotations

import base64
import json
import signal
import stat
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Fleetctl
from fake_llm import FakeLLM, Reply
from http_receiver import Receiver
from test_secrets import leaked
from test_watchdog_support import WatchdogFleet

from fleetctl.healing.evidence import DIAGNOSIS_BUDGET

OTHER = "other-agent-key-6f1d0c9a7e"  # agent "other"'s secret; must never show anywhere
OWN = "victim-own-key-2b8e4d"


def printed(secret: str) -> list[str]:
    """How a program prints a credential it holds: plain, URL, base64 inside a Basic header, hex,
    JSON-escaped, and cut across two lines by a hard wrap."""
    basic = base64.b64encode(f"user:{secret}".encode()).decode()
    return [
        f"calling upstream with {secret}",
        f"GET /v1/x?k={urllib.parse.quote(secret, safe='')}&z=1",
        f"header: Basic {basic}",
        f"dump {secret.encode().hex().upper()}",
        f"payload {json.dumps({'k': secret})}",
        f"wrapped {secret[:9]}",
        f"{secret[9:]} (continued)",
    ]


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def everything_written(state_dir: Path) -> dict[str, str]:
    """Every file fleetctl wrote, except the config store's copies of the agent's own config
    files: those are the agent's bytes, kept verbatim (0600) so a rollback restores them exactly."""
    return {
        str(p.relative_to(state_dir)): p.read_text(errors="replace")
        for p in state_dir.rglob("*")
        if p.is_file() and not p.name.endswith(".lock") and "/files/" not in str(p.relative_to(state_dir))
    }


def test_another_agents_secret_leaves_and_stays_nowhere(
    wfleet: WatchdogFleet, llm: FakeLLM, fleetctl: Fleetctl
) -> None:
    wfleet.agent("other", secrets=f"OTHER_KEY={OTHER}\n")
    wfleet.agent("coord", secrets="COORD_X=coordinator-only-9911\n")
    wfleet.agent("victim", policy="no", secrets=f"OWN_KEY={OWN}\n", config={"log_lines": printed(OTHER)})
    coord = wfleet.dir / "coord.toml"
    coord.write_text(coord.read_text().replace("[health]", 'role = "coordinator"\n[health]', 1))
    coord.write_text(coord.read_text() + '\n[oversight]\ninbox_path = "/inbox"\n')
    check = ["/bin/sh", "-c", 'printf "%s\\n" "$1" >&2; exit 1', "sh", printed(OTHER)[2] + " " + OWN]
    victim = wfleet.dir / "victim.toml"
    victim.write_text(
        victim.read_text() + f'\n[[oversight.checks]]\nname = "leaky"\ncommand = {json.dumps(check)}\n'
    )
    wfleet.webhook()
    wfleet.install()

    wfleet.signal("victim", signal.SIGKILL)
    wfleet.wait_state("victim", "failed")
    # The model echoes the secret back, base64-encoded: the cause goes to the alert and records.
    echo = base64.b64encode(OTHER.encode()).decode()
    llm.script("groq", Reply.diagnosis("escalate", f"upstream rejected key {echo}"))
    with Receiver() as rx:
        env = {**llm.env(), "WD_TEST_WEBHOOK": rx.url + "/hook"}
        wd = wfleet.watchdog(codes=(0, 1, 2), env=env)
        (rec,) = wfleet.incidents("victim")
        assert rec["action"] == "escalate" and "upstream rejected key [REDACTED]" in rec["diagnosis"]["cause"]
        assert any("calling upstream with [REDACTED]" in line for line in rec["log_excerpt"])
        ov = wfleet.cli("oversee", "--profiles", str(wfleet.dir), env=env)
        assert "user-check:leaky" in ov.stdout, ov
        received = [r.text() for r in rx.requests]
    inbox = fleetctl.manager.home / "agents" / "coord" / "workspace" / "inbox.jsonl"

    assert len(received) >= 2  # the watchdog's escalation and the oversight alert(s)
    assert any("user-check:leaky" in r for r in received) and any("watchdog" in r for r in received)
    prompt = llm.requests_for("groq")[0].text
    assert "calling upstream with [REDACTED]" in prompt  # the line went, the secret did not
    outputs = {
        "LLM traffic": llm.all_traffic(),
        "watchdog output (cron.log)": wd.stdout + wd.stderr,
        "oversee output (cron.log)": ov.stdout + ov.stderr,
        **{f"alert {i}": text for i, text in enumerate(received)},
        **everything_written(wfleet.state_dir),
    }
    outputs["coordinator inbox"] = inbox.read_text()
    assert "user-check:leaky" in outputs["coordinator inbox"]
    for name in ("incidents.jsonl", "bulletin.md", "alerts.json", "oversight.json"):
        assert name in outputs, sorted(outputs)
    for where, text in outputs.items():
        for secret in (OTHER, OWN):
            assert not leaked(secret, text), (where, secret, text[:2000])

    # Modes: everything fleetctl keeps that can hold log text is private.
    state = wfleet.state_dir
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    # The one exception: the Prometheus textfile (names and numbers, no log text) stays 0644 for a
    # node_exporter running as another user (`oversee --metrics-output` points it elsewhere).
    loose = [
        f"{p.relative_to(state)} {oct(stat.S_IMODE(p.stat().st_mode))}"
        for p in state.rglob("*")
        if (p.is_file() and p.suffix != ".prom" and stat.S_IMODE(p.stat().st_mode) & 0o077)
        or (p.is_dir() and p.name != "metrics" and stat.S_IMODE(p.stat().st_mode) & 0o077)
    ]
    assert loose == []
    assert (
        "[REDACTED]" not in outputs["metrics/fleetctl.prom"] and OTHER not in outputs["metrics/fleetctl.prom"]
    )


def test_a_drip_feeding_llm_cannot_hold_the_watchdog_past_its_budget(
    wfleet: WatchdogFleet, llm: FakeLLM
) -> None:
    wfleet.agent("slowllm", policy="no", delay=0.5)
    wfleet.install()
    wfleet.signal("slowllm", signal.SIGKILL)
    wfleet.wait_state("slowllm", "failed")
    # Headers at once, then a byte every 2 s: no read ever times out. Per-request timeout 20 s,
    # so the first provider alone would take most of the budget and the second the rest.
    llm.script("groq", Reply.drip_feed(every=2))
    llm.script("anthropic", Reply.drip_feed(every=2))
    started = time.monotonic()
    wfleet.watchdog(env={**llm.env(), "FLEETCTL_LLM_TIMEOUT": "20"})
    took = time.monotonic() - started
    (rec,) = wfleet.incidents("slowllm")
    assert [(a["provider"], a["outcome"]) for a in rec["attempts"]][:2] == [
        ("groq", "timeout"),
        ("anthropic", "timeout"),
    ], rec["attempts"]
    assert rec["provider"] == "rules" and rec["action"] == "restart"
    # The chain took its whole budget (both providers were cut at their deadline) and not more.
    assert DIAGNOSIS_BUDGET - 1 < rec["diagnosis_s"] < DIAGNOSIS_BUDGET + 1, rec
    # The run: the budget, plus loading the SDKs (local work, not counted in the budget, see
    # docs/security.md; seconds on a busy host), plus what a run does besides diagnosing (start,
    # confirm, restart, verify, exit). The dripping servers hold nothing past the budget.
    assert took < DIAGNOSIS_BUDGET + rec["sdk_load_s"] + 25, (took, rec)
