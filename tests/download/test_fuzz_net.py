"""Property-based fuzzing (Hypothesis) of the two parsers that read a server's bytes: the Figshare
listing (JSON -> files to download) and the Google Drive confirmation page (HTML -> next URL).

Invariant: a clean result, or a one-line error of our own type; never another exception. The
default run is short (a few seconds); set ``RAT7M_FUZZ_EXAMPLES`` to run more examples.
"""

from __future__ import annotations

import json
import os

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="fuzzing needs hypothesis (requirements-dev.txt)")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rat7m import catalogue as cat  # noqa: E402
from rat7m.download import gdrive, listing  # noqa: E402
from rat7m.download.http import PermanentError  # noqa: E402
from rat7m.errors import DownloadError  # noqa: E402

EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "50"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
S1 = cat.recording_by_name("s1-d1")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
names = st.sampled_from(["mocap-s1-d1.mat", "mocap-s01-d1.mat", "s1-d1-camera1-0.mp4", "../x.mat", "a/b.mp4",
                         "mocap-s\u0661-d1.mat", ".hidden", ""]) | st.text(max_size=30)  # fmt: skip
md5s = st.none() | st.just("") | st.text("0123456789abcdefABCDEF", min_size=30, max_size=34) | json_values
entries = st.fixed_dictionaries(
    {"name": names | json_values, "size": st.integers(-5, 10**12) | json_values, "id": st.integers() | json_values,
     "download_url": st.just("http://127.0.0.1/x") | json_values, "computed_md5": md5s, "supplied_md5": md5s},
    optional={"is_link_only": json_values, "status": st.sampled_from(["available", "pending"]) | json_values,
              "mimetype": json_values},
)  # fmt: skip


def _check_selected(files: list[listing.RemoteFile]) -> None:
    for f in files:
        assert f.path in (f"{cat.ANNOTATION_DIR}/{f.name}", f"{cat.VIDEO_DIR}/{f.name}")
        assert ".." not in f.path and f.name.isascii()
        assert f.name in (cat.mocap_file_name(S1), *(cat.video_chunk_name(S1, c, 0) for c in cat.CAMERA_NAMES))
        assert isinstance(f.size, int) and f.size >= 0
        assert f.md5 is None or len(f.md5) == 32


@FUZZ
@given(st.lists(entries | json_values, max_size=8), st.lists(entries | json_values, max_size=8))
@example([], [{"name": "mocap-s1-d1.mat", "size": 0, "id": 0, "download_url": "http://127.0.0.1/x",
               "computed_md5": None, "supplied_md5": None, "status": []}])  # a list status was a TypeError
def test_listing_parser_gives_files_or_our_error(article_files, page):
    """Article JSON and a page of the files endpoint, as the listing code reads them."""
    for kind, article in (("annotations", cat.ANNOTATION_ARTICLE), ("videos", S1.video_article)):
        for data in ({"files": article_files}, article_files, {"files": 3}):
            try:
                found = listing.article_entries(json.loads(json.dumps(data)), "http://api")
            except PermanentError as exc:
                assert "\n" not in str(exc)
                continue
            found += listing.page_entries(page, set())
            refused: list[str] = []
            files = listing.select_files(found, article, kind, [S1], cat.CAMERA_NAMES, refused=refused)
            _check_selected(files)
            assert all("\n" not in why for why in refused)


@FUZZ
@given(st.binary(max_size=300))
def test_listing_bytes_never_escape_as_another_exception(body):
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return  # what get_json turns into a PermanentError
    try:
        found = listing.article_entries(data, "http://api")
    except PermanentError:
        return
    _check_selected(listing.select_files(found, cat.ANNOTATION_ARTICLE, "annotations", [S1], cat.CAMERA_NAMES))


_PAGE = (
    '<html><body><p class="uc-warning-caption">scan</p><form id="download-form" action="{action}" method="get">'
    '<input type="hidden" name="id" value="{id}"><input type="hidden" name="confirm" value="t"></form>'
    '<a href="{href}">x</a></body></html>'
)
fragments = st.sampled_from(["<", ">", '"', "&amp;", "&#", "<form", 'id="download-form"', "action=", "</form>",
                             '<p class="uc-error-subcaption">', "</p>", "export=download", "http://[", "\\",
                             "@", "file:///etc/passwd", "javascript:", "<!--", "<![CDATA[", "\x00", "é"])  # fmt: skip
urls = st.sampled_from(["https://drive.usercontent.google.com/download", "/uc?export=download&id=1", "http://[",
                        "http://127.0.0.2:1\\@drive.google.com/uc", "http://a@drive.google.com/", "file:///etc/passwd",
                        "//evil.example/uc?export=download", ""]) | st.text(max_size=40)  # fmt: skip


@FUZZ
@given(st.lists(fragments | st.text(max_size=20), max_size=30), urls, urls, st.text(max_size=20))
def test_drive_page_parser_gives_a_checked_url_or_our_error(pieces, action, href, file_id):
    pages = ["".join(pieces), _PAGE.format(action=action, id=file_id, href=href), _PAGE.format(
        action="".join(pieces[:5]), id="".join(pieces[5:9]), href="".join(pieces[9:]))]
    for page in pages:
        for status in (200, 403, 503):
            try:
                url = gdrive._next_url_from_page(page, "https://drive.google.com/uc?id=1", status, "ID")
                gdrive._check_host(url, set(), "ID")
            except (DownloadError, gdrive._TransientError) as exc:
                assert "\n" not in str(exc)
                continue
            host = gdrive.check_url(url)
            assert host in gdrive.ALLOWED_HOSTS or host.endswith(gdrive.ALLOWED_HOST_SUFFIXES)
