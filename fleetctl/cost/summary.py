"""`fleetctl cost`: tokens and USD per agent, model and provider over a window, and the total."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetctl.cost import store
from fleetctl.cost.report import USD_KIND
from fleetctl.fleet.profiles import Fleet

JSON_VERSION = 1


@dataclass
class ModelCost:
    agent: str
    provider: str
    model: str
    tokens: dict[str, float] = field(default_factory=dict)  # token type -> count
    usd: float = 0.0

    @property
    def total_tokens(self) -> float:
        return sum(self.tokens.values())


@dataclass
class CostReport:
    since: float
    until: float
    rows: list[ModelCost]
    silent: list[str]  # agents with no usage endpoint declared: nothing is guessed for them
    waiting: list[str]  # agents that report, but with no increase recorded yet
    problem: str | None = None

    def agent_usd(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.rows:
            out[r.agent] = out.get(r.agent, 0.0) + r.usd
        return out

    @property
    def total_usd(self) -> float:
        return sum(r.usd for r in self.rows)

    @property
    def total_tokens(self) -> float:
        return sum(r.total_tokens for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": JSON_VERSION,
            "since": self.since,
            "until": self.until,
            "agents": {
                a: {
                    "usd": round(usd, 6),
                    "models": [
                        {
                            "provider": r.provider,
                            "model": r.model,
                            "tokens": {k: int(v) for k, v in sorted(r.tokens.items())},
                            "usd": round(r.usd, 6),
                        }
                        for r in self.rows
                        if r.agent == a
                    ],
                }
                for a, usd in sorted(self.agent_usd().items())
            },
            "total": {"usd": round(self.total_usd, 6), "tokens": int(self.total_tokens)},
            "not_reporting": self.silent,
            "no_data_yet": self.waiting,
            "problem": self.problem,
        }


def cost_report(fleet: Fleet, since: float, until: float) -> CostReport:
    st, problem = store.load()
    rows: list[ModelCost] = []
    waiting = []
    for p in fleet.profiles:
        if not p.cost.path:
            continue
        a = st.agents.get(p.name)
        got = a.window(since) if a else {}
        by_model: dict[tuple[str, str], ModelCost] = {}
        for s, v in sorted(got.items()):
            row = by_model.setdefault((s.provider, s.model), ModelCost(p.name, s.provider, s.model))
            if s.kind == USD_KIND:
                row.usd += v
            else:
                kind = s.kind.removeprefix("tokens:")
                row.tokens[kind] = row.tokens.get(kind, 0.0) + v
        if not by_model:
            waiting.append(p.name)
        rows += sorted(by_model.values(), key=lambda r: (-r.usd, r.provider, r.model))
    silent = [p.name for p in fleet.profiles if not p.cost.path]
    return CostReport(since, until, rows, silent, waiting, problem)


def _tokens(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def table(r: CostReport, window: str) -> list[str]:
    header = ("AGENT", "PROVIDER", "MODEL", "INPUT", "OUTPUT", "TOKENS", "USD")
    body = [
        (
            m.agent,
            m.provider or "-",
            m.model or "-",
            _tokens(m.tokens.get("input", 0.0)),
            _tokens(m.tokens.get("output", 0.0)),
            _tokens(m.total_tokens),
            f"{m.usd:.4f}",
        )
        for m in r.rows
    ]
    body.append(("total", "", "", "", "", _tokens(r.total_tokens), f"{r.total_usd:.4f}"))
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    right = {3, 4, 5, 6}
    out = [
        "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in (header, *body)
    ]
    out.insert(0, f"cost over the last {window}")
    per_agent = r.agent_usd()
    if len(per_agent) > 1:
        out.append(
            "by agent: "
            + ", ".join(f"{a} ${u:.2f}" for a, u in sorted(per_agent.items(), key=lambda x: -x[1]))
        )
    if r.waiting:
        out.append(f"no usage recorded yet: {', '.join(r.waiting)} (oversee records it on each pass)")
    if r.silent:
        out.append(f"not reporting (no [cost] path in their profile): {', '.join(r.silent)}")
    if r.problem:
        out.append(f"problem: {r.problem}")
    return out
