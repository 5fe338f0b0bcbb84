"""Hostile servers and a hostile --out folder, run for real (issue 12 items 3, 5-8, 10, 11, 13, 14; issue 13).

Every case runs the hostile input against a real HTTP server on 127.0.0.1 (rat7m.demo.figshare_server
with its fault switches, rat7m/demo/drive_server.py), real symlinks and a real full disk (a small tmpfs,
mounted here when we are root).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pickle
import random
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

import download_all
from rat7m import catalogue as cat
from rat7m.cli import run_main
from rat7m.demo.drive_server import DriveServer
from rat7m.demo.figshare_server import API, Faults, FigshareServer
from rat7m.download import gdrive, http, run
from rat7m.download.safezip import safe_extract
from rat7m.errors import BadInputError, DownloadError

S1 = cat.recording_by_name("s1-d1")
MOCAP = cat.mocap_file_name(S1)
CHUNK = cat.video_chunk_name(S1, "Camera1", 0)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """s1-d1: one annotation file and two Camera1 chunks."""
    root = tmp_path_factory.mktemp("published")
    rng = random.Random(12)
    (root / cat.VIDEO_DIR).mkdir()
    (root / cat.ANNOTATION_DIR).mkdir()
    (root / cat.ANNOTATION_DIR / MOCAP).write_bytes(rng.randbytes(70_000))
    for start in (0, cat.CHUNK_LENGTH):
        (root / cat.VIDEO_DIR / cat.video_chunk_name(S1, "Camera1", start)).write_bytes(rng.randbytes(90_000))
    return root


@pytest.fixture
def server(tree):
    with FigshareServer(tree) as srv:
        yield srv


@pytest.fixture(autouse=True)
def slept(monkeypatch) -> list[float]:
    record: list[float] = []
    policy = http.RetryPolicy(attempts=4, backoff=1.0, cap=8.0, sleep=record.append, random=lambda: 0.5)
    monkeypatch.setattr(run, "retry_policy", policy)
    monkeypatch.setattr(gdrive, "BACKOFF_SECONDS", 0.0)
    return record


def download(server, out: Path, *args: str) -> int:
    argv = ["--out", str(out), "--api-url", server.api_url, "--zip-url", f"{server.base_url}/ndownloader", "-q"]
    return run_main(download_all.main, [*argv, *args])


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


S1_ARGS = ("--recordings", "s1-d1", "--cameras", "Camera1")


# --- item 3: header numbers in ASCII digits only -------------------------------------------------------------


def test_unicode_digit_retry_after_and_content_length_are_not_numbers(server, tree, tmp_path, slept, capsys):
    server.set_faults(Faults(status=503, raw_retry_after="\xb2"), API)
    assert download(server, tmp_path / "api", "--what", "annotations", *S1_ARGS) == 0
    assert slept == [0.75]  # '²' is no delay: our own backoff (1 s, jitter at the middle) was used
    assert md5(tmp_path / "api" / cat.ANNOTATION_DIR / MOCAP) == md5(tree / cat.ANNOTATION_DIR / MOCAP)

    server.set_faults(None, API)
    server.set_faults(Faults(raw_length="\xb2"))  # the zip: its size probe and its body
    assert download(server, tmp_path / "zip", "--via-zip", "--what", "annotations", *S1_ARGS) == 0
    assert md5(tmp_path / "zip" / cat.ANNOTATION_DIR / MOCAP) == md5(tree / cat.ANNOTATION_DIR / MOCAP)


def test_drive_unicode_digit_headers(tmp_path):
    data = pickle.dumps({"x": list(range(3000))}, protocol=4)
    with DriveServer() as drive:
        drive.add("F", data, "odd-headers")
        gdrive.download_drive_file("F", tmp_path / "t.pkl", base_url=drive.base_url, progress=False,
                                   check=run.pickle_problem)  # fmt: skip
    assert (tmp_path / "t.pkl").read_bytes() == data


# --- items 5 and 13: bounded listing reads, an overall deadline, redirects, saying before waiting -----------


def test_an_endless_listing_body_is_cut_at_the_cap(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(http, "MAX_JSON_BYTES", 1 << 20)
    server.set_faults(Faults(endless=True), API)
    assert download(server, tmp_path / "out", "--what", "annotations", *S1_ARGS) == 1
    out = capsys.readouterr().out
    assert "answered over 1 MB" in out and "Traceback" not in out
    assert not (tmp_path / "out" / cat.ANNOTATION_DIR).exists()


def test_a_trickling_listing_is_cut_by_the_deadline(server, tmp_path, monkeypatch, capsys):
    article = cat.ANNOTATION_ARTICLE
    whole = len(http.HttpClient().get_json(f"{server.api_url}/articles/{article.id}/versions/{article.version}")
                .__repr__())  # fmt: skip
    server.reset_log()
    monkeypatch.setattr(http, "JSON_DEADLINE", 1.0)
    server.set_faults(Faults(rate=100), API)  # 5 bytes every 50 ms: a listing takes many seconds
    assert download(server, tmp_path / "out", "--what", "annotations", *S1_ARGS) == 1
    out = capsys.readouterr().out
    assert "did not finish its answer within 1 s" in out
    assert server.requests[0].sent < whole / 2  # cut long before the body was complete


def test_a_redirect_to_a_file_url_is_permanent_at_once(server, tmp_path, slept, capsys):
    server.set_faults(Faults(redirect_to="file:///etc/passwd"), MOCAP)
    assert download(server, tmp_path / "out", "--what", "annotations", *S1_ARGS) == 1
    out = capsys.readouterr().out
    assert "only http/https links are followed, not file" in out
    assert slept == []  # not retried
    assert not any((tmp_path / "out").rglob("mocap-*"))


def test_retrying_is_announced_before_the_wait(server, tmp_path, monkeypatch, caplog):
    said_before: list[tuple[float, bool]] = []

    def sleep(seconds: float) -> None:
        said_before.append((seconds, any("retrying in 600.0 s" in r.getMessage() for r in caplog.records)))

    monkeypatch.setattr(run, "retry_policy", http.RetryPolicy(attempts=3, sleep=sleep))
    server.set_faults(Faults(status=503, retry_after=1_000_000_000), MOCAP)
    with caplog.at_level(logging.INFO, logger="rat7m"):
        assert download(server, tmp_path / "out", "--what", "annotations", *S1_ARGS) == 0
    assert said_before == [(600.0, True)]


# --- item 14 and issue 13: what the listing's records say -----------------------------------------------------


def test_link_only_unavailable_and_disagreeing_md5_are_refused_by_name(tree, tmp_path, capsys, caplog):
    extra = {f"mocap-s{n}-d1.mat": random.Random(n).randbytes(5_000) for n in (2, 3, 4)}
    with FigshareServer(tree) as server:
        for name, data in extra.items():
            server.add_file(cat.ANNOTATION_ARTICLE, name, data)
        server.set_entry("mocap-s2-d1.mat", is_link_only=True, mimetype="text/html")
        server.set_entry("mocap-s3-d1.mat", supplied_md5="0" * 32)
        server.set_entry("mocap-s4-d1.mat", status="pending")
        server.set_entry(MOCAP, computed_md5="", supplied_md5="")  # a fresh upload: size only
        server.add_file(cat.ANNOTATION_ARTICLE, "mocap-s5-d1.mat", b"x" * 300)
        server.set_entry("mocap-s5-d1.mat", computed_md5="not-an-md5!", supplied_md5=None)
        server.add_file(cat.ANNOTATION_ARTICLE, "mocap-s5-d2.mat", b"y" * 300)
        server.set_entry("mocap-s5-d2.mat", computed_md5="", supplied_md5=None)
        with caplog.at_level(logging.WARNING, logger="rat7m"):
            code = download(server, tmp_path / "out", "--what", "annotations")
    out = capsys.readouterr().out
    assert code == 1
    annotations = tmp_path / "out" / cat.ANNOTATION_DIR
    assert sorted(p.name for p in annotations.iterdir()) == [MOCAP, "mocap-s5-d1.mat", "mocap-s5-d2.mat"]
    assert "mocap-s2-d1.mat: it is a link to elsewhere" in out
    assert "mocap-s3-d1.mat: its computed MD5" in out and "disagree" in out
    assert "mocap-s4-d1.mat: its status is 'pending'" in out
    messages = [r.getMessage() for r in caplog.records]
    assert sum("have no MD5 in the listing" in m for m in messages) == 1  # said once, for two files
    assert sum("not 32 hex digits" in m for m in messages) == 1


def test_only_the_canonical_spelling_is_downloaded(tree, tmp_path):
    with FigshareServer(tree) as server:
        server.add_file(cat.ANNOTATION_ARTICLE, "mocap-s01-d1.mat", b"another spelling")
        server.add_file(S1.video_article, "s1-d1-camera01-0.mp4", b"another spelling")
        assert download(server, tmp_path / "out", *S1_ARGS) == 0
    names = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file() and not p.name.startswith("."))
    assert names == sorted([MOCAP, CHUNK, cat.video_chunk_name(S1, "Camera1", cat.CHUNK_LENGTH)])


# --- item 8: symlinks planted in --out ----------------------------------------------------------------------


def test_planted_symlinks_are_not_followed(server, tree, tmp_path, capsys):
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"keep me" * 100)
    out = tmp_path / "out"
    (out / cat.ANNOTATION_DIR).mkdir(parents=True)
    (out / run.LOCK_NAME).symlink_to(outside)
    assert download(server, out, "--what", "annotations", *S1_ARGS) == 2
    assert "lock file" in capsys.readouterr().err
    assert outside.read_bytes() == b"keep me" * 100

    (out / run.LOCK_NAME).unlink()
    part = out / cat.ANNOTATION_DIR / (MOCAP + ".part")
    part.symlink_to(outside)
    assert download(server, out, "--what", "annotations", *S1_ARGS) == 1
    assert f"{part} is a symbolic link" in capsys.readouterr().out
    assert outside.read_bytes() == b"keep me" * 100
    assert not (out / cat.ANNOTATION_DIR / MOCAP).exists()


def test_a_planted_drive_part_symlink_is_refused(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"\x80\x04keep me")
    dest = tmp_path / "out" / "t.pkl"
    dest.parent.mkdir()
    dest.with_name("t.pkl.part").symlink_to(outside)
    with DriveServer() as drive:
        drive.add("F", pickle.dumps(list(range(100))), "large")
        with pytest.raises(DownloadError, match="symbolic link"):
            gdrive.download_drive_file("F", dest, base_url=drive.base_url, progress=False)
    assert outside.read_bytes() == b"\x80\x04keep me"


# --- items 6 and 7: Google Drive ----------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", ["backslash", "userinfo"])
def test_drive_redirect_tricks_are_refused(tmp_path, behaviour):
    data = pickle.dumps(list(range(100)))
    with DriveServer(host="127.0.0.2") as evil, DriveServer() as drive:
        evil.add("F", data, "small")
        drive.elsewhere = f"127.0.0.2:{evil.port}"
        drive.add("F", data, behaviour)
        with pytest.raises(DownloadError, match=r"backslash|user name"):
            gdrive.download_drive_file("F", tmp_path / "t.pkl", base_url=drive.base_url, progress=False)
    assert evil.log == []  # nothing was ever asked of the other host
    assert not any(tmp_path.iterdir())


def table_pickle() -> bytes:
    rng = np.random.default_rng(1)
    return pickle.dumps({"table": {"3D_keypoints": rng.normal(size=(2000, 20, 3))}}, protocol=4)


def test_a_drive_pickle_cut_without_a_length_is_resumed_not_kept(server, tmp_path, capsys):
    data = table_pickle()
    out = tmp_path / "out"
    with DriveServer() as drive:
        drive.add(cat.MINI_ANNOTATION_DRIVE_ID, data, "cut-no-length")
        assert download(server, out, "--mini-annotation", "--drive-url", drive.base_url) == 0
        assert [r.range is not None for r in drive.transfers(cat.MINI_ANNOTATION_DRIVE_ID)] == [False, True]
    assert (out / cat.MINI_ANNOTATION_NAME).read_bytes() == data

    with DriveServer() as drive:  # never complete: it stays .part, nothing takes the final name
        drive.add(cat.MINI_ANNOTATION_DRIVE_ID, data, "always-cut-no-length")
        (out / cat.MINI_ANNOTATION_NAME).write_bytes(data[: len(data) // 2])  # an older truncated copy
        assert download(server, out, "--mini-annotation", "--drive-url", drive.base_url) == 1
        assert len(drive.transfers(cat.MINI_ANNOTATION_DRIVE_ID)) == gdrive.MAX_ATTEMPTS  # not "skipped"
    assert not (out / cat.MINI_ANNOTATION_NAME).exists()
    assert (out / (cat.MINI_ANNOTATION_NAME + ".part")).stat().st_size == len(data) // 2
    assert "the pickle ends early" in capsys.readouterr().out


# --- item 11: zips ------------------------------------------------------------------------------------------


def test_a_zip_member_name_over_255_bytes_is_refused_before_writing(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("ok.txt", b"fine")
        z.writestr("d/" + "n" * 300 + ".mat", b"too long")
    with pytest.raises(BadInputError, match="path component of 304 bytes"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_zip_with_two_members_for_one_file_is_refused(tree, tmp_path, capsys):
    out = tmp_path / "out"
    with FigshareServer(tree) as srv:
        srv.add_file(cat.ANNOTATION_ARTICLE, f"sub1/{MOCAP}", b"first")
        srv.add_file(cat.ANNOTATION_ARTICLE, f"sub2/{MOCAP}", b"second")
        code = download(srv, out, "--via-zip", "--what", "annotations", *S1_ARGS)
    text = capsys.readouterr().out
    assert code == 1 and f"holds two files for {cat.ANNOTATION_DIR}/{MOCAP}" in text
    assert not (out / cat.ANNOTATION_DIR / MOCAP).exists()
    assert not (out / "zips" / "annotations").exists()  # no half-filled staging folder left


# --- item 10: a full disk (a real small tmpfs) ---------------------------------------------------------------


@contextlib.contextmanager
def small_disk(path: Path, size: int):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


PAGE = 4096


def test_disk_full_mid_download_is_one_line_naming_the_file(tmp_path, capsys):
    root = tmp_path / "published"
    (root / cat.ANNOTATION_DIR).mkdir(parents=True)
    (root / cat.ANNOTATION_DIR / MOCAP).write_bytes(random.Random(1).randbytes(60 * PAGE))
    with small_disk(tmp_path / "disk", 60 * PAGE) as disk, FigshareServer(root) as server:
        assert download(server, disk / "out", "--what", "annotations", *S1_ARGS) == 1
        out = capsys.readouterr().out
        assert "disk full while writing" in out and f"{MOCAP}.part" in out and "more needed" in out
        assert "Traceback" not in out


def test_disk_full_after_the_rename_keeps_the_verified_file(tmp_path, capsys, caplog):
    root = tmp_path / "published"
    (root / cat.ANNOTATION_DIR).mkdir(parents=True)
    data = random.Random(2).randbytes(58 * PAGE)
    (root / cat.ANNOTATION_DIR / MOCAP).write_bytes(data)
    with small_disk(tmp_path / "disk", 60 * PAGE) as disk, FigshareServer(root) as server:
        with caplog.at_level(logging.WARNING, logger="rat7m"):
            code = download(server, disk / "out", "--what", "annotations", *S1_ARGS)
        out = capsys.readouterr().out
        assert code == 0 and "downloaded        1" in out and "Traceback" not in out
        assert (disk / "out" / cat.ANNOTATION_DIR / MOCAP).read_bytes() == data
        assert any("cannot save the verification record" in r.getMessage() for r in caplog.records)


def test_disk_full_in_mini_annotation(server, tmp_path, capsys):
    data = table_pickle()
    with small_disk(tmp_path / "disk", 32 * PAGE) as disk, DriveServer() as drive:
        drive.add(cat.MINI_ANNOTATION_DRIVE_ID, data, "large")
        assert download(server, disk / "out", "--mini-annotation", "--drive-url", drive.base_url) == 1
        out = capsys.readouterr().out
        assert "disk full while writing" in out and "more needed" in out and "Traceback" not in out
        assert not (disk / "out" / cat.MINI_ANNOTATION_NAME).exists()
