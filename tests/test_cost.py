"""What each agent costs: usage reports, counters over restarts, budgets, spend rate, stop-and-hold."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import Fleetctl, wait_for
from http_receiver import Receiver, Response
from hypothesis import given, settings
from hypothesis import strategies as st
from test_demo_agent import DemoAgent
from usermanager import free_port

from fleetctl.cost import budget, report
from fleetctl.cost.check import cost_checks
from fleetctl.cost.report import Series
from fleetctl.cost.store import AgentCost, CostStore, local_midnight
from fleetctl.cost.summary import cost_report, table
from fleetctl.fleet.profiles import load_fleet


def _line(name: str, model: str, provider: str, value: float, channel: str = "slack", kind: str = "") -> str:
    labels = f'agent="main",channel="{channel}",model="{model}",provider="{provider}"'
    labels += f',token_type="{kind}"' if kind else ""
    return f"{name}{{{labels}}} {value}"


TOK, USD = "openclaw_model_tokens_total", "openclaw_model_cost_usd_total"
OPENCLAW_TEXT = "\n".join(
    [
        f"# HELP {TOK} Tokens.",
        f"# TYPE {TOK} counter",
        _line(TOK, "claude-sonnet-4-5", "anthropic", 1000, kind="input"),
        _line(TOK, "claude-sonnet-4-5", "anthropic", 500, channel="cli", kind="input"),
        _line(TOK, "claude-sonnet-4-5", "anthropic", 200, kind="output"),
        _line(TOK, "gpt-5-mini", "openai", 7, kind="cache_read"),
        f"# HELP {USD} Cost.",
        f"# TYPE {USD} counter",
        _line(USD, "claude-sonnet-4-5", "anthropic", 0.25),
        _line(USD, "claude-sonnet-4-5", "anthropic", 0.05, channel="cli"),
        _line(USD, "gpt-5-mini", "openai", 0.001),
        "# HELP openclaw_gateway_up Something else entirely.",
        "# TYPE openclaw_gateway_up gauge",
        "openclaw_gateway_up 1",
        "",
    ]
)


def test_openclaw_metrics_sum_over_agent_and_channel() -> None:
    got = report.parse_prometheus(OPENCLAW_TEXT)
    assert got == {
        Series("anthropic", "claude-sonnet-4-5", "tokens:input"): 1500.0,
        Series("anthropic", "claude-sonnet-4-5", "tokens:output"): 200.0,
        Series("openai", "gpt-5-mini", "tokens:cache_read"): 7.0,
        Series("anthropic", "claude-sonnet-4-5", "usd"): pytest.approx(0.30),
        Series("openai", "gpt-5-mini", "usd"): 0.001,
    }


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"models": {}},
        {"models": [{"provider": "x"}]},
        {"models": [{"model": "m", "tokens": {"input": -1}}]},
        {"models": [{"model": "m", "cost_usd": "1"}]},
        {"models": [{"model": "m", "tokens": {"input": True}}]},
    ],
)
def test_a_wrong_json_shape_is_an_error_not_zero(doc: Any) -> None:
    with pytest.raises(ValueError):
        report.parse_json(doc)


# A counter's life: each step adds work, or restarts the agent (which then starts again from 0
# and does some work). Only restarts that leave the counter lower are detectable, as with
# Prometheus' increase(); the generator keeps to those.
steps = st.lists(
    st.tuples(st.booleans(), st.floats(min_value=0, max_value=1e6, allow_nan=False)), max_size=30
)


@settings(max_examples=200, deadline=None)
@given(first=st.floats(min_value=0, max_value=1e6), steps=steps)
def test_increase_survives_restarts(first: float, steps: list[tuple[bool, float]]) -> None:
    a = AgentCost()
    s = Series("p", "m", "usd")
    now = 1_800_000_000.0
    a.observe({s: first}, now)  # the first look adds nothing: fleetctl cannot know when it happened
    value, true_total = first, 0.0
    for restart, work in steps:
        if restart and work < value:
            value = work
        else:
            value += work
        true_total += work
        now += 300
        a.observe({s: value}, now)
    assert a.usd(0) == pytest.approx(true_total, rel=1e-9, abs=1e-6)


def test_series_that_vanish_and_return_start_from_zero() -> None:
    a = AgentCost()
    x, y = Series("p", "x", "usd"), Series("p", "y", "usd")
    a.observe({x: 5.0}, 1000.0)
    a.observe({x: 6.0, y: 2.0}, 1300.0)  # y is new since the last look: all of it is new
    a.observe({y: 1.0}, 1600.0)  # restart: x not used yet, y reset
    a.observe({x: 0.5, y: 1.5}, 1900.0)
    assert a.usd(0) == pytest.approx(1.0 + 2.0 + 1.0 + 0.5 + 0.5)


def write_profiles(root: Path, agents: dict[str, str], fleet_extra: str = "") -> Path:
    d = root / "profiles"
    d.mkdir(exist_ok=True)
    (d / "fleet.toml").write_text(
        '[defaults]\ncommand = ["{python}", "-m", "fleetctl.demo_agent"]\n' + fleet_extra
    )
    for name, body in agents.items():
        (d / f"{name}.toml").write_text(body)
    return d


@pytest.fixture
def state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return tmp_path / "home" / ".local/state/fleetctl"


def test_openclaw_counters_grow_reset_on_restart_and_need_the_token(tmp_path: Path, state_home: Path) -> None:
    """A real agent process serving OpenClaw's metric names, behind a bearer token."""
    agent = DemoAgent(tmp_path / "gw", env={"DEMO_METRICS_TOKEN": "tok-123456789"}).start().wait_ready()
    secrets = tmp_path / "gw.env"
    secrets.write_text("GATEWAY_TOKEN=tok-123456789\n")
    secrets.chmod(0o600)
    profiles = write_profiles(
        tmp_path,
        {
            "gw": f'port = {agent.port}\nsecrets_file = "{secrets}"\n'
            '[cost]\npath = "/api/diagnostics/prometheus"\ntoken_env = "GATEWAY_TOKEN"\n',
            "quiet": f"port = {free_port()}\n",
        },
    )
    fleet = load_fleet(profiles)
    try:
        assert agent.get("/api/diagnostics/prometheus").status_code == 401  # the token is needed
        now = time.time()
        agent.post(
            "/simulate/spend?provider=anthropic&model=claude-sonnet-4-5&input=1000&output=100&usd=0.50"
        )
        found, _ = cost_checks(fleet, {"gw"}, now)
        assert found.errors == [] and found.violations == []
        # Two models now, and more of the first.
        agent.post("/simulate/spend?provider=anthropic&model=claude-sonnet-4-5&input=500&usd=0.25")
        agent.post("/simulate/spend?provider=openai&model=gpt-5-mini&input=10&output=5&usd=0.01")
        cost_checks(fleet, {"gw"}, now + 300)
        # The gateway restarts: its counters start again from zero.
        agent.kill()
        agent.start(port=agent.port).wait_ready()
        agent.post("/simulate/spend?provider=anthropic&model=claude-sonnet-4-5&input=100&usd=0.10")
        cost_checks(fleet, {"gw"}, now + 600)
        r = cost_report(fleet, now - 3600, now + 3600)
        by_model = {(m.provider, m.model): m for m in r.rows}
        sonnet, mini = by_model["anthropic", "claude-sonnet-4-5"], by_model["openai", "gpt-5-mini"]
        assert sonnet.usd == pytest.approx(0.25 + 0.10) and sonnet.tokens == {"input": 600.0}
        assert mini.usd == pytest.approx(0.01) and mini.tokens == {"input": 10.0, "output": 5.0}
        assert r.silent == ["quiet"]
        text = "\n".join(table(r, "24h"))
        assert "not reporting (no [cost] path in their profile): quiet" in text
        doc = r.to_dict()
        assert doc["total"]["usd"] == pytest.approx(0.36) and doc["not_reporting"] == ["quiet"]
        assert (state_home / "cost.json").stat().st_mode & 0o777 == 0o600
    finally:
        agent.kill()


def test_the_json_shape_and_a_failing_endpoint(tmp_path: Path, state_home: Path) -> None:
    body = {
        "models": [{"provider": "groq", "model": "llama-3.3-70b", "tokens": {"input": 10}, "cost_usd": 0.2}]
    }
    with Receiver(default=Response(body=json.dumps(body).encode())) as rx:
        profiles = write_profiles(
            tmp_path, {"a": f'port = {rx.port}\n[cost]\npath = "/cost"\nformat = "json"\n'}
        )
        fleet = load_fleet(profiles)
        now = time.time()
        cost_checks(fleet, {"a"}, now)
        body["models"][0].update(tokens={"input": 30}, cost_usd=0.5)  # type: ignore[index]
        rx.respond(200, body=json.dumps(body).encode())
        cost_checks(fleet, {"a"}, now + 60)
        assert [r.path for r in rx.requests] == ["/cost", "/cost"]
        (row,) = cost_report(fleet, now - 60, now + 60).rows
        assert (row.usd, row.tokens) == (pytest.approx(0.3), {"input": 20.0})
        rx.respond(500)
        found, _ = cost_checks(fleet, {"a"}, now + 120)
        assert {e.check for e in found.errors} == {"budget", "budget-exceeded", "spend-rate"}
        assert "HTTP 500" in found.errors[0].message
        # A stopped agent is not asked: its spend is unknown, not zero.
        found, _ = cost_checks(fleet, set(), now + 180)
        assert found.errors == [] and {e.agent for e in found.unknown} == {"a"}


def _store_with(agent: str, hourly: list[float], now: float) -> CostStore:
    """`hourly[i]` USD spent i+1 hours before now."""
    a = AgentCost(first_time=now - len(hourly) * 3600 - 60, last_time=now - 300)
    s = Series("p", "m", "usd").key
    for i, usd in enumerate(hourly):
        a.hours[int((now - (i + 1) * 3600) // 3600)] = {s: usd}
    return CostStore({agent: a})


def test_budget_warns_at_80_and_goes_critical_at_100_then_clears_next_day(tmp_path: Path) -> None:
    profiles = write_profiles(
        tmp_path,
        {"a": "port = 48001\n[budget]\nusd_per_day = 10\n", "b": "port = 48002\n"},
        fleet_extra="[budget]\nusd_per_day = 12\n",
    )
    fleet = load_fleet(profiles)
    now = local_midnight(time.time()) + 12 * 3600
    s = Series("p", "m", "usd").key
    st_ = CostStore(
        {
            "a": AgentCost(hours={int(now // 3600): {s: 8.5}}),
            "b": AgentCost(hours={int(now // 3600): {s: 1.0}}),
        }
    )
    got = {v.key: v for v in budget.budget_checks(fleet, st_, now)}
    assert set(got) == {"budget:a"} and got["budget:a"].severity == "warning"
    assert "spent $8.50 of its $10.00 daily budget today (85%)" in got["budget:a"].summary
    st_.agents["a"].hours[int(now // 3600)][s] = 11.0
    got = {v.key: v for v in budget.budget_checks(fleet, st_, now)}
    assert set(got) == {"budget-exceeded:a", "budget-exceeded:"}  # the fleet's $12 is gone too
    assert got["budget-exceeded:a"].severity == "critical"
    assert budget.budget_checks(fleet, st_, now + 24 * 3600) == []  # a new day


def test_spend_rate_against_the_agents_own_baseline(tmp_path: Path) -> None:
    fleet = load_fleet(write_profiles(tmp_path, {"a": 'port = 48001\n[cost]\npath = "/m"\n'}))
    p = fleet.get("a")
    now = time.time()
    calm = _store_with("a", [0.05] * 24, now)
    calm.agents["a"].rate_usd_per_hour = 0.06
    assert budget.spend_rate(p, calm, now) is None
    calm.agents["a"].rate_usd_per_hour = 2.0  # a retry loop: 40x
    v = budget.spend_rate(p, calm, now)
    assert v is not None and v.check == "spend-rate" and "40x its 24-hour average" in v.summary
    young = _store_with("a", [0.05] * 2, now)  # two hours of history: not enough for a baseline
    young.agents["a"].rate_usd_per_hour = 2.0
    assert budget.spend_rate(p, young, now) is None


def test_over_budget_with_on_exceed_stop_is_stopped_held_recorded_and_acked(
    fleetctl: Fleetctl, tmp_path: Path
) -> None:
    home = fleetctl.manager.home
    state = home / ".local/state/fleetctl"
    port = free_port()
    with Receiver() as hook:
        profiles = write_profiles(
            tmp_path,
            {
                "spender": f'port = {port}\n[cost]\npath = "/api/diagnostics/prometheus"\n'
                '[budget]\nusd_per_day = 1.0\non_exceed = "stop"\n'
            },
            fleet_extra='[[alerts.channels]]\ntype = "webhook"\nname = "hook"\nurl_env = "FLEET_HOOK_URL"\n',
        )
        alerts_env = home / ".config/fleetctl/alerts.env"  # cron has no environment: the file has it
        alerts_env.parent.mkdir(parents=True, exist_ok=True)
        alerts_env.write_text(f"FLEET_HOOK_URL={hook.url}/hook\n")
        alerts_env.chmod(0o600)
        fleetctl("install", str(profiles))
        url = f"http://127.0.0.1:{port}"

        def oversee() -> dict[str, Any]:
            proc = fleetctl("oversee", "--json", "--profiles", str(profiles), check=False)
            return dict(json.loads(proc.stdout))

        oversee()  # the first look records the counters
        httpx.post(f"{url}/simulate/spend?input=1000&usd=0.85")
        doc = oversee()
        assert [v["key"] for v in doc["violations"]] == ["budget:spender"]
        assert [r.json()["check"] for r in hook.requests] == ["budget"], doc
        httpx.post(f"{url}/simulate/spend?input=1000&usd=0.30")
        doc = oversee()
        assert "budget-exceeded:spender" in [v["key"] for v in doc["violations"]]
        assert any("stopped and held" in line for line in doc["cost"]), doc
        wait_for(lambda: fleetctl.unit("spender").active_state == "inactive", 20, "the agent stopped")
        records = [json.loads(line) for line in (state / "incidents.jsonl").read_text().splitlines()]
        assert records[-1]["action"] == "budget-stop" and records[-1]["agent"] == "spender"
        assert "held" in fleetctl("watchdog", "--profiles", str(profiles), check=False).stdout
        out = fleetctl("ack", "spender", "--profiles", str(profiles)).stdout
        assert "hold cleared" in out
