"""LLM-assisted failure diagnosis for the watchdog, with built-in rules as the floor.

Importing this package (or any module in it) must stay cheap: the groq/anthropic SDKs are
imported only inside the provider calls, so `fleetctl status` never pays for them.
"""
