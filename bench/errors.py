"""The project's own error type for bad input.

Anything a user can get wrong (an unknown name, a negative eps, a missing
dataset, a malformed file) raises :class:`UserError`. The CLI turns it into
one line on stderr and exit code 2; the Python API lets it propagate.
"""


class UserError(ValueError):
    """Bad input from a user: printed as one line, exit code 2."""


class DataMissingError(UserError):
    """A dataset is not on disk; the message names the command that fetches it."""
