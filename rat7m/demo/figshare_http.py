"""The HTTP side of the local Figshare server: routes, and responses with faults applied.

:class:`_Responses` writes what goes on the wire (plain and JSON answers, ranged file bodies with
``ETag``/``If-Range``, and the faults that cut, corrupt, throttle or never end a body);
:class:`_Handler` on top of it maps each URL of the Figshare API to the server's content
(:class:`~rat7m.demo.figshare_server.FigshareServer`), which it reaches as ``self.server.owner``.
"""

from __future__ import annotations

import contextlib
import email.utils
import io
import json
import logging
import re
import socket
import time
from collections.abc import Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import parse_qs, quote, urlsplit

from rat7m.demo.figshare_faults import API, Faults, RequestRecord

if TYPE_CHECKING:
    from rat7m.demo.figshare_server import FigshareServer, _Article, _File

__all__ = ["CHUNK", "DEFAULT_PAGE_SIZE", "MAX_OFFSET", "MAX_PAGE", "MAX_PAGE_SIZE", "parse_range"]

log = logging.getLogger("rat7m.demo.figshare_server")

#: Default and largest ``page_size``/``limit``, and largest ``page``/``offset``, of the files endpoint.
DEFAULT_PAGE_SIZE = 10
MAX_PAGE_SIZE = 1000
MAX_PAGE = 5000
MAX_OFFSET = 5000

#: Bytes written per ``write`` when not throttled.
CHUNK = 64 * 1024


def _not_found(what: str) -> tuple[int, dict]:
    return HTTPStatus.NOT_FOUND, {"message": f"Entity not found: {what}", "code": "EntityNotFound"}


def _bad_request(message: str) -> tuple[int, dict]:
    return HTTPStatus.BAD_REQUEST, {"message": message, "code": "BadRequest"}


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """Parse a single-range ``Range`` header against a body of ``size`` bytes.

    Returns:
        ``(start, end)`` (end exclusive) for a satisfiable range; ``None`` to ignore the header
        (absent, malformed or multi-range: the whole body is sent with 200, as RFC 9110 allows);
        ``"unsatisfiable"`` when it starts past the end (416).
    """
    if header is None:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*", header, re.ASCII)
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.groups()
    if first == "":  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    owner: FigshareServer


class _Dropped(Exception):
    """The connection was cut on purpose (drop fault) or by the client."""


class _Responses(BaseHTTPRequestHandler):
    """Status lines, headers and bodies, with the faults of :class:`Faults` applied."""

    server: _HTTPServer
    _rec: RequestRecord  # the log entry of the request being answered
    _head: bool  # a HEAD request: headers only

    def _status_fault(self, owner: FigshareServer, name: str, faults: Faults) -> bool:
        """Answer a fault status if one applies; True when the request was answered."""
        if faults.fail is not None:
            self._plain(faults.fail, f"permanent failure of {name} (fault)")
            return True
        if faults.status is not None and owner._count(name, "status", faults.status_times):
            retry = {} if faults.retry_after is None else {"Retry-After": str(faults.retry_after)}
            if faults.raw_retry_after is not None:
                retry = {"Retry-After": faults.raw_retry_after}
            self._plain(faults.status, f"transient failure of {name} (fault)", retry)
            return True
        return False

    def _plain(self, status: int, text: str, headers: Mapping[str, str] | None = None) -> None:
        body = (text + "\n").encode()
        self._rec.status = int(status)
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head:
            self._rec.sent = len(body)
            self.wfile.write(body)

    def _json(self, status: int, payload: object, faults: Faults | None = None) -> None:
        body = json.dumps(payload, indent=2).encode()
        self._rec.status = int(status)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        if faults is not None and faults.endless:
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._endless(body)
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not self._head:
            self._write_body(io.BytesIO(body), 0, len(body), faults or Faults(), API)

    def _endless(self, body: bytes) -> None:
        """Send ``body``, then spaces until the client hangs up or the server stops."""
        self.wfile.write(body)
        self._rec.sent += len(body)
        filler = b" " * CHUNK
        while not self.server.owner.stopping.is_set():
            self.wfile.write(filler)
            self._rec.sent += len(filler)

    def _send_ranged(
        self,
        owner: FigshareServer,
        name: str,
        body: BinaryIO,
        size: int,
        md5: str,
        modified: str,
        faults: Faults,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        etag = f'"{md5}"'
        wanted = None if faults.ignore_range else parse_range(self.headers.get("Range"), size)
        if_range = self.headers.get("If-Range")
        if wanted is not None and if_range is not None and if_range.strip() not in (etag, modified):
            wanted = None  # the client's copy is of another version: send the whole new one
        headers = {"Accept-Ranges": "bytes", "ETag": etag, "Last-Modified": modified, **(extra or {})}
        if isinstance(wanted, str):  # "unsatisfiable"
            headers["Content-Range"] = f"bytes */{size}"
            self._plain(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, "range not satisfiable", headers)
            return
        headers["Content-Type"] = "application/octet-stream"
        if wanted is None:
            status, start, end = HTTPStatus.OK, 0, size
        else:
            status, (start, end) = HTTPStatus.PARTIAL_CONTENT, wanted
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        self._rec.status = int(status)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if faults.no_length or faults.raw_length is not None:  # the body ends when the connection closes
            if faults.raw_length is not None:
                self.send_header("Content-Length", faults.raw_length)
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if not self._head:
            self._write_body(body, start, end, faults, name, size)

    def _write_body(self, body: BinaryIO, start: int, end: int, faults: Faults, name: str, size: int = 0) -> None:
        """Write bytes ``start:end`` of ``body``, applying drop, corrupt and rate faults."""
        owner = self.server.owner
        stop = end
        cut = faults.drop_after is not None and faults.drop_after < end - start
        if cut and faults.drop_after is not None and owner._count(name, "drop", faults.drop_times):
            stop = start + faults.drop_after
        flip = None
        if faults.corrupt_offset is not None and owner._count(name, "corrupt", faults.corrupt_times):
            flip = min(faults.corrupt_offset, max(size, end) - 1)
        chunk = CHUNK if faults.rate is None else max(1, min(CHUNK, int(faults.rate / 20)))
        began = time.monotonic()
        body.seek(start)
        pos = start
        while pos < stop:
            data = body.read(min(chunk, stop - pos))
            if not data:
                break
            if flip is not None and pos <= flip < pos + len(data):
                buf = bytearray(data)
                buf[flip - pos] ^= 0xFF
                data = bytes(buf)
            self._rec.sent += len(data)
            self.wfile.write(data)
            pos += len(data)
            if faults.rate is not None:
                delay = began + (pos - start) / faults.rate - time.monotonic()
                if delay > 0 and owner.stopping.wait(delay):
                    raise _Dropped
        if stop < end:
            self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            raise _Dropped


class _Handler(_Responses):
    """The routes: the API JSON, the download redirect, the storage hop and the article zips."""

    protocol_version = "HTTP/1.1"
    server_version = "FigshareLocal/1.0"
    timeout = 60  # an idle keep-alive connection is closed after this many seconds
    disable_nagle_algorithm = True  # headers and body are separate writes: do not wait for delayed ACKs

    # bookkeeping of open connections, so that stop() can cut them
    def setup(self) -> None:
        super().setup()
        with self.server.owner._lock:
            self.server.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.server.owner._lock:
            self.server.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def _base(self) -> str:
        """Root URL as the client reached us (so links work however the server was addressed)."""
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.server.owner.base_url

    # ---------------------------------------------------------------- routing
    def _dispatch(self, head: bool) -> None:
        self._head = head
        owner = self.server.owner
        self._rec = owner._new_record(self.command, self.path, self.headers.get("Range"))
        url = urlsplit(self.path)
        path = url.path.rstrip("/")
        try:
            if path.startswith("/v2/"):
                self._api(owner, path, parse_qs(url.query))
            elif m := re.fullmatch(r"/ndownloader/files/(\d+)", path):
                self._redirect(owner, int(m.group(1)))
            elif m := re.fullmatch(r"/storage/files/(\d+)/[^/]+", path):
                self._storage(owner, int(m.group(1)))
            elif m := re.fullmatch(r"/ndownloader/articles/(\d+)(?:/versions/(\d+))?", path):
                self._zip(owner, int(m.group(1)), None if m.group(2) is None else int(m.group(2)))
            else:
                self._json(*_not_found("path"))
        except (_Dropped, OSError) as exc:  # cut on purpose, by the client, or a file vanished
            log.debug("%s %s: connection closed (%r)", self.command, self.path, exc)
            self.close_connection = True
        finally:
            self._rec.finished = True

    def _api(self, owner: FigshareServer, path: str, query: dict[str, list[str]]) -> None:
        self._rec.name = API
        faults = owner._faults_for(API)
        if self._status_fault(owner, API, faults):
            return
        m = re.fullmatch(r"/v2/articles/(\d+)(?:/versions/(\d+))?(/files)?(?:/(\d+))?", path)
        if m is None:
            if re.fullmatch(r"/v2/articles/(\d+)/versions", path):
                self._versions(owner, int(path.split("/")[3]))
                return
            self._json(*_not_found("path"))
            return
        article_id, version, files, file_id = m.groups()
        art = owner._find_article(int(article_id), None if version is None else int(version))
        if art is None:
            self._json(*_not_found("ArticleVersion" if version else "article"))
        elif file_id is not None:
            entry = owner._by_id.get(int(file_id))
            if files and entry is not None and entry.article == art.article:
                self._json(HTTPStatus.OK, owner._file_json(entry, self._base()), faults)
            else:
                self._json(*_not_found("File" if files else "path"))
        elif files:
            self._files_page(owner, art, query, faults)
        else:
            self._json(HTTPStatus.OK, owner._article_json(art, self._base()), faults)

    def _versions(self, owner: FigshareServer, article_id: int) -> None:
        art = owner._find_article(article_id, None)
        if art is None:
            self._json(*_not_found("article"))
            return
        v = art.article.version
        self._json(HTTPStatus.OK, [{"version": v, "url": f"{self._base()}/v2/articles/{article_id}/versions/{v}"}])

    def _files_page(self, owner: FigshareServer, art: _Article, query: dict[str, list[str]], faults: Faults) -> None:
        def number(key: str, low: int, high: int, default: int) -> int:
            if key not in query:
                return default
            text = query[key][-1]
            if not re.fullmatch(r"[0-9]{1,9}", text) or not low <= int(text) <= high:
                raise ValueError(f"{key} must be an integer from {low} to {high}, got {text!r}")
            return int(text)

        try:
            if ("page" in query or "page_size" in query) and ("limit" in query or "offset" in query):
                raise ValueError("use either page and page_size, or limit and offset, not both")
            if "limit" in query or "offset" in query:
                size = number("limit", 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)
                start = number("offset", 0, MAX_OFFSET, 0)
            else:
                size = number("page_size", 1, MAX_PAGE_SIZE, DEFAULT_PAGE_SIZE)
                start = (number("page", 1, MAX_PAGE, 1) - 1) * size
        except ValueError as exc:
            self._json(*_bad_request(str(exc)))
            return
        files = owner._ordered(art)[start : start + size]
        self._json(HTTPStatus.OK, [owner._file_json(f, self._base()) for f in files], faults)

    def _file(self, owner: FigshareServer, file_id: int) -> _File | None:
        """The file ``file_id``, named in this request's record; None once a 404 is sent."""
        entry = owner._by_id.get(file_id)
        if entry is None:
            self._json(*_not_found("file"))
        else:
            self._rec.name = entry.name
        return entry

    def _redirect(self, owner: FigshareServer, file_id: int) -> None:
        if (entry := self._file(owner, file_id)) is None:
            return
        self._rec.status = int(HTTPStatus.FOUND)
        self.send_response(HTTPStatus.FOUND)
        elsewhere = owner._faults_for(entry.name).redirect_to
        self.send_header("Location", elsewhere or f"{self._base()}/storage/files/{file_id}/{quote(entry.name)}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _storage(self, owner: FigshareServer, file_id: int) -> None:
        if (entry := self._file(owner, file_id)) is None:
            return
        faults = owner._faults_for(entry.name)
        if self._status_fault(owner, entry.name, faults):
            return
        try:
            body = entry.open()
        except FileNotFoundError:
            self._json(*_not_found("File"))  # deleted from disk while being served
            return
        with body:
            self._send_ranged(owner, entry.name, body, entry.size, entry.md5(), entry.last_modified, faults)

    def _zip(self, owner: FigshareServer, article_id: int, version: int | None) -> None:
        art = owner._find_article(article_id, version)
        if art is None:
            self._json(*_not_found("ArticleVersion" if version else "article"))
            return
        self._rec.name = art.zip_name
        faults = owner._faults_for(art.zip_name)
        if self._status_fault(owner, art.zip_name, faults):
            return
        path, md5 = owner._zip_for(art)
        modified = email.utils.formatdate(path.stat().st_mtime, usegmt=True)
        extra = {"Content-Disposition": f'attachment; filename="{art.zip_name}"'}
        with path.open("rb") as body:
            self._send_ranged(owner, art.zip_name, body, path.stat().st_size, md5, modified, faults, extra)

