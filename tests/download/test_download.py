"""download_all.py against the real local Figshare server (rat7m.demo.figshare_server) on 127.0.0.1.

Every claim is checked with the bytes the server says it sent (its request log), and every test
ends by checking that whatever carries a final name matches the published MD5.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import download_all
from rat7m import catalogue as cat
from rat7m.cli import run_main
from rat7m.demo.figshare_server import API, Faults, FigshareServer
from rat7m.download import run
from rat7m.download.progress import human_bytes
from rat7m.download.record import RECORD_NAME
from rat7m.download.transfer import CHUNK_SIZE, Outcome
from rat7m.errors import BadInputError
from rat7m.interrupt import INTERRUPTED
from tests.helpers.shared import TRAPPED_FUTURES

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("slept")  # retries never wait (tests/conftest.py)
S1 = cat.recording_by_name("s1-d1")
S5 = cat.recording_by_name("s5-d2")
#: The file the kill test interrupts (the largest of the tree).
BIG = "s5-d2-camera2-0.mp4"


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """A small dataset named per the catalogue: s1-d1 has 12 chunks (more than the API's 10 inline)."""
    root = tmp_path_factory.mktemp("published")
    rng = random.Random(3)
    videos, annotations = root / cat.VIDEO_DIR, root / cat.ANNOTATION_DIR
    videos.mkdir()
    annotations.mkdir()
    for camera in cat.CAMERA_NAMES:
        for start in (0, cat.CHUNK_LENGTH):
            size = rng.randrange(150_000, 300_000)
            (videos / cat.video_chunk_name(S1, camera, start)).write_bytes(rng.randbytes(size))
    for start in (0, 3500, 7000):
        (videos / cat.video_chunk_name(S5, "Camera1", start)).write_bytes(rng.randbytes(200_000 + start))
    (videos / BIG).write_bytes(rng.randbytes(1_500_000))
    for rec in (S1, S5):
        (annotations / cat.mocap_file_name(rec)).write_bytes(rng.randbytes(60_000))
    return root


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def published(tree: Path, recordings=(S1, S5), cameras=cat.CAMERA_NAMES) -> dict[str, str]:
    """Relative path -> MD5 of every published file a selection covers."""
    wanted = {}
    for path in sorted(tree.rglob("*.*")):
        rel = path.relative_to(tree).as_posix()
        chunk = cat.parse_video_chunk_name(path.name)
        if chunk is not None:
            if chunk.recording in recordings and chunk.camera in cameras:
                wanted[rel] = md5(path)
        elif cat.parse_mocap_file_name(path.name) in recordings:
            wanted[rel] = md5(path)
    return wanted


def on_disk(out: Path) -> dict[str, str]:
    """Relative path -> MD5 of every data file under ``out`` (the record and the lock excluded)."""
    return {
        p.relative_to(out).as_posix(): md5(p)
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name not in (RECORD_NAME, run.LOCK_NAME)
    }


def download(server, out: Path, *args: str) -> int:
    argv = ["--out", str(out), "--api-url", server.api_url, "--zip-url", f"{server.base_url}/ndownloader", "-q"]
    return run_main(download_all.main, [*argv, *args])


def storage(server, name: str | None = None) -> list:
    """Logged requests for file bytes (the storage hop, after the redirect)."""
    return [r for r in server.requests if r.path.startswith("/storage/") and (name is None or r.name == name)]


def size_of(tree: Path, name: str) -> int:
    return next(tree.rglob(name)).stat().st_size


def test_clean_run_then_rerun_transfers_nothing(server, tree, tmp_path, capsys, caplog):
    out = tmp_path / "data"
    with caplog.at_level("INFO", logger="rat7m"):
        assert download(server, out, "--recordings", "s1-d1,s5-d2", "--jobs", "3") == 0
    # the paginated listing is the normal case on the real API: not news at INFO
    assert not [r for r in caplog.records if "paginated" in r.getMessage() and r.levelno >= 20]
    expected = published(tree)
    assert on_disk(out) == expected  # every file, right bytes, documented layout, no .part left
    layout = [cat.ANNOTATION_DIR, cat.VIDEO_DIR, RECORD_NAME]  # the lock file is removed at the end
    assert sorted(p.name for p in out.iterdir()) == sorted(layout)
    sizes = sum((tree / rel).stat().st_size for rel in expected)
    assert sum(r.sent for r in storage(server)) == sizes  # each byte crossed the wire once
    assert len(storage(server)) == len(expected)
    # s1-d1's 12 chunks needed the paginated listing (the article JSON lists 10)
    assert any("/versions/1/files?page=1" in r.path for r in server.requests)
    summary = capsys.readouterr().out
    assert f"downloaded   {len(expected):>6}" in summary

    server.reset_log()
    assert download(server, out, "--recordings", "s1-d1,s5-d2") == 0
    assert storage(server) == []  # second run: 0 bytes, not even a request
    assert f"skipped      {len(expected):>6}" in capsys.readouterr().out
    assert on_disk(out) == expected


def test_sigkill_mid_file_then_resume_fetches_only_the_rest(server, tree, tmp_path):
    out = tmp_path / "data"
    size = size_of(tree, BIG)
    server.set_faults(Faults(rate=400_000), BIG)  # ~4 s for the file: the kill lands mid-file
    argv = [sys.executable, "download_all.py", "--out", str(out), "--api-url", server.api_url,
            "--recordings", "s5-d2", "--what", "videos", "--cameras", "2", "--jobs", "1", "-q"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part = out / cat.VIDEO_DIR / (BIG + ".part")
    deadline = time.monotonic() + 30
    while (not part.exists() or part.stat().st_size < 300_000) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    while not all(r.finished for r in storage(server, BIG)):  # the server notices the dead client
        time.sleep(0.02)
    have = part.stat().st_size
    sent_before = sum(r.sent for r in storage(server, BIG))
    assert 300_000 <= have < size and not (out / cat.VIDEO_DIR / BIG).exists()
    assert 0 <= sent_before - have <= CHUNK_SIZE  # what was lost in flight is less than one chunk
    partial = json.loads((out / RECORD_NAME).read_text())["partials"][f"{cat.VIDEO_DIR}/{BIG}"]
    assert partial["validator"]  # the rerun can send If-Range

    server.clear_faults()
    server.reset_log()
    assert download(server, out, "--recordings", "s5-d2", "--what", "videos", "--cameras", "2") == 0
    (resumed,) = storage(server, BIG)
    assert (resumed.range, resumed.status, resumed.sent) == (f"bytes={have}-", 206, size - have)
    assert on_disk(out) == {f"{cat.VIDEO_DIR}/{BIG}": md5(tree / cat.VIDEO_DIR / BIG)}


def test_ctrl_c_on_a_stalled_connection_stops_at_once_and_keeps_the_part(server, tree, tmp_path):
    out = tmp_path / "data"
    server.set_faults(Faults(rate=0.001), BIG)  # one byte, then silence for 1000 s
    # SIGINT raises KeyboardInterrupt even if this test runs where SIGINT is ignored (CI, `make test &`)
    start = "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    start += "runpy.run_path('download_all.py', run_name='__main__')"
    argv = [sys.executable, "-c", start, "--out", str(out), "--api-url", server.api_url,
            "--recordings", "s5-d2", "--what", "videos", "--cameras", "2", "-q"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    part = out / cat.VIDEO_DIR / (BIG + ".part")
    deadline = time.monotonic() + 30
    while not (part.exists() and [r for r in storage(server, BIG) if r.sent]) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.2)  # let the client block in its read of the stalled body
    proc.send_signal(signal.SIGINT)
    # the read timeout is 60 s: only cutting the blocked connection lets the run end well before this
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted; rerun the same command to resume" in err
    assert part.stat().st_size == 1 and not (out / cat.VIDEO_DIR / BIG).exists()
    assert json.loads((out / RECORD_NAME).read_text())["partials"][f"{cat.VIDEO_DIR}/{BIG}"]["validator"]


def test_a_ctrl_c_landing_while_a_futures_lock_is_taken_still_ends_the_run(server, tree, tmp_path):
    """Ctrl-C whose ``KeyboardInterrupt`` was raised inside ``as_completed`` just after it took a future's lock
    left that lock taken: the download thread finishing that future waited for it for ever, and so did the
    shutdown that waits for the threads (the extraction's hang, in the download). Here it lands right there."""
    out = tmp_path / "data"  # before the fix, the first future's lock the main thread took was as_completed's
    argv = [sys.executable, "-c", TRAPPED_FUTURES, str(int(signal.SIGINT)), "download_all.py",
            "--out", str(out), "--api-url", server.api_url, "--recordings", "s5-d2", "--jobs", "2", "-q"]  # fmt: skip
    try:
        done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise AssertionError("the run did not end: a download thread waits for a future's lock") from None
    assert (done.returncode, done.stderr.splitlines()[-1:]) == (130, [INTERRUPTED]), done.stderr
    assert "Traceback" not in done.stderr
    finals = {rel: digest for rel, digest in on_disk(out).items() if not rel.endswith(".part")}
    assert finals.items() <= published(tree, recordings=(S5,)).items()  # whatever got a final name is whole


#: A download whose one file waits for response headers that never come (the stop cuts only a body being
#: read): Ctrl-C twice, half a second apart, and once more when the run has returned (as the process ends).
STALLED_HEADERS = textwrap.dedent("""
    import os, signal, socket, sys, threading, time
    from rat7m import interrupt
    interrupt.at_start()
    from rat7m.cli import run_main
    from rat7m.download.http import HttpClient
    from rat7m.download.run import run_parallel
    from rat7m.download.transfer import Outcome

    server = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=lambda: [server.accept() for _ in range(9)], daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/file"
    returned = threading.Event()

    def task(stop):
        HttpClient().open(url)  # blocks for the read timeout (60 s)
        return Outcome("file", "downloaded", 0)

    def ctrl_c():
        for _ in range(2):
            time.sleep(0.5)
            print("Ctrl-C", flush=True)
            os.kill(os.getpid(), signal.SIGINT)
        if returned.wait(60):
            print("Ctrl-C", flush=True)
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c, daemon=True).start()
    code = run_main(lambda argv: run_parallel([("file", task)], 1) and 0)
    print("returned", flush=True)
    returned.set()
    sys.exit(code)  # waits for the stuck thread, unless a signal ends it
""")


def test_a_second_ctrl_c_stops_waiting_for_a_stuck_thread_and_a_third_ends_the_process():
    """The first Ctrl-C stops the threads where they can be stopped; one waiting for headers (up to 60 s) cannot
    be: the second Ctrl-C stops waiting for it and says the one line, the third ends the process."""
    try:
        done = subprocess.run([sys.executable, "-c", STALLED_HEADERS], capture_output=True, text=True, timeout=30,
                              cwd=REPO)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"still waiting for the stuck thread: {exc.stdout!r}") from None
    assert done.stdout.splitlines() == ["Ctrl-C", "Ctrl-C", "returned", "Ctrl-C"]
    assert (done.returncode, done.stderr) == (130, INTERRUPTED + "\n")


def test_a_run_that_stopped_waiting_for_a_thread_keeps_its_lock_until_the_thread_ends(tmp_path, sigint_default):
    """After a second Ctrl-C the run no longer waits for a thread that may still write (headers arriving late,
    then its ``.part``): the folder's lock stays held while that thread runs, so no new run writes beside it,
    and is released when it ends."""
    release, ended = threading.Event(), threading.Event()

    def stuck(stop):  # deaf to the stop, as a thread waiting for headers is
        release.wait(30)
        ended.set()
        return Outcome("file", "downloaded", 0)

    timers = [threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)) for delay in (0.2, 0.6)]
    try:
        with pytest.raises(KeyboardInterrupt), run._exclusive(tmp_path):
            for timer in timers:
                timer.start()
            run.run_parallel([("file", stuck)], 1)
        assert (tmp_path / run.LOCK_NAME).exists()
        with pytest.raises(BadInputError, match="another download is already writing"), run._exclusive(tmp_path):
            pass
        other = tmp_path / "other"  # meanwhile a run in another folder is not held back by that thread
        other.mkdir()
        with run._exclusive(other):
            pass
        assert not (other / run.LOCK_NAME).exists()
    finally:
        release.set()
        for timer in timers:
            timer.cancel()
    assert ended.wait(10)
    deadline = time.monotonic() + 10
    while (tmp_path / run.LOCK_NAME).exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the thread's last step: its future's callbacks
    with run._exclusive(tmp_path):  # free again
        pass
    assert not (tmp_path / run.LOCK_NAME).exists()


def test_dropped_connections_resume_without_refetching(server, tree, tmp_path, slept):
    out = tmp_path / "data"
    server.set_faults(Faults(drop_after=100_000, drop_times=2))  # every file's first two bodies are cut
    assert download(server, out, "--recordings", "s5-d2", "--jobs", "2") == 0
    expected = published(tree, recordings=(S5,))
    assert on_disk(out) == expected
    drops = 0
    for rel in expected:
        name = Path(rel).name
        size = size_of(tree, name)
        cut = min(2, (size - 1) // 100_000)  # a body is cut only when longer than 100 kB
        drops += cut
        requests = storage(server, name)
        assert sum(r.sent for r in requests) == size  # resumed each time: no byte crossed twice
        assert [r.range for r in requests] == [None] + [f"bytes={100_000 * k}-" for k in range(1, cut + 1)]
        assert [r.status for r in requests] == [200] + [206] * cut
    assert drops >= 6
    # each drop made progress, so each retry waits the first backoff step (0.5..1 s, jitter at 0.5)
    assert slept == [0.75] * drops


def test_busy_server_retry_after_and_5xx_backoff(server, tree, tmp_path, slept):
    out = tmp_path / "data"
    server.set_faults(Faults(status=429, status_times=1, retry_after=2), API)
    server.set_faults(Faults(status=503, status_times=2, retry_after=3), "mocap-s5-d2.mat")
    server.set_faults(Faults(status=500, status_times=3), "s5-d2-camera1-0.mp4")
    assert download(server, out, "--recordings", "s5-d2", "--cameras", "1", "--jobs", "1") == 0
    assert on_disk(out) == published(tree, recordings=(S5,), cameras=("Camera1",))
    # listing: Retry-After 2; annotation: Retry-After 3 twice; chunk: 500 three times -> backoff 0.75, 1.5, 3
    assert slept == [2.0, 3.0, 3.0, 0.75, 1.5, 3.0]
    assert [r.status for r in storage(server, "mocap-s5-d2.mat")] == [503, 503, 200]
    assert [r.status for r in storage(server, "s5-d2-camera1-0.mp4")] == [500, 500, 500, 200]


def test_server_ignoring_range_restarts_the_file_cleanly(server, tree, tmp_path):
    out = tmp_path / "data"
    name = "s5-d2-camera1-3500.mp4"
    source = (tree / cat.VIDEO_DIR / name).read_bytes()
    part = out / cat.VIDEO_DIR / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(source[:50_000])
    server.set_faults(Faults(ignore_range=True))
    assert download(server, out, "--recordings", "s5-d2", "--what", "videos", "--cameras", "1") == 0
    (request,) = storage(server, name)
    assert (request.range, request.status, request.sent) == ("bytes=50000-", 200, len(source))
    videos = {k: v for k, v in published(tree, recordings=(S5,), cameras=("Camera1",)).items() if ".mp4" in k}
    assert on_disk(out) == videos
    assert (out / cat.VIDEO_DIR / name).read_bytes() == source  # not 50 kB of prefix twice


def test_corrupted_byte_is_deleted_and_fetched_again(server, tree, tmp_path):
    out = tmp_path / "data"
    name = "mocap-s5-d2.mat"
    server.set_faults(Faults(corrupt_offset=1234, corrupt_times=1), name)
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0
    assert [r.sent for r in storage(server, name)] == [60_000, 60_000]
    assert on_disk(out) == published(tree, recordings=(S5,), cameras=())


def test_permanent_failures_do_not_stop_the_others(server, tree, tmp_path, capsys):
    out = tmp_path / "data"
    broken, missing, corrupt = "s5-d2-camera1-0.mp4", "s5-d2-camera1-3500.mp4", "s5-d2-camera1-7000.mp4"
    server.set_faults(Faults(fail=500), broken)
    server.set_faults(Faults(fail=404), missing)
    server.set_faults(Faults(corrupt_offset=10), corrupt)  # every copy is bad
    assert download(server, out, "--recordings", "s5-d2", "--cameras", "1,2", "--jobs", "2") == 1
    summary = capsys.readouterr().out
    assert "failed            3" in summary
    assert f"{cat.VIDEO_DIR}/{broken}: gave up after 4 attempts" in summary and "HTTP 500" in summary
    assert f"{cat.VIDEO_DIR}/{missing}: HTTP 404" in summary
    assert f"{cat.VIDEO_DIR}/{corrupt}: downloaded copy is bad" in summary
    assert len(storage(server, missing)) == 1  # a 404 is not retried
    assert len(storage(server, broken)) == 4
    assert len(storage(server, corrupt)) == 3  # three bad copies, then it gives up
    good = {k: v for k, v in published(tree, recordings=(S5,), cameras=("Camera1", "Camera2")).items()
            if Path(k).name not in (broken, missing, corrupt)}  # fmt: skip
    assert on_disk(out) == good  # the others completed; nothing corrupt under a final name, no bad .part kept


def test_a_second_run_on_the_same_folder_is_refused(server, tmp_path, capsys):
    import fcntl

    out = tmp_path / "data"
    out.mkdir()
    with open(out / run.LOCK_NAME, "w") as held:
        held.write("4242")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)  # as a run in progress holds it
        assert download(server, out, "--recordings", "s5-d2") == 2
    err = capsys.readouterr().err
    assert f"another download is already writing to {out} (pid 4242)" in err
    assert storage(server) == []
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0  # released: fine again


def test_ignored_range_and_a_drop_at_the_same_byte_gives_up(server, tmp_path, capsys):
    """Restarting from 0 and dying at the same byte each time is no progress: bounded, not endless."""
    out = tmp_path / "data"
    name = "s5-d2-camera1-0.mp4"
    server.set_faults(Faults(ignore_range=True, drop_after=50_000), name)
    assert download(server, out, "--recordings", "s5-d2", "--what", "videos", "--cameras", "1") == 1
    assert [r.sent for r in storage(server, name)] == [50_000] * 4
    assert f"{cat.VIDEO_DIR}/{name}: gave up after 4 attempts without progress" in capsys.readouterr().out
    assert not (out / cat.VIDEO_DIR / name).exists()


def test_disk_preflight_refuses_before_downloading(server, tree, tmp_path, monkeypatch, capsys):
    out = tmp_path / "data"
    monkeypatch.setattr(run, "disk_free", lambda path: 1_000_000)
    assert download(server, out, "--recordings", "s5-d2") == 2
    err = capsys.readouterr().err
    needed = sum(size_of(tree, Path(rel).name) for rel in published(tree, recordings=(S5,)))
    assert f"not enough disk space: the download needs {human_bytes(needed)}, 1.00 MB free on {tmp_path}" in err
    assert storage(server) == [] and not out.exists()


def test_dry_run_prints_the_plan_and_downloads_nothing(server, tree, tmp_path, capsys):
    out = tmp_path / "data"
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0
    part = out / cat.VIDEO_DIR / (BIG + ".part")
    part.parent.mkdir()
    part.write_bytes((tree / cat.VIDEO_DIR / BIG).read_bytes()[:500_000])
    capsys.readouterr()
    server.reset_log()
    assert download(server, out, "--recordings", "s5-d2", "--dry-run") == 0
    plan = capsys.readouterr().out
    assert storage(server) == []
    lines = {line.split()[0] + " " + line.split()[1]: line.split() for line in plan.splitlines()[1:3]}
    # annotations: 1 file done; videos: 4 files, none done, 4 to get, 500 kB of one already there
    assert lines["s5-d2 annotations"][2:8] == ["1", "60.00", "kB", "1", "0", "0"]
    assert lines["s5-d2 videos"][2] == "4" and lines["s5-d2 videos"][7] == "4"
    remaining = sum(size_of(tree, cat.video_chunk_name(S5, "Camera1", s)) for s in (0, 3500, 7000)) + 1_000_000
    assert f"disk: needs {human_bytes(remaining)}, " in plan and "(fits)" in plan


def test_verify_rehashes_what_the_record_trusts(server, tree, tmp_path, capsys):
    out = tmp_path / "data"
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0
    target = out / cat.ANNOTATION_DIR / "mocap-s5-d2.mat"
    stat = target.stat()
    data = bytearray(target.read_bytes())
    data[100] ^= 1
    target.write_bytes(bytes(data))  # bit rot: same size, mtime put back
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    server.reset_log()
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0
    assert storage(server) == []  # trusted from the record: no rehash, no transfer
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations", "--verify") == 0
    assert len(storage(server, target.name)) == 1
    assert on_disk(out) == published(tree, recordings=(S5,), cameras=())


def test_unreachable_listing_fails_naming_the_article_and_the_fallback(server, tmp_path, capsys):
    out = tmp_path / "data"
    server.set_faults(Faults(fail=404), API)
    assert download(server, out, "--recordings", "s5-d2") == 1
    summary = capsys.readouterr().out
    assert "annotations article 13739233 v2: HTTP 404" in summary and "--via-zip" in summary
    assert storage(server) == []


# --- --via-zip --------------------------------------------------------------------------------------


def zip_requests(server) -> list:
    return [r for r in server.requests if r.path.startswith("/ndownloader/articles/")]


def test_via_zip_fetches_unpacks_selects_and_reruns_free(server, tree, tmp_path, capsys):
    out = tmp_path / "data"
    args = ("--via-zip", "--recordings", "s5-d2", "--cameras", "1")
    assert download(server, out, *args, "--dry-run") == 0
    plan = capsys.readouterr().out
    assert "zip zips/annotations.zip" in plan and "zip zips/s5-d2-videos.zip" in plan
    assert zip_requests(server) and all(r.sent <= 1 for r in zip_requests(server))  # sizes asked, nothing fetched
    server.reset_log()

    capsys.readouterr()
    assert download(server, out, *args) == 0
    expected = published(tree, recordings=(S5,), cameras=("Camera1",))
    assert on_disk(out) == expected  # only the selection was placed; zips deleted after unpacking
    layout = [cat.ANNOTATION_DIR, cat.VIDEO_DIR, RECORD_NAME]  # the lock file is removed at the end
    assert sorted(p.name for p in out.iterdir()) == sorted(layout)  # the empty zips/ removed too
    bodies = [r for r in zip_requests(server) if r.range is None]
    assert len(bodies) == 2 and all(r.status == 200 for r in bodies)
    summary = capsys.readouterr().out  # the files placed (4), not the zips (2), and their bytes
    size = human_bytes(sum((tree / rel).stat().st_size for rel in expected))
    assert f"downloaded   {len(expected):>6} {size:>11}" in summary and len(expected) == 4

    server.reset_log()
    assert download(server, out, *args) == 0
    assert server.requests == []  # unpacked earlier: nothing asked, not even a size
    assert f"skipped      {len(expected):>6} {size:>11}" in capsys.readouterr().out

    # an API-mode run afterwards checks the unzipped files against the listing's MD5s, transfers nothing
    capsys.readouterr()
    assert download(server, out, "--recordings", "s5-d2", "--cameras", "1") == 0
    assert storage(server) == []
    assert f"verified     {len(expected):>6}" in capsys.readouterr().out


def test_via_zip_resumes_a_dropped_zip(server, tree, tmp_path):
    out = tmp_path / "data"
    name = f"{cat.ANNOTATION_ARTICLE.id}.zip"
    server.set_faults(Faults(drop_after=50_000, drop_times=1), name)
    assert download(server, out, "--via-zip", "--what", "annotations") == 0
    probe, first, second = zip_requests(server)
    assert probe.range == "bytes=0-0"
    assert (first.range, first.sent) == (None, 50_000)
    assert (second.range, second.status) == ("bytes=50000-", 206)
    assert on_disk(out) == published(tree, cameras=())


def test_via_zip_refuses_entries_that_escape(server, tree, tmp_path, capsys):
    out = tmp_path / "deep" / "data"
    server.add_file(cat.ANNOTATION_ARTICLE, "../escaped.mat", b"climbing out")
    assert download(server, out, "--via-zip", "--what", "annotations") == 1
    summary = capsys.readouterr().out
    assert "zips/annotations.zip" in summary and "'..'" in summary
    assert not list(tmp_path.rglob("escaped.mat")) and not list(tmp_path.rglob("mocap-*.mat"))

    fresh = FigshareServer(tree)
    fresh.add_file(cat.ANNOTATION_ARTICLE, "/tmp/rat7m-absolute-escape.mat", b"absolute")
    with fresh:
        assert download(fresh, tmp_path / "other", "--via-zip", "--what", "annotations") == 1
        assert "absolute path" in capsys.readouterr().out
        # in API mode the same listing entry is ignored (a name, never a path), the rest downloads
        assert download(fresh, tmp_path / "api", "--what", "annotations") == 0
    assert not Path("/tmp/rat7m-absolute-escape.mat").exists()
    assert on_disk(tmp_path / "api") == published(tree, cameras=())


# --- --mini-annotation through the Drive imitation ---------------------------------------------------------


def test_mini_annotation_through_the_drive_interstitial(server, tmp_path, capsys):
    import pickle

    from rat7m.demo.drive_server import DriveServer

    out = tmp_path / "data"
    payload = pickle.dumps({"table": {"frame_idx": list(range(5000))}}, protocol=4)
    with DriveServer() as drive:
        drive.add(cat.MINI_ANNOTATION_DRIVE_ID, payload, "large")
        args = ("--mini-annotation", "--drive-url", drive.base_url)
        assert download(server, out, *args) == 0
        assert (out / cat.MINI_ANNOTATION_NAME).read_bytes() == payload
        assert len(drive.log) >= 2  # the scan-warning page, then the confirmed download
        assert server.requests == []  # --mini-annotation alone: only the pickle
        assert "downloaded        1" in capsys.readouterr().out
        before = len(drive.log)
        assert download(server, out, *args) == 0
        assert len(drive.log) == before  # already there and a pickle: not fetched again
        drive.add(cat.MINI_ANNOTATION_DRIVE_ID, b"<!DOCTYPE html><html>quota</html>" * 10, "html-bytes")
        (out / cat.MINI_ANNOTATION_NAME).unlink()
        capsys.readouterr()
        assert download(server, out, *args) == 1
        assert cat.MINI_ANNOTATION_NAME in capsys.readouterr().out
        assert not (out / cat.MINI_ANNOTATION_NAME).exists()


# --- proxies from the environment -----------------------------------------------------------------------


class _ForwardingProxy(BaseHTTPRequestHandler):
    """A plain HTTP forward proxy: takes absolute-URI requests and relays them."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append(self.path)
        url = urlsplit(self.path)
        upstream = HTTPConnection(url.hostname, url.port, timeout=10)
        skip = {"proxy-connection", "connection", "keep-alive"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
        upstream.request("GET", url.path + (f"?{url.query}" if url.query else ""), headers=headers)
        reply = upstream.getresponse()
        body = reply.read()
        self.send_response(reply.status)
        for key, value in reply.getheaders():
            if key.lower() not in skip | {"content-length", "transfer-encoding"}:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        upstream.close()


def test_proxy_from_environment_and_no_proxy(server, tree, tmp_path, monkeypatch):
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _ForwardingProxy)
    proxy.seen = []
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "no_proxy", "NO_PROXY"):
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        assert download(server, tmp_path / "a", "--recordings", "s5-d2", "--what", "annotations") == 0
        assert any(p.startswith(f"{server.api_url}/articles/") for p in proxy.seen)
        assert any("/storage/" in p for p in proxy.seen)
        assert on_disk(tmp_path / "a") == published(tree, recordings=(S5,), cameras=())

        seen = len(proxy.seen)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        assert download(server, tmp_path / "b", "--recordings", "s5-d2", "--what", "annotations") == 0
        assert len(proxy.seen) == seen  # bypassed
        assert on_disk(tmp_path / "b") == published(tree, recordings=(S5,), cameras=())
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_the_synthetic_dataset_downloads_whole(synthetic_dataset, tmp_path):
    """What ``make demo`` does: every recording and annotation of the synthetic tree, 4 at a time."""
    out = tmp_path / "data"
    with FigshareServer(synthetic_dataset.root) as server:
        assert download(server, out, "--jobs", "4") == 0
        sent = sum(r.sent for r in storage(server))
    expected = published(synthetic_dataset.root, recordings=cat.RECORDINGS)
    assert len(expected) > 7 * 6 and on_disk(out) == expected
    assert sent == sum((synthetic_dataset.root / rel).stat().st_size for rel in expected)


def test_refused_api_fails_fast_with_one_error_and_no_plan(tmp_path, slept, capsys):
    with FigshareServer(tmp_path) as gone:
        api, zips = gone.api_url, f"{gone.base_url}/ndownloader"  # a port that was serving and now refuses
    out = tmp_path / "data"
    assert run_main(download_all.main, ["--out", str(out), "--api-url", api, "-q"]) == 1
    summary = capsys.readouterr().out
    assert summary.splitlines() == [
        "FAILED before downloading anything (rerun the same command once this is fixed):",
        f"  the Figshare API at {api} is unreachable (Connection refused, tried 2 times): check the network "
        "connection and the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY), or download whole-article zips "
        "with --via-zip",
    ]  # one error for the eight articles, no table of zeros
    assert slept == [1.0]  # two quick tries, not the backoff of transfers
    assert not out.exists()  # no folder, no lock made for nothing

    slept.clear()
    assert run_main(download_all.main, ["--out", str(out), "--via-zip", "--zip-url", zips, "--dry-run", "-q"]) == 1
    plan = capsys.readouterr().out
    assert plan.startswith(f"error: the zip server at {zips} is unreachable (Connection refused, tried 2 times)")
    assert "disk:" not in plan and "all " not in plan and len(plan.splitlines()) == 1
    assert slept == [1.0]  # one zip tried, not eight


def test_unresolvable_api_host_fails_fast_on_a_dry_run(tmp_path, slept, capsys, monkeypatch):
    for key in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    argv = ["--out", str(tmp_path), "--api-url", "http://rat7m-no-such-host.invalid/v2", "--dry-run", "-q"]
    assert run_main(download_all.main, argv) == 1
    (line,) = capsys.readouterr().out.splitlines()  # the error alone: no empty plan, no disk line
    assert line.startswith("error: the Figshare API at http://rat7m-no-such-host.invalid/v2 is unreachable (")
    assert "tried 2 times" in line and "proxy" in line and "--via-zip" in line
    assert slept == [1.0]


def test_api_refusing_every_article_shows_the_errors_not_an_empty_plan(server, tmp_path, slept, capsys):
    server.set_faults(Faults(fail=404), API)  # the server answers: per-article errors, no fast-fail, no retry
    assert download(server, tmp_path / "data", "--recordings", "s5-d2", "--dry-run") == 1
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["error", "error"] and slept == []
    assert "annotations article 13739233 v2: HTTP 404" in lines[0] and "videos article" in lines[1]


# --- review: edge cases of resume and verification ------------------------------------------------------------


def test_a_zip_with_a_corrupt_member_is_fetched_again_by_the_next_run(server, tree, tmp_path, capsys):
    # Without a listing there is no MD5 for a zip: its size matches, so only the members' CRCs can
    # tell. A zip that fails them must not be kept (and trusted by every rerun) under its final name.
    out = tmp_path / "data"
    name = f"{cat.ANNOTATION_ARTICLE.id}.zip"
    server.set_faults(Faults(corrupt_offset=1234, corrupt_times=2), name)  # the size probe is the first body
    assert download(server, out, "--via-zip", "--what", "annotations") == 1
    assert "corrupt" in capsys.readouterr().out
    assert not (out / "zips" / "annotations.zip").exists()
    assert download(server, out, "--via-zip", "--what", "annotations") == 0
    assert on_disk(out) == published(tree, cameras=())


def test_ctrl_c_during_a_long_retry_after_stops_at_once(server, tmp_path):
    out = tmp_path / "data"
    server.set_faults(Faults(status=503, status_times=100, retry_after=600), BIG)  # "come back in 10 minutes"
    start = "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    start += "runpy.run_path('download_all.py', run_name='__main__')"
    argv = [sys.executable, "-c", start, "--out", str(out), "--api-url", server.api_url,
            "--recordings", "s5-d2", "--what", "videos", "--cameras", "2", "-q"]  # fmt: skip
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not [r for r in storage(server, BIG) if r.finished] and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.2)  # let the job start its wait
    proc.send_signal(signal.SIGINT)
    try:  # the job sleeps 600 s unless the wait itself listens for the interrupt
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "interrupted; rerun the same command to resume" in err
    assert [r.status for r in storage(server, BIG)] == [503]


def test_an_empty_file_in_the_listing_is_downloaded(tmp_path):
    root = tmp_path / "published"
    (root / cat.ANNOTATION_DIR).mkdir(parents=True)
    (root / cat.ANNOTATION_DIR / cat.mocap_file_name(S1)).write_bytes(b"")
    out = tmp_path / "data"
    with FigshareServer(root) as srv:
        assert download(srv, out, "--recordings", "s1-d1", "--what", "annotations") == 0
        assert download(srv, out, "--recordings", "s1-d1", "--what", "annotations") == 0
    assert on_disk(out) == {f"{cat.ANNOTATION_DIR}/{cat.mocap_file_name(S1)}": hashlib.md5(b"").hexdigest()}
    assert json.loads((out / RECORD_NAME).read_text())["files"][f"{cat.ANNOTATION_DIR}/{cat.mocap_file_name(S1)}"]


def test_a_run_that_finishes_while_another_lists_is_not_undone(server, tree, tmp_path, monkeypatch):
    # The plan is made before the lock is taken; a run that held the lock meanwhile may have
    # completed the very part this one planned to resume. Simulate that run at the disk check.
    out = tmp_path / "data"
    name = cat.mocap_file_name(S5)
    rel = f"{cat.ANNOTATION_DIR}/{name}"
    source = (tree / rel).read_bytes()
    part = out / cat.ANNOTATION_DIR / (name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(source[:20_000])

    def other_run_finishes(path):
        part.write_bytes(source)
        part.replace(out / rel)
        other = run.VerificationRecord.load(out)
        other.mark_verified(rel, out / rel, hashlib.md5(source).hexdigest())
        other.flush()
        return 1 << 40

    monkeypatch.setattr(run, "disk_free", other_run_finishes)
    assert download(server, out, "--recordings", "s5-d2", "--what", "annotations") == 0
    assert storage(server) == []  # neither resumed (from a part now gone) nor fetched again
    assert on_disk(out) == published(tree, recordings=(S5,), cameras=())
