"""The local Figshare server's fault model and request log (:mod:`rat7m.demo.figshare_server`).

Tests set :class:`Faults` per file name, for every file (:data:`ALL_FILES`) or for the API JSON
(:data:`API`), and read back what crossed the wire as :class:`RequestRecord` entries.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ALL_FILES", "API", "Faults", "RequestRecord"]

#: Fault target meaning "every file (and every article zip) without its own faults".
ALL_FILES = "*"
#: Fault target meaning "the API JSON endpoints" (listings, file details).
API = "<api>"


@dataclass
class Faults:
    """Misbehaviours of the server for one target (a file name, every file, or the API).

    Counted faults ("for the first K requests") count the requests of each file separately, so a
    fault set for :data:`ALL_FILES` with ``status_times=2`` fails the first two requests of every
    file. The counts restart whenever faults are set.

    Attributes:
        fail: permanent failure: every request answers this status (e.g. 500 or 404).
        status: answer this status (e.g. 429, 500, 503) to the first ``status_times`` requests.
        status_times: how many requests get ``status``.
        retry_after: seconds sent as ``Retry-After`` with ``status`` (none if ``None``).
        drop_after: cut the connection after this many bytes of body (when the body is longer),
            leaving the client with a short body.
        drop_times: drop only the first K responses that have a body (``None``: always).
        ignore_range: answer ``Range`` requests with 200 and the whole file.
        corrupt_offset: flip every bit of the file byte at this offset (clamped to the last byte)
            in bodies that include it, so the MD5 fails.
        corrupt_times: corrupt only the first K responses with a body (``None``: always).
        rate: throttle bodies to this many bytes per second.
        no_length: send file and zip bodies without ``Content-Length`` (the end of the body is the
            connection closing), as a streaming server does: the client cannot know the size.
        raw_retry_after: send this exact ``Retry-After`` text with ``status`` (e.g. ``"\xb2"``,
            a Unicode digit that ``int()`` refuses), instead of ``retry_after``.
        raw_length: send this exact ``Content-Length`` text with file and zip bodies (the body
            then ends when the connection closes).
        redirect_to: the ``/ndownloader/files/...`` hop redirects here (e.g. ``file:///etc/passwd``).
        endless: (API) after the JSON, keep sending spaces without ``Content-Length`` until the
            client hangs up: an endless body.
    """

    fail: int | None = None
    status: int | None = None
    status_times: int = 1
    retry_after: int | None = None
    drop_after: int | None = None
    drop_times: int | None = None
    ignore_range: bool = False
    corrupt_offset: int | None = None
    corrupt_times: int | None = None
    rate: float | None = None
    no_length: bool = False
    raw_retry_after: str | None = None
    raw_length: str | None = None
    redirect_to: str | None = None
    endless: bool = False

    def __post_init__(self) -> None:
        for key in ("fail", "status"):
            code = getattr(self, key)
            if code is not None and not 400 <= code <= 599:
                raise ValueError(f"Faults.{key} must be an HTTP error status (400-599), got {code}")
        for key in ("status_times", "retry_after", "drop_after", "drop_times", "corrupt_offset", "corrupt_times"):
            value = getattr(self, key)
            if value is not None and value < 0:
                raise ValueError(f"Faults.{key} must be >= 0, got {value}")
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"Faults.rate must be > 0 bytes/s, got {self.rate}")


@dataclass
class RequestRecord:
    """One request as the server saw and answered it.

    The server logs a request when it arrives and updates the record before each write, so by
    the time a client has read a response its record is already complete.

    Attributes:
        method: ``GET`` or ``HEAD``.
        path: request path with its query string.
        range: the ``Range`` header, or ``None``.
        status: the status answered (0 until the status line is sent).
        sent: bytes of body handed to the socket (a drop fault stops it at exactly N).
        name: the file (or zip) name the request was about, ``API`` for the JSON, else ``None``.
        finished: whether the server is done with the request.
    """

    method: str
    path: str
    range: str | None
    status: int = 0
    sent: int = 0
    name: str | None = None
    finished: bool = False
