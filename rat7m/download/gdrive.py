"""Fetch one publicly shared file from Google Drive, through its "can't scan this file" page.

The official mini-RAT7M table is shared on Google Drive. ``https://drive.google.com/uc?id=<ID>``
does not always answer with the file: for a file too large to virus-scan, Drive answers with an
HTML page asking the user to confirm. That page carries a ``<form id="download-form">`` whose
``action`` (today ``https://drive.usercontent.google.com/download``) and hidden inputs (``id``,
``export``, ``confirm``, ``uuid``) make up the real download URL. Older pages, and small files,
use an ``<a href="/uc?export=download&confirm=...">`` link instead. When the file's download
quota is spent, or it is no longer shared, Drive answers with a page whose
``<p class="uc-error-subcaption">`` says why. (gdown and sleap-io document the same page.)

We scrape URLs out of a web page, so we are careful: only hosts in :data:`ALLOWED_HOSTS` (or
under :data:`ALLOWED_HOST_SUFFIXES`, or the host of the ``base_url`` the caller chose) are ever
contacted, redirects included; a page is read up to :data:`MAX_PAGE_BYTES` only; the file is
written where the caller says, never where ``Content-Disposition`` says. Bytes go to
``<dest>.part`` and are renamed to ``dest`` only when complete; a rerun (or a retry after a
dropped connection) continues the ``.part`` with an HTTP ``Range`` request when the server
honours it, and starts again cleanly when it does not.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable
from html import unescape
from html.parser import HTMLParser
from pathlib import Path

import urllib3
from tqdm import tqdm

from rat7m.errors import DownloadError
from rat7m.untrusted import (
    UnsafeUrlError,
    UntrustedFileError,
    check_url,
    discard,
    disk_full_message,
    header_int,
    open_own_file,
)

__all__ = [
    "ALLOWED_HOSTS",
    "ALLOWED_HOST_SUFFIXES",
    "BACKOFF_SECONDS",
    "CHUNK_SIZE",
    "DRIVE_URL",
    "HEAD_SIZE",
    "MAX_ATTEMPTS",
    "MAX_HOPS",
    "MAX_PAGE_BYTES",
    "MAX_RETRY_AFTER",
    "TIMEOUT",
    "USER_AGENT",
    "download_drive_file",
    "looks_like_pickle",
]

log = logging.getLogger(__name__)

#: Where a Drive file id is first asked for (``?id=<ID>&export=download`` is appended).
#: Tests point ``base_url`` at a loopback imitation of Drive instead.
DRIVE_URL = "https://drive.google.com/uc"

#: Hosts we may contact, exactly. The confirmation page is served by drive.google.com or
#: docs.google.com, the bytes by drive.usercontent.google.com. Tests add "127.0.0.1".
ALLOWED_HOSTS: frozenset[str] = frozenset({"drive.google.com", "docs.google.com", "drive.usercontent.google.com"})

#: Host suffixes we may contact too: Drive serves bytes from per-region ``*.googleusercontent.com``.
ALLOWED_HOST_SUFFIXES: tuple[str, ...] = (".googleusercontent.com",)

#: Largest HTML page we read: a confirmation page is a few kB; anything bigger is not one.
MAX_PAGE_BYTES = 1 << 20

#: Most requests (redirects and confirmation pages) followed for one attempt.
MAX_HOPS = 8

#: Attempts before giving up on a network error, a 5xx or a 429; each resumes the ``.part``.
MAX_ATTEMPTS = 4

#: Seconds slept after the first failed attempt, doubled after each further one.
BACKOFF_SECONDS = 2.0

#: Bytes read per chunk of the file.
CHUNK_SIZE = 1 << 20

#: Bytes of the file's start handed to ``expect`` (fewer if the file is shorter).
HEAD_SIZE = 64

#: Connect and read timeouts (seconds) of each request.
TIMEOUT = urllib3.Timeout(connect=15.0, read=60.0)

#: Drive shows the confirmation page (rather than a terse refusal) to browsers, so we look like one.
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"

_ERROR_CAPTION_RE = re.compile(r'<p class="uc-error-subcaption">(.*?)</p>', re.DOTALL | re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]+>")
_CONTENT_RANGE_RE = re.compile(r"bytes[ ]+([0-9]{1,18})-([0-9]{1,18})/([0-9]{1,18}|\*)|bytes[ ]+\*/([0-9]{1,18})")
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


#: Longest ``Retry-After`` (seconds) we agree to wait.
MAX_RETRY_AFTER = 300.0


class _TransientError(Exception):
    """A failure worth another attempt (network, 5xx, 429, a range the server got wrong)."""

    def __init__(self, message: str, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def looks_like_pickle(head: bytes) -> bool:
    """Tell whether the first bytes of a file look like a pickle and not like a web page.

    A pickle written with protocol 2 or later (numpy and Python 3 always do) starts with the
    PROTO opcode 0x80 followed by the protocol number; a Drive error page starts with
    ``<!DOCTYPE html>`` or ``<html>``.

    Args:
        head: The first bytes of the file (a few are enough).

    Returns:
        True when ``head`` starts like a pickle of protocol 2 to 5.
    """
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        return False
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def download_drive_file(
    file_id: str,
    dest: Path,
    *,
    pool: urllib3.PoolManager | None = None,
    base_url: str = DRIVE_URL,
    progress: bool = True,
    expect: Callable[[bytes], bool] | None = None,
    check: Callable[[Path], str | None] | None = None,
) -> Path:
    """Download a publicly shared Google Drive file to ``dest``, confirming Drive's scan page if needed.

    An existing ``dest`` is replaced (the caller decides whether a rerun should skip it); an
    existing ``<dest>.part`` is continued with an HTTP ``Range`` request.

    Args:
        file_id: The Drive file id (the ``<ID>`` of ``https://drive.google.com/file/d/<ID>/view``).
        dest: Path of the file to write; its folder is created if needed.
        pool: urllib3 pool to use (e.g. the caller's, with proxies); a new one if None.
        base_url: The Drive ``uc`` endpoint; its host is trusted like :data:`ALLOWED_HOSTS`.
        progress: Show a tqdm bar (bytes, rate, ETA).
        expect: Called with the file's first bytes (up to :data:`HEAD_SIZE`) before anything
            is written; returning False aborts, e.g. ``looks_like_pickle``.
        check: Called with the ``.part`` once the server says the file is complete; it returns
            what is wrong with it (e.g. a pickle that ends before its STOP opcode) or ``None``.
            A file is renamed to ``dest`` only when its length is known complete (the server
            said how long it is and that many bytes came) and ``check`` accepts it; otherwise
            it stays ``.part`` and the next attempt (or rerun) continues it.

    Returns:
        ``dest``.

    Raises:
        DownloadError: Drive refused (quota, permission), sent a page without a download link,
            sent something ``expect`` rejected, pointed at a host we do not trust, or the
            network kept failing for :data:`MAX_ATTEMPTS` attempts (the ``.part`` is kept if it
            holds anything: rerun to resume).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    pool = pool if pool is not None else urllib3.PoolManager()
    first_url = f"{base_url}?" + urllib.parse.urlencode({"id": file_id, "export": "download"})
    trusted = {urllib.parse.urlsplit(base_url).hostname or ""}
    log.info("fetching Google Drive file %s into %s", file_id, dest)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            known = _attempt(pool, first_url, trusted, part, file_id=file_id, progress=progress, expect=expect)
            problem = check(part) if check is not None else None
            if problem is not None or not known:
                what = problem or "the connection closed and the server never said how long the file is"
                raise _TransientError(f"the file is not complete yet ({what})")
            break
        except _TransientError as exc:
            have = _part_size(part)
            if attempt == MAX_ATTEMPTS:
                msg = f"Google Drive file {file_id}: gave up after {MAX_ATTEMPTS} attempts ({exc})"
                if have:
                    msg += f"; {have} bytes are kept in {part}, rerun to resume"
                else:  # nothing received: no part worth mentioning (or keeping)
                    part.unlink(missing_ok=True)
                raise DownloadError(msg) from exc
            delay = max(BACKOFF_SECONDS * 2 ** (attempt - 1), exc.retry_after)
            log.warning("Google Drive file %s: %s; retrying in %.0f s from byte %d", file_id, exc, delay, have)
            time.sleep(delay)
        except OSError as exc:  # the disk, not the network: retrying will not help
            raise DownloadError(_write_problem(exc, part, None)) from exc
    os.replace(part, dest)
    log.info("Google Drive file %s saved as %s (%d bytes)", file_id, dest, dest.stat().st_size)
    return dest


def _part_size(part: Path) -> int:
    try:
        return os.lstat(part).st_size
    except FileNotFoundError:
        return 0


def _write_problem(exc: OSError, part: Path, needed: int | None) -> str:
    if exc.errno == errno.ENOSPC:
        return disk_full_message(part, needed)
    return str(exc) if isinstance(exc, UntrustedFileError) else f"cannot write {part}: {exc.strerror or exc}"


def _attempt(
    pool: urllib3.PoolManager,
    url: str,
    trusted: set[str],
    part: Path,
    *,
    file_id: str,
    progress: bool,
    expect: Callable[[bytes], bool] | None,
) -> bool:
    """Walk redirects and confirmation pages from ``url`` to the file, and stream it into ``part``.

    Returns:
        Whether the file's length is known complete (the server said how long it is).
    """
    offset = _resumable_offset(part, expect)
    for _ in range(MAX_HOPS):
        _check_host(url, trusted, file_id)
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        log.debug("GET %s (%s)", url, headers.get("Range", "whole file"))
        try:
            resp = pool.request(
                "GET", url, headers=headers, preload_content=False, redirect=False, retries=False, timeout=TIMEOUT
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _TransientError(f"network error: {exc}") from exc
        try:
            next_url = _handle_reply(resp, url, part, offset, file_id=file_id, progress=progress, expect=expect)
        except BaseException:
            resp.close()  # the body may be half read: do not hand the connection back to the pool
            raise
        discard(resp)  # a redirect's body may be endless: never read more than a little
        if not isinstance(next_url, str):
            return bool(next_url)
        url = next_url
    msg = (
        f"Google Drive file {file_id}: still no file after {MAX_HOPS} redirects or confirmation pages; "
        "Drive's page may have changed: download it in a browser instead"
    )
    raise DownloadError(msg)


def _handle_reply(
    resp: urllib3.BaseHTTPResponse,
    url: str,
    part: Path,
    offset: int,
    *,
    file_id: str,
    progress: bool,
    expect: Callable[[bytes], bool] | None,
) -> str | bool:
    """Act on one reply: the next URL to follow (redirect, confirmation page), or once saved,
    whether the file's length is known complete."""
    if resp.status in _REDIRECT_STATUSES and resp.headers.get("Location"):
        return urllib.parse.urljoin(url, resp.headers["Location"])
    if _is_page(resp):
        return _next_url_from_page(_read_page(resp, file_id), url, resp.status, file_id)
    if resp.status in _RETRY_STATUSES:
        raise _TransientError(f"HTTP {resp.status} from {_host(url)}", _retry_after(resp))
    if resp.status == 416:
        if offset and _range_total(resp) == offset:
            return True  # the .part was already complete: only the rename was missing
        part.unlink(missing_ok=True)
        raise _TransientError(f"the server refused to continue from byte {offset}; starting again")
    if resp.status not in (200, 206):
        msg = f"Google Drive file {file_id}: HTTP {resp.status} from {_host(url)}; check the file id"
        raise DownloadError(msg)
    return _stream_body(resp, part, offset, file_id=file_id, progress=progress, expect=expect)


def _resumable_offset(part: Path, expect: Callable[[bytes], bool] | None) -> int:
    """Bytes of ``part`` worth continuing from: 0 (and the file removed) if its start is wrong."""
    if not os.path.lexists(part):
        return 0
    try:
        f = open_own_file(part, "rb")  # a symlink planted at the .part's name is refused, not followed
    except OSError as exc:
        raise DownloadError(_write_problem(exc, part, None)) from exc
    with f:
        size = os.fstat(f.fileno()).st_size
        if size and expect is not None and not expect(f.read(HEAD_SIZE)):
            log.warning("%s does not start as expected; starting again", part)
            part.unlink()
            return 0
    return size


def _check_host(url: str, trusted: set[str], file_id: str) -> None:
    """Refuse any URL whose host is not a Google download host (or the caller's chosen base host).

    The host is the one urllib3 will connect to (``\\@`` and user-info tricks are refused first:
    ``urlsplit`` and urllib3 once disagreed on ``http://127.0.0.2:1\\@drive.google.com/``).
    """
    try:
        host = check_url(url)
    except UnsafeUrlError as exc:
        msg = f"Google Drive file {file_id}: {exc}; download the file in a browser instead"
        raise DownloadError(msg) from exc
    if host in ALLOWED_HOSTS or host in trusted or host.endswith(ALLOWED_HOST_SUFFIXES):
        return
    scheme = urllib.parse.urlsplit(url).scheme
    msg = (
        f"Google Drive file {file_id}: refusing to follow a link to {scheme}://{host}, "
        "which is not a Google Drive host; download the file in a browser instead"
    )
    raise DownloadError(msg)


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc


def _is_page(resp: urllib3.BaseHTTPResponse) -> bool:
    """A reply is a web page (to read, not to save) if it is HTML and not an attachment or a range."""
    content_type = resp.headers.get("Content-Type", "").lower()
    attachment = resp.headers.get("Content-Disposition", "").lower().startswith("attachment")
    return content_type.startswith("text/html") and not attachment and resp.status != 206


def _read_page(resp: urllib3.BaseHTTPResponse, file_id: str) -> str:
    """Read an HTML reply, refusing one larger than :data:`MAX_PAGE_BYTES`."""
    try:
        body = resp.read(MAX_PAGE_BYTES + 1)
    except urllib3.exceptions.HTTPError as exc:
        raise _TransientError(f"network error while reading a page: {exc}") from exc
    if len(body) > MAX_PAGE_BYTES:
        msg = f"Google Drive file {file_id}: got a web page over {MAX_PAGE_BYTES} bytes, not a confirmation page"
        raise DownloadError(msg)
    charset = resp.headers.get("Content-Type", "").partition("charset=")[2].strip() or "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


class _LinkParser(HTMLParser):
    """Collects the ``download-form`` (action and hidden inputs) and ``export=download`` links."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.form_action: str | None = None
        self.form_inputs: dict[str, str] = {}
        self.links: list[str] = []
        self._in_form = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {name: value or "" for name, value in attrs}
        if tag == "form" and attr.get("id") == "download-form":
            self._in_form = True
            self.form_action = attr.get("action", "")
        elif tag == "input" and self._in_form and attr.get("name"):
            self.form_inputs[attr["name"]] = attr.get("value", "")
        elif tag == "a" and "export=download" in attr.get("href", ""):
            self.links.append(attr["href"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def _next_url_from_page(page: str, page_url: str, status: int, file_id: str) -> str:
    """The URL a Drive confirmation page leads to, or the DownloadError its error caption calls for."""
    caption = _ERROR_CAPTION_RE.search(page)
    if caption:
        text = " ".join(unescape(_TAG_RE.sub("", caption.group(1))).split())
        msg = (
            f"Google Drive refused to serve file {file_id}: {text!r}. If it says too many users have "
            "downloaded it (the daily quota), try again in a few hours, or open "
            f"https://drive.google.com/file/d/{file_id}/view in a browser signed in to Google and save the "
            "file yourself; if it is about permission, the file is no longer shared publicly."
        )
        raise DownloadError(msg)
    parser = _LinkParser()
    parser.feed(page)
    parser.close()
    try:
        if parser.form_action:
            action = urllib.parse.urljoin(page_url, parser.form_action)
            parts = urllib.parse.urlsplit(action)
            query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
            query.update(parser.form_inputs)
            log.debug("following Drive's confirmation form to %s", parts.netloc)
            return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
        if parser.links:
            log.debug("following Drive's download link")
            return urllib.parse.urljoin(page_url, parser.links[0])
    except ValueError as exc:  # e.g. "http://[" (an unclosed IPv6 bracket) in the page's link
        msg = f"Google Drive file {file_id}: the page's download link is not a URL ({exc}); download it in a browser"
        raise DownloadError(msg) from exc
    if status in _RETRY_STATUSES:
        raise _TransientError(f"HTTP {status} with a web page from {_host(page_url)}")
    msg = (
        f"Google Drive file {file_id}: got a web page (HTTP {status}) without a download link; "
        f"check the file id, or open https://drive.google.com/file/d/{file_id}/view in a browser"
    )
    raise DownloadError(msg)


def _retry_after(resp: urllib3.BaseHTTPResponse) -> float:
    """Seconds a 429/503 asks us to wait (``Retry-After`` in seconds; an HTTP date counts as 0)."""
    seconds = header_int(resp.headers.get("Retry-After"))
    return 0.0 if seconds is None else min(float(seconds), MAX_RETRY_AFTER)


def _range_total(resp: urllib3.BaseHTTPResponse) -> int | None:
    """The full file size from a ``Content-Range`` header, if it gives one."""
    match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", "").strip())
    if not match:
        return None
    total = match.group(3) if match.group(3) is not None else match.group(4)
    return None if total in (None, "*") else int(total)


def _stream_body(
    resp: urllib3.BaseHTTPResponse,
    part: Path,
    offset: int,
    *,
    file_id: str,
    progress: bool,
    expect: Callable[[bytes], bool] | None,
) -> bool:
    """Write the file's bytes into ``part``: appended after ``offset`` for a 206, from byte 0 for a 200.

    Returns:
        Whether the length is known complete (the server gave the total and it arrived).
    """
    if resp.status == 206:
        match = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", "").strip())
        if not match or match.group(1) is None or int(match.group(1)) != offset:
            part.unlink(missing_ok=True)
            raise _TransientError(f"asked for bytes from {offset}, got {resp.headers.get('Content-Range')!r}")
        total = _range_total(resp)
    else:
        if offset:
            log.info("the server ignored the range request; starting %s again from byte 0", part.name)
        offset = 0
        total = header_int(resp.headers.get("Content-Length"))
    chunks = resp.stream(CHUNK_SIZE, decode_content=False)
    try:
        head = b""
        if offset == 0 and expect is not None:
            for chunk in chunks:  # gather the first bytes and check them before writing anything
                head += chunk
                if len(head) >= HEAD_SIZE:
                    break
            if not expect(head[:HEAD_SIZE]):
                raise DownloadError(_unexpected_message(file_id, head))
        try:
            out = open_own_file(part, "ab" if offset else "wb")
        except OSError as exc:
            raise DownloadError(_write_problem(exc, part, None)) from exc
        with (
            out,
            tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
            ) as bar,
        ):
            written = offset
            try:
                out.write(head)
                written += len(head)
                bar.update(len(head))
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
                out.flush()
            except OSError as exc:
                needed = None if total is None else total - written
                raise DownloadError(f"Google Drive file {file_id}: {_write_problem(exc, part, needed)}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise _TransientError(f"connection lost: {exc}") from exc
    size = _part_size(part)
    if total is not None and size != total:
        raise _TransientError(f"got {size} of {total} bytes")
    # a chunked body that ends cleanly ended on purpose (urllib3 raises on a cut chunk)
    return total is not None or "chunked" in resp.headers.get("Transfer-Encoding", "").lower()


def _unexpected_message(file_id: str, head: bytes) -> str:
    shown = head[:40].decode("ascii", errors="replace")
    return (
        f"Google Drive file {file_id}: the reply is not the expected file (it starts with {shown!r}); "
        "Drive probably sent a web page. Open https://drive.google.com/file/d/"
        f"{file_id}/view in a browser and save the file yourself"
    )
