"""The bundled stand-in agent: `python -m fleetctl.demo_agent`."""
