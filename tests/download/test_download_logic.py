"""The downloader's pure parts, without a network: the plan, listing checks, retries, record, CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import download_all
from rat7m import catalogue as cat
from rat7m.download import http, listing, plan, record, run
from rat7m.download.plan import Action, LocalState
from rat7m.download.transfer import parse_content_range
from rat7m.errors import BadInputError

S1 = cat.recording_by_name("s1-d1")
MD5 = "0123456789abcdef0123456789abcdef"
OTHER_MD5 = "f" * 32


def remote(size: int = 1000, md5: str | None = MD5) -> listing.RemoteFile:
    return listing.RemoteFile(
        "video_sequences/s1-d1-camera1-0.mp4", "http://x/f/1", size, md5, S1.video_article, 1, "s1-d1", "videos"
    )


# --- plan: one pure function, every case ---------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "verified", "partial", "verify", "action", "offset"),
    [
        (LocalState(), None, None, False, Action.FETCH, 0),
        (LocalState(part_size=0), None, None, False, Action.FETCH, 0),
        (LocalState(part_size=400), None, None, False, Action.RESUME, 400),
        (LocalState(part_size=400), None, record.Partial(MD5, '"etag"'), False, Action.RESUME, 400),
        # a complete part (killed between the last byte and the rename): "resume" at the end, then verify
        (LocalState(part_size=1000), None, None, False, Action.RESUME, 1000),
        (LocalState(part_size=1001), None, None, False, Action.RESTART, 0),
        # the listing's MD5 changed since the part was started: never splice two versions
        (LocalState(part_size=400), None, record.Partial(OTHER_MD5, None), False, Action.RESTART, 0),
        (LocalState(final_size=999, final_mtime_ns=5), None, None, False, Action.RESTART, 0),
        (LocalState(final_size=1000, final_mtime_ns=5), None, None, False, Action.VERIFY, 0),
        (LocalState(final_size=1000, final_mtime_ns=5), record.Verified(1000, MD5, 5), None, False, Action.SKIP, 0),
        (LocalState(final_size=1000, final_mtime_ns=5), record.Verified(1000, MD5, 5), None, True, Action.VERIFY, 0),
        # touched since verified, or verified against another MD5: hash again
        (LocalState(final_size=1000, final_mtime_ns=6), record.Verified(1000, MD5, 5), None, False, Action.VERIFY, 0),
        (LocalState(final_size=1000, final_mtime_ns=5), record.Verified(1000, OTHER_MD5, 5), None, False,
         Action.VERIFY, 0),
        # a final file wins over a stray part
        (LocalState(1000, 5, 300), record.Verified(1000, MD5, 5), None, False, Action.SKIP, 0),
    ],
)  # fmt: skip
def test_decide(local, verified, partial, verify, action, offset):
    step = plan.decide(remote(), local, verified, partial, verify)
    assert (step.action, step.offset) == (action, offset)
    assert step.reason
    expected_remaining = 0 if action in (Action.SKIP, Action.VERIFY) else 1000 - offset
    assert step.remaining == expected_remaining


def test_plan_reads_disk_and_record(tmp_path):
    rf = remote(size=10)
    final = tmp_path / rf.path
    final.parent.mkdir(parents=True)
    rec = record.VerificationRecord.load(tmp_path)
    assert plan.plan_downloads([rf], tmp_path, rec, False)[0].action is Action.FETCH
    plan.part_path(final).write_bytes(b"abc")
    assert plan.plan_downloads([rf], tmp_path, rec, False)[0].offset == 3
    plan.part_path(final).unlink()
    final.write_bytes(b"0123456789")
    assert plan.plan_downloads([rf], tmp_path, rec, False)[0].action is Action.VERIFY
    rec.mark_verified(rf.path, final, rf.md5)
    rec.flush()
    again = record.VerificationRecord.load(tmp_path)
    assert plan.plan_downloads([rf], tmp_path, again, False)[0].action is Action.SKIP
    assert plan.plan_downloads([rf], tmp_path, again, True)[0].action is Action.VERIFY
    os.utime(final, ns=(1, 1))
    assert plan.plan_downloads([rf], tmp_path, again, False)[0].action is Action.VERIFY


# --- verification record ----------------------------------------------------------------------------


def test_record_round_trip_and_corrupt_record(tmp_path):
    rec = record.VerificationRecord.load(tmp_path)
    rec.mark_partial("annotations/mocap-s1-d1.mat", MD5, '"abc"')
    data = json.loads((tmp_path / record.RECORD_NAME).read_text())
    assert data["partials"] == {"annotations/mocap-s1-d1.mat": {"md5": MD5, "validator": '"abc"'}}
    f = tmp_path / "x"
    f.write_bytes(b"12345")
    rec.mark_verified("annotations/mocap-s1-d1.mat", f, MD5)
    rec.flush()
    again = record.VerificationRecord.load(tmp_path)
    assert again.partial("annotations/mocap-s1-d1.mat") is None
    assert again.verified("annotations/mocap-s1-d1.mat") == record.Verified(5, MD5, f.stat().st_mtime_ns)
    (tmp_path / record.RECORD_NAME).write_text("{not json")
    assert record.VerificationRecord.load(tmp_path).files == {}
    assert not list(tmp_path.glob("*.tmp"))


# --- listing: names from a server are checked before they become paths -----------------------------


def entry(name, size=10, md5=MD5, **extra):
    return {"id": 7, "name": name, "size": size, "computed_md5": md5, "download_url": "http://x/f/7", **extra}


def test_select_files_keeps_only_this_articles_dataset_files():
    entries = [
        entry("s1-d1-camera1-0.mp4"),
        entry("s1-d1-camera2-3500.mp4"),
        entry("s1-d1-camera3-0.mp4"),  # not a selected camera
        entry("s2-d1-camera1-0.mp4"),  # another recording's chunk in this article
        entry("../s1-d1-camera1-7000.mp4"),
        entry("/etc/s1-d1-camera1-7000.mp4"),
        entry("sub/s1-d1-camera1-7000.mp4"),
        entry("README.txt"),
        entry("s1-d1-camera1-10500.mp4", md5="", supplied_md5=MD5.upper()),
        entry("s1-d1-camera1-14000.mp4", is_link_only=True),
        entry("s1-d1-camera1-17500.mp4", size=None),
    ]
    got = listing.select_files(entries, S1.video_article, "videos", [S1], ["Camera1", "Camera2"])
    assert [f.path for f in got] == [
        "video_sequences/s1-d1-camera1-0.mp4",
        "video_sequences/s1-d1-camera2-3500.mp4",
        "video_sequences/s1-d1-camera1-10500.mp4",
    ]
    assert got[2].md5 == MD5  # supplied_md5 used when computed_md5 is empty, lower-cased


def test_select_annotations_by_recording():
    entries = [entry(cat.mocap_file_name(r)) for r in cat.RECORDINGS] + [entry("mocap-s9-d9.mat")]
    wanted = cat.parse_recordings("s5-d2,s1-d1")
    got = listing.select_files(entries, cat.ANNOTATION_ARTICLE, "annotations", wanted, cat.CAMERA_NAMES)
    assert sorted(f.path for f in got) == ["annotations/mocap-s1-d1.mat", "annotations/mocap-s5-d2.mat"]


def test_articles_for_selection():
    s5 = cat.parse_recordings("s5-d1")
    assert listing.articles_for(s5, "all") == [(cat.ANNOTATION_ARTICLE, "annotations"), (s5[0].video_article, "videos")]
    assert listing.articles_for(s5, "annotations") == [(cat.ANNOTATION_ARTICLE, "annotations")]
    with pytest.raises(ValueError, match="--what"):
        listing.articles_for(s5, "frames")


# --- retries -------------------------------------------------------------------------------------------


def test_backoff_schedule_with_jitter_and_retry_after():
    slept = []
    policy = http.RetryPolicy(backoff=1.0, cap=8.0, sleep=slept.append, random=lambda: 0.5)
    assert [policy.delay(n) for n in range(1, 7)] == [0.75, 1.5, 3.0, 6.0, 6.0, 6.0]
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert http.RetryPolicy(max_retry_after=30.0).delay(1, retry_after=3600.0) == 30.0
    low = http.RetryPolicy(random=lambda: 0.0).delay(4)
    high = http.RetryPolicy(random=lambda: 0.999999).delay(4)
    assert low == 4.0 and 7.99 < high < 8.0  # equal jitter: the upper half of 2**(n-1)

    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise http.RetryableError("HTTP 503", retry_after=2.0)
        if len(calls) == 2:
            raise ConnectionResetError("reset")
        return "ok"

    assert http.call_with_retries(flaky, policy, "listing") == "ok"
    assert slept == [2.0, 1.5]  # Retry-After obeyed, then backoff for the second consecutive failure


def test_call_with_retries_gives_up_and_does_not_retry_permanent_errors():
    slept = []
    policy = http.RetryPolicy(attempts=3, sleep=slept.append, random=lambda: 0.0)

    def down():
        raise http.RetryableError("HTTP 500")

    with pytest.raises(http.PermanentError, match="gave up after 3 attempts"):
        http.call_with_retries(down, policy, "listing article 1")
    assert slept == [0.5, 1.0]

    def missing():
        raise http.PermanentError("HTTP 404")

    slept.clear()
    with pytest.raises(http.PermanentError, match="404"):
        http.call_with_retries(missing, policy, "x")
    assert slept == []


def _refused_port() -> int:
    """A loopback port nobody listens on (connections to it are refused)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_fail_fast_only_for_hosts_that_cannot_be_reached():
    import urllib3

    slept = []
    policy = http.RetryPolicy(attempts=5, sleep=slept.append, random=lambda: 0.0)
    pool = urllib3.PoolManager(retries=False)
    calls = []

    def refused():
        calls.append(1)
        return pool.request("GET", f"http://127.0.0.1:{_refused_port()}/v2")

    with pytest.raises(http.UnreachableError, match="Connection refused, tried 2 times"):
        http.call_with_retries(refused, policy, "listing", fail_fast=True)
    assert (len(calls), slept) == (2, [1.0])  # two quick tries, not five with backoff

    calls.clear()
    slept.clear()
    with pytest.raises(http.PermanentError, match="gave up after 5 attempts") as info:
        http.call_with_retries(refused, policy, "a file transfer")  # not failing fast: patient
    assert not isinstance(info.value, http.UnreachableError) and len(calls) == 5 and slept == [0.5, 1.0, 2.0, 4.0]

    def no_such_host():
        return pool.request("GET", "http://rat7m-no-such-host.invalid/v2")

    with pytest.raises(http.UnreachableError):
        http.call_with_retries(no_such_host, policy, "listing", fail_fast=True)

    for error in (
        urllib3.exceptions.ConnectTimeoutError("connect timed out"),
        urllib3.exceptions.ReadTimeoutError(None, "/v2", "read timed out"),
        urllib3.exceptions.ProtocolError("connection reset", ConnectionResetError()),
        http.RetryableError("HTTP 503"),
    ):
        calls.clear()
        slept.clear()

        def slow(error=error):
            calls.append(1)
            raise error

        with pytest.raises(http.PermanentError, match="gave up after 5 attempts"):
            http.call_with_retries(slow, policy, "listing", fail_fast=True)
        assert len(calls) == 5, error  # a slow or flaky server keeps the full backoff


def test_unreachable_proxy_counts_as_unreachable():
    import urllib3

    proxied = urllib3.ProxyManager(f"http://127.0.0.1:{_refused_port()}", retries=False)
    with pytest.raises(urllib3.exceptions.ProxyError) as info:
        proxied.request("GET", "http://api.figshare.com/v2")
    assert http.unreachable_reason(info.value) == "proxy: Connection refused"
    assert http.unreachable_reason(urllib3.exceptions.ReadTimeoutError(None, "/", "slow")) is None


def test_parse_retry_after_and_content_range():
    assert http.parse_retry_after("5") == 5.0
    assert http.parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert http.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    assert http.parse_retry_after("soon") is None and http.parse_retry_after(None) is None
    assert parse_content_range("bytes 100-199/1000") == (100, 1000)
    assert parse_content_range("bytes 100-199/*") == (100, None)
    assert parse_content_range("items 1-2/3") is None and parse_content_range(None) is None


def test_proxies_from_environment_and_no_proxy():
    client = http.HttpClient(proxies={"http": "http://proxy.example:3128", "no": "localhost,.internal"})
    assert client.pool_for("http://api.figshare.com/v2") is not client.direct
    assert client.pool_for("http://data.internal/x") is client.direct
    assert client.pool_for("https://api.figshare.com/v2") is client.direct  # no https proxy set
    bare = http.HttpClient(proxies={})
    assert bare.pool_for("http://api.figshare.com/") is bare.direct


# --- disk preflight and reports -----------------------------------------------------------------------


def test_disk_preflight_message(tmp_path):
    run.check_disk_space(10, 10, tmp_path)
    with pytest.raises(run.NotEnoughSpaceError, match=r"needs 2.50 GB, 1.00 GB free on .*--out") as info:
        run.check_disk_space(2_500_000_000, 1_000_000_000, tmp_path)
    assert isinstance(info.value, BadInputError)  # scripts exit 2
    assert run.existing_ancestor(tmp_path / "a" / "b") == tmp_path


def test_lock_file_removed_at_the_end_and_a_removed_one_is_never_trusted(tmp_path, monkeypatch):
    import fcntl

    lock = tmp_path / run.LOCK_NAME
    real_flock, calls = fcntl.flock, []

    def flock_after_the_previous_run_ends(handle, flags):
        calls.append(os.fstat(handle.fileno()).st_ino)
        if len(calls) == 1:
            lock.unlink()  # the run before ends between our open and our flock, removing the file
        return real_flock(handle, flags)

    monkeypatch.setattr(fcntl, "flock", flock_after_the_previous_run_ends)
    with run._exclusive(tmp_path):
        monkeypatch.setattr(fcntl, "flock", real_flock)
        assert len(calls) == 2 and lock.read_text() == str(os.getpid())  # reopened: the file at the path
        with open(lock) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # and it is the one held
    assert not lock.exists()  # removed at the end of the run


def test_summary_names_failures_and_counts_bytes():
    from rat7m.download.transfer import Outcome

    report = run.Report(Path("."))
    report.outcomes = [
        Outcome("annotations/mocap-s1-d1.mat", "downloaded", 2000, 2500),
        Outcome("video_sequences/s1-d1-camera1-0.mp4", "skipped", 5000),
        Outcome("video_sequences/s1-d1-camera2-0.mp4", "failed", 3000, 100, "HTTP 404 from http://x"),
    ]
    text = run.format_summary(report)
    assert "video_sequences/s1-d1-camera2-0.mp4: HTTP 404" in text
    assert "2.60 kB" in text  # transferred: 2500 + 100
    assert run.summary_counts(report) == {"downloaded": 1, "verified": 0, "skipped": 1, "failed": 1}
    assert report.failed


# --- command line ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--jobs", "0"], "--jobs must be between 1 and"),
        (["--recordings", "s9-d9"], "unknown recording 's9-d9'"),
        (["--cameras", "7"], "unknown camera"),
        (["--what", "frames"], "invalid choice"),
        (["--api-url", "ftp://x"], "--api-url must be an http"),
        (["--verify", "--via-zip"], "cannot be combined"),
        (["--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_bad_input(argv, message):
    with pytest.raises(BadInputError, match=message):
        download_all.parse_options(argv)


def test_argument_forms():
    options, _ = download_all.parse_options(["--recordings", "s1-d1,s5-d2", "--cameras", "1", "Camera3"])
    assert [r.name for r in options.recordings] == ["s1-d1", "s5-d2"]
    assert options.cameras == ("Camera1", "Camera3") and options.figshare and options.what == "all"
    options, _ = download_all.parse_options(["--mini-annotation"])
    assert options.mini_annotation and not options.figshare  # alone: only the pickle
    options, _ = download_all.parse_options(["--mini-annotation", "--what", "annotations"])
    assert options.figshare and options.what == "annotations"
    assert download_all.parse_options([])[0].out == Path(".")


def test_bad_arguments_exit_2_with_one_line(capsys):
    from rat7m.cli import run_main

    assert run_main(download_all.main, ["--recordings", "s1-d9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("download_all.py: error: argument --recordings: unknown recording 's1-d9'")
    assert err.count("\n") == 1 and "Traceback" not in err


# --- progress ---------------------------------------------------------------------------------------------


def test_progress_in_a_log_is_plain_lines(monkeypatch, caplog):
    from rat7m.download import progress

    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    caplog.set_level("INFO", logger="rat7m.download.progress")
    bars = progress.Progress(2_000_000, tty=False)
    with bars.file("s1-d1-camera1-0.mp4", 2_000_000) as bar:
        bar.update(500_000)
        bars.advance(500_000)
    bars.close()
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("progress: 500.00 kB of 2.00 MB (25.0%), ") and "/s, ETA " in line
    assert "\r" not in line
    quiet = progress.Progress(10, enabled=False, tty=False)
    quiet.advance(5)
    assert len(caplog.records) == 1


def test_progress_on_a_terminal_draws_overall_and_file_bars(capsys):
    from rat7m.download import progress

    bars = progress.Progress(3_000_000, tty=True)
    with bars.file("s1-d1-camera1-0.mp4", 3_000_000) as bar:
        bar.update(1_000_000)
        bars.advance(1_000_000)
    bars.close()
    err = capsys.readouterr().err
    assert "total" in err and "get s1-d1-camera1-0.mp4" in err and "1.00M/3.00M" in err


def test_unwritable_out_is_refused_before_any_request(tmp_path, capsys):
    from rat7m.cli import run_main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    api = "http://127.0.0.1:9/v2"  # nothing listens there: reaching it would fail differently
    assert run_main(download_all.main, ["--out", str(blocker / "data"), "--api-url", api]) == 2
    assert f"cannot write to --out {blocker / 'data'}" in capsys.readouterr().err
    assert run_main(download_all.main, ["--out", str(blocker), "--api-url", api]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err


def test_parallel_transfers_start_by_priority_and_report_in_listing_order():
    """Annotations first, then the largest files: a large file started last would leave one thread busy alone."""
    started = []

    def task(name):
        def run_one(stop):
            started.append(name)
            return run.Outcome(name, run.DOWNLOADED, 0)
        return run_one

    names = ["a.mat", "small.mp4", "big.mp4", "mid.mp4"]
    priority = [(False, -3), (True, -10), (True, -300), (True, -90)]
    outcomes = run.run_parallel([(n, task(n)) for n in names], 1, priority)
    assert started == ["a.mat", "big.mp4", "mid.mp4", "small.mp4"]
    assert [o.path for o in outcomes] == names
