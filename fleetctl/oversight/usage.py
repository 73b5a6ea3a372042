"""rate-limit and fallback-active, from each agent's usage endpoint (profile oversight.usage_path).

The endpoint answers `{"providers": {"groq": {"requests_per_minute": N}, ...},
"fallback_active": bool, "provider": "..."}` (the demo agent's shape). Only agents whose unit is
up are asked: a stopped agent is agent-down, not a usage error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from fleetctl.fleet.profiles import Profile
from fleetctl.oversight.model import Violation

MAX_BODY = 64 * 1024  # a usage report is a few hundred bytes; refuse to parse a runaway one


@dataclass(frozen=True)
class Usage:
    requests_per_minute: Mapping[str, float] = field(default_factory=dict)
    fallback_active: bool = False
    provider: str = ""


def usage_url(p: Profile) -> str | None:
    return f"http://127.0.0.1:{p.port}{p.oversight.usage_path}" if p.oversight.usage_path else None


def parse_usage(doc: Any) -> Usage:
    """Strict enough that a wrong shape is an error, not a silent 0 requests/minute."""
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    providers = doc.get("providers", {})
    if not isinstance(providers, dict):
        raise ValueError('"providers" is not an object')
    rpm: dict[str, float] = {}
    for name, entry in providers.items():
        value = entry.get("requests_per_minute") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"providers.{name}.requests_per_minute is not a number")
        rpm[str(name)] = float(value)
    fallback = doc.get("fallback_active", False)
    if not isinstance(fallback, bool):
        raise ValueError('"fallback_active" is not true or false')
    provider = doc.get("provider", "")
    return Usage(rpm, fallback, provider if isinstance(provider, str) else "")


def fetch_all(profiles: Sequence[Profile]) -> dict[str, Usage | str]:
    """agent -> its Usage, or the reason it could not be read. Asked concurrently."""
    import httpx

    targets = [(p, url) for p in profiles if (url := usage_url(p))]
    if not targets:
        return {}
    # Agents listen on localhost: never send these through an http_proxy from the environment.
    with httpx.Client(trust_env=False, follow_redirects=False) as client:

        def one(p: Profile, url: str) -> Usage | str:
            try:
                r = client.get(url, timeout=p.health.timeout)
            except httpx.HTTPError as e:
                return f"GET {url}: {type(e).__name__}: {e}"
            if r.status_code != 200:
                return f"GET {url}: HTTP {r.status_code}"
            if len(r.content) > MAX_BODY:
                return f"GET {url}: answer larger than {MAX_BODY} bytes"
            try:
                return parse_usage(json.loads(r.content))
            except ValueError as e:
                return f"GET {url}: unexpected answer: {e}"

        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            futures = {p.name: pool.submit(one, p, url) for p, url in targets}
            return {name: f.result() for name, f in futures.items()}


def _fmt(n: float) -> str:
    return str(int(n)) if n.is_integer() else f"{n:.1f}"


def rate_limit(p: Profile, usage: Usage) -> Violation | None:
    over = [
        f"{prov} {_fmt(usage.requests_per_minute[prov])} requests/min (limit {limit})"
        for prov, limit in p.oversight.rate_limits
        if usage.requests_per_minute.get(prov, 0.0) > limit
    ]
    if not over:
        return None
    fix = f"fleetctl logs {p.name}; if this rate is expected, raise oversight.rate_limits in {p.source.name}"
    return Violation.of("rate-limit", p.name, "; ".join(over), fix)


def fallback_active(p: Profile, usage: Usage) -> Violation | None:
    if not usage.fallback_active:
        return None
    on = f" (now using {usage.provider})" if usage.provider else ""
    return Violation.of(
        "fallback-active",
        p.name,
        f"running on its fallback provider{on}",
        f"check the primary provider's status and credentials; fleetctl logs {p.name}",
    )
