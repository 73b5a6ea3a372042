"""Config parsing and validation: every failure is one line naming file, line and column."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fleetctl.common.errors import FleetError
from fleetctl.configs.formats import (
    ConfigInvalid,
    parse_config,
    run_validator,
    validate_schema,
)

PARSE_ERRORS = [
    # (format, file name, content, expected message after "coder: NAME: ")
    ("json", "config.json", b'{\n  "a": 1,\n  "b": 2,\n}\n', "line 4, column 1: Expecting property name"),
    ("json", "config.json", b'{\n  "a": 1\n  "b": 2\n}\n', "line 3, column 3: Expecting ',' delimiter"),
    ("json", "config.json", b"", "line 1, column 1: Expecting value"),
    ("json", "config.json", b'{"a": 1} // comment\n', "line 1, column 10: Extra data"),
    ("json", "config.json", b'\xef\xbb\xbf{"a": 1}', "line 1, column 1: Unexpected UTF-8 BOM"),
    ("json5", "config.json5", b"{\n  a: 1,\n  b: [1, 2,,],\n}\n", 'line 3, column 12: Unexpected ","'),
    ("json5", "config.json5", b'{\n  a: "unterminated\n}\n', "line 2, column"),
    ("json5", "config.json5", b"", "line 1, column 1: empty document"),
    ("json5", "config.json5", b"  \n", "line 2, column 1: Unexpected end of input"),
    ("toml", "config.toml", b"a = 1\nb = \n", "line 2, column 5: Invalid value"),
    ("toml", "config.toml", b"a = 1\na = 2\n", "line 2, column 6: Cannot overwrite a value"),
    ("toml", "config.toml", b"[gateway\nport = 1\n", "line 1, column 9: Expected ']'"),
    ("json", "config.json", b'{"name": "caf\xe9"}', "not UTF-8 (byte 0xe9 at offset 13, line 1)"),
    ("json5", "config.json5", b"{\n a: '\xff'}", "not UTF-8 (byte 0xff at offset 7, line 2)"),
    ("toml", "config.toml", b"a = 1\n\n\xc3\x28 = 2", "not UTF-8 (byte 0xc3 at offset 7, line 3)"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "expected"), PARSE_ERRORS)
def test_parse_errors_name_file_line_column(
    tmp_path: Path, fmt: str, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigInvalid) as exc:
        parse_config(path, fmt, agent="coder")  # type: ignore[arg-type]
    message = str(exc.value)
    assert message.startswith(f"coder: {name}: {expected}"), message
    assert "\n" not in message


PARSE_OK = [
    ("json", b'{"gateway": {"port": 8080}}', {"gateway": {"port": 8080}}),
    # JSON5 is what humans write by hand: comments, unquoted keys, trailing commas.
    (
        "json5",
        b"// agent config\n{\n  gateway: {port: 8080,}, /* inline */\n  tags: ['a', 'b',],\n}\n",
        {"gateway": {"port": 8080}, "tags": ["a", "b"]},
    ),
    ("toml", b"[gateway]\nport = 8080 # comment\n", {"gateway": {"port": 8080}}),
]


@pytest.mark.parametrize(("fmt", "content", "expected"), PARSE_OK)
def test_parse_ok(tmp_path: Path, fmt: str, content: bytes, expected: object) -> None:
    path = tmp_path / f"config.{fmt}"
    path.write_bytes(content)
    assert parse_config(path, fmt) == expected  # type: ignore[arg-type]


def test_too_big_names_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(b'{"a": "' + b"x" * 2000 + b'"}')
    with pytest.raises(ConfigInvalid, match=r"^coder: config.json: larger than the 1000-byte limit$"):
        parse_config(path, "json", max_bytes=1000, agent="coder")
    assert parse_config(path, "json", max_bytes=len(path.read_bytes())) == {"a": "x" * 2000}


def test_without_agent_the_full_path_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{")
    with pytest.raises(ConfigInvalid, match=f"^{path}: line 1, column 2: "):
        parse_config(path, "json")


def test_missing_file_is_a_plain_error(tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="coder: config.json: not found") as exc:
        parse_config(tmp_path / "config.json", "json", agent="coder")
    assert not isinstance(exc.value, ConfigInvalid)


SCHEMA = {
    "type": "object",
    "required": ["gateway"],
    "properties": {
        "gateway": {
            "type": "object",
            "properties": {
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "token": {"type": "string", "pattern": "^[a-z]+$"},
            },
        },
        "agents": {"type": "array", "items": {"type": "object", "required": ["name"]}},
        "odd.key": {"type": "integer"},
    },
}

SCHEMA_ERRORS = [
    ({"gateway": {"port": 70000}}, "at 'gateway.port': 70000 is greater than the maximum of 65535"),
    ({"gateway": {"port": "80"}}, "at 'gateway.port': '80' is not of type 'integer'"),
    ({}, "at top level: 'gateway' is a required property"),
    ({"gateway": {}, "agents": [{}, {"x": 1}]}, "at 'agents[0]': 'name' is a required property (and 1 more)"),
    ({"gateway": {}, "odd.key": "x"}, """at '["odd.key"]': 'x' is not of type 'integer'"""),
]


@pytest.mark.parametrize(("data", "expected"), SCHEMA_ERRORS)
def test_schema_violation_names_the_json_path(tmp_path: Path, data: object, expected: str) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    with pytest.raises(ConfigInvalid) as exc:
        validate_schema(data, schema, label="coder: config.json")
    assert str(exc.value) == f"coder: config.json: {expected}"


def test_schema_ok_and_secrets_masked(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    validate_schema({"gateway": {"port": 8080, "token": "abc"}}, schema)
    with pytest.raises(ConfigInvalid) as exc:
        validate_schema(
            {"gateway": {"token": "SK-LIVE-123"}},
            schema,
            mask=lambda s: s.replace("SK-LIVE-123", "***"),
        )
    assert "SK-LIVE-123" not in str(exc.value)
    assert "at 'gateway.token': '***' does not match" in str(exc.value)


def test_invalid_schema_file(tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text('{"type": 12}')
    with pytest.raises(FleetError, match="schema.json: not a valid JSON Schema: "):
        validate_schema({}, schema)
    schema.write_text('{"type": ')
    with pytest.raises(ConfigInvalid, match=r"schema.json: line 1, column 10: Expecting value"):
        validate_schema({}, schema)


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_validator_ok() -> None:
    run_validator(_py("print('config ok')"), timeout=30)


VALIDATOR_FAILURES = [
    (
        "import sys; print('checking config...'); "
        "print('\\x1b[31merror\\x1b[0m: gateway.port must be < 65536', file=sys.stderr); sys.exit(2)",
        "validator failed (exit 2): ",
        "error: gateway.port must be < 65536",
    ),
    # stdout is used when stderr is empty; the last three lines are kept, one line in all.
    (
        "print('a'); print('b'); print(); print('c'); print('d: token sk-123 rejected'); raise SystemExit(1)",
        "validator failed (exit 1): ",
        "b | c | d: token *** rejected",
    ),
    (
        "import os, signal; os.kill(os.getpid(), signal.SIGKILL)",
        "validator failed (killed by SIGKILL)",
        "(no output)",
    ),
]


@pytest.mark.parametrize(("code", "how", "tail"), VALIDATOR_FAILURES)
def test_validator_failure_carries_its_output(code: str, how: str, tail: str) -> None:
    with pytest.raises(ConfigInvalid) as exc:
        run_validator(_py(code), timeout=30, label="coder", mask=lambda s: s.replace("sk-123", "***"))
    message = str(exc.value)
    assert message.startswith(f"coder: {how}"), message
    assert message.endswith(f": {tail}"), message
    assert sys.executable in message and "\n" not in message


def test_validator_missing_or_hanging_is_not_config_invalid() -> None:
    with pytest.raises(FleetError, match="command not found") as exc:
        run_validator(["/nonexistent/openclaw", "config", "validate"], timeout=5)
    assert not isinstance(exc.value, ConfigInvalid)
    with pytest.raises(FleetError, match="timed out after 0.5s") as exc:
        run_validator(_py("import time; time.sleep(30)"), timeout=0.5)
    assert not isinstance(exc.value, ConfigInvalid)
