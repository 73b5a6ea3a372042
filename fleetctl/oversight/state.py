"""What one oversight pass remembers for the next: open violations (to tell new ones, which go
to the coordinator, from ones already told) and fallback episodes.

One JSON file, `oversight.json` in the state dir, versioned and written atomically. Alert
dedup and the outbox are not here: `alerts.dispatch` keeps its own state.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleetctl.common.atomic import write_atomic
from fleetctl.oversight.model import Violation

STATE_FILE = "oversight.json"
VERSION = 1


@dataclass
class OversightState:
    open: dict[str, Violation] = field(default_factory=dict)  # key -> violation
    first_seen: dict[str, float] = field(default_factory=dict)  # key -> unix seconds
    # The checklist review is skipped while the coordinator's log is unchanged: its digest and
    # the verdict then (a violation or None) are reused.
    review_digest: str = ""
    review_violation: Violation | None = None
    down_since: dict[str, float] = field(default_factory=dict)  # agent -> first pass that saw it down
    suppressed: dict[str, str] = field(default_factory=dict)  # key -> why its page is held back now
    suppressed_total: dict[str, int] = field(default_factory=dict)  # "check/reason" -> episodes, ever

    @staticmethod
    def path(state_dir: Path) -> Path:
        return Path(state_dir) / STATE_FILE

    @classmethod
    def load(cls, state_dir: Path, move_aside: bool = True) -> tuple[OversightState, str]:
        """(state, problem). An unreadable file is moved aside (by the pass, not by readers
        such as `fleetctl metrics`) and the pass starts afresh: every open violation is then
        "new" once more, which is noisy but never silent."""
        path = cls.path(state_dir)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("version") != VERSION:
                raise ValueError(f"unknown version (expected {VERSION})")
            review = data.get("review") or {}
            last = review.get("violation")
            return cls(
                open={k: Violation.from_dict(v) for k, v in data.get("open", {}).items()},
                first_seen={k: float(v) for k, v in data.get("first_seen", {}).items()},
                review_digest=str(review.get("digest", "")),
                review_violation=Violation.from_dict(last) if last else None,
                down_since={str(k): float(v) for k, v in data.get("down_since", {}).items()},
                suppressed={str(k): str(v) for k, v in data.get("suppressed", {}).items()},
                suppressed_total={str(k): int(v) for k, v in data.get("suppressed_total", {}).items()},
            ), ""
        except FileNotFoundError:
            return cls(), ""
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            if not move_aside:
                return cls(), f"{path}: unreadable ({e})"
            aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
            try:
                path.replace(aside)
            except OSError:
                pass
            return cls(), f"{path}: unreadable ({e}); moved to {aside}, starting afresh"

    def save(self, state_dir: Path) -> None:
        doc: dict[str, Any] = {
            "version": VERSION,
            "open": {k: v.to_dict() for k, v in sorted(self.open.items())},
            "first_seen": dict(sorted(self.first_seen.items())),
            "down_since": dict(sorted(self.down_since.items())),
            "suppressed": dict(sorted(self.suppressed.items())),
            "suppressed_total": dict(sorted(self.suppressed_total.items())),
            "review": {
                "digest": self.review_digest,
                "violation": self.review_violation.to_dict() if self.review_violation else None,
            },
        }
        write_atomic(self.path(state_dir), json.dumps(doc, indent=1, sort_keys=True) + "\n", mode=0o600)
