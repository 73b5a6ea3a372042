"""What each agent costs: usage reports read by `oversee`, counters kept over time, budgets.

`report` reads an agent's usage endpoint (OpenClaw's Prometheus metrics or a small JSON shape),
`store` turns counters that reset on restart into increases per hour (like Prometheus'
`increase()`), `budget` raises the budget and spend-rate violations, `summary` is `fleetctl cost`.
"""
