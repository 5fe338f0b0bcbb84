"""Google Drive fetch against a real local imitation of Drive (rat7m/demo/drive_server.py) on 127.0.0.1."""

import hashlib
import pickle
import socket

import numpy as np
import pytest
import urllib3

from rat7m.demo.drive_server import DriveServer
from rat7m.download import gdrive
from rat7m.download.gdrive import download_drive_file, looks_like_pickle
from rat7m.errors import DownloadError

FILE_ID = "1sZwwX2v0NGkT9j3I5-QCetCxCKEZk5U-"


@pytest.fixture(scope="module")
def payload() -> bytes:
    """A real pickle shaped like a small mini-RAT7M table (~600 kB, several chunks)."""
    rng = np.random.default_rng(7)
    table = {
        "camera_names": np.array([f"Camera{c}" for c in range(1, 7)]),
        "table": {"3D_keypoints": rng.normal(size=(1200, 20, 3)), "train_test": np.array(["train"] * 1200)},
    }
    return pickle.dumps(table, protocol=4)


@pytest.fixture(autouse=True)
def fast(monkeypatch):
    """Small chunks (so streams have many), no sleeping between attempts."""
    monkeypatch.setattr(gdrive, "CHUNK_SIZE", 16 * 1024)
    monkeypatch.setattr(gdrive, "BACKOFF_SECONDS", 0.0)


@pytest.fixture
def drive():
    with DriveServer() as server:
        yield server


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def fetch(drive, dest, **kwargs):
    kwargs.setdefault("expect", looks_like_pickle)
    return download_drive_file(FILE_ID, dest, base_url=drive.base_url, progress=False, **kwargs)


def test_interstitial_form_is_followed_to_the_exact_bytes(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "large")
    dest = tmp_path / "annotations" / "mini.pkl"
    assert fetch(drive, dest) == dest
    assert md5(dest.read_bytes()) == md5(payload)
    assert list(dest.parent.iterdir()) == [dest]  # no .part left
    assert [(r.path, r.status) for r in drive.log] == [("/uc", 303), ("/download", 200), ("/download", 200)]
    assert [r.carried_file for r in drive.log] == [False, False, True]  # the first /download was the page
    confirm = drive.log[2].query
    assert confirm == {"id": FILE_ID, "export": "download", "confirm": "t", "uuid": drive.uuid}
    assert pickle.loads(dest.read_bytes())["table"]["3D_keypoints"].shape == (1200, 20, 3)


@pytest.mark.parametrize("behaviour", ["small", "href"])
def test_small_file_redirect_and_href_link(drive, payload, tmp_path, behaviour):
    drive.add(FILE_ID, payload, behaviour)
    dest = fetch(drive, tmp_path / "mini.pkl")
    assert dest.read_bytes() == payload
    assert len(drive.transfers(FILE_ID)) == 1


def test_quota_page_tells_the_user_what_to_do(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "quota")
    with pytest.raises(DownloadError) as err:
        fetch(drive, tmp_path / "mini.pkl")
    message = str(err.value)
    assert "Too many users have viewed or downloaded this file recently" in message
    assert "try again in a few hours" in message and f"/file/d/{FILE_ID}/view" in message
    assert list(tmp_path.iterdir()) == []
    assert len(drive.log) == 1  # a refusal is not retried


def test_redirect_to_a_host_not_allowed_is_refused(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "offsite")
    with pytest.raises(DownloadError, match=r"refusing to follow a link to http://localhost"):
        fetch(drive, tmp_path / "mini.pkl")
    assert [r.host.split(":")[0] for r in drive.log] == ["127.0.0.1"]  # localhost was never contacted
    assert list(tmp_path.iterdir()) == []


def test_allowed_hosts_seam(drive, payload, tmp_path, monkeypatch):
    # Asked at "localhost", the page's form points at 127.0.0.1: not allowed until the seam says so.
    drive.add(FILE_ID, payload, "large")
    base = f"http://localhost:{drive.port}/uc"
    with pytest.raises(DownloadError, match=r"refusing to follow a link to http://127\.0\.0\.1"):
        download_drive_file(FILE_ID, tmp_path / "mini.pkl", base_url=base, progress=False)
    monkeypatch.setattr(gdrive, "ALLOWED_HOSTS", gdrive.ALLOWED_HOSTS | {"127.0.0.1"})
    dest = download_drive_file(FILE_ID, tmp_path / "mini.pkl", base_url=base, progress=False)
    assert dest.read_bytes() == payload


def test_content_disposition_path_is_ignored(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "evil-name")
    dest = tmp_path / "a" / "b" / "mini.pkl"
    fetch(drive, dest)
    assert dest.read_bytes() == payload
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["mini.pkl"]
    assert not (tmp_path.parent / "escaped.pkl").exists()


def test_html_where_bytes_were_expected_is_caught(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "html-bytes")
    with pytest.raises(DownloadError, match=r"not the expected file \(it starts with '<!DOCTYPE html>"):
        fetch(drive, tmp_path / "mini.pkl")
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_page_without_link_and_unknown_id(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "no-link")
    with pytest.raises(DownloadError, match=r"web page \(HTTP 200\) without a download link"):
        fetch(drive, tmp_path / "mini.pkl")
    with pytest.raises(DownloadError, match=r"web page \(HTTP 404\) without a download link; check the file id"):
        download_drive_file("no-such-id", tmp_path / "x.pkl", base_url=drive.base_url, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_dropped_connection_resumes_with_range(drive, payload, tmp_path, capsys):
    drive.add(FILE_ID, payload, "drop-once")
    dest = download_drive_file(FILE_ID, tmp_path / "mini.pkl", base_url=drive.base_url, expect=looks_like_pickle)
    assert "mini.pkl" in capsys.readouterr().err  # the progress bar
    assert md5(dest.read_bytes()) == md5(payload)
    first, second = drive.transfers(FILE_ID)
    half = len(payload) // 2
    assert (first.status, first.sent) == (200, half)
    assert (second.status, second.range, second.sent) == (206, f"bytes={half}-", len(payload) - half)


def test_rerun_continues_a_part_file(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "large")
    dest = tmp_path / "mini.pkl"
    (tmp_path / "mini.pkl.part").write_bytes(payload[:100_000])  # what a killed run leaves
    fetch(drive, dest)
    assert dest.read_bytes() == payload and not (tmp_path / "mini.pkl.part").exists()
    (only,) = drive.transfers(FILE_ID)
    assert (only.status, only.range, only.sent) == (206, "bytes=100000-", len(payload) - 100_000)


def test_server_ignoring_range_restarts_cleanly(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "no-range")
    dest = tmp_path / "mini.pkl"
    (tmp_path / "mini.pkl.part").write_bytes(payload[:64] + b"\0" * 50_000)  # right start, wrong rest
    fetch(drive, dest)
    assert md5(dest.read_bytes()) == md5(payload)
    (only,) = drive.transfers(FILE_ID)
    assert (only.status, only.range, only.sent) == (200, "bytes=50064-", len(payload))


def test_part_file_with_wrong_start_is_discarded(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "large")
    (tmp_path / "mini.pkl.part").write_bytes(b"<!DOCTYPE html><html>quota page saved by mistake</html>")
    dest = fetch(drive, tmp_path / "mini.pkl")
    assert dest.read_bytes() == payload
    assert all(r.range is None for r in drive.log)


def test_complete_part_file_only_needs_the_rename(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "large")
    (tmp_path / "mini.pkl.part").write_bytes(payload)  # killed between the last write and the rename
    dest = fetch(drive, tmp_path / "mini.pkl")
    assert dest.read_bytes() == payload
    (only,) = drive.transfers(FILE_ID)
    assert (only.status, only.sent) == (416, 0)


def test_busy_server_is_retried(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "busy-once")
    dest = fetch(drive, tmp_path / "mini.pkl")
    assert dest.read_bytes() == payload
    assert [r.status for r in drive.log] == [503, 303, 200, 200]


def test_unreachable_server_gives_up_with_a_clear_message(tmp_path, monkeypatch):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setattr(gdrive, "MAX_ATTEMPTS", 2)
    with pytest.raises(DownloadError, match=r"gave up after 2 attempts \(network error") as info:
        download_drive_file(FILE_ID, tmp_path / "mini.pkl", base_url=f"http://127.0.0.1:{port}/uc", progress=False)
    assert str(info.value).endswith(")")  # nothing received: no "0 bytes are kept in ....part, rerun to resume"
    assert list(tmp_path.iterdir()) == []  # and no .part

    (tmp_path / "mini.pkl.part").write_bytes(b"\x80\x04" + bytes(98))  # an earlier run got 100 bytes
    with pytest.raises(DownloadError, match=r"100 bytes are kept in .*mini.pkl.part, rerun to resume"):
        download_drive_file(FILE_ID, tmp_path / "mini.pkl", base_url=f"http://127.0.0.1:{port}/uc", progress=False)
    assert (tmp_path / "mini.pkl.part").stat().st_size == 100


def test_shared_pool_is_used(drive, payload, tmp_path):
    drive.add(FILE_ID, payload, "large")
    pool = urllib3.PoolManager(maxsize=1)
    fetch(drive, tmp_path / "mini.pkl", pool=pool)
    assert len(pool.pools) == 1  # the caller's pool carried the requests


def test_looks_like_pickle():
    assert looks_like_pickle(pickle.dumps({"a": np.zeros(3)}, protocol=2)[:64])
    assert looks_like_pickle(pickle.dumps([1], protocol=5))
    assert not looks_like_pickle(b"<!DOCTYPE html><html><head>")
    assert not looks_like_pickle(b"  <HTML><body>")
    assert not looks_like_pickle(b"")
    assert not looks_like_pickle(b"\x80")
    assert not looks_like_pickle(pickle.dumps([1], protocol=0))  # numpy never writes these
