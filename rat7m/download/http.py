"""HTTP for the downloader: one shared connection pool, proxies from the environment, retries.

Every request of a run goes through one :class:`HttpClient`, so ``--jobs N`` threads share
keep-alive connections. Proxies come from the standard ``HTTP_PROXY`` / ``HTTPS_PROXY`` /
``NO_PROXY`` variables (as curl and requests read them); urllib3 does not read them itself.
Redirects are followed here rather than inside urllib3 so that each hop (Figshare's
``ndownloader`` answers 302 to a storage host) goes through the right pool or proxy.

Retrying is a policy object (:class:`RetryPolicy`) with the sleep function as a seam, so tests
check the exact schedule (exponential backoff with jitter, ``Retry-After`` honoured on 429/503)
without waiting.
"""

from __future__ import annotations

import email.utils
import functools
import json
import logging
import random
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import urllib3

from rat7m.untrusted import (
    BodyTooLargeError,
    DeadlineError,
    UnsafeUrlError,
    check_url,
    discard,
    header_int,
    read_capped,
)

__all__ = [
    "CONNECTION_ERRORS",
    "CONNECT_TIMEOUT",
    "JSON_DEADLINE",
    "MAX_JSON_BYTES",
    "MAX_REDIRECTS",
    "READ_TIMEOUT",
    "RETRY_STATUSES",
    "USER_AGENT",
    "HttpClient",
    "PermanentError",
    "RetryPolicy",
    "RetryableError",
    "UnreachableError",
    "call_with_retries",
    "check_status",
    "parse_retry_after",
    "unreachable_reason",
]

log = logging.getLogger(__name__)

#: User-Agent sent with every request.
USER_AGENT = "rat7m-toolkit/0.1 (+urllib3)"
#: Seconds to wait for a connection, and for each read on an open connection.
CONNECT_TIMEOUT = 20.0
READ_TIMEOUT = 60.0
#: Redirect hops followed before giving up (Figshare needs one).
MAX_REDIRECTS = 10
#: Statuses worth retrying: the server or something in between is busy or broken for now.
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
#: Largest JSON answer read (a RAT7M article listing, or a page of 1000 files, is a few hundred KB).
MAX_JSON_BYTES = 16 << 20
#: Seconds one JSON request may take in all, however slowly the bytes trickle in.
JSON_DEADLINE = 120.0

_T = TypeVar("_T")

#: Errors of the connection itself (refused, reset, dropped mid-body, timed out): retried.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)


class RetryableError(Exception):
    """A failure worth another attempt (a busy server, a dropped connection)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        #: Seconds the server asked us to wait (``Retry-After``), if it said.
        self.retry_after = retry_after


class PermanentError(Exception):
    """A failure another attempt will not fix (404, 403, a listing that makes no sense)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status that said so, if it was one.
        self.status = status


class UnreachableError(PermanentError):
    """The host (or the proxy) cannot be reached at all: its name does not resolve or it refuses connections."""


def unreachable_reason(exc: BaseException) -> str | None:
    """Why a connection could not even be opened (``"Name or service not known"``), else ``None``.

    Only failures to open a connection count (urllib3's ``NewConnectionError``: no such host name,
    connection refused, no route), to the server or to the proxy in between. Timeouts, resets
    and dropped connections are not "unreachable": a slow or flaky link deserves patience.
    """
    proxy = False
    if isinstance(exc, urllib3.exceptions.ProxyError):
        proxy, exc = True, exc.original_error
    if not isinstance(exc, urllib3.exceptions.NewConnectionError):
        return None
    cause = exc.__cause__
    reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(exc)
    return f"proxy: {reason}" if proxy else reason


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date.

    Returns:
        The delay in seconds (never negative), or ``None`` when the header is absent or unreadable.
    """
    if value is None or not value.strip():
        return None
    value = value.strip()
    seconds = header_int(value)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


@dataclass
class RetryPolicy:
    """How many times and how long to wait before trying again.

    The delay after the n-th consecutive failure is ``backoff * 2**(n-1)`` capped at ``cap``,
    with "equal jitter" (a uniform pick in the upper half) so that parallel jobs hit by the same
    outage do not come back in lockstep. A server's ``Retry-After`` replaces that delay (capped
    at ``max_retry_after``).
    """

    #: Consecutive failed attempts (without a byte of progress) before a file is given up.
    attempts: int = 8
    #: First backoff delay, seconds.
    backoff: float = 1.0
    #: Longest backoff delay, seconds.
    cap: float = 60.0
    #: Longest ``Retry-After`` we obey, seconds.
    max_retry_after: float = 600.0
    #: Complete downloads with a wrong checksum before a file is given up.
    checksum_attempts: int = 3
    #: Attempts, when failing fast (listing), at a host that does not resolve or refuses connections.
    unreachable_attempts: int = 2
    #: Seconds between those attempts.
    unreachable_delay: float = 1.0
    #: The sleep function (a seam: tests record the schedule instead of waiting); ``None``: really
    #: wait, returning early when the run is interrupted (see :meth:`pause`).
    sleep: Callable[[float], None] | None = field(default=None, repr=False)
    #: Source of jitter in [0, 1).
    random: Callable[[], float] = field(default=random.random, repr=False)

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (``failures >= 1``)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        ceiling = min(self.cap, self.backoff * 2 ** max(0, failures - 1))
        return ceiling / 2 + ceiling / 2 * self.random()

    def wait(
        self,
        failures: int,
        retry_after: float | None = None,
        until: Callable[[float], object] | None = None,
        announce: Callable[[float], None] | None = None,
    ) -> float:
        """Sleep for :meth:`delay` (see :meth:`pause`) and return how long that was.

        ``announce`` is called with the delay before the wait starts, so a user told to wait ten
        minutes hears about it at the start of the ten minutes, not at their end.
        """
        seconds = self.delay(failures, retry_after)
        if announce is not None:
            announce(seconds)
        self.pause(seconds, until)
        return seconds

    def pause(self, seconds: float, until: Callable[[float], object] | None = None) -> None:
        """Wait ``seconds`` with :attr:`sleep`, or for real.

        ``until`` waits up to that long and returns early when the run is interrupted (an
        ``Event.wait``): a job told to come back in ten minutes must not hold up Ctrl-C as long.
        """
        if seconds <= 0:
            return
        if self.sleep is not None:
            self.sleep(seconds)
        elif until is not None:
            until(seconds)
        else:
            time.sleep(seconds)


def call_with_retries(func: Callable[[], _T], policy: RetryPolicy, what: str, *, fail_fast: bool = False) -> _T:
    """Call ``func`` until it stops raising :class:`RetryableError` or connection errors.

    Args:
        func: One attempt.
        policy: How often and how long to retry.
        what: What is being done, for messages.
        fail_fast: Give up after :attr:`RetryPolicy.unreachable_attempts` quick attempts when the
            host cannot be reached at all (see :func:`unreachable_reason`); other failures still
            get the full backoff. For listings, where a user waits for a plan; never for transfers.

    Raises:
        UnreachableError: ``fail_fast`` and the host does not resolve or refuses connections.
        PermanentError: from ``func``, or when the attempts are used up (naming ``what``).
    """
    failures = 0
    error: BaseException
    while True:
        try:
            return func()
        except PermanentError:
            raise
        except RetryableError as exc:
            error, retry_after = exc, exc.retry_after
        except CONNECTION_ERRORS as exc:
            error, retry_after = exc, None
            reason = unreachable_reason(exc) if fail_fast else None
            if reason is not None:
                failures += 1
                if failures >= policy.unreachable_attempts:
                    raise UnreachableError(f"{reason}, tried {failures} times") from exc
                log.info("%s: %s; trying once more in %.1f s", what, reason, policy.unreachable_delay)
                policy.pause(policy.unreachable_delay)
                continue
        failures += 1
        if failures >= policy.attempts:
            raise PermanentError(f"{what}: gave up after {failures} attempts; last error: {error}") from error
        policy.wait(failures, retry_after, announce=functools.partial(_announce, what, error, failures + 1, policy))


def _announce(what: str, error: BaseException, attempt: int, policy: RetryPolicy, seconds: float) -> None:
    log.info("%s: %s; retrying in %.1f s (attempt %d of %d)", what, error, seconds, attempt, policy.attempts)


def check_status(response: urllib3.BaseHTTPResponse, url: str, ok: frozenset[int] = frozenset({200})) -> None:
    """Raise unless ``response.status`` is in ``ok`` (the body of a failed response is drained).

    Raises:
        RetryableError: 408/429/5xx, carrying ``Retry-After``.
        PermanentError: any other status.
    """
    if response.status in ok:
        return
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    discard(response)  # an error page of endless length must not be read to its end
    message = f"HTTP {response.status} from {url}"
    if response.status in RETRY_STATUSES:
        raise RetryableError(message, retry_after)
    raise PermanentError(message, response.status)


class HttpClient:
    """One shared pool of connections (direct and through proxies) for the whole run.

    Args:
        maxsize: Connections kept per host (use the number of parallel jobs).
        proxies: Scheme -> proxy URL, plus ``"no"`` -> NO_PROXY list; ``None`` reads the environment.
    """

    def __init__(self, *, maxsize: int = 4, proxies: Mapping[str, str] | None = None) -> None:
        self.proxies = dict(urllib.request.getproxies_environment() if proxies is None else proxies)
        self._options: dict[str, Any] = {  # the same for the direct pool and each proxy's
            "maxsize": maxsize,
            "block": False,
            "headers": {"User-Agent": USER_AGENT},
            "timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT, read=READ_TIMEOUT),
            "retries": False,
        }
        self.direct = urllib3.PoolManager(**self._options)
        self._proxied: dict[str, urllib3.ProxyManager] = {}
        self._lock = threading.Lock()

    def pool_for(self, url: str) -> urllib3.PoolManager:
        """The pool a request to ``url`` goes through: a proxy's, or the direct one."""
        parts = urlsplit(url)
        proxy = self.proxies.get(parts.scheme)
        # proxy_bypass_environment: in urllib.request since Python 3.0, but typeshed leaves it out
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if not proxy or bypass(parts.hostname or "", self.proxies):
            return self.direct
        with self._lock:
            if proxy not in self._proxied:
                log.debug("using proxy %s for %s URLs", proxy, parts.scheme)
                self._proxied[proxy] = urllib3.ProxyManager(proxy, **self._options)
            return self._proxied[proxy]

    def open(
        self, url: str, headers: Mapping[str, str] | None = None, timeout: urllib3.Timeout | None = None
    ) -> tuple[urllib3.BaseHTTPResponse, str]:
        """GET ``url`` following redirects; the body is left unread for streaming.

        Returns:
            The final response (not yet read, content not decoded) and the URL that answered.

        Raises:
            RetryableError: too many redirects (a misbehaving mirror may recover).
            PermanentError: a redirect to anything but a plain HTTP(S) URL (``file:``, user-info,
                backslashes): no retry will make it one.
            urllib3.exceptions.HTTPError, OSError: the connection failed.
        """
        # None would mean "wait forever" to urllib3
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        for _ in range(MAX_REDIRECTS + 1):
            response = self.pool_for(url).request(
                "GET",
                url,
                headers=dict(headers or {}),
                redirect=False,
                preload_content=False,
                decode_content=False,
                **extra,
            )
            location = response.get_redirect_location()
            if not location:
                return response, url
            discard(response)
            log.debug("redirect %s -> %s", url, location)
            target = urljoin(url, location)
            try:
                check_url(target)
            except UnsafeUrlError as exc:
                raise PermanentError(f"{url} redirects to something we do not follow: {exc}") from exc
            url = target
        raise RetryableError(f"more than {MAX_REDIRECTS} redirects, last to {url}")

    def get_json(self, url: str) -> object:
        """GET ``url`` and decode its JSON body (one attempt; wrap in :func:`call_with_retries`).

        The body is read up to :data:`MAX_JSON_BYTES` and within :data:`JSON_DEADLINE` seconds from
        the request: a server sending an endless body, or one byte every twenty seconds, is cut.

        Raises:
            RetryableError, PermanentError: bad status (see :func:`check_status`), or a body that
                is not JSON (permanent: a captive portal or a wrong ``--api-url``), too long, or
                too slow.
        """
        deadline = time.monotonic() + JSON_DEADLINE
        read = min(READ_TIMEOUT, JSON_DEADLINE)
        timeout = urllib3.Timeout(connect=min(CONNECT_TIMEOUT, JSON_DEADLINE), read=read)
        response, final_url = self.open(url, {"Accept": "application/json"}, timeout=timeout)
        check_status(response, final_url)
        finished = False
        try:
            body = read_capped(response, MAX_JSON_BYTES, deadline)
            finished = True
        except BodyTooLargeError as exc:
            msg = (f"{final_url} answered over {MAX_JSON_BYTES >> 20} MB ({exc}) where a listing of a few hundred "
                   "KB was expected; refusing to read more")  # fmt: skip
            raise PermanentError(msg) from exc
        except DeadlineError as exc:
            msg = (f"{final_url} did not finish its answer within {JSON_DEADLINE:g} s ({exc}); the server is "
                   "trickling bytes: try again later or use --via-zip")  # fmt: skip
            raise PermanentError(msg) from exc
        finally:
            if not finished:
                response.close()
            response.release_conn()
        try:
            return json.loads(body)
        except (ValueError, RecursionError) as exc:  # RecursionError: "[[[[..." nested beyond reason
            start = body[:80].decode("utf-8", "replace")
            raise PermanentError(f"{final_url} did not answer JSON (starts with {start!r})") from exc

    def clear(self) -> None:
        """Close every pooled connection."""
        self.direct.clear()
        for pool in self._proxied.values():
            pool.clear()
