"""The one domain exception. Its message is what the user sees, on one line."""


class FleetError(Exception):
    """A problem the user can fix; the CLI prints the message and exits non-zero."""

    exit_code = 1

    def __init__(self, message: str = "", *, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class LockedError(FleetError):
    """Another fleetctl run holds the lock."""

    exit_code = 75  # EX_TEMPFAIL: try again later
