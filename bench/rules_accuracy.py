"""Benchmark: how often the built-in diagnosis rules pick the operator's action.

Run:  python3 bench/rules_accuracy.py

Scores fleetctl/diagnosis/rules.toml against the labelled corpus in tests/corpus/diagnosis.toml
and prints the accuracy (verdict == the operator's choice), the acceptable rate (verdict is one
the operator would accept) and every miss, acceptable or not. No network, no systemd.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

from diagnosis_corpus import load, score  # noqa: E402

from fleetctl.diagnosis.rules import apply_rules  # noqa: E402


def main() -> int:
    cases = load()
    s = score(cases, apply_rules)
    tags = Counter(t for c in cases for t in c.tags)
    print(f"corpus: {s.cases} cases ({', '.join(f'{t} {n}' for t, n in sorted(tags.items()))})")
    print(f"accuracy (operator's choice): {s.exact}/{s.cases} = {s.accuracy:.1%}")
    print(f"acceptable verdicts:          {s.acceptable}/{s.cases} = {s.acceptable_rate:.1%}")
    print(f"misses: {len(s.misses)}")
    for case, d in s.misses:
        ok = "acceptable" if d.action in case.accept else "WRONG"
        print(
            f"  - {case.id}: rules chose {d.action.value} ({d.rule_id}), operator {case.expect.value} [{ok}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
