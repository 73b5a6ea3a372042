"""The oversight pass (`fleetctl oversee`): checks with stable ids, alerts, coordinator
injection, the Prometheus textfile, and the staleness of the cron jobs themselves.

Modules: `model` (Violation, CHECKS), one module per check family (`agents`, `heartbeat`,
`drift`, `usage`, `usercheck`, `review`), `notify` (alerts, inbox, bulletin), `state`,
`metricsfile`, `secrets`, and `run`, which puts a pass together (`run.oversee`, `run.metrics`).

Only the light part is imported here: `fleetctl status` shows `staleness()` and must stay fast.
"""

from __future__ import annotations

from fleetctl.oversight.heartbeat import staleness, staleness_lines

__all__ = ["staleness", "staleness_lines"]
