"""fleetctl: run a fleet of long-lived AI agents as user-level systemd units."""

__version__ = "0.1.0"
