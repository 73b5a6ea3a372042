"""Redaction: every credential shape, exact secret values from the env file, extra patterns."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetctl.common.errors import FleetError
from fleetctl.diagnosis.redact import REDACTED, Redactor
from fleetctl.secrets.envfile import read_env_file

R = Redactor()


@pytest.mark.parametrize(
    "text,secret",
    [
        ("using key sk-proj-AbCdEf0123456789xyzXYZ for openai", "sk-proj-AbCdEf0123456789xyzXYZ"),
        ("anthropic key sk-ant-api03-AbCdEf0123456789_-xyz", "sk-ant-api03-AbCdEf0123456789_-xyz"),
        ("groq gsk_AbCdEf0123456789AbCdEf0123456789 rejected", "gsk_AbCdEf0123456789AbCdEf0123456789"),
        ("slack xoxb-1234567890-abcdefghij posted", "xoxb-1234567890-abcdefghij"),
        ("slack xoxp-1234567890-abcdefghij", "xoxp-1234567890-abcdefghij"),
        ("clone with ghp_AbCdEf0123456789AbCdEf0123456789ab", "ghp_AbCdEf0123456789AbCdEf0123456789ab"),
        ("aws AKIAIOSFODNN7EXAMPLE denied", "AKIAIOSFODNN7EXAMPLE"),
        ("sent header Bearer abc.def-ghi_jkl~123", "abc.def-ghi_jkl~123"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ('headers={"authorization": "Token t0ps3cr3t"}', "t0ps3cr3t"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpM ok",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.SflKxwRJSMeKKF2QT4fwpM",
        ),
        ("GET /v1?api_key=hunter2hunter2&x=1", "hunter2hunter2"),
        ("config: token=abc123def", "abc123def"),
        ("login password: 'correct horse'", "correct horse"),
        ('{"client_secret": "s3cr3t-value", "n": 1}', "s3cr3t-value"),
        ("GROQ_API_KEY=whatever-shape-it-has", "whatever-shape-it-has"),
        ("db postgres://app:pa55w0rd@db:5432/app", "pa55w0rd"),
    ],
)
def test_shapes(text: str, secret: str) -> None:
    out = R.redact(text)
    assert secret not in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=150 temperature=0",
        "risk-management module loaded",
        "request took 401ms; 12:34:56",
        "authentication failed: invalid api key",  # the rules need these words
        "token has expired",
    ],
)
def test_leaves_ordinary_text(text: str) -> None:
    assert R.redact(text) == text


def test_canary_from_env_file(tmp_path: Path) -> None:
    env = tmp_path / "secrets.env"
    env.write_text(
        "# agent secrets\n"
        "export CANARY='c4n4ry-Zq81-plain-shape'\n"
        'QUOTED="with \\"quotes\\" inside"\n'
        "SHORT=abc\n"
        "  SPACED = spaced-value-1 \n"
        "not an assignment\n"
        "EMPTY=\n"
    )
    values = read_env_file(env)
    assert values == {
        "CANARY": "c4n4ry-Zq81-plain-shape",
        "QUOTED": 'with "quotes" inside',
        "SHORT": "abc",
        "SPACED": "spaced-value-1",
        "EMPTY": "",
    }
    r = Redactor(values.values())
    out = r.redact('boot c4n4ry-Zq81-plain-shape / with "quotes" inside / abc / spaced-value-1')
    assert "c4n4ry" not in out and "quotes" not in out and "spaced-value-1" not in out
    assert " abc " in out  # short values are not secrets worth shredding logs for


def test_longest_secret_wins() -> None:
    r = Redactor(["abcdef", "abcdef-ghijkl"])
    assert r.redact("x abcdef-ghijkl y") == f"x {REDACTED} y"


def test_extra_patterns() -> None:
    r = Redactor(extra_patterns=[r"cust-\d{6}"])
    assert r.redact("customer cust-123456 failed") == f"customer {REDACTED} failed"
    with pytest.raises(FleetError, match="not a valid regex"):
        Redactor(extra_patterns=["(unclosed"])


def test_missing_env_file(tmp_path: Path) -> None:
    assert read_env_file(tmp_path / "nope", missing_ok=True) == {}
    with pytest.raises(FileNotFoundError):
        read_env_file(tmp_path / "nope")


def test_idempotent() -> None:
    once = R.redact("Authorization: Bearer abcdefghijkl token=xyz1234567")
    assert R.redact(once) == once
