"""The systemd side: D-Bus client, journal, unit rendering."""
