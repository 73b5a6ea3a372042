"""The cron-driven self-healing watchdog: detect, diagnose, act, verify, record.

One run (`fleetctl watchdog`, see run.py) looks at every agent at once, confirms a failure by
probing again, asks the diagnosis chain what is wrong, takes only allow-listed actions, checks
they worked and writes everything down (incidents.py). What must survive between runs (restart
history, backoff, holds, active credentials) is one JSON file (state.py).

Not named `watchdog`: that would shadow the PyPI package of that name for anyone importing it.
"""
