"""Carry a fleet to another platform: `fleetctl export kubernetes` (kubernetes.py, mapping.py)."""
