"""The one domain exception. Its message is what the user sees, on one line."""


class FleetError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""

    exit_code = 1


class LockedError(FleetError):
    """Another fleetctl run holds the lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later
