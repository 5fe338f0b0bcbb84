"""The local Figshare server, checked with a real client (urllib3) against the running server."""

from __future__ import annotations

import hashlib
import io
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
import urllib3
from urllib3.exceptions import ProtocolError

from rat7m.catalogue import (
    ANNOTATION_ARTICLE,
    ANNOTATION_DIR,
    VIDEO_DIR,
    Article,
    mocap_file_name,
    recording_by_name,
    video_chunk_name,
)
from rat7m.demo.figshare_server import (
    ALL_FILES,
    API,
    ARTICLE_FILES_LIMIT,
    Faults,
    FigshareServer,
    parse_range,
)

S1D1 = recording_by_name("s1-d1")
S5D2 = recording_by_name("s5-d2")
CHUNK_A = video_chunk_name(S1D1, "Camera1", 0)
CHUNK_B = video_chunk_name(S1D1, "Camera2", 3500)
CHUNK_C = video_chunk_name(S5D2, "Camera6", 0)
MOCAP = mocap_file_name(S1D1)
FILE_KEYS = {"id", "name", "size", "computed_md5", "supplied_md5", "download_url", "is_link_only"}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dataset")


@pytest.fixture(scope="module")
def tree(root: Path) -> dict[str, bytes]:
    """A dataset folder with a few fake chunks and one fake .mat, named as the catalogue says."""
    rng = random.Random(7)
    contents = {
        CHUNK_A: rng.randbytes(150_000),
        CHUNK_B: rng.randbytes(70_001),
        CHUNK_C: rng.randbytes(1),
        MOCAP: rng.randbytes(20_000),
    }
    (root / VIDEO_DIR).mkdir()
    (root / ANNOTATION_DIR).mkdir()
    for name, data in contents.items():
        folder = ANNOTATION_DIR if name == MOCAP else VIDEO_DIR
        (root / folder / name).write_bytes(data)
    (root / VIDEO_DIR / "notes.txt").write_text("not a chunk, not published")
    return contents


@pytest.fixture
def server(root: Path, tree: dict[str, bytes]):
    with FigshareServer(root) as srv:
        yield srv


@pytest.fixture
def http():
    retries = urllib3.Retry(total=None, connect=0, read=0, status=0, other=0, redirect=3)
    pool = urllib3.PoolManager(retries=retries, timeout=urllib3.Timeout(connect=5, read=20))
    yield pool
    pool.clear()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def files_of(server: FigshareServer, http: urllib3.PoolManager, article) -> dict[str, dict]:
    r = http.request("GET", f"{server.api_url}/articles/{article.id}/versions/{article.version}")
    assert r.status == 200
    return {f["name"]: f for f in r.json()["files"]}


def storage_url(server: FigshareServer, http: urllib3.PoolManager, name: str) -> str:
    """The storage URL behind a file's download_url (the redirect's Location)."""
    article = ANNOTATION_ARTICLE if name == MOCAP else (S5D2 if name == CHUNK_C else S1D1).video_article
    r = http.request("GET", files_of(server, http, article)[name]["download_url"], redirect=False)
    assert r.status == 302
    return r.headers["Location"]


def read_until_cut(http: urllib3.PoolManager, url: str) -> bytes:
    """GET ``url`` expecting the server to cut the connection; return what arrived before the cut."""
    r = http.request("GET", url, preload_content=False)
    received = bytearray()
    with pytest.raises(ProtocolError):
        while block := r.read1(4096):
            received += block
    r.release_conn()
    return bytes(received)


def get(http: urllib3.PoolManager, url: str, **headers: str) -> urllib3.BaseHTTPResponse:
    return http.request("GET", url, headers=headers)


# ---------------------------------------------------------------- listing


def test_article_json_has_the_real_fields_sizes_and_md5s(server, http, tree):
    r = http.request("GET", f"{server.api_url}/articles/{S1D1.video_article.id}/versions/{S1D1.video_article.version}")
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/json")
    article = r.json()
    assert (article["id"], article["version"]) == (S1D1.video_article.id, S1D1.video_article.version)
    assert article["title"]
    assert [f["name"] for f in article["files"]] == sorted([CHUNK_A, CHUNK_B])  # notes.txt is not published
    for f in article["files"]:
        assert FILE_KEYS <= set(f)
        assert f["size"] == len(tree[f["name"]])
        assert f["computed_md5"] == f["supplied_md5"] == md5(tree[f["name"]])
        assert f["download_url"] == f"{server.base_url}/ndownloader/files/{f['id']}"
        assert f["is_link_only"] is False and isinstance(f["id"], int)
    assert set(files_of(server, http, ANNOTATION_ARTICLE)) == {MOCAP}
    assert set(files_of(server, http, S5D2.video_article)) == {CHUNK_C}
    # Every catalogue article exists, even without files; the latest version answers without /versions.
    other = recording_by_name("s3-d1").video_article
    assert files_of(server, http, other) == {}
    assert http.request("GET", f"{server.api_url}/articles/{ANNOTATION_ARTICLE.id}").json()["version"] == 2


def test_file_ids_are_stable_across_servers(server, root):
    again = FigshareServer(root)
    with again:
        assert again.listing(S1D1.video_article) == [
            {**f, "download_url": f["download_url"].replace(server.base_url, again.base_url)}
            for f in server.listing(S1D1.video_article)
        ]


def test_unknown_article_version_and_file_answer_404_json(server, http):
    r = http.request("GET", f"{server.api_url}/articles/1/versions/1")
    assert r.status == 404 and r.json() == {"message": "Entity not found: ArticleVersion", "code": "EntityNotFound"}
    r = http.request("GET", f"{server.api_url}/articles/{S1D1.video_article.id}/versions/9")
    assert r.status == 404 and r.json()["code"] == "EntityNotFound"
    assert http.request("GET", f"{server.base_url}/ndownloader/files/1").status == 404
    assert http.request("GET", f"{server.base_url}/ndownloader/articles/1/versions/1").status == 404


def test_article_lists_ten_files_and_the_files_endpoint_paginates(server, http):
    article = recording_by_name("s2-d1").video_article
    names = sorted(video_chunk_name(recording_by_name("s2-d1"), "Camera1", 3500 * i) for i in range(25))
    for name in names:
        server.add_file(article, name, name.encode())
    base = f"{server.api_url}/articles/{article.id}"
    inline = http.request("GET", f"{base}/versions/{article.version}").json()["files"]
    assert [f["name"] for f in inline] == names[:ARTICLE_FILES_LIMIT]

    def page(url: str) -> list[str]:
        r = http.request("GET", url)
        assert r.status == 200, r.data
        return [f["name"] for f in r.json()]

    assert page(f"{base}/files") == names[:10]  # default page_size is 10, as documented
    assert page(f"{base}/files?page=3&page_size=10") == names[20:]
    assert page(f"{base}/files?page=4&page_size=10") == []
    assert page(f"{base}/versions/{article.version}/files?page_size=1000") == names
    assert page(f"{base}/files?limit=7&offset=20") == names[20:25]
    listed = http.request("GET", f"{base}/files?page_size=1000").json()
    assert listed == server.listing(article) and FILE_KEYS <= set(listed[0])
    one = http.request("GET", f"{base}/files/{listed[3]['id']}").json()
    assert one == listed[3]
    for bad in ("page_size=1001", "page=0", "page_size=x", "page=1&offset=3"):
        r = http.request("GET", f"{base}/files?{bad}")
        assert r.status == 400 and "message" in r.json(), bad


# --------------------------------------------------------------- download


def test_download_url_redirects_to_storage_which_serves_the_bytes(server, http, tree):
    f = files_of(server, http, S1D1.video_article)[CHUNK_A]
    hop = http.request("GET", f["download_url"], redirect=False)
    assert hop.status == 302 and "/storage/" in hop.headers["Location"]
    r = http.request("GET", f["download_url"])  # urllib3 follows the redirect
    assert r.status == 200 and r.data == tree[CHUNK_A]
    assert r.headers["Accept-Ranges"] == "bytes"
    assert r.headers["ETag"] == f'"{md5(tree[CHUNK_A])}"'
    assert r.headers["Content-Length"] == str(len(tree[CHUNK_A]))
    assert "GMT" in r.headers["Last-Modified"]
    assert server.bytes_sent(CHUNK_A) == len(tree[CHUNK_A])
    assert [rec.status for rec in server.requests if rec.name == CHUNK_A] == [302, 302, 200]


def test_range_answers_206_with_exact_content_range(server, http, tree):
    url, data = storage_url(server, http, CHUNK_A), tree[CHUNK_A]
    n = len(data)
    for header, (start, end) in {
        "bytes=100-199": (100, 200),
        f"bytes={n - 10}-": (n - 10, n),
        "bytes=-5": (n - 5, n),
        f"bytes=0-{n + 50}": (0, n),
    }.items():
        server.reset_log()
        r = get(http, url, Range=header)
        assert r.status == 206, header
        assert r.headers["Content-Range"] == f"bytes {start}-{end - 1}/{n}"
        assert r.headers["Content-Length"] == str(end - start)
        assert r.data == data[start:end]
        assert server.requests[-1].sent == end - start and server.requests[-1].range == header


def test_unsatisfiable_range_answers_416(server, http, tree):
    url, n = storage_url(server, http, CHUNK_B), len(tree[CHUNK_B])
    r = get(http, url, Range=f"bytes={n}-")
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{n}"


def test_if_range_mismatch_sends_the_whole_file(server, http, tree):
    url, data = storage_url(server, http, CHUNK_A), tree[CHUNK_A]
    head = http.request("HEAD", url)
    good = get(http, url, Range="bytes=10-", **{"If-Range": head.headers["ETag"]})
    assert good.status == 206 and good.data == data[10:]
    by_date = get(http, url, Range="bytes=10-", **{"If-Range": head.headers["Last-Modified"]})
    assert by_date.status == 206 and by_date.data == data[10:]
    stale = get(http, url, Range="bytes=10-", **{"If-Range": '"0123456789abcdef0123456789abcdef"'})
    assert stale.status == 200 and stale.data == data and "Content-Range" not in stale.headers


def test_head_sends_headers_only(server, http, tree):
    url = storage_url(server, http, MOCAP)
    server.reset_log()
    r = http.request("HEAD", url)
    assert r.status == 200 and r.data == b""
    assert r.headers["Content-Length"] == str(len(tree[MOCAP]))
    assert r.headers["ETag"] == f'"{md5(tree[MOCAP])}"'
    assert server.requests[-1].method == "HEAD" and server.requests[-1].sent == 0


def test_article_zip_holds_exactly_the_files_and_resumes(server, http, tree):
    url = server.zip_url(S1D1.video_article)
    whole = http.request("GET", url)
    assert whole.status == 200 and whole.headers["Content-Length"] == str(len(whole.data))
    with zipfile.ZipFile(io.BytesIO(whole.data)) as zf:
        assert sorted(zf.namelist()) == sorted([CHUNK_A, CHUNK_B])
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED
            assert zf.read(info) == tree[info.filename]
    assert http.request("GET", url).data == whole.data  # built once, the same bytes again
    part = get(http, url, Range="bytes=1000-", **{"If-Range": whole.headers["ETag"]})
    assert part.status == 206 and whole.data[:1000] + part.data == whole.data
    assert part.headers["Content-Range"] == f"bytes 1000-{len(whole.data) - 1}/{len(whole.data)}"
    # A new file makes a new zip: the old ETag no longer matches, so a resume starts again.
    server.add_file(S1D1.video_article, video_chunk_name(S1D1, "Camera3", 0), b"late file")
    stale = get(http, url, Range="bytes=1000-", **{"If-Range": whole.headers["ETag"]})
    assert stale.status == 200 and stale.headers["ETag"] != whole.headers["ETag"]
    with zipfile.ZipFile(io.BytesIO(stale.data)) as zf:
        assert len(zf.namelist()) == 3 and zf.read(video_chunk_name(S1D1, "Camera3", 0)) == b"late file"


# ----------------------------------------------------------------- faults


def test_drop_after_n_bytes_for_the_first_request(server, http, tree):
    url, data = storage_url(server, http, CHUNK_A), tree[CHUNK_A]
    server.set_faults(Faults(drop_after=1234, drop_times=1), CHUNK_A)
    server.reset_log()
    received = read_until_cut(http, url)
    assert received == data[:1234]
    assert server.requests[-1].sent == 1234
    again = get(http, url, Range="bytes=1234-")  # the next request is whole: the client can resume
    assert again.status == 206 and received + again.data == data


def test_drop_always_applies_to_every_file(server, http, tree):
    server.set_faults(Faults(drop_after=100))
    for name in (CHUNK_B, MOCAP, CHUNK_B):
        assert read_until_cut(http, storage_url(server, http, name)) == tree[name][:100]
        assert server.requests[-1].sent == 100
    assert http.request("GET", storage_url(server, http, CHUNK_C)).data == tree[CHUNK_C]  # 1 byte: nothing to cut


@pytest.mark.parametrize("status", [503, 500, 429])
def test_transient_status_with_retry_after_then_ok(server, http, tree, status):
    url = storage_url(server, http, CHUNK_B)
    server.set_faults(Faults(status=status, status_times=2, retry_after=3))
    for _ in range(2):
        r = get(http, url)
        assert r.status == status and r.headers["Retry-After"] == "3"
    r = get(http, url)
    assert r.status == 200 and r.data == tree[CHUNK_B]


def test_faults_on_the_api_and_per_file_leave_the_rest_alone(server, http, tree):
    server.set_faults(Faults(status=503, status_times=1), API)
    server.set_faults(Faults(fail=404), CHUNK_A)
    listing = f"{server.api_url}/articles/{S1D1.video_article.id}/versions/{S1D1.video_article.version}"
    assert http.request("GET", listing).status == 503
    files = files_of(server, http, S1D1.video_article)
    assert http.request("GET", files[CHUNK_B]["download_url"]).data == tree[CHUNK_B]
    assert http.request("GET", files[CHUNK_A]["download_url"]).status == 404


@pytest.mark.parametrize("status", [500, 404])
def test_permanent_failure(server, http, status):
    server.set_faults(Faults(fail=status), MOCAP)
    url = storage_url(server, http, MOCAP)
    assert [get(http, url).status for _ in range(4)] == [status] * 4


def test_ignore_range_sends_200_and_the_whole_file(server, http, tree):
    server.set_faults(Faults(ignore_range=True), CHUNK_A)
    r = get(http, storage_url(server, http, CHUNK_A), Range="bytes=500-")
    assert r.status == 200 and r.data == tree[CHUNK_A] and "Content-Range" not in r.headers


def test_corrupt_flips_one_byte_for_the_first_request(server, http, tree):
    data = tree[CHUNK_A]
    server.set_faults(Faults(corrupt_offset=777, corrupt_times=1))
    url = storage_url(server, http, CHUNK_A)
    bad = get(http, url).data
    assert len(bad) == len(data) and md5(bad) != md5(data)
    assert [i for i in range(len(data)) if bad[i] != data[i]] == [777]
    assert get(http, url).data == data
    server.set_faults(Faults(corrupt_offset=777))  # always, and within a range that covers it
    assert get(http, url, Range="bytes=700-800").data != data[700:801]


def test_slow_throttles_and_stop_interrupts_it(root, tree, http):
    """At 10 kB/s, 150 kB cannot arrive within half a second (the client being slow only helps)."""
    server = FigshareServer(root, faults={CHUNK_A: Faults(rate=10_000)}).start()
    try:
        url = storage_url(server, http, CHUNK_A)
        r = http.request("GET", url, preload_content=False)
        received = 0
        deadline = time.monotonic() + 0.5
        while time.monotonic() < deadline:
            received += len(r.read(1000))
        assert 0 < received < len(tree[CHUNK_A]) // 2
    finally:
        server.stop()  # must not wait for the slow transfer
    assert not server.running
    assert server.requests[-1].sent < len(tree[CHUNK_A])


def test_no_length_streams_until_the_connection_closes(server, http, tree):
    server.set_faults(Faults(no_length=True), CHUNK_B)
    r = get(http, storage_url(server, http, CHUNK_B))
    assert r.status == 200 and "Content-Length" not in r.headers and r.data == tree[CHUNK_B]


def test_faults_are_checked_when_made():
    for bad in ({"status": 200}, {"fail": 302}, {"drop_after": -1}, {"rate": 0}):
        with pytest.raises(ValueError, match="Faults"):
            Faults(**bad)


def test_requests_are_served_concurrently(server, http, tree):
    """While one client trickles a file at 1 kB/s, another gets a listing and a whole file."""
    server.set_faults(Faults(rate=1000), CHUNK_A)
    slow = http.request("GET", storage_url(server, http, CHUNK_A), preload_content=False)
    assert slow.read(100) == tree[CHUNK_A][:100]
    other = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=20))
    assert set(files_of(server, other, S1D1.video_article)) == {CHUNK_A, CHUNK_B}
    assert get(other, storage_url(server, other, MOCAP)).data == tree[MOCAP]
    running = [r for r in server.requests if r.name == CHUNK_A and not r.finished]
    assert len(running) == 1 and running[0].sent < len(tree[CHUNK_A])
    slow.close()


def test_add_file_replaces_in_place_and_checks_the_article(server, http):
    article = S5D2.video_article
    first = server.add_file(article, CHUNK_C, b"new content")
    assert first == server.add_file(article, CHUNK_C, b"newer content")
    assert get(http, storage_url(server, http, CHUNK_C)).data == b"newer content"
    assert files_of(server, http, article)[CHUNK_C]["computed_md5"] == md5(b"newer content")
    with pytest.raises(KeyError, match="not in the catalogue"):
        server.add_file(Article(1, 1), "x.mp4", b"")
    other = f"{server.api_url}/articles/{S1D1.video_article.id}/files/{first}"  # a file of another article
    assert http.request("GET", other).status == 404


def test_faults_change_while_running(server, http, tree):
    url = storage_url(server, http, CHUNK_B)
    server.set_faults(Faults(fail=500), ALL_FILES)
    assert get(http, url).status == 500
    server.clear_faults()
    assert get(http, url).data == tree[CHUNK_B]


# -------------------------------------------------------------- lifecycle


def test_stop_joins_the_thread_and_closes_the_port_even_with_an_open_connection(root, tree, http):
    server = FigshareServer(root).start()
    port = int(server.base_url.rsplit(":", 1)[1])
    assert http.request("GET", f"{server.api_url}/articles/{S1D1.video_article.id}").status == 200
    idle = socket.create_connection(("127.0.0.1", port))  # a keep-alive connection that says nothing
    try:
        server.stop()
        assert not server.running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        idle.close()


def test_parse_range_edge_cases():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range("bytes=5-2", 10) is None  # malformed: ignored, whole file
    assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: whole file
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=-0", 10) == "unsatisfiable"
    assert parse_range("bytes=-20", 10) == (0, 10)


def test_cli_serves_until_sigterm(root, tree, http):
    proc = subprocess.Popen(
        [sys.executable, "-m", "rat7m.demo.figshare_server", "--root", str(root), "--quiet"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        first, second = proc.stdout.readline(), proc.stdout.readline()
        api_url = first.split()[2]
        r = http.request("GET", f"{api_url}/articles/{ANNOTATION_ARTICLE.id}/versions/{ANNOTATION_ARTICLE.version}")
        assert [f["name"] for f in r.json()["files"]] == [MOCAP]
        zip_url = second.split()[2]  # printed as download_all.py's --zip-url wants it, with the command
        assert second.rstrip().endswith(f"(python download_all.py --via-zip --zip-url {zip_url})")
        r = http.request("HEAD", f"{zip_url}/articles/{ANNOTATION_ARTICLE.id}/versions/{ANNOTATION_ARTICLE.version}")
        assert r.status == 200 and int(r.headers["Content-Length"]) > len(MOCAP)  # the article zip is there
        lines = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert "stopped" in "".join(lines)


def test_cli_refuses_a_missing_root(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "rat7m.demo.figshare_server", "--root", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2 and "no such folder" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_refuses_a_root_without_rat7m_files(tmp_path):
    (tmp_path / "video_sequences").mkdir()
    (tmp_path / "video_sequences" / "holiday.mp4").write_bytes(b"not a chunk")  # no catalogue name
    proc = subprocess.run(
        [sys.executable, "-m", "rat7m.demo.figshare_server", "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert f"--root {tmp_path}: no RAT7M files to serve" in proc.stderr and "s1-d1-camera1-0.mp4" in proc.stderr
