"""Per-agent usage over time, from counters that reset whenever an agent restarts.

Each `oversee` pass hands over the counters it read; what grew since the last pass is added to
the current hour's bucket. A counter lower than last time means the agent restarted and began
again from zero, so its whole value is new (Prometheus' `increase()` reads resets the same way);
a series not seen last time began at zero since then. The very first look at an agent records
its counters and adds nothing: fleetctl cannot know when that usage happened.

Buckets are kept for RETENTION_HOURS (a week and a day: `--since 7d` and yesterday's budget).
One JSON file, replaced atomically (0600: it names models and spend, nothing secret, but it is
fleetctl state like the rest).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from fleetctl.common import paths
from fleetctl.common.atomic import write_atomic
from fleetctl.cost.report import USD_KIND, Counters, Series

STORE_FILE = "cost.json"
VERSION = 1
RETENTION_HOURS = 8 * 24


def hour_of(ts: float) -> int:
    return int(ts // 3600)


def local_midnight(now: float) -> float:
    """Start of the host's local day: budgets are per day as the people paying see it."""
    d = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
    return d.timestamp()


@dataclass
class AgentCost:
    last: dict[str, float] = field(default_factory=dict)  # series key -> raw counter value
    last_time: float | None = None
    first_time: float | None = None
    hours: dict[int, dict[str, float]] = field(default_factory=dict)  # hour -> series key -> increase
    rate_usd_per_hour: float | None = None  # between the last two looks

    def observe(self, counters: Counters, now: float) -> None:
        raw = {s.key: v for s, v in counters.items()}
        if self.last_time is None:
            self.first_time = now
        else:
            grown: dict[str, float] = {}
            for key, value in raw.items():
                before = self.last.get(key)
                inc = value if before is None or value < before else value - before
                if inc > 0:
                    grown[key] = inc
            bucket = self.hours.setdefault(hour_of(now), {})
            for key, inc in grown.items():
                bucket[key] = bucket.get(key, 0.0) + inc
            elapsed = now - self.last_time
            usd = sum(v for k, v in grown.items() if Series.from_key(k).kind == USD_KIND)
            self.rate_usd_per_hour = usd * 3600 / elapsed if elapsed > 0 else None
        self.last, self.last_time = raw, now
        oldest = hour_of(now) - RETENTION_HOURS
        self.hours = {h: b for h, b in self.hours.items() if h > oldest}

    def window(self, since: float, until: float | None = None) -> Counters:
        """Increases in the hours that start at or after `since` (and before `until`)."""
        first, last = hour_of(since), hour_of(until) if until is not None else None
        out: Counters = {}
        for h, bucket in self.hours.items():
            if h < first or (last is not None and h >= last):
                continue
            for key, v in bucket.items():
                s = Series.from_key(key)
                out[s] = out.get(s, 0.0) + v
        return out

    def usd(self, since: float, until: float | None = None) -> float:
        return sum(v for s, v in self.window(since, until).items() if s.kind == USD_KIND)

    def to_dict(self) -> dict[str, Any]:
        return {
            "last": self.last,
            "last_time": self.last_time,
            "first_time": self.first_time,
            "hours": {str(h): b for h, b in sorted(self.hours.items())},
            "rate_usd_per_hour": self.rate_usd_per_hour,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentCost:
        return cls(
            last={str(k): float(v) for k, v in d.get("last", {}).items()},
            last_time=d.get("last_time"),
            first_time=d.get("first_time"),
            hours={int(h): {str(k): float(v) for k, v in b.items()} for h, b in d.get("hours", {}).items()},
            rate_usd_per_hour=d.get("rate_usd_per_hour"),
        )


@dataclass
class CostStore:
    agents: dict[str, AgentCost] = field(default_factory=dict)

    def agent(self, name: str) -> AgentCost:
        return self.agents.setdefault(name, AgentCost())

    def today_usd(self, names: Iterable[str], now: float | None = None) -> dict[str, float]:
        since = local_midnight(time.time() if now is None else now)
        return {n: self.agents[n].usd(since) for n in names if n in self.agents}


def store_path() -> Path:
    return paths.state_dir() / STORE_FILE


def load(path: Path | None = None) -> tuple[CostStore, str | None]:
    """The store, or an empty one and the reason (a damaged file must not stop oversee)."""
    path = path or store_path()
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("version") != VERSION:
            raise ValueError(f"unknown version {doc.get('version') if isinstance(doc, dict) else doc!r}")
        return CostStore({str(n): AgentCost.from_dict(a) for n, a in doc.get("agents", {}).items()}), None
    except FileNotFoundError:
        return CostStore(), None
    except (OSError, ValueError, TypeError, AttributeError) as e:
        return CostStore(), f"{path}: unreadable ({e}); cost history starts again"


def save(store: CostStore, path: Path | None = None) -> None:
    doc = {"version": VERSION, "agents": {n: a.to_dict() for n, a in sorted(store.agents.items())}}
    write_atomic(path or store_path(), json.dumps(doc, sort_keys=True) + "\n", mode=0o600)
