"""fleetctl.secrets: one reader of env files, one fleet-wide redaction set, and a redactor that
finds a known secret in every encoding a program prints (property-based over generated
secrets), then the prompt fence and the provider deadline that guard the diagnosis."""

from __future__ import annotations

import base64
import binascii
import importlib
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_llm import FakeLLM, Reply
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fleetctl.common import paths
from fleetctl.diagnosis.chain import diagnose
from fleetctl.diagnosis.incident import Incident
from fleetctl.diagnosis.prompt import build_prompt
from fleetctl.diagnosis.providers import AnthropicProvider, GroqProvider, ProviderError
from fleetctl.fleet.profiles import Fleet, load_fleet
from fleetctl.secrets import known
from fleetctl.secrets.envfile import read_env_file
from fleetctl.secrets.redact import MIN_SECRET_LEN, REDACTED, Redactor

# --- generated secrets and the encodings programs really print ---------------------------------

# Printable ASCII and some non-ASCII: what a key, a password or a webhook URL is made of.
_ALPHABET = st.characters(
    codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="\x85\u2028\u2029"
) | st.sampled_from(" é€/+=%&\\\"'")
secrets_st = (
    st.text(_ALPHABET, min_size=MIN_SECRET_LEN, max_size=48)
    .map(str.strip)
    .filter(lambda s: len(s) >= MIN_SECRET_LEN)
)
PRE, POST = "log: value=<", "> end"


def _b64_runs(text: str) -> Iterator[bytes]:
    """Every decoding of every base64-looking run in `text`, at each of the 4 character shifts."""
    for run in re.findall(r"[A-Za-z0-9+/_-]{2,}", text):
        run = run.replace("-", "+").replace("_", "/")
        for shift in range(4):
            part = run[shift:]
            part = part[:-1] if len(part) % 4 == 1 else part
            part += "=" * (-len(part) % 4)
            try:
                yield base64.b64decode(part)
            except (binascii.Error, ValueError):
                continue


def _hex_runs(text: str) -> Iterator[bytes]:
    for run in re.findall(r"[0-9A-Fa-f](?:[0-9A-Fa-f :]|\n)*", text):
        digits = re.sub(r"[^0-9A-Fa-f]", "", run)
        for shift in (0, 1):
            part = digits[shift:]
            yield binascii.unhexlify(part[: len(part) - len(part) % 2])


def leaked(secret: str, text: str) -> bool:
    """Can the secret be read back from `text` in any of the encodings under test?"""
    raw = secret.encode()
    joined = text.replace("\n", "")
    readings = [joined, urllib.parse.unquote(joined), urllib.parse.unquote_plus(joined)]
    try:
        readings.append(json.loads(f'"{joined}"'))
    except ValueError:
        pass
    if any(secret in r for r in readings):
        return True
    return any(raw in b for b in (*_b64_runs(joined), *_hex_runs(joined)))


def _b64(s: str, prefix: bytes, suffix: bytes, urlsafe: bool, pad: bool) -> str:
    enc = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(prefix + s.encode() + suffix).decode()
    return enc if pad else enc.rstrip("=")


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda s: s,
    "url": lambda s: urllib.parse.quote(s, safe=""),
    "url-lower": lambda s: re.sub(
        r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(s, safe="")
    ),
    "url-plus": urllib.parse.quote_plus,
    "url-path": urllib.parse.quote,
    "json": lambda s: json.dumps(s)[1:-1],
    "json-ascii": lambda s: json.dumps(s, ensure_ascii=True)[1:-1],
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
    "hex-spaced": lambda s: " ".join(f"{b:02x}" for b in s.encode()),
    **{
        f"b64-{'url' if u else 'std'}-{'pad' if p else 'nopad'}-{o}": (
            lambda s, u=u, p=p, o=o: _b64(s, b"u:"[:o], b"!", u, p)
        )
        for u in (False, True)
        for p in (False, True)
        for o in range(3)
    },
}


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(secret=secrets_st)
@example(secret="sk-abc123")
@example(secret="p@ss w/rd+%2F")
def test_a_known_secret_is_gone_in_every_encoding(encoding: str, secret: str) -> None:
    encoded = ENCODINGS[encoding](secret)
    assert leaked(secret, encoded)  # the oracle can read it back before redaction
    out = Redactor([secret]).redact(f"{PRE}{encoded}{POST}")
    assert REDACTED in out
    assert not leaked(secret, out), (encoding, encoded, out)
    assert out.startswith(PRE[:4]) and out.endswith(POST)  # the line around it survives


@settings(max_examples=60, deadline=None)
@given(secret=secrets_st, data=st.data())
def test_a_secret_split_across_two_lines_is_gone_from_both(secret: str, data: st.DataObject) -> None:
    encoding = data.draw(st.sampled_from(["plain", "url", "hex", "b64-std-pad-0", "json"]))
    encoded = ENCODINGS[encoding](secret)
    cut = data.draw(st.integers(1, len(encoded) - 1))
    lines = ["before", f"{PRE}{encoded[:cut]}", f"{encoded[cut:]}{POST}", "after"]
    out = Redactor([secret]).redact_lines(lines)
    assert len(out) == len(lines) and out[0] == "before" and out[-1] == "after"
    assert not leaked(secret, "".join(out)), (encoding, lines, out)


@given(secret=st.text(_ALPHABET, max_size=MIN_SECRET_LEN - 1))
def test_values_below_the_minimum_length_are_not_treated_as_secrets(secret: str) -> None:
    """Documented in docs/security.md: "true", "8080", "prod" must not shred every log line."""
    text = f"port {secret} ok"
    assert Redactor([secret]).redact(text) == Redactor().redact(text)


@pytest.mark.parametrize(
    "key",
    ["sk-abc123", "sk-9f8e7d6c", "sk-proj-x1y2z3", "sk-ant-api03-AbCdEf0123", "gsk_AbCdEf0123456789AbCd"],
)
def test_short_provider_keys_are_caught_by_shape(key: str) -> None:
    assert key not in Redactor().redact(f"using {key} now")


def test_words_that_merely_start_like_a_key_survive() -> None:
    assert Redactor().redact("pip install sk-learn-model") == "pip install sk-learn-model"


def test_env_files_keep_values_with_unicode_separators(tmp_path: Path) -> None:
    f = tmp_path / "a.env"
    f.write_text('A=one\u2028two\nexport B="q\\"x"\n# c\nnot a line\nC=\'s p\'\r\n')
    assert read_env_file(f) == {"A": "one\u2028two", "B": 'q"x', "C": "s p"}


# --- every secret fleetctl knows ---------------------------------------------------------------


SOURCES = {
    "agent secrets_file": "agent-a-key-0f3c9e",
    "agent alternate": "agent-a-spare-77d1b2",
    "other agent": "agent-b-key-31aa58",
    "coordinator file": "coord-hook-c0ffee",
    "alerts.env": "alerts-env-tok-9e9e9e",
    "channel env": "https://hooks.example/T000/B000/XYZsecret",
    "llm key": "gsk_envkey_abcdef0123",
    "secret-named env": "env-password-5150",
}


def _private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def sourced_fleet(root: Path) -> tuple[Fleet, dict[str, str]]:
    h = paths.home()
    _private(h / "a.env", f"A_KEY={SOURCES['agent secrets_file']}\n")
    _private(h / "a2.env", f"A_KEY={SOURCES['agent alternate']}\n")
    _private(h / "b.env", f"B_KEY={SOURCES['other agent']}\n")
    _private(h / "c.env", f"HOOK={SOURCES['coordinator file']}\n")
    _private(known.alerts_env_file(), f"TG_TOKEN={SOURCES['alerts.env']}\n")
    d = root / "profiles"
    d.mkdir()
    (d / "fleet.toml").write_text(
        '[[alerts.channels]]\ntype = "webhook"\nname = "w"\nurl_env = "MY_HOOK_URL"\n'
    )
    common = 'command = ["/bin/true"]\n'
    (d / "a.toml").write_text(
        common + 'port = 48101\nsecrets_file = "~/a.env"\nalternate_secrets_files = ["~/a2.env"]\n'
    )
    (d / "b.toml").write_text(common + 'port = 48102\nsecrets_file = "~/b.env"\n')
    (d / "c.toml").write_text(common + 'port = 48103\nrole = "coordinator"\nsecrets_file = "~/c.env"\n')
    environ = {
        "PATH": "/usr/bin",
        "MY_HOOK_URL": SOURCES["channel env"],
        "GROQ_API_KEY": SOURCES["llm key"],
        "DB_PASSWORD": SOURCES["secret-named env"],
    }
    return load_fleet(d), environ


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_every_source_is_in_the_fleet_wide_set_for_every_agent(
    home: Path, tmp_path: Path, source: str
) -> None:
    fleet, environ = sourced_fleet(tmp_path)
    fs = known.load(fleet, environ)
    secret = SOURCES[source]
    for encoding in ("plain", "url", "b64-std-pad-1", "HEX", "json"):
        text = f"agent b said {ENCODINGS[encoding](secret)} to agent a"
        assert not leaked(secret, fs.mask(text)), (source, encoding)
    # `config diff` and the validators mask through for_profile: the whole fleet, from any agent.
    for p in fleet.profiles:
        assert not leaked(secret, known.for_profile(p, environ).mask(f"x {secret} y")), (source, p.name)
    assert "/usr/bin" in fs.mask("PATH=/usr/bin")  # an ordinary variable is not a secret


def test_alert_env_lookup_order_and_private_files_only(home: Path, tmp_path: Path) -> None:
    fleet, environ = sourced_fleet(tmp_path)
    fs = known.load(fleet, environ)
    assert fs.env["HOOK"] == SOURCES["coordinator file"] and fs.env["TG_TOKEN"] == SOURCES["alerts.env"]
    known.alerts_env_file().chmod(0o644)
    fs = known.load(fleet, environ)
    assert "TG_TOKEN" not in fs.env and any("chmod 600" in p for p in fs.problems)
    assert SOURCES["alerts.env"] not in fs.mask(SOURCES["alerts.env"])  # still never shown


def test_only_the_secrets_package_reads_env_files() -> None:
    root = Path(__file__).resolve().parent.parent / "fleetctl"
    readers = [
        str(f.relative_to(root))
        for f in root.rglob("*.py")
        if "read_env_file" in f.read_text() and f.parent.name != "secrets"
    ]
    assert readers == []
    assert "oversight" not in (root / "healing" / "evidence.py").read_text().split('"""', 2)[2]


# --- the prompt fence ------------------------------------------------------------------------

_FENCE = re.compile(r"^BEGIN (FACTS|LOG) (\S+)$\n.*?^END \1 \2$\n?", re.M | re.S)
hostile = st.text(st.characters(codec="utf-8"), min_size=1, max_size=80).filter(lambda s: s.strip())


@settings(max_examples=150, deadline=None)
@given(config_text=hostile, symptom_tail=hostile, status_text=hostile, result=hostile, log=hostile)
def test_agent_controlled_text_reaches_the_prompt_only_inside_a_fence(
    config_text: str, symptom_tail: str, status_text: str, result: str, log: str
) -> None:
    """A schema error quoting the config, a validator's output, a probe error quoting the
    agent's reply, a property the agent can set: outside the fences only fixed text remains."""
    marker = "Zq7Xw9"  # stands for any instruction the agent tries to smuggle in
    inc = Incident(
        agent="victim",
        symptom=f"health check failed: {symptom_tail}{marker}",
        log_lines=(f"{log}{marker}", f"END LOG {marker}", f"\u2028{marker}"),
        result=f"{result}{marker}",
        unit_properties={"ActiveState": "failed", "StatusText": f"{status_text}{marker}"},
        config_valid=False,
        config_detail=f"config.json: $.greeting: '{config_text}{marker}' is not of type 'integer'",
    )
    user = build_prompt(inc).user
    outside = _FENCE.sub("", user)
    assert marker not in outside, outside
    assert user.count(marker) >= 5  # ... and every piece did reach the model, inside
    assert "Symptom: health check failed (details in FACTS)" in outside


def test_a_log_line_with_a_unicode_line_separator_survives_whole() -> None:
    inc = Incident(agent="a", symptom="unit failed", log_lines=("first\u2028second\u2029third", "next"))
    user = build_prompt(inc, nonce="N").user
    body = user.split("BEGIN LOG N\n", 1)[1].split("\nEND LOG N", 1)[0]
    assert body.split("\n") == ["first second third", "next"]


# --- LLM endpoints that never finish ----------------------------------------------------------


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    with FakeLLM() as server:
        yield server


@pytest.mark.parametrize("cls", [GroqProvider, AnthropicProvider])
def test_a_drip_feeding_provider_is_cut_at_the_overall_deadline(llm: FakeLLM, cls: type) -> None:
    name = "groq" if cls is GroqProvider else "anthropic"
    llm.script(name, Reply.drip_feed(every=0.5))  # each byte well inside any read timeout
    provider = cls(api_key="k-000000", base_url=llm.url, timeout=2.0)
    importlib.import_module(name)  # the one-time SDK import is not part of the deadline (documented)
    started = time.monotonic()
    with pytest.raises(ProviderError, match="timeout"):
        provider.ask(build_prompt(Incident(agent="a", symptom="unit failed")))
    assert time.monotonic() - started < 3.0


def test_the_diagnosis_chain_never_outlasts_its_budget(llm: FakeLLM) -> None:
    llm.script("groq", Reply.drip_feed(every=0.5))
    llm.script("anthropic", Reply.drip_feed(every=0.5))
    chain = [
        GroqProvider(api_key="k-000000", base_url=llm.url, timeout=60),
        AnthropicProvider(api_key="k-000000", base_url=llm.url, timeout=60),
    ]
    importlib.import_module("groq"), importlib.import_module("anthropic")
    started = time.monotonic()
    out = diagnose(Incident(agent="a", symptom="unit failed"), chain, Redactor(), budget_seconds=3)
    assert time.monotonic() - started < 3.8
    assert out.provider == "rules"
    assert [a.outcome for a in out.attempts][:1] == ["timeout"]


# --- every output path, for generated secrets in every encoding ---------------------------------


@pytest.fixture
def one_agent(home: Path, tmp_path: Path) -> Fleet:
    d = tmp_path / "fleet"
    d.mkdir()
    (d / "a.toml").write_text('command = ["/bin/true"]\nport = 48111\n')
    return load_fleet(d)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=secrets_st, encoding=st.sampled_from(sorted(ENCODINGS)))
def test_every_output_path_scrubs_a_known_secret(one_agent: Fleet, secret: str, encoding: str) -> None:
    """The prompt, the incident record and its bulletin line, a violation after the oversight
    pass's last scrub (alert payload, bulletin, oversight.json, inbox), and a config diff."""
    from fleetctl.alerts import webhook
    from fleetctl.configs.diff import unified_diff
    from fleetctl.healing.record import Recorder
    from fleetctl.healing.respond import Result
    from fleetctl.oversight import notify
    from fleetctl.oversight.model import Violation
    from fleetctl.oversight.run import OversightReport, _scrub

    fs = known.FleetSecrets(env={}, values=(secret,))

    def outputs_for(enc: str) -> dict[str, str]:
        p = one_agent.profiles[0]
        outputs: dict[str, str] = {}

        inc = Incident(
            agent="a", symptom=f"health check failed: {enc}", log_lines=(f"x {enc} y",), config_detail=enc
        )
        outputs["prompt"] = build_prompt(inc.redacted(fs.redactor)).user

        recorder = Recorder("run1", fs)
        diag = {"log_excerpt": [f"line {enc}"], "diagnosis": {"action": "escalate", "cause": f"saw {enc}"}}
        rec = recorder.record(
            p, Result("escalate", "held", f"held: {enc}"), diag, f"unit failed {enc}", 1e9, 1
        )
        outputs["incident"] = json.dumps(rec)
        outputs["bulletin (watchdog)"] = Recorder.bulletin(rec)

        report = OversightReport(agents=1)
        v = Violation.of("user-check:leak", "a", f"exit 1: {enc}", f"run it by hand: check {enc}")
        report.violations, report.new = [v], [v]
        _scrub(report, fs.mask)
        outputs["alert payload / inbox"] = json.dumps(webhook.payload(report.new[0].alert(1e9)))
        outputs["bulletin (oversee)"] = notify.bulletin_line(report.new[0], 1e9)
        outputs["oversight report"] = json.dumps(report.to_dict())

        outputs["config diff"] = unified_diff(
            {"c.json": b'{"k": "old"}\n'}, {"c.json": f'{{"k": "{enc}"}}\n'.encode()}, mask=fs.mask
        )
        return outputs

    # A generated "secret" that fleetctl's own text happens to contain (a timestamp's "000000")
    # proves nothing either way.
    assume(not any(leaked(secret, t) for t in outputs_for("zz").values()))
    outputs = outputs_for(ENCODINGS[encoding](secret))
    for where, text in outputs.items():
        assert not leaked(secret, text), (where, encoding, text)
