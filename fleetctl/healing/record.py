"""Record: one incident per agent acted on (or restarted by systemd), and its one-line summary.

Free text from the outside world (a port holder's command line, a restore error that quotes the
config) is redacted like the log excerpt before it is written anywhere.
"""

from __future__ import annotations

from typing import Any

from fleetctl.fleet.profiles import Profile
from fleetctl.healing import evidence, incidents
from fleetctl.healing.evidence import FleetEnv
from fleetctl.healing.respond import Result

BULLETIN_MAX = 300  # characters: a bulletin line is a headline, the incident log has the rest


class Recorder:
    def __init__(self, run_id: str, fenv: FleetEnv) -> None:
        self.run_id = run_id
        self.fenv = fenv

    def record(
        self, p: Profile, result: Result, diag: dict[str, Any], symptom: str, now: float, duration: float
    ) -> dict[str, Any]:
        redact = evidence.redactor_for(p, self.fenv).redact
        return {
            "ts": round(now, 3),
            "time": incidents.iso(now),
            "run": self.run_id,
            "agent": p.name,
            "symptom": redact(symptom),
            "log_source": diag.get("log_source"),
            "log_warning": diag.get("log_warning"),
            "log_excerpt": diag.get("log_excerpt", []),
            "config_valid": diag.get("config_valid"),
            "diagnosis": diag.get("diagnosis"),
            "rules": diag.get("rules"),
            "provider": diag.get("provider"),
            "fallback": diag.get("fallback"),
            "attempts": diag.get("attempts", []),
            "action": result.action,
            "verification": result.verification,
            "detail": redact(result.detail),
            "escalated": result.escalated,
            "duration_s": round(duration, 2),
            **result.extra,
        }

    def write(self, rec: dict[str, Any]) -> None:
        incidents.append(rec)
        incidents.append_bulletin(self.bulletin(rec))

    @staticmethod
    def bulletin(rec: dict[str, Any]) -> str:
        line = f"{rec['time']} watchdog: {Recorder.line(rec)}"
        return line if len(line) <= BULLETIN_MAX else line[: BULLETIN_MAX - 3] + "..."

    @staticmethod
    def line(rec: dict[str, Any]) -> str:
        by = ""
        if rec.get("provider"):
            by = f" [{rec['provider']}{', fallback' if rec.get('fallback') else ''}]"
        if rec["action"] == "none":
            return f"{rec['agent']}: {rec['symptom']}; {rec['detail']}"
        return (
            f"{rec['agent']}: {rec['symptom']} -> {rec['action']} -> {rec['verification']}"
            f" ({rec['detail']}){by}"
        )
