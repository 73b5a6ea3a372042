"""Mission Control: `fleetctl dashboard`, a live web page of the installed fleet.

`data` assembles every document from the functions the CLI uses (status, staleness, holds,
incidents, config store, bulletin, alert state, journal); `redact` is the one place text is
scrubbed before it reaches a page; `app` is the Starlette application (every page has a JSON
twin, the page is a view of that API); `security` holds the per-run action token and the
access token; `unit` writes `fleet-dashboard.service`. Starlette and uvicorn are imported only
here, so `fleetctl status` never pays for them.
"""
