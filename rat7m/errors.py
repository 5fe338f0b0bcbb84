"""Exception types of the toolkit: the library raises them, only scripts turn them into exit codes.

Each message says what is wrong, where (file, line, sample) and, when it can, what to do. The
public ones are gathered here (and re-exported where they were first defined, for older imports).
"""

__all__ = [
    "BadInputError",
    "ChunkReadError",
    "DownloadError",
    "NotEnoughSpaceError",
    "Rat7mError",
    "UnsafePickleError",
    "UsageError",
]


class Rat7mError(Exception):
    """Base class of every error the toolkit raises on purpose."""


class BadInputError(Rat7mError, ValueError):
    """A file or argument given by the user is not what it should be (scripts exit with 2)."""


class DownloadError(Rat7mError):
    """A transfer failed for good: the server, the network or the checksum said no."""


class UsageError(BadInputError):
    """A bad command-line argument; its message is the whole line to print (prog and hint included)."""


class UnsafePickleError(BadInputError):
    """The pickle asks for something a table never needs: a global outside the allow-list, a
    forged numpy state, a persistent id (it may be trying to run code or corrupt memory)."""


class ChunkReadError(Rat7mError):
    """A chunk could not be opened, or ended before its last wanted frame.

    Attributes:
        reason: one line for the user, saying what happened.
        decoded: how many frames were decoded before the stop (offsets below it were delivered).
        at_end: the chunk ended where its header says it ends (it is complete but shorter than wanted).
    """

    def __init__(self, reason: str, decoded: int, at_end: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.decoded = decoded
        self.at_end = at_end


class NotEnoughSpaceError(BadInputError):
    """The plan does not fit on the disk (scripts exit with 2 before downloading anything)."""
