"""Parse and validate a candidate config; every failure is ONE line naming file, line, column."""

from __future__ import annotations

import json
import re
import shlex
import signal
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, get_args

import json5
import jsonschema

from fleetctl.common import runcmd
from fleetctl.common.ansi import strip_ansi
from fleetctl.common.errors import FleetError
from fleetctl.common.interp import interpreter_problem

Format = Literal["json", "json5", "toml"]
FORMATS: tuple[str, ...] = get_args(Format)
MAX_BYTES = 1_048_576

# json5 reports positions only inside its message: '<string>:3 Unexpected "," at column 11'.
_JSON5_POS = re.compile(r"^<string>:(\d+) (.*) at column (\d+)$", re.S)
# tomllib appends the position: 'Invalid value (at line 2, column 5)' or '(at end of document)'.
_TOML_POS = re.compile(r"^(.*) \(at line (\d+), column (\d+)\)$", re.S)
_TOML_END = re.compile(r"^(.*) \(at end of document\)$", re.S)
_MAX_DETAIL = 300


class ConfigInvalid(FleetError):
    """The candidate config does not parse, violates the schema, or fails the agent's validator.

    str() is one line; `output` keeps the validator's whole output (ANSI stripped, masked).
    """

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ValidatorUnavailable(FleetError):
    """The validator itself could not run (not found, not executable, 126/127, timed out):
    a problem with the validator or its environment, never evidence about the config."""


def _bounded(text: str, lines: int = 60, chars: int = 6000) -> str:
    kept = text.splitlines()[-lines:]
    out = "\n".join(kept)
    return out if len(out) <= chars else "…" + out[-chars:]


def _one_line(text: str, limit: int = _MAX_DETAIL) -> str:
    # The CLI prints exactly one line; a long schema message (which may embed a whole object)
    # is cut rather than allowed to flood the terminal.
    flat = " ".join(strip_ansi(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _prefix(path: Path, agent: str | None) -> str:
    return f"{agent}: {path.name}" if agent else str(path)


def read_bounded(path: Path, max_bytes: int, label: str) -> bytes:
    """Read at most max_bytes (+1 to detect overflow) so a runaway file cannot eat memory."""
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise FleetError(f"{label}: not found") from None
    except IsADirectoryError:
        raise FleetError(f"{label}: is a directory, not a config file") from None
    except PermissionError:
        raise FleetError(f"{label}: permission denied") from None
    if len(raw) > max_bytes:
        raise ConfigInvalid(f"{label}: larger than the {max_bytes}-byte limit")
    return raw


def parse_bytes(raw: bytes, fmt: Format, label: str) -> object:
    """Decode (strict UTF-8) and parse; `label` ("coder: config.json") starts every message."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown config format {fmt!r}; expected one of {', '.join(FORMATS)}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigInvalid(
            f"{label}: not UTF-8 (byte 0x{raw[e.start]:02x} at offset {e.start}, line {line})"
        ) from None
    try:
        if fmt == "json":
            return _parse_json(text, label)
        if fmt == "json5":
            return _parse_json5(text, label)
        return _parse_toml(text, label)
    except RecursionError:
        raise ConfigInvalid(f"{label}: nested too deeply to parse") from None


def parse_config(path: Path, fmt: Format, max_bytes: int = MAX_BYTES, *, agent: str | None = None) -> object:
    """Parse a config file; with `agent`, messages read "coder: config.json: line 3, column 5: ..."."""
    path = Path(path)
    label = _prefix(path, agent)
    return parse_bytes(read_bounded(path, max_bytes, label), fmt, label)


def _parse_json(text: str, label: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigInvalid(f"{label}: line {e.lineno}, column {e.colno}: {e.msg}") from None


def _parse_json5(text: str, label: str) -> object:
    try:
        return json5.loads(text)
    except ValueError as e:
        msg = str(e)
        m = _JSON5_POS.match(msg)
        if m:
            line, detail, col = m.group(1), m.group(2), m.group(3)
            raise ConfigInvalid(f"{label}: line {line}, column {col}: {_one_line(detail)}") from None
        if not text.strip():
            # json5 says "Empty strings are not legal JSON5"; name the position like the others.
            raise ConfigInvalid(f"{label}: line 1, column 1: empty document") from None
        raise ConfigInvalid(f"{label}: {_one_line(msg)}") from None


def _parse_toml(text: str, label: str) -> object:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_POS.match(msg)
        if m:
            raise ConfigInvalid(f"{label}: line {m.group(2)}, column {m.group(3)}: {m.group(1)}") from None
        end = _TOML_END.match(msg)
        if end:
            lines = text.count("\n") + 1
            raise ConfigInvalid(f"{label}: line {lines} (end of document): {end.group(1)}") from None
        raise ConfigInvalid(f"{label}: {_one_line(msg)}") from None


def json_path(parts: Sequence[str | int]) -> str:
    """('gateway', 'port') -> 'gateway.port'; list indices as [0]; odd keys quoted."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _relevance(error: jsonschema.ValidationError) -> tuple[int, bool, bool]:
    # jsonschema's default key breaks sibling ties by the *largest* path (agents[1] before
    # agents[0]); without the path, max() keeps the first, i.e. document/schema order.
    weak, strong = jsonschema.exceptions.WEAK_MATCHES, jsonschema.exceptions.STRONG_MATCHES
    return (-len(error.path), error.validator not in weak, error.validator in strong)


def validate_schema(
    data: object,
    schema_path: Path,
    *,
    label: str = "config",
    mask: Callable[[str], str] | None = None,
) -> None:
    """Validate against a JSON Schema file; report the most relevant error and how many more.

    jsonschema messages embed the offending value, which may be a token: `mask` (the
    redactor) is applied before the message leaves this function.
    """
    schema_path = Path(schema_path)
    schema = parse_config(schema_path, "json")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as e:
        raise FleetError(f"{schema_path}: not a valid JSON Schema: {_one_line(e.message)}") from None
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    errors = list(validator.iter_errors(data))
    if not errors:
        return
    best = jsonschema.exceptions.best_match(errors, key=_relevance)
    assert best is not None  # errors is non-empty
    where = json_path(list(best.absolute_path))
    at = f"at '{where}'" if where else "at top level"
    message = mask(best.message) if mask else best.message
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    raise ConfigInvalid(f"{label}: {at}: {_one_line(message)}{more}")


def run_validator(
    argv: Sequence[str],
    timeout: float,
    *,
    label: str = "config",
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    mask: Callable[[str], str] | None = None,
) -> None:
    """Run the profile's own validation command (argv list, no shell) through runcmd.

    A validator that cannot run (missing or not executable binary, exit 126/127, timeout) is
    ValidatorUnavailable: the environment is wrong, not the config. Any other non-zero exit is
    ConfigInvalid: a one-line message with the last output lines, and the whole output kept.
    """
    if not argv:
        raise ValueError("run_validator: empty argv")
    try:
        proc = runcmd.run(argv, timeout=timeout, env=env, cwd=cwd, check=False)
    except FleetError as e:
        raise ValidatorUnavailable(f"{label}: validator cannot run: {e}") from None
    except OSError as e:
        raise ValidatorUnavailable(f"{label}: validator cannot run: {argv[0]}: {e.strerror}") from None
    if proc.returncode == 0:
        return
    whole = strip_ansi("\n".join(x for x in (proc.stdout.strip(), proc.stderr.strip()) if x))
    if mask:
        whole = mask(whole)
    whole = _bounded(whole)
    wrong = interpreter_problem(whole)
    if wrong and proc.returncode > 0:
        raise ValidatorUnavailable(
            f"{label}: validator cannot run (its interpreter is missing or the wrong version, "
            f"exit {proc.returncode}): {shlex.join(argv)}: {_one_line(wrong)}"
        )
    if proc.returncode in (126, 127):
        raise ValidatorUnavailable(
            f"{label}: validator cannot run (exit {proc.returncode}: "
            f"{'not executable' if proc.returncode == 126 else 'command not found'}): "
            f"{shlex.join(argv)}: {_one_line(whole) or '(no output)'}"
        )
    output = strip_ansi(proc.stderr.strip() or proc.stdout.strip())
    # The last lines carry the verdict; earlier ones are usually progress chatter.
    tail = " | ".join([ln.strip() for ln in output.splitlines() if ln.strip()][-3:]) or "(no output)"
    if mask:
        tail = mask(tail)
    if proc.returncode < 0:
        try:
            how = f"killed by {signal.Signals(-proc.returncode).name}"
        except ValueError:
            how = f"killed by signal {-proc.returncode}"
    else:
        how = f"exit {proc.returncode}"
    raise ConfigInvalid(f"{label}: validator failed ({how}): {shlex.join(argv)}: {_one_line(tail)}", whole)
