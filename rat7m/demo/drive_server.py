"""A local imitation of Google Drive's download endpoints, for tests (a real HTTP server on 127.0.0.1).

Each file is registered with a behaviour that reproduces one thing real Drive does:

- ``large``: as Drive does today, ``/uc?id=X&export=download`` redirects (303) to ``/download``
  (Drive's drive.usercontent.google.com), which answers the "can't scan this file" page; its
  ``download-form`` leads back to ``/download`` with ``confirm=t`` and a ``uuid``, which sends the bytes.
- ``small``: ``/uc`` redirects (303) straight to ``/download``, which sends the bytes.
- ``href``: ``/uc`` answers the older page with a ``<a href="/uc?export=download&confirm=...">``
  link; ``/uc`` with that ``confirm`` sends the bytes.
- ``quota``: ``/uc`` answers 403 with the "Too many users have viewed or downloaded this file" page.
- ``offsite``: ``/uc`` redirects to ``localhost`` (the same server under a host that is not allowed).
- ``evil-name``: the bytes come with ``Content-Disposition: attachment; filename="../../escaped.pkl"``.
- ``html-bytes``: an HTML page sent as an attachment, where the file's bytes were expected.
- ``no-link``: an HTML page without any download link.
- ``drop-once``: like ``large``, but the first transfer of the bytes stops halfway (the
  connection is closed with Content-Length unmet); later ones honour ``Range``.
- ``no-range``: like ``large``, but ``Range`` is ignored (always 200, whole file).
- ``busy-once``: the first request answers 503, then like ``large``.
- ``backslash``: ``/uc`` redirects to ``http://<other>\\@drive.google.com/download?...``, where
  ``<other>`` is :attr:`DriveServer.elsewhere` (``urlsplit`` reads the host as drive.google.com,
  urllib3 connects to ``<other>``).
- ``userinfo``: ``/uc`` redirects to ``http://drive.google.com@<other>/download?...``.
- ``cut-no-length``: the first transfer is a 200 without ``Content-Length``, the connection closed
  at half; later ones honour ``Range``.
- ``always-cut-no-length``: every transfer is like that, and ``Range`` is ignored.
- ``odd-headers``: the first request answers 503 with ``Retry-After: \xb2`` (a Unicode digit), and
  the bytes come with ``Content-Length: \xb2`` on a 200 (the body ends when the connection closes).

Every request is recorded in :attr:`DriveServer.log` (path, Range header, status, body bytes sent),
so tests assert on what went over the wire.
"""

from __future__ import annotations

import html
import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["BEHAVIOURS", "DriveFile", "DriveServer", "Request"]

BEHAVIOURS = frozenset(
    {"large", "small", "href", "quota", "offsite", "evil-name", "html-bytes", "no-link", "drop-once", "no-range",
     "busy-once", "backslash", "userinfo", "cut-no-length", "always-cut-no-length", "odd-headers"}
)

_INTERSTITIAL = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>
<body><div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file
for viruses.</p><p class="uc-warning-subcaption"><span class="uc-name-size"><a href="/open?id={id}">{name}</a>
({size})</span> is too large for Google to scan for viruses. Would you still like to download this file?</p>
<form id="download-form" action="{action}" method="get"><input type="submit" id="uc-download-link"
class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/><input type="hidden" name="id"
value="{id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t">
<input type="hidden" name="uuid" value="{uuid}"></form></div></div></body></html>"""

_HREF_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<a id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action"
href="/uc?export=download&amp;confirm={confirm}&amp;id={id}">Download anyway</a></body></html>"""

_QUOTA_PAGE = """<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t view or download this
file at this time.</p><p class="uc-error-subcaption">Too many users have viewed or downloaded this file
recently. Please try accessing the file again later. If the file you are trying to access is particularly
large or is shared with many people, it may take up to 24 hours to be able to view or download the file.</p>
</div></div></body></html>"""

_NO_LINK_PAGE = "<!DOCTYPE html><html><body><p>Something went wrong. Please try again.</p></body></html>"

_HREF_CONFIRM = "Xy7q"


@dataclass
class DriveFile:
    """One file served by the imitation and how it misbehaves."""

    data: bytes
    behaviour: str = "large"
    name: str = "mini_rat7m_train_test_annotation.pkl"
    transfers: int = 0  # body transfers started so far (for the *-once behaviours)
    requests: int = 0


@dataclass
class Request:
    """What one request asked for and what it got."""

    path: str
    query: dict[str, str]
    host: str
    range: str | None
    status: int = 0
    sent: int = 0  # body bytes written
    carried_file: bool = False  # answered with the file's bytes (not a page or a redirect)


@dataclass
class DriveServer:
    """A threaded HTTP server on 127.0.0.1 imitating Google Drive; use as a context manager."""

    files: dict[str, DriveFile] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Address to listen on (127.0.0.2 is loopback too on Linux: a second "host" for redirect tests).
    host: str = "127.0.0.1"
    #: ``host:port`` the ``backslash`` and ``userinfo`` behaviours point at.
    elsewhere: str = "127.0.0.2:9"

    def add(self, file_id: str, data: bytes, behaviour: str = "large", name: str | None = None) -> None:
        """Serve ``data`` as Drive file ``file_id`` with one of :data:`BEHAVIOURS`."""
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; expected one of {sorted(BEHAVIOURS)}")
        self.files[file_id] = DriveFile(data, behaviour, name or DriveFile.name)

    @property
    def base_url(self) -> str:
        """The ``uc`` endpoint, to pass as ``base_url``."""
        return f"http://{self.host}:{self.port}/uc"

    def transfers(self, file_id: str) -> list[Request]:
        """The requests answered with the bytes of ``file_id`` (whole or from a range)."""
        return [r for r in self.log if r.carried_file and r.query.get("id") == file_id]

    def __enter__(self) -> DriveServer:
        handler = type("Handler", (_Handler,), {"drive": self})
        self._httpd = ThreadingHTTPServer((self.host, 0), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class _Handler(BaseHTTPRequestHandler):
    drive: DriveServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        record = Request(parts.path, query, self.headers.get("Host", ""), self.headers.get("Range"))
        self.drive.log.append(record)
        file = self.drive.files.get(query.get("id", ""))
        if file is None or parts.path not in ("/uc", "/download"):
            self._send(record, 404, b"<html><body>Not Found</body></html>", "text/html; charset=utf-8")
            return
        file.requests += 1
        if parts.path == "/uc":
            self._uc(record, file, query)
        else:
            self._download(record, file, query)

    def _uc(self, record: Request, file: DriveFile, query: dict[str, str]) -> None:
        kind = file.behaviour
        if kind == "busy-once" and file.requests == 1:
            self._send(record, 503, b"busy", "text/plain", extra={"Retry-After": "0"})
        elif kind == "odd-headers" and file.requests == 1:
            self._send(record, 503, b"busy", "text/plain", extra={"Retry-After": "\xb2"})
        elif kind == "backslash":
            self._redirect(record, f"http://{self.drive.elsewhere}\\@drive.google.com/download?id={query['id']}")
        elif kind == "userinfo":
            self._redirect(record, f"http://drive.google.com@{self.drive.elsewhere}/download?id={query['id']}")
        elif kind == "small":
            self._redirect(record, f"/download?id={query['id']}&export=download")
        elif kind == "offsite":
            self._redirect(record, f"http://localhost:{self.drive.port}/download?id={query['id']}&export=download")
        elif kind == "quota":
            self._send(record, 403, _QUOTA_PAGE.encode(), "text/html; charset=utf-8")
        elif kind == "no-link":
            self._send(record, 200, _NO_LINK_PAGE.encode(), "text/html; charset=utf-8")
        elif kind == "href":
            if query.get("confirm") == _HREF_CONFIRM:
                self._file(record, file)
            else:
                page = _HREF_PAGE.format(confirm=_HREF_CONFIRM, id=html.escape(query["id"]))
                self._send(record, 200, page.encode(), "text/html; charset=utf-8")
        else:
            self._redirect(record, f"/download?id={query['id']}&export=download")

    def _download(self, record: Request, file: DriveFile, query: dict[str, str]) -> None:
        confirmed = query.get("confirm") == "t" and query.get("uuid") == self.drive.uuid
        if file.behaviour == "small" or confirmed:
            self._file(record, file)
        else:
            self._interstitial(record, file, query["id"])

    def _interstitial(self, record: Request, file: DriveFile, file_id: str) -> None:
        page = _INTERSTITIAL.format(
            id=html.escape(file_id), name=html.escape(file.name), size=f"{len(file.data) / 1e6:.1f}M",
            action=f"http://127.0.0.1:{self.drive.port}/download", uuid=self.drive.uuid,
        )
        self._send(record, 200, page.encode(), "text/html; charset=utf-8")

    def _file(self, record: Request, file: DriveFile) -> None:
        data = file.data
        file.transfers += 1
        record.carried_file = True
        headers = {"Content-Disposition": f'attachment; filename="{file.name}"', "Accept-Ranges": "bytes"}
        content_type = "application/octet-stream"
        if file.behaviour == "evil-name":
            headers["Content-Disposition"] = 'attachment; filename="../../escaped.pkl"'
        if file.behaviour == "html-bytes":
            data = _QUOTA_PAGE.encode()
        match = re.fullmatch(r"bytes=(\d+)-", record.range or "")
        ranged = file.behaviour not in ("no-range", "always-cut-no-length")
        if match and ranged and int(match.group(1)) < len(data):
            start = int(match.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            self._send(record, 206, data[start:], content_type, extra=headers)
        elif match and ranged:
            self._send(record, 416, b"", "text/plain", extra={"Content-Range": f"bytes */{len(data)}"})
        elif file.behaviour == "drop-once" and file.transfers == 1:
            self._send(record, 200, data, content_type, extra=headers, cut=len(data) // 2)
        elif file.behaviour == "always-cut-no-length" or (file.behaviour == "cut-no-length" and file.transfers == 1):
            self._send(record, 200, data, content_type, extra=headers, cut=len(data) // 2, length=None)
        elif file.behaviour == "odd-headers":
            self._send(record, 200, data, content_type, extra=headers, cut=len(data), length="\xb2")
        else:
            self._send(record, 200, data, content_type, extra=headers)

    def _redirect(self, record: Request, location: str) -> None:
        self._send(record, 303, b"", "text/html; charset=utf-8", extra={"Location": location})

    def _send(
        self, record: Request, status: int, body: bytes, content_type: str, *,
        extra: dict[str, str] | None = None, cut: int | None = None, length: str | None = "",
    ) -> None:
        """Reply; with ``cut``, close the connection after ``cut`` bytes.

        ``length`` is the ``Content-Length`` sent: ``""`` the body's true length, ``None`` none at all
        (the body ends when the connection closes), anything else sent as it is.
        """
        record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", length or str(len(body)))
        if length != "":
            self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        sent = body if cut is None else body[:cut]
        record.sent = len(sent)  # recorded before the client can see the reply, so tests never race it
        self.wfile.write(sent)
        self.wfile.flush()
        if cut is not None or length != "":
            self.close_connection = True
