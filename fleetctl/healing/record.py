"""Record: one incident per agent acted on (or restarted by systemd), and its one-line summary.

Every string in a record (a port holder's command line, a restore error that quotes the config,
a model's cause, a provider's discarded answer) is redacted with every secret fleetctl knows
before it is written anywhere: incidents.jsonl, the bulletin, cron.log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fleetctl.fleet.profiles import Profile
from fleetctl.healing import incidents
from fleetctl.healing.respond import Result
from fleetctl.secrets.known import FleetSecrets

BULLETIN_MAX = 300  # characters: a bulletin line is a headline, the incident log has the rest


class Recorder:
    def __init__(self, run_id: str, fenv: FleetSecrets) -> None:
        self.run_id = run_id
        self.fenv = fenv

    def record(
        self, p: Profile, result: Result, diag: dict[str, Any], symptom: str, now: float, duration: float
    ) -> dict[str, Any]:
        redact = self.fenv.mask
        # The diagnosis chain's time (at most its budget) and the SDK loading before it.
        timing: dict[str, Any] = {k: diag[k] for k in ("diagnosis_s", "sdk_load_s") if k in diag}
        rec = {
            "ts": round(now, 3),
            "time": incidents.iso(now),
            "run": self.run_id,
            "agent": p.name,
            "symptom": redact(symptom),
            "log_source": diag.get("log_source"),
            "log_warning": diag.get("log_warning"),
            "log_excerpt": diag.get("log_excerpt", []),
            "config_valid": diag.get("config_valid"),
            "changed_since_healthy": diag.get("changed_since_healthy", []),
            "diagnosis": diag.get("diagnosis"),
            "rules": diag.get("rules"),
            "provider": diag.get("provider"),
            "fallback": diag.get("fallback"),
            "disagreement": diag.get("disagreement"),  # the model chose another action than the rules
            "attempts": diag.get("attempts", []),
            **timing,
            "action": result.action,
            "verification": result.verification,
            "detail": redact(result.detail),
            "escalated": result.escalated,
            "duration_s": round(duration, 2),
            **result.extra,
        }
        return _scrub(rec, redact)

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


def _scrub(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrub(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v, redact) for v in value]
    return value
