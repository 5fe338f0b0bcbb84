"""A local Figshare-compatible server: the RAT7M articles served from a folder, with injectable faults.

The downloader must work against the real Figshare service, which we cannot reach from tests and
which misbehaves in ways we want to reproduce on demand. This module publishes a dataset tree
(``video_sequences/*.mp4``, ``annotations/mocap-*.mat``) as the real RAT7M articles of the
catalogue and speaks the parts of the Figshare API a downloader meets:

- ``GET /v2/articles/{id}[/versions/{v}]``: article JSON. As on the real service (documented
  since August 2025), its ``files`` list holds **at most 10 files**; an article with more (a
  RAT7M video article has hundreds) must be listed through the paginated files endpoint.
- ``GET /v2/articles/{id}[/versions/{v}]/files?page=P&page_size=S`` (or ``limit=L&offset=O``):
  a JSON array of files, in name order. Defaults as documented: page 1, page_size 10 (max 1000,
  page max 5000, offset max 5000); nothing says how many remain, so a client reads pages until
  one is shorter than page_size. Out-of-range parameters answer 400.
- ``GET /v2/articles/{id}/versions``: the article's versions.
- ``GET /v2/articles/{id}/files/{file_id}``: one file's JSON.
- ``GET|HEAD /ndownloader/files/{file_id}``: 302 to a storage URL, like the real service.
- ``GET|HEAD /storage/files/{file_id}/{name}``: the bytes, with ``Accept-Ranges``, ``ETag``
  (the MD5, quoted), ``Last-Modified``, single ``Range`` (206 + ``Content-Range``, 416 when
  unsatisfiable) and ``If-Range``.
- ``GET|HEAD /ndownloader/articles/{id}[/versions/{v}]``: the whole article as one zip named
  ``{id}.zip`` (flat, stored without compression, built once and cached), with
  ``Content-Length`` and ``Range`` so it can resume. (The real one may stream without a size or
  Range support: the ``no_length`` and ``ignore_range`` faults imitate that.)

Every response has a ``Content-Length`` (HTTP/1.1 keep-alive) unless the ``no_length`` fault
says otherwise. File faults act on the storage hop and the zip, not on the redirect hop. Links in
the JSON and the redirect use the ``Host`` the client addressed. Unknown articles, versions and
files answer 404 with JSON like the real API: ``{"message": "Entity not found: ...", "code":
"EntityNotFound"}``. Every article of the catalogue exists, even with no file on disk.

Faults (:class:`Faults`) are set per file name, for all files (:data:`ALL_FILES`) or for the API
JSON (:data:`API`), at construction or while running (:meth:`FigshareServer.set_faults`).
Every request is logged (:attr:`FigshareServer.requests`) with the bytes of body actually sent,
so tests can assert exactly what crossed the wire.

Three modules: this one holds the content (files, listings, zips) and the server's life cycle;
:mod:`rat7m.demo.figshare_http` the routes and the bytes on the wire; :mod:`rat7m.demo.figshare_faults`
the fault model and the request log.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import email.utils
import hashlib
import io
import itertools
import logging
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from rat7m.catalogue import (
    ANNOTATION_ARTICLE,
    ANNOTATION_DIR,
    CAMERA_NAMES,
    RECORDINGS,
    VIDEO_DIR,
    Article,
    mocap_file_name,
    parse_mocap_file_name,
    parse_video_chunk_name,
    video_chunk_name,
)
from rat7m.cli import add_verbosity_arguments, command, run_main, setup_logging
from rat7m.demo.figshare_faults import ALL_FILES, API, Faults, RequestRecord
from rat7m.demo.figshare_http import CHUNK, _Handler, _HTTPServer, parse_range
from rat7m.errors import BadInputError, Rat7mError

__all__ = ["ALL_FILES", "API", "ARTICLE_FILES_LIMIT", "Faults", "FigshareServer", "RequestRecord", "parse_range"]

log = logging.getLogger(__name__)

#: Files listed inline by the article endpoint (the real service lists "up to 10 article files").
ARTICLE_FILES_LIMIT = 10

#: Timestamp stored in every zip entry, so that the zip of the same files is always the same bytes.
_ZIP_DATE = (2020, 1, 1, 0, 0, 0)


@dataclass
class _File:
    """A published file: where its bytes come from and its cached checksum."""

    id: int
    name: str
    article: Article
    path: Path | None = None
    data: bytes | None = None
    mtime: float = field(default_factory=time.time)
    _md5: tuple[tuple[int, int], str] | None = None
    _md5_lock: threading.Lock = field(default_factory=threading.Lock)

    def signature(self) -> tuple[int, int]:
        """(size, mtime_ns): changes when the file on disk changes."""
        if self.path is None:
            return len(self.data or b""), int(self.mtime * 1e9)
        st = self.path.stat()
        return st.st_size, st.st_mtime_ns

    @property
    def size(self) -> int:
        return self.signature()[0]

    @property
    def last_modified(self) -> str:
        seconds = self.mtime if self.path is None else self.path.stat().st_mtime
        return email.utils.formatdate(seconds, usegmt=True)

    def md5(self) -> str:
        """MD5 of the content, computed once (again if the file on disk changes)."""
        with self._md5_lock:  # concurrent listings hash a big file once, not once each
            sig = self.signature()
            if self._md5 is None or self._md5[0] != sig:
                digest = hashlib.md5()
                with self.open() as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        digest.update(block)
                self._md5 = (sig, digest.hexdigest())
            return self._md5[1]

    def open(self) -> BinaryIO:
        if self.path is None:
            return io.BytesIO(self.data or b"")
        return self.path.open("rb")


def _file_id(article: Article, name: str) -> int:
    """A stable 8-digit file id (real Figshare file ids look like 26224337)."""
    return 10_000_000 + zlib.crc32(f"{article.id}/{article.version}/{name}".encode()) % 90_000_000


class _Article:
    """The files of one article version, in listing order."""

    def __init__(self, article: Article, title: str) -> None:
        self.article = article
        self.title = title
        self.files: dict[str, _File] = {}

    @property
    def zip_name(self) -> str:
        return f"{self.article.id}.zip"


class FigshareServer:
    """A threaded HTTP server imitating Figshare for a dataset folder, on 127.0.0.1.

    Use as a context manager (``with FigshareServer(root) as server: ...``) or call
    :meth:`start` and :meth:`stop`.

    Args:
        root: dataset folder holding ``video_sequences/`` and ``annotations/`` (either may be
            missing). Video chunks go to their recording's video article, ``mocap-*.mat`` files to
            the annotation article; other files are ignored (logged).
        host: address to bind.
        port: port to bind; 0 picks a free one.
        faults: faults for :data:`ALL_FILES` (a :class:`Faults`), or a mapping from target
            (file name, :data:`ALL_FILES`, :data:`API`) to faults.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Faults | Mapping[str, Faults] | None = None,
    ) -> None:
        self.root = Path(root)
        self._host = host
        self._port = port
        self._lock = threading.RLock()
        self._log: list[RequestRecord] = []
        self._faults: dict[str, Faults] = {}
        self._entry_fields: dict[str, dict[str, object]] = {}
        self._counts: dict[tuple[str, str], int] = {}
        self._articles: dict[Article, _Article] = {}
        self._by_id: dict[int, _File] = {}
        self._zips: dict[Article, tuple[object, Path, str]] = {}
        self._zip_lock = threading.Lock()
        self._zip_builds = itertools.count()
        self._tmpdir: Path | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self.stopping = threading.Event()
        for rec in RECORDINGS:
            self._articles[rec.video_article] = _Article(rec.video_article, f"RAT7M videos {rec.name} (local)")
        self._articles[ANNOTATION_ARTICLE] = _Article(ANNOTATION_ARTICLE, "RAT7M annotations (local)")
        self._scan()
        if isinstance(faults, Faults):
            self.set_faults(faults)
        elif faults:
            for target, f in faults.items():
                self.set_faults(f, target)

    # ----------------------------------------------------------------- content
    def _scan(self) -> None:
        video_dir = self.root / VIDEO_DIR
        for path in sorted(video_dir.glob("*.mp4")) if video_dir.is_dir() else []:
            chunk = parse_video_chunk_name(path.name)
            if chunk is None:
                log.warning("not publishing %s: not a video chunk name", path)
                continue
            self.add_file(chunk.recording.video_article, path.name, path)
        annotation_dir = self.root / ANNOTATION_DIR
        for path in sorted(annotation_dir.glob("*.mat")) if annotation_dir.is_dir() else []:
            try:
                parse_mocap_file_name(path.name)
            except (ValueError, KeyError):
                log.warning("not publishing %s: not an annotation file name", path)
                continue
            self.add_file(ANNOTATION_ARTICLE, path.name, path)

    def add_file(self, article: Article, name: str, content: Path | str | bytes) -> int:
        """Publish a file (a path on disk, or bytes) in ``article`` under ``name``.

        Returns:
            The file's id (stable: the same article and name always get the same id).

        Raises:
            KeyError: if ``article`` is not one of the catalogue's articles.
        """
        if article not in self._articles:
            raise KeyError(f"article {article.id} v{article.version} is not in the catalogue")
        if isinstance(content, bytes):
            entry = _File(0, name, article, data=content)
        else:
            entry = _File(0, name, article, path=Path(content))
        with self._lock:
            files = self._articles[article].files
            if name in files:  # replacing a file keeps its id
                entry.id = files[name].id
            else:
                entry.id = _file_id(article, name)
                while entry.id in self._by_id:  # a crc32 collision: take the next free id
                    entry.id += 1
            files[name] = entry
            self._by_id[entry.id] = entry
        return entry.id

    def file_names(self, article: Article) -> list[str]:
        """Names of the files of ``article``, in listing order."""
        with self._lock:
            return sorted(self._articles[article].files)

    def listing(self, article: Article) -> list[dict]:
        """Every file of ``article`` as the API lists it (the full list, not one page)."""
        return [self._file_json(f, self.base_url) for f in self._ordered(self._articles[article])]

    def _ordered(self, art: _Article) -> list[_File]:
        """The files of an article in listing order (a snapshot: add_file may run meanwhile)."""
        with self._lock:
            return [art.files[name] for name in sorted(art.files)]

    def set_entry(self, name: str, **fields: object) -> None:
        """Override fields of file ``name``'s listing entry, as real records may carry them.

        E.g. ``is_link_only=True``, ``status="pending"``, ``supplied_md5="..."`` (disagreeing with
        ``computed_md5``), ``computed_md5=""`` (a fresh upload), ``computed_md5="not-hex"``,
        ``mimetype="text/html"``. ``set_entry(name)`` with no fields clears the overrides.
        """
        with self._lock:
            if fields:
                self._entry_fields[name] = dict(fields)
            else:
                self._entry_fields.pop(name, None)

    def _file_json(self, f: _File, base: str) -> dict:
        md5 = f.md5()
        with self._lock:
            extra = dict(self._entry_fields.get(f.name, {}))
        return {
            "id": f.id,
            "name": f.name,
            "size": f.size,
            "is_link_only": False,
            "download_url": f"{base}/ndownloader/files/{f.id}",
            "supplied_md5": md5,
            "computed_md5": md5,
            "mimetype": "video/mp4" if f.name.endswith(".mp4") else "application/octet-stream",
            **extra,
        }

    def _article_json(self, art: _Article, base: str) -> dict:
        a = art.article
        files = self._ordered(art)
        return {
            "id": a.id,
            "title": art.title,
            "doi": f"10.6084/m9.figshare.{a.id}.v{a.version}",
            "url": f"{base}/v2/articles/{a.id}",
            "url_public_api": f"{base}/v2/articles/{a.id}",
            "url_public_html": f"{base}/articles/dataset/{a.id}",
            "figshare_url": f"{base}/articles/dataset/{a.id}",
            "defined_type_name": "dataset",
            "version": a.version,
            "is_public": True,
            "size": sum(f.size for f in files),
            "files": [self._file_json(f, base) for f in files[:ARTICLE_FILES_LIMIT]],
        }

    def _find_article(self, article_id: int, version: int | None) -> _Article | None:
        for art in self._articles.values():
            if art.article.id == article_id and (version is None or art.article.version == version):
                return art
        return None

    # ------------------------------------------------------------------ faults
    def set_faults(self, faults: Faults | None, name: str = ALL_FILES) -> None:
        """Set (or with ``None`` clear) the faults of ``name``: a file name, ALL_FILES or API.

        Every fault count restarts. A file with its own faults ignores those of ALL_FILES.
        """
        with self._lock:
            if faults is None:
                self._faults.pop(name, None)
            else:
                self._faults[name] = faults
            self._counts.clear()

    def clear_faults(self) -> None:
        """Remove every fault."""
        with self._lock:
            self._faults.clear()
            self._counts.clear()

    def _faults_for(self, name: str) -> Faults:
        with self._lock:
            if name in self._faults:
                return self._faults[name]
            return Faults() if name == API else self._faults.get(ALL_FILES, Faults())

    def _count(self, name: str, kind: str, limit: int | None) -> bool:
        """Count one occurrence of fault ``kind`` on ``name``; True while within the first ``limit``."""
        with self._lock:
            n = self._counts.get((name, kind), 0)
            self._counts[(name, kind)] = n + 1
            return limit is None or n < limit

    # ---------------------------------------------------------------- the log
    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._lock:
            return [dataclasses.replace(r) for r in self._log]

    def reset_log(self) -> None:
        """Forget every logged request."""
        with self._lock:
            self._log.clear()

    def bytes_sent(self, name: str | None = None) -> int:
        """Body bytes sent so far (for one file or zip ``name``, or in all)."""
        return sum(r.sent for r in self.requests if name is None or r.name == name)

    def _new_record(self, method: str, path: str, range_header: str | None) -> RequestRecord:
        record = RequestRecord(method, path, range_header)
        with self._lock:
            self._log.append(record)
        return record

    # ------------------------------------------------------------------- zips
    def _zip_for(self, art: _Article) -> tuple[Path, str]:
        """The article's zip (path, md5), built on first use and rebuilt when a file changes."""
        files = self._ordered(art)
        signature = tuple((f.name, f.signature()) for f in files)
        with self._zip_lock:
            cached = self._zips.get(art.article)
            if cached is not None and cached[0] == signature:
                return cached[1], cached[2]
            assert self._tmpdir is not None
            # A new name for every build: a rebuild must not overwrite a zip still being served.
            path = self._tmpdir / f"{art.article.id}-v{art.article.version}-{next(self._zip_builds)}.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
                for f in files:
                    info = zipfile.ZipInfo(f.name, date_time=_ZIP_DATE)
                    info.external_attr = 0o644 << 16
                    info.file_size = f.size
                    with f.open() as src, zf.open(info, "w") as dst:
                        shutil.copyfileobj(src, dst, CHUNK)
            digest = _File(0, path.name, art.article, path=path).md5()
            self._zips[art.article] = (signature, path, digest)
            log.debug("built %s (%d files)", path, len(files))
            return path, digest

    # -------------------------------------------------------------- lifecycle
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (valid once started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() or use it in a with block")
        host, port = self._httpd.server_address[:2]
        if isinstance(host, bytes):  # typeshed's type allows it; an AF_INET server's address is a str
            host = host.decode()
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """The API root to give a client instead of ``https://api.figshare.com/v2``."""
        return f"{self.base_url}/v2"

    def zip_url(self, article: Article) -> str:
        """The whole-article zip URL of ``article``."""
        return f"{self.base_url}/ndownloader/articles/{article.id}/versions/{article.version}"

    def start(self) -> FigshareServer:
        """Bind and serve in a background thread."""
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = _HTTPServer((self._host, self._port), _Handler)
        self._tmpdir = Path(tempfile.mkdtemp(prefix="figshare-server-"))
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), name="figshare-server", daemon=True)
        self._thread.start()
        log.debug("serving %s at %s", self.root, self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections, join every thread and close the port."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join()
        self._httpd = self._thread = None
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None
        self._zips.clear()

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> FigshareServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()



def _iter_articles() -> Iterator[tuple[str, Article]]:
    for rec in RECORDINGS:
        yield rec.name, rec.video_article
    yield "annotations", ANNOTATION_ARTICLE


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a dataset folder as Figshare until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m rat7m.demo.figshare_server",
        description="Serve a RAT7M-format folder (video_sequences/, annotations/) as a local Figshare.",
    )
    parser.add_argument("--root", required=True, type=Path, help="dataset folder to publish")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port (default: any free port)")
    parser.add_argument("--rate", type=float, help="fault: throttle every body to this many bytes/s")
    parser.add_argument("--drop-after", type=int, help="fault: cut every file download after N bytes")
    parser.add_argument("--drop-times", type=int, help="fault: ... only for the first K requests of each file")
    parser.add_argument("--status", type=int, help="fault: answer this status (429, 500, 503) ...")
    parser.add_argument("--status-times", type=int, default=1, help="... to the first K requests of each file")
    parser.add_argument("--retry-after", type=int, help="fault: Retry-After seconds sent with --status")
    parser.add_argument("--ignore-range", action="store_true", help="fault: answer Range with 200 and the whole file")
    add_verbosity_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args)
    if not args.root.is_dir():
        raise BadInputError(f"--root {args.root}: no such folder (expected video_sequences/ and annotations/ in it)")
    faults = Faults(
        status=args.status, status_times=args.status_times, retry_after=args.retry_after,
        drop_after=args.drop_after, drop_times=args.drop_times, ignore_range=args.ignore_range, rate=args.rate,
    )  # fmt: skip
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    server = FigshareServer(args.root, host=args.host, port=args.port, faults=faults)
    if not any(server.file_names(article) for _, article in _iter_articles()):
        example = RECORDINGS[0]
        raise BadInputError(
            f"--root {args.root}: no RAT7M files to serve (expected {VIDEO_DIR}/ with chunks named like "
            f"{video_chunk_name(example, CAMERA_NAMES[0], 0)} and/or {ANNOTATION_DIR}/ with files named like "
            f"{mocap_file_name(example)})"
        )
    try:
        server.start()
    except OSError as exc:
        raise Rat7mError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc
    with server:
        zip_root = f"{server.base_url}/ndownloader"
        print(f"API URL: {server.api_url}   ({command('download')} --api-url {server.api_url})")
        print(f"zip URL: {zip_root}   ({command('download')} --via-zip --zip-url {zip_root})")
        for label, article in _iter_articles():
            n = len(server.file_names(article))
            print(f"  {label:12s} article {article.id} v{article.version}: {n} files   {server.zip_url(article)}")
        print("serving; Ctrl-C to stop", flush=True)
        while not done.wait(0.5):
            pass
    print("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
