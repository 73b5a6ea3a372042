"""The diagnosis chain's view of redaction; the Redactor itself lives in fleetctl.secrets."""

from __future__ import annotations

from fleetctl.secrets.redact import MIN_SECRET_LEN, REDACTED, Redactor

__all__ = ["MIN_SECRET_LEN", "REDACTED", "Redactor"]
