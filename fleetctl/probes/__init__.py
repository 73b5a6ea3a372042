"""Health probes of the agents' HTTP endpoints."""
