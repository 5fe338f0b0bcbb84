"""Safe unzip on real zip archives built here, hostile ones included."""

import re
import stat
import struct
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rat7m.download import safezip
from rat7m.download.safezip import CorruptArchiveError, safe_extract
from rat7m.errors import BadInputError, Rat7mError

RNG = np.random.default_rng(3)
#: Incompressible bytes, larger than one CHUNK_SIZE (set small below) so members stream in pieces.
NOISE = RNG.bytes(300_000)

GOOD = {
    "video_sequences/s1-d1-camera1-0.mp4": NOISE,
    "video_sequences/s1-d1-camera1-3500.mp4": NOISE[:5000],
    "annotations/mocap-s1-d1.mat": b"MATLAB 5.0 MAT-file" + NOISE[:1000],
    "README.txt": b"RAT7M\n" * 100,
    "empty.txt": b"",
}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(safezip, "CHUNK_SIZE", 64 * 1024)


def make_zip(path: Path, members: dict[str, bytes], *, dirs: tuple[str, ...] = ()) -> Path:
    """A real deflated zip with these members (names written exactly as given, hostile or not)."""
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names, which some tests want
        for name in dirs:
            archive.writestr(zipfile.ZipInfo(name), b"")
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def set_declared_size(path: Path, name: str, size: int) -> None:
    """Make the local and central headers of member ``name`` declare ``size`` uncompressed bytes."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    # (signature, offset of the uncompressed size, of the name length, of the name): zip APPNOTE 4.3.7, 4.3.12
    for signature, size_at, name_len_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            (name_len,) = struct.unpack_from("<H", data, start + name_len_at)
            if data[start + name_at : start + name_at + name_len] == encoded:
                struct.pack_into("<I", data, start + size_at, size)
            start += 4
    path.write_bytes(bytes(data))


def test_good_zip_is_extracted_exactly(tmp_path):
    archive = make_zip(tmp_path / "article.zip", GOOD, dirs=("video_sequences/", "empty_dir/"))
    dest = tmp_path / "data"
    paths = safe_extract(archive, dest)
    assert paths == [dest / name for name in GOOD]
    for name, data in GOOD.items():
        assert (dest / name).read_bytes() == data
    assert (dest / "empty_dir").is_dir()
    assert not [p for p in dest.rglob("*.part")]


def test_rerun_skips_everything(tmp_path):
    archive = make_zip(tmp_path / "article.zip", GOOD)
    dest = tmp_path / "data"
    safe_extract(archive, dest)
    inodes = {name: (dest / name).stat().st_ino for name in GOOD}
    assert safe_extract(archive, dest) == [dest / name for name in GOOD]
    assert {name: (dest / name).stat().st_ino for name in GOOD} == inodes  # nothing was rewritten


def test_partially_extracted_target_resumes(tmp_path):
    archive = make_zip(tmp_path / "article.zip", GOOD)
    dest = tmp_path / "data"
    safe_extract(archive, dest)
    kept = dest / "README.txt"
    kept_inode = kept.stat().st_ino
    # What a killed run leaves: one member never reached, one half-written under its temporary name.
    (dest / "video_sequences/s1-d1-camera1-3500.mp4").unlink()
    big = dest / "video_sequences/s1-d1-camera1-0.mp4"
    big.rename(big.with_name(big.name + ".part"))
    big.with_name(big.name + ".part").write_bytes(NOISE[:1000])
    # and one a user damaged: wrong size under the final name
    (dest / "annotations/mocap-s1-d1.mat").write_bytes(b"truncated")
    safe_extract(archive, dest)
    for name, data in GOOD.items():
        assert (dest / name).read_bytes() == data
    assert kept.stat().st_ino == kept_inode
    assert not [p for p in dest.rglob("*.part")]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../escaped.txt", "climbs out of the target folder"),
        ("../../escaped.txt", "climbs out of the target folder"),
        ("video_sequences/../../escaped.txt", "climbs out of the target folder"),
        ("..\\..\\escaped.txt", "climbs out of the target folder"),
        ("/tmp/rat7m-safezip-absolute.txt", "has an absolute path"),
        ("C:/Windows/escaped.txt", "starts with a drive letter"),
        ("c:escaped.txt", "starts with a drive letter"),
    ],
)
def test_escaping_entries_are_refused_and_nothing_is_written(tmp_path, name, why):
    # A good member comes first: refusing must happen before anything at all is written.
    archive = make_zip(tmp_path / "evil.zip", {"README.txt": b"hello", name: b"pwned"})
    before = snapshot(tmp_path.parent)
    with pytest.raises(BadInputError, match=re.escape(f"evil.zip: member {name!r} {why}")) as refused:
        safe_extract(archive, tmp_path / "data")
    assert not isinstance(refused.value, CorruptArchiveError)  # fetching it again would not help
    assert snapshot(tmp_path.parent) == before
    assert not Path("/tmp/rat7m-safezip-absolute.txt").exists()


def test_symlink_entry_is_refused(tmp_path):
    path = make_zip(tmp_path / "link.zip", {"README.txt": b"hello"})
    with zipfile.ZipFile(path, "a") as archive:
        link = zipfile.ZipInfo("annotations")
        link.create_system = 3  # Unix, where the mode bits live in external_attr
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc")
    with pytest.raises(BadInputError, match=r"member 'annotations' is a symbolic link"):
        safe_extract(path, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_existing_symlink_inside_target_cannot_carry_a_member_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "annotations").symlink_to(outside)
    archive = make_zip(tmp_path / "article.zip", {"annotations/mocap-s1-d1.mat": b"data"})
    with pytest.raises(BadInputError, match=r"would land in .*outside.* through a symbolic link"):
        safe_extract(archive, dest)
    assert list(outside.iterdir()) == []


def test_highly_compressible_member_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"README.txt": b"hello", "zeros.bin": bytes(8 << 20)})
    with pytest.raises(BadInputError, match=r"member 'zeros\.bin' would expand \d+ bytes into 8388608 .*zip bomb"):
        safe_extract(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    # a trusting caller may raise the limit
    assert safe_extract(archive, tmp_path / "data", max_ratio=10_000)[1].stat().st_size == 8 << 20


def test_many_small_compressible_members_are_refused_as_a_whole(tmp_path):
    members = {f"part{i}.bin": bytes(512 * 1024) for i in range(8)}  # each under the per-member floor
    archive = make_zip(tmp_path / "bomb.zip", members)
    with pytest.raises(BadInputError, match=r"members add up to 4194304 bytes .* zip bomb"):
        safe_extract(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()
    with pytest.raises(BadInputError, match=r"over the limit of 1000000 bytes"):
        safe_extract(archive, tmp_path / "data", max_ratio=1e6, max_total_bytes=1_000_000)


def test_member_whose_header_hides_its_size_is_refused(tmp_path):
    # 8 MiB of zeros whose headers claim 1000 bytes: the ratio check sees nothing wrong, the stream must.
    archive = make_zip(tmp_path / "liar.zip", {"zeros.bin": bytes(8 << 20), "README.txt": b"hello"})
    set_declared_size(archive, "zeros.bin", 1000)
    assert zipfile.ZipFile(archive).getinfo("zeros.bin").file_size == 1000
    dest = tmp_path / "data"
    with pytest.raises(CorruptArchiveError, match=r"member 'zeros\.bin' is corrupt .*CRC"):
        safe_extract(archive, dest)
    assert snapshot(dest) == set()  # neither the member nor its .part


def test_member_whose_header_overstates_its_size_is_refused(tmp_path):
    archive = make_zip(tmp_path / "liar.zip", {"noise.bin": NOISE[:2000]})
    set_declared_size(archive, "noise.bin", 3000)
    with pytest.raises(CorruptArchiveError, match=r"'noise\.bin' ends after 2000 bytes but its header declares 3000"):
        safe_extract(archive, tmp_path / "data")
    assert snapshot(tmp_path / "data") == set()


def test_corrupt_member_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"noise.bin": NOISE})
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of the compressed data
    archive.write_bytes(bytes(data))
    with pytest.raises(CorruptArchiveError, match=r"member 'noise\.bin' is corrupt"):
        safe_extract(archive, tmp_path / "data")
    assert snapshot(tmp_path / "data") == set()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a.txt", "a.txt"], r"member 'a\.txt' appears twice"),
        (["Data.txt", "data.txt"], r"member 'data\.txt' appears twice \(also as 'Data\.txt'\)"),
        (["sub", "sub/x.txt"], r"member 'sub' is both a file and a folder"),
    ],
)
def test_duplicate_and_conflicting_names_are_refused(tmp_path, names, message):
    path = tmp_path / "dup.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as archive:
        warnings.simplefilter("ignore")
        for i, name in enumerate(names):
            archive.writestr(name, f"copy {i}")
    with pytest.raises(BadInputError, match=message):
        safe_extract(path, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_not_a_zip_and_no_room(tmp_path, monkeypatch):
    fake = tmp_path / "article.zip"
    fake.write_bytes(b"<!DOCTYPE html><html>403 Forbidden</html>")
    with pytest.raises(CorruptArchiveError, match=r"article\.zip: not a readable zip archive .*download it again"):
        safe_extract(fake, tmp_path / "data")
    archive = make_zip(tmp_path / "good.zip", GOOD)
    monkeypatch.setattr(safezip.shutil, "disk_usage", lambda path: SimpleNamespace(free=200_000))
    with pytest.raises(Rat7mError, match=r"needs 0\.31 MB but only 0\.20 MB are free"):
        safe_extract(archive, tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_existing_symlink_at_a_temporary_name_cannot_carry_a_member_out(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"keep me")
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "mocap-s1-d1.mat.part").symlink_to(outside)  # left there by someone else
    archive = make_zip(tmp_path / "article.zip", {"mocap-s1-d1.mat": b"data"})
    safe_extract(archive, dest)
    assert outside.read_bytes() == b"keep me"
    member = dest / "mocap-s1-d1.mat"
    assert not member.is_symlink() and member.read_bytes() == b"data"
