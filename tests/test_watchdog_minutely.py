"""Cron runs the watchdog every minute: over a healthy fleet a run prints nothing (--quiet) and
writes nothing but its heartbeat; a failure gets the full pass through the chain fleet.toml
declares, in its order."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import Fleetctl
from fake_llm import FakeLLM, Reply
from test_watchdog_support import WatchdogFleet


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


def snapshot(d: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(d)): (p.stat().st_mtime_ns, p.read_bytes()) for p in d.rglob("*") if p.is_file()
    }


def test_a_healthy_pass_writes_only_the_heartbeat_and_prints_nothing(wfleet: WatchdogFleet) -> None:
    for name in ("calm-a", "calm-b", "calm-c"):
        wfleet.agent(name)
    wfleet.install()
    wfleet.watchdog()  # the first look records systemd's restart counters: state is written once
    before = snapshot(wfleet.state_dir)

    proc = wfleet.cli("watchdog", "--quiet", "--profiles", str(wfleet.dir))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc
    after = snapshot(wfleet.state_dir)
    changed = sorted(k for k in after if before.get(k) != after[k])
    # The flock file carries the holder's pid (for "already running" messages): not state.
    assert changed == ["watchdog.heartbeat.json", "watchdog.lock"], changed
    assert set(after) == set(before)


def test_the_declared_chain_is_asked_in_order(wfleet: WatchdogFleet) -> None:
    with FakeLLM() as llm:
        wfleet.agent("chained", policy="no", max_per_hour=10)
        (wfleet.dir / "fleet.toml").write_text(
            "[[watchdog.providers]]\n"
            f'type = "openai"\nname = "ollama"\nbase_url = "{llm.url}/v1"\nmodel = "qwen2.5:3b"\n'
            "[[watchdog.providers]]\n"
            'type = "anthropic"\n'
            "[[watchdog.providers]]\n"
            'type = "groq"\n'
        )
        wfleet.install()
        wfleet.signal("chained", signal.SIGKILL)
        wfleet.wait_state("chained", "failed")
        llm.script("openai", Reply.garbage())
        llm.script("anthropic", Reply.diagnosis("restart", "killed; start it again"))
        proc = wfleet.watchdog(env=llm.env())
        (rec,) = wfleet.incidents("chained")
        attempts = [(a["provider"], a["outcome"]) for a in rec["attempts"]]
        assert attempts == [("ollama", "discarded"), ("anthropic", "ok")], rec
        assert (rec["provider"], rec["fallback"], rec["action"], rec["verification"]) == (
            "anthropic",
            True,
            "restart",
            "healthy",
        )
        assert llm.requests_for("groq") == []
        assert "chained" in proc.stdout and wfleet.healthy("chained")
