"""What there is to download: the Figshare listing of each article, checked and filtered.

Each recording's videos are one Figshare article and all the annotations another (see the
catalogue). ``GET {api}/articles/{id}/versions/{v}`` gives the article's ``files[]`` with name,
size, MD5 and download URL, but Figshare documents (since 2025) that this inline list holds at
most 10 files, and a video article holds a few hundred chunks. So the paginated
``{api}/articles/{id}/versions/{v}/files?page=P&page_size=1000`` endpoint is read too, page after
page until one comes back short (the API never says how many remain), and the two lists are
merged by name (the article's own entry wins). A server without that endpoint (404) leaves the
article's own list.

Names come from a server, so they are checked before they become paths: only names that the
catalogue recognises (``s1-d1-camera1-0.mp4``, ``mocap-s1-d1.mat``), of the recording the article
belongs to, plain file names without any folder part, are kept.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from rat7m import catalogue as cat
from rat7m.download.http import HttpClient, PermanentError, RetryPolicy, UnreachableError, call_with_retries

__all__ = [
    "AVAILABLE_STATUSES",
    "INLINE_LIMIT",
    "MAX_PAGES",
    "PAGE_SIZE",
    "WHAT_CHOICES",
    "Listing",
    "RemoteFile",
    "article_entries",
    "articles_for",
    "fetch_article_files",
    "list_remote_files",
    "page_entries",
    "select_files",
    "target_path",
]

log = logging.getLogger(__name__)

#: Files per page asked of the paginated files endpoint (Figshare allows up to 1000).
PAGE_SIZE = 1000
#: Files the article JSON lists inline at most (Figshare's documented limit).
INLINE_LIMIT = 10
#: Pages read at most (Figshare's limit is 5000; a server repeating itself is stopped sooner).
MAX_PAGES = 5000
#: What ``--what`` accepts.
WHAT_CHOICES = ("videos", "annotations", "all")

_MD5_RE = re.compile(r"[0-9a-f]{32}")
#: ``status`` values of a file entry that mean its bytes can be downloaded (absent counts as available).
AVAILABLE_STATUSES = frozenset({"available"})


@dataclass(frozen=True)
class RemoteFile:
    """One file of the dataset as the listing describes it.

    Attributes:
        path: Where it goes, relative to the output folder (``video_sequences/s1-d1-camera1-0.mp4``).
        url: Its download URL (redirects to storage).
        size: Size in bytes (``None``: unknown until the server says, as for whole-article zips).
        md5: Lower-case hex MD5 (``computed_md5``, else ``supplied_md5``), or ``None`` if the listing has none.
        article: The Figshare article it belongs to.
        file_id: Figshare's id of the file.
        recording: Recording name (``s1-d1``).
        kind: ``"videos"`` or ``"annotations"``.
    """

    path: str
    url: str
    size: int | None
    md5: str | None
    article: cat.Article
    file_id: int
    recording: str
    kind: str

    @property
    def name(self) -> str:
        """The file's name without its folder."""
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class Listing:
    """The files selected for download, and the articles that could not be listed."""

    files: tuple[RemoteFile, ...]
    errors: tuple[str, ...] = ()
    #: Files the selection wants that the listing says cannot be downloaded as they are (link-only,
    #: not available, MD5s that disagree), each "name: why".
    refused: tuple[str, ...] = ()


def articles_for(recordings: Sequence[cat.Recording], what: str) -> list[tuple[cat.Article, str]]:
    """The articles (with their kind) a selection needs, annotations first (small and quick)."""
    if what not in WHAT_CHOICES:
        raise ValueError(f"--what must be one of {', '.join(WHAT_CHOICES)}, not {what!r}")
    articles: list[tuple[cat.Article, str]] = []
    if what in ("annotations", "all"):
        articles.append((cat.ANNOTATION_ARTICLE, "annotations"))
    if what in ("videos", "all"):
        articles.extend((rec.video_article, "videos") for rec in recordings)
    return articles


def fetch_article_files(client: HttpClient, api_url: str, article: cat.Article, policy: RetryPolicy) -> list[dict]:
    """The raw ``files[]`` entries of one article version (merged with the paginated listing).

    Raises:
        UnreachableError: the API's host does not resolve or refuses connections (after two quick tries).
        PermanentError: the API answered something that is not a listing, or kept failing.
    """
    api = api_url.rstrip("/")
    url = f"{api}/articles/{article.id}/versions/{article.version}"
    what = f"listing article {article.id} v{article.version}"
    data = call_with_retries(lambda: client.get_json(url), policy, what, fail_fast=True)
    files = article_entries(data, url)
    names = {_key(f, "name") for f in files}
    paged = _paged_files(client, api, article, policy)
    if paged is None and len(files) >= INLINE_LIMIT:
        log.warning("article %d lists %d files and has no paginated listing: the list may be incomplete",
                    article.id, len(files))  # fmt: skip
    extra = [f for f in paged or [] if _key(f, "name") not in names]
    if extra:
        log.debug("article %d: %d files found only in the paginated listing", article.id, len(extra))
    return files + extra


def article_entries(data: object, url: str) -> list[dict]:
    """The file entries of an article's JSON (anything that is not an object is dropped).

    Raises:
        PermanentError: ``data`` is not an article (no ``files`` list).
    """
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise PermanentError(f"{url} is not a Figshare article (no 'files' list)")
    return [f for f in data["files"] if isinstance(f, dict)]


def page_entries(data: object, seen: set[object]) -> list[dict]:
    """The entries of one page of the files endpoint not ``seen`` before (``seen`` is updated)."""
    if not isinstance(data, list):
        return []
    fresh = []
    for entry in data:
        if isinstance(entry, dict) and _key(entry, "id") not in seen:
            seen.add(_key(entry, "id"))
            fresh.append(entry)
    return fresh


def _key(entry: dict, field: str) -> object:
    """A hashable stand-in for an entry's ``id`` or ``name`` (a server may send a list there)."""
    value = entry.get(field)
    return value if type(value) in (int, str) else None


def _paged_files(client: HttpClient, api: str, article: cat.Article, policy: RetryPolicy) -> list[dict] | None:
    """Every page of ``{api}/articles/{id}/versions/{v}/files``; ``None`` if the server has no such endpoint."""
    found: list[dict] = []
    seen: set[object] = set()
    for page in range(1, MAX_PAGES + 1):
        url = f"{api}/articles/{article.id}/versions/{article.version}/files?page={page}&page_size={PAGE_SIZE}"
        try:
            data = call_with_retries(
                functools.partial(client.get_json, url), policy, f"listing files of {article.id}", fail_fast=True
            )
        except PermanentError as exc:
            if page == 1 and exc.status in (400, 404, 405):
                log.debug("no paginated files listing (%s); using the article's own list", exc)
                return None
            raise
        if not isinstance(data, list):
            return found
        fresh = page_entries(data, seen)
        found.extend(fresh)
        if len(data) < PAGE_SIZE or not fresh:
            return found
    return found


class _Md5Notes:
    """What the listing's MD5 fields said, to be told once per run instead of once per file."""

    def __init__(self) -> None:
        self.empty: list[str] = []
        self.malformed: list[str] = []

    def report(self) -> None:
        if self.empty:
            log.warning("%d file(s) have no MD5 in the listing (a fresh upload?), e.g. %s: only their size "
                        "can be checked", len(self.empty), self.empty[0])  # fmt: skip
        if self.malformed:
            log.warning("%d file(s) have an MD5 in the listing that is not 32 hex digits, e.g. %s: only their "
                        "size can be checked", len(self.malformed), self.malformed[0])  # fmt: skip


def _md5_value(entry: dict, key: str) -> str | None:
    """``""`` for an absent or empty MD5, the lower-case hex for a good one, ``None`` for anything else."""
    value = entry.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if isinstance(value, str) and _MD5_RE.fullmatch(value.strip().lower()):
        return value.strip().lower()
    return None


def _md5_of(entry: dict, name: str, notes: _Md5Notes) -> tuple[str | None, str | None]:
    """The MD5 to check a file against, and why the file must be refused (MD5s that disagree).

    ``computed_md5`` (Figshare's own) and ``supplied_md5`` (the uploader's) must agree when both
    are given: if they differ, one of them is wrong and a download could never be trusted.
    """
    computed, supplied = _md5_value(entry, "computed_md5"), _md5_value(entry, "supplied_md5")
    if computed and supplied and computed != supplied:
        return None, f"its computed MD5 {computed} and supplied MD5 {supplied} disagree"
    if computed or supplied:
        return computed or supplied, None
    (notes.malformed if None in (computed, supplied) else notes.empty).append(name)
    return None, None


def _refusal(entry: dict) -> str | None:
    """Why the listing says this entry has no bytes to download, or ``None``."""
    if entry.get("is_link_only"):
        return "it is a link to elsewhere (is_link_only), not a file on Figshare"
    status = entry.get("status")
    if status is not None and not (isinstance(status, str) and status in AVAILABLE_STATUSES):
        return f"its status is {str(status)[:40]!r}, not available"
    return None


def target_path(name: str, kind: str, recording: cat.Recording | None) -> tuple[str, cat.Recording, str | None] | None:
    """Where a file named ``name`` goes: (relative path, recording, camera), or ``None`` if it is not ours.

    ``recording`` is the recording whose video article the name came from (``None`` for annotations).
    """
    if not name or name != PurePosixPath(name).name or "\\" in name or name.startswith("."):
        return None
    if not name.isascii():
        return None
    # only the catalogue's own spelling: ``mocap-s01-d1.mat`` would land beside ``mocap-s1-d1.mat``
    if kind == "videos":
        chunk = cat.parse_video_chunk_name(name)
        if chunk is None or chunk.recording != recording:
            return None
        if name != cat.video_chunk_name(chunk.recording, chunk.camera, chunk.start):
            return None
        return f"{cat.VIDEO_DIR}/{name}", chunk.recording, chunk.camera
    try:
        rec = cat.parse_mocap_file_name(name)
    except (ValueError, KeyError):
        return None
    if name != cat.mocap_file_name(rec):
        return None
    return f"{cat.ANNOTATION_DIR}/{name}", rec, None


def select_files(
    entries: Iterable[dict],
    article: cat.Article,
    kind: str,
    recordings: Sequence[cat.Recording],
    cameras: Sequence[str],
    *,
    refused: list[str] | None = None,
    md5_notes: _Md5Notes | None = None,
) -> list[RemoteFile]:
    """Turn an article's raw ``files[]`` into the :class:`RemoteFile` s the selection wants.

    Entries with names that are not dataset files in the catalogue's spelling (or that try to be
    paths) are left out with a warning. Entries the selection wants but that cannot be trusted as
    listed (link-only, not available, MD5s that disagree) are added to ``refused`` ("name: why").
    """
    owner = next((r for r in cat.RECORDINGS if r.video_article == article), None) if kind == "videos" else None
    wanted_recordings = {r.name for r in recordings}
    selected: list[RemoteFile] = []
    notes = _Md5Notes() if md5_notes is None else md5_notes
    for entry in entries:
        name = entry.get("name")
        if not isinstance(name, str) or (target := target_path(name, kind, owner)) is None:
            log.warning("article %d: ignoring %r (not a %s file of this article)", article.id, name, kind)
            continue
        path, rec, camera = target
        if rec.name not in wanted_recordings or (camera is not None and camera not in cameras):
            continue
        size, url, file_id = entry.get("size"), entry.get("download_url"), entry.get("id")
        why = _refusal(entry)
        md5, disagree = _md5_of(entry, name, notes) if why is None else (None, None)
        why = why or disagree
        if why is not None:
            log.warning("article %d: skipping %s: %s", article.id, name, why)
            if refused is not None:
                refused.append(f"{name}: {why}")
            continue
        if type(size) is not int or size < 0 or not isinstance(url, str) or not url:
            log.warning("article %d: ignoring %r (listing has no usable size or download_url)", article.id, name)
            continue
        file_id = file_id if type(file_id) is int else -1
        selected.append(RemoteFile(path, url, size, md5, article, file_id, rec.name, kind))
    if md5_notes is None:
        notes.report()
    return selected


def _sort_key(item: RemoteFile) -> tuple:
    order = [r.name for r in cat.RECORDINGS]
    chunk = cat.parse_video_chunk_name(item.name)
    camera, start = (chunk.camera, chunk.start) if chunk else ("", 0)
    return (item.kind != "annotations", order.index(item.recording), camera, start)


def list_remote_files(
    client: HttpClient,
    api_url: str,
    recordings: Sequence[cat.Recording],
    what: str,
    cameras: Sequence[str],
    policy: RetryPolicy,
) -> Listing:
    """List every file the selection wants, in a stable order (annotations, then videos by recording).

    An article the API refuses (404, 403) does not stop the others: it is reported in ``errors``.
    When the API cannot be reached at all (its name does not resolve or it refuses connections:
    given up after two quick tries; or retries used up), the remaining articles are not tried:
    each would wait for nothing. That is one error, saying what to check.
    """
    files: dict[str, RemoteFile] = {}
    errors: list[str] = []
    refused: list[str] = []
    notes = _Md5Notes()
    articles = articles_for(recordings, what)
    for i, (article, kind) in enumerate(articles):
        try:
            entries = fetch_article_files(client, api_url, article, policy)
        except UnreachableError as exc:
            unlisted = f" ({len(articles) - i} article(s) not listed)" if i else ""
            errors.append(
                f"the Figshare API at {api_url} is unreachable ({exc}){unlisted}: check the network connection "
                "and the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), or download whole-article zips "
                "with --via-zip"
            )
            break
        except PermanentError as exc:
            errors.append(f"{kind} article {article.id} v{article.version}: {exc} (API unreachable? try --via-zip)")
            if exc.status is None and i + 1 < len(articles):
                left = len(articles) - i - 1
                errors.append(f"{left} more article(s) not listed: the API at {api_url} is not answering")
                break
            continue
        for item in select_files(entries, article, kind, recordings, cameras, refused=refused, md5_notes=notes):
            if item.path in files:
                log.warning("%s is listed twice; keeping the first entry", item.path)
                continue
            files[item.path] = item
        log.debug("article %d: %d entries", article.id, len(entries))
    notes.report()
    return Listing(tuple(sorted(files.values(), key=_sort_key)), tuple(errors), tuple(refused))
