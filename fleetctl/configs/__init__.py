"""Agent config changes treated like migrations: parse/validate, versioned store, drift, diff.

The systemd side (restart, health wait, automatic rollback) lives in `apply.py`; the modules
here are the pieces it calls and know nothing about systemd.
"""
