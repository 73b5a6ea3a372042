"""Read an agent's usage report: cumulative tokens and USD per provider and model.

Two shapes (profile `[cost] format`):
- `prometheus`: OpenClaw's `diagnostics-prometheus` plugin at `/api/diagnostics/prometheus`,
  counters `openclaw_model_tokens_total{agent,channel,model,provider,token_type}` and
  `openclaw_model_cost_usd_total{agent,channel,model,provider}`; other agents may serve the same
  names. Series are summed over the labels fleetctl does not keep (agent, channel).
- `json`: `{"models": [{"provider": "groq", "model": "llama-3.3-70b",
  "tokens": {"input": 1200, "output": 340}, "cost_usd": 0.0123}]}`, counters since the agent
  started.
The bearer token, when the endpoint needs one, is named by `[cost] token_env` and read from the
agent's secrets file (or fleetctl's environment), never from the profile.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fleetctl.fleet.profiles import Profile

MAX_BODY = 4 * 1024 * 1024  # a busy gateway's metrics page is tens of kB; refuse a runaway one
TOKENS = "openclaw_model_tokens_total"
USD = "openclaw_model_cost_usd_total"
USD_KIND = "usd"


@dataclass(frozen=True, order=True)
class Series:
    """One counter: `kind` is "usd" or "tokens:<token_type>" (input, output, cache_read, …)."""

    provider: str
    model: str
    kind: str

    @property
    def key(self) -> str:
        return f"{self.provider}\t{self.model}\t{self.kind}"

    @classmethod
    def from_key(cls, key: str) -> Series:
        provider, model, kind = key.split("\t")
        return cls(provider, model, kind)


Counters = dict[Series, float]


def _add(out: Counters, s: Series, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{s.provider}/{s.model} {s.kind}: not a counter value ({value!r})")
    out[s] = out.get(s, 0.0) + float(value)


def parse_prometheus(text: str) -> Counters:
    """Sum OpenClaw's two counter families by (provider, model, token type)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: Counters = {}
    try:
        families = list(text_string_to_metric_families(text))
    except ValueError as e:
        raise ValueError(f"not Prometheus text: {e}") from None
    for fam in families:
        for sample in fam.samples:
            labels = sample.labels
            if sample.name == TOKENS:
                kind = "tokens:" + (labels.get("token_type") or "total")
            elif sample.name == USD:
                kind = USD_KIND
            else:
                continue
            _add(out, Series(labels.get("provider", ""), labels.get("model", ""), kind), sample.value)
    return out


def parse_json(doc: Any) -> Counters:
    """The documented JSON shape; a wrong shape is an error, never a silent zero."""
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list):
        raise ValueError('expected an object with a "models" list')
    out: Counters = {}
    for i, m in enumerate(doc["models"]):
        if not isinstance(m, dict) or not isinstance(m.get("model"), str):
            raise ValueError(f"models[{i}]: needs a string model")
        provider = m.get("provider", "")
        if not isinstance(provider, str):
            raise ValueError(f"models[{i}].provider: not a string")
        tokens = m.get("tokens", {})
        if not isinstance(tokens, dict):
            raise ValueError(f"models[{i}].tokens: not an object")
        for kind, n in tokens.items():
            _add(out, Series(provider, m["model"], f"tokens:{kind}"), n)
        if "cost_usd" in m:
            _add(out, Series(provider, m["model"], USD_KIND), m["cost_usd"])
    return out


def report_url(p: Profile) -> str | None:
    return f"http://127.0.0.1:{p.port}{p.cost.path}" if p.cost.path else None


def fetch_all(
    profiles: Sequence[Profile], token_of: Callable[[Profile], str | None]
) -> dict[str, Counters | str]:
    """agent -> its counters, or the reason they could not be read. Asked concurrently."""
    import httpx

    targets = [(p, url) for p in profiles if (url := report_url(p))]
    if not targets:
        return {}

    with httpx.Client(trust_env=False, follow_redirects=False) as client:

        def one(p: Profile, url: str) -> Counters | str:
            headers: Mapping[str, str] = {}
            if p.cost.token_env:
                token = token_of(p)
                if not token:
                    return f"{p.cost.token_env} is not set in {p.name}'s secrets file or the environment"
                headers = {"Authorization": f"Bearer {token}"}
            try:
                r = client.get(url, headers=headers, timeout=p.health.timeout)
            except httpx.HTTPError as e:
                return f"GET {url}: {type(e).__name__}"
            if r.status_code != 200:
                return f"GET {url}: HTTP {r.status_code}"
            if len(r.content) > MAX_BODY:
                return f"GET {url}: answer larger than {MAX_BODY} bytes"
            try:
                if p.cost.format == "json":
                    return parse_json(json.loads(r.content))
                return parse_prometheus(r.content.decode("utf-8", errors="replace"))
            except ValueError as e:
                return f"GET {url}: unexpected answer: {e}"

        with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
            futures = {p.name: pool.submit(one, p, url) for p, url in targets}
            return {name: f.result() for name, f in futures.items()}
