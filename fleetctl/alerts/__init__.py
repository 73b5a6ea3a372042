"""Alerts: one small module per service, each with `send(alert, cfg, secrets, client)` and
`validate(cfg)`; `dispatch` decides what to send when (dedup, resolve, retries, outbox)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fleetctl.alerts import discord, ntfy, slack, telegram, webhook
from fleetctl.alerts.base import Channel, DeliveryError
from fleetctl.alerts.model import Alert

CHANNELS: dict[str, Channel] = {
    "slack": slack,
    "discord": discord,
    "ntfy": ntfy,
    "telegram": telegram,
    "webhook": webhook,
}


def validate_channels(channels: Sequence[Mapping[str, Any]], where: str = "alerts.channels") -> list[str]:
    """Every problem in the `[[alerts.channels]]` tables, each as `alerts.channels[i]: key: message`."""
    problems: list[str] = []
    seen: set[str] = set()
    for i, cfg in enumerate(channels):
        at = f"{where}[{i}]"
        kind = cfg.get("type")
        module = CHANNELS.get(kind) if isinstance(kind, str) else None
        if module is None:
            problems.append(f"{at}: type: must be one of {', '.join(CHANNELS)}")
            continue
        problems += [f"{at}: {p}" for p in module.validate(cfg)]
        name = cfg.get("name")
        if isinstance(name, str) and name:
            # The outbox refers to channels by name, so two with one name would mix deliveries.
            if name in seen:
                problems.append(f"{at}: name: {name!r} is used by another channel")
            seen.add(name)
    return problems


__all__ = ["Alert", "CHANNELS", "Channel", "DeliveryError", "validate_channels"]
