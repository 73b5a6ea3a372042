"""Output that says the interpreter, not the program's input, is wrong.

Used for an agent that failed to start (lifecycle.cause) and for a config validator whose
verdict cannot be trusted (configs.formats): a validator run by the wrong Node says nothing
about the config.
"""

from __future__ import annotations

import re

MISSING_INTERPRETER = re.compile(r"(/usr/bin/)?env: .*No such file or directory")
WRONG_RUNTIME = re.compile(
    r"node:\w+ is unavailable|ERR_UNKNOWN_BUILTIN_MODULE|requires? node(\.js)? ?v?\d|"
    r"unsupported (node|engine)|use node(\.js)? ?v?\d",
    re.I,
)


def interpreter_problem(output: str) -> str | None:
    """The first line that blames the interpreter, or None."""
    for line in output.splitlines():
        if MISSING_INTERPRETER.search(line) or WRONG_RUNTIME.search(line):
            return line.strip()
    return None
