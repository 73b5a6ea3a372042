"""Verdicts in the real test manager: causes a restart cannot fix escalate on first sight with
a fix; a cause back soon after its remedy verified escalates instead of looping; the model sees
the rules' verdict and the agent's history, and the record says when it disagreed."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Fleetctl
from fake_llm import FakeLLM, Reply
from test_watchdog_support import WatchdogFleet


@pytest.fixture
def wfleet(fleetctl: Fleetctl, tmp_path: Path) -> WatchdogFleet:
    return WatchdogFleet(fleetctl, tmp_path)


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def crash(wfleet: WatchdogFleet, agent: str) -> None:
    wfleet.wait_backoff(agent)
    wfleet.signal(agent, signal.SIGKILL)
    wfleet.wait_state(agent, "failed")


def test_disk_full_escalates_on_first_sight_with_a_fix_even_if_the_model_says_restart(
    wfleet: WatchdogFleet, llm: FakeLLM
) -> None:
    wfleet.agent("full", policy="no", config={"log_lines": ["Error: ENOSPC: no space left on device, write"]})
    wfleet.install()
    crash(wfleet, "full")
    before = wfleet.unit("full").invocation_id
    llm.script("groq", Reply.diagnosis("restart", "looks transient"))

    proc = wfleet.watchdog(codes=(2,), env=llm.env(anthropic_key=None))
    (rec,) = wfleet.incidents("full")
    assert (rec["rules"], rec["action"], rec["escalated"]) == ("disk-full", "escalate", True), rec
    assert "fix: free space" in rec["detail"] and "fleetctl ack full" in rec["detail"]
    assert rec["disagreement"] == {"provider": "groq", "model": "restart", "rules": "escalate"}
    assert wfleet.state("full")["held"] and "ESCALATED full" in proc.stdout
    assert wfleet.unit("full").invocation_id == before  # not restarted into a full disk
    user = llm.requests_for("groq")[0].json()["messages"][1]["content"]
    assert "Built-in rules concluded: escalate (rule disk-full)" in user


def test_a_cause_back_after_its_remedy_escalates_instead_of_looping(
    wfleet: WatchdogFleet, llm: FakeLLM
) -> None:
    wfleet.agent("flaky", policy="no", max_per_hour=10, config={"log_lines": ["Error: read ECONNRESET"]})
    wfleet.install()
    env = llm.env(anthropic_key=None)

    crash(wfleet, "flaky")
    llm.script("groq", Reply.diagnosis("restart", "connection reset; reconnect"))
    wfleet.watchdog(env=env)
    (first,) = wfleet.incidents("flaky")
    assert (first["rules"], first["action"], first["verification"]) == ("network", "restart", "healthy")
    assert first["disagreement"] is None
    assert wfleet.state("flaky")["remedied_rule"] == "network"

    crash(wfleet, "flaky")
    llm.script("groq", Reply.diagnosis("restart", "connection reset; reconnect"))
    wfleet.watchdog(codes=(2,), env=env)
    second: dict[str, Any] = wfleet.incidents("flaky")[-1]
    assert (second["action"], second["escalated"]) == ("escalate", True), second
    assert "network is back 0 min after its remedy verified" in second["detail"]
    assert wfleet.state("flaky")["held"] and wfleet.unit("flaky").active_state == "failed"
    # The model was shown the first incident, so it could have said so itself.
    user = llm.requests_for("groq")[1].json()["messages"][1]["content"]
    history = user.split("BEGIN HISTORY", 1)[1].split("END HISTORY", 1)[0]
    assert "diagnosis restart (rule network, by groq) -> restart -> healthy" in history, user
