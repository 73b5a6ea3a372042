"""Benchmark: the fleet-wide Redactor, as a 50-agent fleet uses it.

Run:  python3 bench/redact_bench.py [--agents 50] [--secrets-per-agent 3] [--runs 20]
Prints a Markdown table: building the redactor (once per watchdog/oversee run) and redacting a
50-line prompt's worth of log text and one incident record line, median and p90 in ms.
"""

from __future__ import annotations

import argparse
import random
import statistics
import string
import time
from collections.abc import Callable

from fleetctl.secrets.redact import Redactor


def _timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    samples = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.9) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--agents", type=int, default=50)
    ap.add_argument("--secrets-per-agent", type=int, default=3)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "-_"
    values = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(16, 64)))
        for _ in range(args.agents * args.secrets_per_agent)
    ]
    lines = [
        f"2026-05-01T12:00:{i:02d} worker[{1000 + i}]: request {i} to upstream took {rng.randint(5, 900)} ms"
        for i in range(50)
    ]
    text = "\n".join(lines)
    r = Redactor(values)
    rows = {
        "build (once per run)": _timed(lambda: Redactor(values), args.runs),
        "redact 50 log lines": _timed(lambda: r.redact_lines(lines), args.runs),
        "redact one record line": _timed(lambda: r.redact(lines[0]), args.runs),
    }
    print(f"| {len(values)} secrets, {len(text)} chars of log | median ms | p90 ms |")
    print("| --- | ---: | ---: |")
    for name, (median, p90) in rows.items():
        print(f"| {name} | {median:.1f} | {p90:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
