"""The OpenAI-compatible provider against a local server speaking that API (tests/fake_llm.py),
and the chain a user declares in fleet.toml's [[watchdog.providers]], in the user's order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply

from fleetctl.diagnosis.actions import Action
from fleetctl.diagnosis.chain import DiagnosisOutcome, diagnose
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.providers import (
    AnthropicProvider,
    GroqProvider,
    OpenAICompatibleProvider,
    Provider,
    providers_from_config,
)
from fleetctl.diagnosis.redact import Redactor
from fleetctl.fleet.profiles import FleetSettings, ProfileErrors, load_fleet
from fleetctl.healing.evidence import providers as fleet_providers

INCIDENT = Incident(
    agent="scout",
    symptom="unit failed",
    log_lines=("openai.APIConnectionError: Connection error.",),
    exit_status=1,
    result="exit-code",
)
REDACTOR = Redactor()
GOOD = 'command = ["/bin/true"]\nport = 48100\n'


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


def local(llm: FakeLLM, key: str = "", timeout: float = 5.0, name: str = "local") -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(llm.url + "/v1", "llama3.2:3b", key, timeout, name)


def outcomes(out: DiagnosisOutcome) -> list[tuple[str, str]]:
    return [(a.provider, a.outcome) for a in out.attempts]


def test_answer_request_shape_and_rules_verdict_in_the_prompt(llm: FakeLLM) -> None:
    llm.script("openai", Reply.diagnosis("restart", "connection dropped; reconnect"))
    out = diagnose(INCIDENT, [local(llm, key="sk-or-v1-0123456789abcdef0123")], REDACTOR)
    assert (out.provider, out.fallback, out.diagnosis.action) == ("local", False, Action.RESTART)
    assert not out.disagrees  # the rules also said restart (network)
    (req,) = llm.requests_for("openai")
    assert req.path == "/v1/chat/completions"
    assert req.headers["authorization"] == "Bearer sk-or-v1-0123456789abcdef0123"
    body = req.json()
    assert body["model"] == "llama3.2:3b" and body["temperature"] == 0 and body["stream"] is False
    system, user = (m["content"] for m in body["messages"])
    assert "untrusted data" in system
    assert "Built-in rules concluded: restart (rule network)" in user and "APIConnectionError" in user


def test_a_local_server_without_a_key_gets_no_authorization_header(llm: FakeLLM) -> None:
    llm.script("openai", Reply.diagnosis("escalate", "unclear"))
    out = diagnose(INCIDENT, [local(llm)], REDACTOR)
    assert out.diagnosis.action is Action.ESCALATE and out.disagrees
    assert "authorization" not in llm.requests_for("openai")[0].headers


@pytest.mark.parametrize(
    "reply,outcome",
    [
        (Reply.garbage(), "discarded"),
        (Reply.answer('{"action": "restart", "cause": "x", "command": "rm -rf ~"}'), "discarded"),
        (Reply.diagnosis("run_shell", "x"), "discarded"),
        (Reply.auth_error(401), "error"),
        (Reply.server_error(503), "error"),
        (Reply.rate_limited(retry_after=None), "rate-limited"),
        (Reply.raw(200, b"<html>proxy error</html>"), "error"),
        (Reply.raw(404, b"model not found"), "error"),
        (Reply.hang(10), "timeout"),
    ],
    ids=["prose", "extra-key", "unlisted-action", "401", "503", "429", "html", "404", "hang"],
)
def test_every_failure_falls_through_to_the_next_provider(llm: FakeLLM, reply: Reply, outcome: str) -> None:
    llm.script("openai", reply)
    llm.script("groq", Reply.diagnosis("restart", "fine"))
    chain: list[Provider] = [
        local(llm, timeout=1.0),
        GroqProvider("gsk_fake_groq_key_0000", base_url=llm.url),
    ]
    out = diagnose(INCIDENT, chain, REDACTOR)
    assert outcomes(out) == [("local", outcome), ("groq", "ok")]
    assert (out.provider, out.fallback) == ("groq", True)


def test_retry_after_is_honoured_once_within_the_budget(llm: FakeLLM) -> None:
    llm.script("openai", Reply.rate_limited(retry_after=0.2), Reply.diagnosis("backoff", "busy upstream"))
    out = diagnose(INCIDENT, [local(llm)], REDACTOR)
    assert outcomes(out) == [("local", "rate-limited"), ("local", "ok")]


def test_whole_chain_is_bounded_by_the_budget(llm: FakeLLM) -> None:
    llm.script("openai", Reply.hang(30))
    out = diagnose(INCIDENT, [local(llm, timeout=30)], REDACTOR, budget_seconds=1.0)
    assert outcomes(out) == [("local", "timeout"), ("rules", "ok")] and out.provider == "rules"


def test_secrets_are_redacted_before_they_reach_a_local_server(llm: FakeLLM) -> None:
    canary = "c4n4ry-openai-compat-9b1e"
    incident = Incident(
        "scout",
        "unit failed",
        (f"token {canary}", "Authorization: Bearer abcdefgh12345678"),
        history=(
            f"2026-11-30T04:12:09Z unit failed: token {canary} -> diagnosis restart -> restart -> healthy",
        ),
    )
    llm.script("openai", Reply.diagnosis("restart", f"echo {canary}"))
    out = diagnose(incident, [local(llm)], Redactor([canary]))
    user = llm.requests_for("openai")[0].json()["messages"][1]["content"]
    assert "token [REDACTED] -> diagnosis restart -> restart -> healthy" in user  # history, redacted
    assert canary not in llm.all_traffic() and "abcdefgh12345678" not in llm.all_traffic()
    assert canary not in json.dumps(out.as_dict())


def test_user_declared_chain_order(llm: FakeLLM) -> None:
    env = llm.env() | {"OPENROUTER_KEY": "sk-or-v1-aaaaaaaaaaaaaaaaaaaa"}
    entries = [
        {"type": "anthropic"},
        {
            "type": "openai",
            "name": "router",
            "base_url": llm.url + "/v1",
            "model": "x/y",
            "api_key_env": "OPENROUTER_KEY",
        },
        {"type": "openai", "name": "ollama", "base_url": llm.url + "/v1", "model": "llama3.2:3b"},
        {"type": "groq", "model": "llama-3.3-70b-versatile"},
        {
            "type": "openai",
            "name": "unset",
            "base_url": "http://127.0.0.1:9/v1",
            "model": "m",
            "api_key_env": "NOPE",
        },
    ]
    chain = providers_from_config(entries, env)
    assert [p.name for p in chain] == ["anthropic", "router", "ollama", "groq"]  # "unset" has no key: absent
    assert isinstance(chain[0], AnthropicProvider) and chain[0].base_url == llm.url
    assert isinstance(chain[3], GroqProvider) and chain[3].model == "llama-3.3-70b-versatile"

    llm.script("anthropic", Reply.garbage())
    llm.script("openai", Reply.server_error(502), Reply.diagnosis("backoff", "upstream flaky"))
    out = diagnose(INCIDENT, chain, REDACTOR)
    assert outcomes(out) == [("anthropic", "discarded"), ("router", "error"), ("ollama", "ok")]
    assert (out.provider, out.fallback, out.diagnosis.action) == ("ollama", True, Action.BACKOFF)
    assert out.disagrees  # rules: restart (network)
    keys = [r.headers.get("authorization") for r in llm.requests_for("openai")]
    assert keys == ["Bearer sk-or-v1-aaaaaaaaaaaaaaaaaaaa", None]
    assert llm.requests_for("groq") == []


def test_fleet_toml_declares_the_chain(tmp_path: Path, llm: FakeLLM) -> None:
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "fleet.toml").write_text(
        "[[watchdog.providers]]\n"
        'type = "openai"\nname = "ollama"\n'
        f'base_url = "{llm.url}/v1"\nmodel = "qwen2.5:3b"\n'
        "[[watchdog.providers]]\n"
        'type = "groq"\n'
    )
    fleet = load_fleet(tmp_path)
    chain = fleet_providers(llm.env(), fleet.settings)
    assert [p.name for p in chain] == ["ollama", "groq"]
    default = fleet_providers(llm.env(), FleetSettings())
    assert [p.name for p in default] == ["groq", "anthropic"]  # nothing declared: the default chain


@pytest.mark.parametrize(
    "entry,problem",
    [
        ('type = "ollama"', "type: must be one of groq, anthropic, openai"),
        ('type = "openai"\nmodel = "m"', 'type = "openai" needs base_url'),
        (
            'type = "openai"\nbase_url = "127.0.0.1:11434"\nmodel = "m"',
            "base_url: must be an http:// or https://",
        ),
        (
            'type = "groq"\napi_key_env = "gsk_abc-123"',
            "api_key_env: must be the NAME of an environment variable",
        ),
        ('type = "groq"\ntimeout = 3', "unknown key(s) ['timeout']"),
        ('type = "groq"\nname = "rules"', "name: must be lowercase"),
    ],
)
def test_a_bad_provider_entry_is_one_line_naming_the_key(tmp_path: Path, entry: str, problem: str) -> None:
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "fleet.toml").write_text(f"[[watchdog.providers]]\n{entry}\n")
    with pytest.raises(ProfileErrors) as e:
        load_fleet(tmp_path)
    (line,) = e.value.problems
    assert "fleet.toml" in line and "watchdog.providers" in line and problem in line, line


def test_two_providers_with_one_name_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "fleet.toml").write_text(
        '[[watchdog.providers]]\ntype = "groq"\n[[watchdog.providers]]\ntype = "groq"\n'
    )
    with pytest.raises(ProfileErrors, match="declared twice"):
        load_fleet(tmp_path)


def test_a_declared_key_is_redacted_whatever_its_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetctl.secrets import known

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.setenv("LOCAL_LLM_AUTH", "plain-value-4c1e9b")  # no KEY/TOKEN in the name
    (tmp_path / "a.toml").write_text(GOOD)
    (tmp_path / "fleet.toml").write_text(
        '[[watchdog.providers]]\ntype = "openai"\nbase_url = "http://127.0.0.1:9/v1"\nmodel = "m"\n'
        'api_key_env = "LOCAL_LLM_AUTH"\n'
    )
    fenv = known.load(load_fleet(tmp_path))
    assert "plain-value-4c1e9b" not in fenv.mask("key plain-value-4c1e9b leaked")
