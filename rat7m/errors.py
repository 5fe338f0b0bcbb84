"""Exception types of the toolkit: the library raises them, only scripts turn them into exit codes.

Each message says what is wrong, where (file, line, sample) and, when it can, what to do.
"""


class Rat7mError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class BadInputError(Rat7mError, ValueError):
    """A file or argument given by the user is not what it should be (scripts exit with 2)."""


class DownloadError(Rat7mError):
    """A transfer failed for good: the server, the network or the checksum said no."""
