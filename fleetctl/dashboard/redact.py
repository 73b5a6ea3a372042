"""The one place the dashboard scrubs text: every string of every document it serves.

The redactor is fleetctl.secrets' for the whole fleet (every agent's secrets files and
alternates, alert tokens, LLM keys, in every encoding, plus every profile's `watchdog.redact`
patterns): a log line of one agent may quote another's key, and the page shows all agents side
by side.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fleetctl.diagnosis.redact import Redactor
from fleetctl.fleet.profiles import Fleet

TTL = 5.0  # seconds a redactor is reused: secrets files change rarely, requests come often

_lock = threading.Lock()
_cache: dict[str, tuple[float, Redactor]] = {}


def fleet_redactor(fleet: Fleet) -> Redactor:
    from fleetctl.secrets import known

    with _lock:
        hit = _cache.get(str(fleet.directory))
        if hit and time.monotonic() - hit[0] < TTL:
            return hit[1]
    redactor = known.load(fleet).redactor
    with _lock:
        _cache.clear()
        _cache[str(fleet.directory)] = (time.monotonic(), redactor)
    return redactor


def scrub(doc: Any, redactor: Redactor) -> Any:
    """Every string in a JSON-able document, redacted (keys are fleetctl's own names)."""
    if isinstance(doc, str):
        return redactor.redact(doc)
    if isinstance(doc, dict):
        return {k: scrub(v, redactor) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [scrub(v, redactor) for v in doc]
    return doc
