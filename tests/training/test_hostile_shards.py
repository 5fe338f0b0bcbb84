"""Shards and images from elsewhere: every way a shard's bytes can be wrong is one clear error, never a traceback,
a hang or a decoder's giant allocation; the same for the JPEG files the datasets read.

A shard written here is read back through the same calls as the datasets (:func:`rat7m.shards.iter_samples`,
:func:`rat7m.crops.parse_sample`, :func:`rat7m.crops.make_samples`), then broken field by field, byte by byte
(Hypothesis), and with a JPEG whose header declares 60000 x 60000 px (600 bytes that made simplejpeg allocate
10.8 GB and work 35 s before it failed).
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rat7m import catalogue, crops, images, shards
from rat7m.errors import BadInputError
from tests.helpers.hostile_files import jpeg, jpeg_bomb
from tests.helpers.plausible_rig import make_cameras
from tests.helpers.shared import run_limited

CAMERAS = list(catalogue.CAMERA_NAMES)
SPEC = crops.CropSpec(size=(40, 30))
FUZZ_EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "150"))


def _annotation(row: int) -> dict:
    """An annotation as :class:`rat7m.crops.Annotator` makes it (plausible cameras, a lost marker)."""
    rng = np.random.default_rng(row)
    rig = make_cameras(seed=row)
    arrays = [crops.camera_arrays(rig[c]) for c in CAMERAS]
    keypoints = rng.uniform(0, 60, (len(CAMERAS), catalogue.N_JOINTS, 2))
    keypoints[0, 3] = np.nan
    frames = rng.integers(0, 5000, len(CAMERAS))
    return {
        "key": crops.sample_key("s1-d1", int(frames[0]), row), "recording": "s1-d1", "row": row, "cameras": CAMERAS,
        "frame": frames, "keypoints_2d": keypoints, "com_2d": rng.uniform(0, 60, (len(CAMERAS), 2)),
        "keypoints_3d": rng.normal(0, 50, (catalogue.N_JOINTS, 3)),
        **{k: np.stack([a[k] for a in arrays]) for k in ("K", "R", "t", "dist")},
    }  # fmt: skip


def _members(row: int) -> dict[str, bytes]:
    ann = _annotation(row)
    return {"json": crops.to_json(ann), **{crops.member_name(c): jpeg(row * 10 + v) for v, c in enumerate(CAMERAS)}}


def write_shard(path: Path, samples: dict[str, dict[str, bytes]], index: bool = True) -> Path:
    """A shard laid out as the writer lays it (:func:`rat7m.shards._add`), its index beside it."""
    entries = {}
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples.items():
            entries[key] = {suffix: shards._add(tar, f"{key}.{suffix}", data) for suffix, data in members.items()}
    if index:
        path.with_name(path.name + shards.INDEX_SUFFIX).write_text(json.dumps({"shard": path.name, "samples": entries}))
    return path


def good_samples() -> dict[str, dict[str, bytes]]:
    samples = {}
    for row in (3, 8):
        members = _members(row)
        samples[json.loads(members["json"])["key"]] = members
    return samples


def read_all(path: Path) -> list[dict]:
    """Every sample of a shard, as the datasets read it (annotation checked, views decoded and cropped)."""
    out = []
    for raw in shards.iter_samples(path):
        ann, jpegs, names = crops.parse_sample(raw)
        out.append(crops.make_samples([ann], [jpegs], SPEC, names=[names])[0])
    return out


def test_a_good_shard_reads_back_its_annotations_and_views(tmp_path):
    samples = good_samples()
    for index in (True, False):
        read = read_all(write_shard(tmp_path / f"rat7m-train-00000{index:d}.tar", samples, index))
        assert [s["key"] for s in read] == list(samples)
        for sample in read:
            expected = crops.from_json(samples[sample["key"]]["json"])
            np.testing.assert_array_equal(sample["keypoints_3d"], expected["keypoints_3d"])
            np.testing.assert_array_equal(sample["frame"], expected["frame"])
            assert sample["images"].shape == (len(CAMERAS), 30, 40, 3)


def _set(path: tuple, value) -> callable:
    def change(ann: dict) -> None:
        target = ann
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value

    return change


def _drop(key: str) -> callable:
    return lambda ann: ann.pop(key)


#: (what is broken, how, what the error names); each error also names the shard and the sample.
BROKEN_FIELDS = [
    ("K missing", _drop("K"), r"'K' is not 6 x 3 x 3 numbers"),
    ("K of 5 views", lambda a: a.update(K=a["K"][:5]), r"'K' is not 6 x 3 x 3 numbers"),
    ("K with a null", _set(("K", 2, 0, 0), None), r"'K' holds a null or an infinite number"),
    ("t beyond float64", _set(("t", 0, 0), 10**400), r"'t' holds a null or an infinite number"),
    ("t as 1e999", _set(("t", 0, 1), "INF"), r"'t' holds a null or an infinite number"),
    ("a string for a number", _set(("keypoints_2d", 0, 0, 0), "1.5"), r"'keypoints_2d' is not 6 x 20 x 2 numbers"),
    ("a boolean for a number", _set(("com_2d", 1, 0), True), r"'com_2d' is not 6 x 2 numbers"),
    ("ragged keypoints", _set(("keypoints_3d", 4), [1.0]), r"'keypoints_3d' is not 20 x 3 numbers"),
    ("a negative frame", _set(("frame", 2), -1), r"'frame' is not 6 integer\(s\)"),
    ("a fractional frame", _set(("frame", 0), 1.5), r"'frame' is not 6 integer\(s\)"),
    ("row as a string", _set(("row",), "3"), r"'row' is not 1 integer\(s\)"),
    ("an unknown camera", _set(("cameras", 5), "Camera7"), r"'cameras' is not a list of distinct names"),
    ("a camera twice", _set(("cameras", 5), "Camera1"), r"'cameras' is not a list of distinct names"),
    ("no cameras", _set(("cameras",), []), r"'cameras' is not a list of distinct names"),
    ("key of another sample", _set(("key",), "s1-d1_f000001_r000001"), r"its key is 's1-d1_f000001_r000001'"),
    ("recording missing", _drop("recording"), r"'recording' is missing or not a string"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in BROKEN_FIELDS], ids=[b[0] for b in BROKEN_FIELDS])
def test_each_broken_annotation_field_is_named(tmp_path, change, message):
    samples = good_samples()
    key = list(samples)[1]
    ann = json.loads(samples[key]["json"])
    change(ann)
    samples[key]["json"] = json.dumps(ann).replace('"INF"', "1e999").encode()
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples)
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: {key}\.json: .*{message}"):
        read_all(path)


JSON_BYTES = [
    ("NaN literal", lambda d: d.replace(b"null", b"NaN", 1), r"not an annotation's JSON .*NaN is not a JSON number"),
    ("Infinity literal", lambda d: d.replace(b"null", b"-Infinity", 1), r"-Infinity is not a JSON number"),
    ("a list, not an object", lambda d: b"[" + d + b"]", r"not an annotation's JSON \(a list, not an object\)"),
    ("not UTF-8", lambda d: b"\xff" + d, r"not an annotation's JSON \(UnicodeDecodeError"),
    ("nested 100000 deep", lambda d: b"[" * 10**5 + b"]" * 10**5, r"not an annotation's JSON \(RecursionError"),
    ("over 1 MiB", lambda d: d[:-1] + b',"pad":"' + b"x" * (1 << 20) + b'"}', r"more than an annotation may have"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in JSON_BYTES], ids=[b[0] for b in JSON_BYTES])
def test_json_that_is_not_an_annotation_is_refused(tmp_path, change, message):
    samples = good_samples()
    key = next(iter(samples))
    samples[key]["json"] = change(samples[key]["json"])
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples)
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: {key}\.json: .*{message}"):
        read_all(path)


@pytest.mark.parametrize("member", ["cam3.jpg", "json"])
def test_a_missing_member_is_named(tmp_path, member):
    samples = good_samples()
    key = next(iter(samples))
    del samples[key][member]
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples)
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: {key}: no member {key}\.{member}"):
        read_all(path)


@pytest.mark.parametrize("view", [b"not a jpeg", jpeg(1)[:200], "bomb"], ids=["not a JPEG", "truncated", "bomb"])
def test_a_bad_view_is_named_with_its_member(tmp_path, view):
    samples = good_samples()
    key = list(samples)[1]
    samples[key]["cam4.jpg"] = jpeg_bomb() if view == "bomb" else view
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples)
    reason = "the image declares 60000 x 60000 px" if view == "bomb" else "(not a JPEG|corrupt JPEG)"
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: {key}\.cam4\.jpg: {reason}"):
        read_all(path)


def test_a_jpeg_bomb_is_refused_before_any_pixel_is_allocated(tmp_path):
    """Under a 1 GB address space the 60000 x 60000 px header is refused by its numbers, for both decoders (before,
    simplejpeg allocated 10.8 GB; OpenCV's own bound lets 3 GB through)."""
    (tmp_path / "bomb.jpg").write_bytes(jpeg_bomb())
    done = run_limited(f"""
        from rat7m import images
        from rat7m.errors import BadInputError
        data = open({str(tmp_path / "bomb.jpg")!r}, "rb").read()
        for decode in (images.decode_jpeg, images._decode_opencv, lambda d, w: images.read_image(w)):
            try:
                decode(data, {str(tmp_path / "bomb.jpg")!r})
            except BadInputError as exc:
                print(exc)
    """, memory_mb=1024)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith(f"{tmp_path / 'bomb.jpg'}: the image declares") for line in lines)


def test_image_files_that_are_not_images_are_refused_without_hanging(tmp_path):
    os.mkfifo(tmp_path / "fifo.jpg")  # opened blocking, a FIFO waits for a writer for ever
    big = tmp_path / "big.jpg"
    with open(big, "wb") as f:
        f.truncate(images.MAX_IMAGE_BYTES + 1)  # sparse: never read
    cases = {"fifo.jpg": r" is a FIFO \(named pipe\); expected a regular file",
             "none.jpg": r": cannot read \(not found\)",
             "big.jpg": r" is 67108865 bytes, more than the 67108864 such a file can be"}  # fmt: skip
    for name, reason in cases.items():
        with pytest.raises(BadInputError, match=rf"^image {re.escape(str(tmp_path / name))}{reason}"):
            images.read_image(tmp_path / name)


def test_a_tar_that_is_not_a_tar_is_named(tmp_path):
    path = write_shard(tmp_path / "rat7m-train-000000.tar", good_samples(), index=False)
    data = path.read_bytes()
    path.write_bytes(data[:700])  # ends inside the first member
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: ends inside member .*rewrite the shard"):
        read_all(path)
    path.write_bytes(b"\x00" * 100 + b"garbage" * 100)
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: not a readable tar"):
        read_all(path)


def test_members_and_indexes_over_their_bounds_are_not_read(tmp_path):
    samples = good_samples()
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples)
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    entries = json.loads(index.read_text())
    first = next(iter(entries["samples"].values()))
    first["cam1.jpg"][1] = shards.MAX_MEMBER_BYTES + 1
    index.write_text(json.dumps(entries))
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(index))}: not a shard index"):
        read_all(path)
    with open(index, "wb") as f:
        f.truncate(shards.MAX_INDEX_BYTES + 1)  # sparse: never read
    with pytest.raises(BadInputError, match=r"^shard index .* is 8388609 bytes, more than the 8388608"):
        read_all(path)
    # without an index, a tar header that declares a member over the bound (the member's bytes never read)
    index.unlink()
    data = bytearray(path.read_bytes())
    header = tarfile.TarInfo.frombuf(bytes(data[:512]), "utf-8", "surrogateescape")
    header.size = shards.MAX_MEMBER_BYTES + 1
    data[:512] = header.tobuf(tarfile.USTAR_FORMAT)
    path.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match=r"has 67,108,865 bytes, over 67,108,864"):
        read_all(path)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    edits=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.sampled_from(["flip", "cut", "insert", "zero"]),
                             st.integers(0, 255)), min_size=1, max_size=4),
    indexed=st.booleans(),
)  # fmt: skip
def test_fuzzed_shard_bytes_give_samples_or_one_clear_error(tmp_path_factory, edits, indexed):
    """Any edit of a shard's bytes (a flipped, cut, inserted or zeroed byte anywhere: headers, JSON, JPEG data),
    read with or without its index: samples, or a BadInputError naming the shard; nothing else."""
    folder = tmp_path_factory.mktemp("fuzz")
    path = write_shard(folder / "rat7m-train-000000.tar", good_samples(), index=indexed)
    data = bytearray(path.read_bytes())
    for where, how, byte in edits:
        at = int(where * len(data))
        if how == "flip":
            data[at] ^= 1 << (byte % 8)
        elif how == "cut":
            del data[at:]
        elif how == "insert":
            data[at:at] = bytes([byte])
        else:
            data[at] = 0
        if not data:
            break
    path.write_bytes(bytes(data))
    try:
        samples = read_all(path)
    except BadInputError as exc:
        assert str(exc).startswith(str(path)), exc
    else:
        assert all(s["images"].shape == (len(CAMERAS), 30, 40, 3) for s in samples)


NUMBERS = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=3))  # fmt: skip
JSON_VALUES = st.recursive(NUMBERS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3),
                           inner, max_size=3), max_leaves=30)  # fmt: skip


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(field=st.sampled_from(["key", "recording", "row", "cameras", "frame", *crops._ARRAYS]), value=JSON_VALUES)
def test_fuzzed_annotation_fields_are_taken_or_refused_by_name(field, value):
    """Any JSON value in any field: the annotation is refused with that field named, or it is a well-formed one."""
    ann = json.loads(crops.to_json(_annotation(3)))
    ann[field] = value  # an infinite float is written as JSON's Infinity
    try:
        parsed = crops.from_json(json.dumps(ann).encode(), "s.json")
    except BadInputError as exc:  # names the field (or, for new cameras, a field that no longer fits: K of 6 views)
        assert str(exc).startswith("s.json: "), exc
        every = ["key", "recording", "row", "cameras", "frame", *crops._ARRAYS]
        named = "|".join(every) if field == "cameras" else field
        assert re.search(rf"'({named})'|Infinity is not a JSON number", str(exc)), exc
    else:
        views = len(parsed["cameras"])
        assert parsed["K"].shape == (views, 3, 3) and np.isfinite(parsed["K"]).all()
        assert parsed["keypoints_2d"].shape == (views, catalogue.N_JOINTS, 2)
        assert parsed["frame"].dtype == np.int64 and isinstance(parsed["row"], int)


def _header_blocks(name: str, kind: bytes, data: bytes = b"", pax: bytes = b"") -> bytes:
    """Tar blocks made by tarfile for a member of type ``kind`` (pax headers with ``pax``), as another writer would."""
    import io

    out = io.BytesIO()
    fmt = tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT if len(name) > 100 else tarfile.USTAR_FORMAT
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        info = tarfile.TarInfo(name)
        info.type, info.size = kind, len(data)
        if pax:
            info.pax_headers = {"comment": pax.decode()}
        if kind == tarfile.SYMTYPE:
            info.linkname, info.size = "/etc/passwd", 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()[: -2 * tarfile.BLOCKSIZE]  # without the end-of-archive blocks


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        (lambda key: _header_blocks(f"{key}.json", tarfile.REGTYPE, b"{}", pax=b"1" * 80000), r"of type b'x'"),
        (lambda key: _header_blocks(f"{key}.cam1.jpg", tarfile.SYMTYPE), r"of type b'2'"),
        (lambda key: _header_blocks(f"{key}.cam1.jpg", tarfile.GNUTYPE_SPARSE), r"of type b'S'"),
        (lambda key: _header_blocks("x" * 120 + ".jpg", tarfile.REGTYPE, b"x"), r"of type b'L'"),
        (lambda key: _header_blocks(f"{key}.__url__", tarfile.REGTYPE, b"/home/you/trusted.tar"), r"not named"),
    ],
    ids=["pax header", "symlink", "sparse", "long name", "a __url__ member"],
)
def test_tar_members_we_never_write_are_refused_when_walking(tmp_path, blocks, message):
    """Without an index the headers are walked by our own reader: tarfile would parse an 80 KB pax header in seconds
    (quadratic before Python 3.11.10), build sparse members of gigabytes from a few KB, follow what it is told."""
    samples = good_samples()
    path = write_shard(tmp_path / "rat7m-train-000000.tar", samples, index=False)
    path.write_bytes(blocks(next(iter(samples))) + path.read_bytes())
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}: .*({message})"):
        read_all(path)


@pytest.mark.parametrize("change", ["overlap", "surrogate", "too many"])
def test_an_index_that_overlaps_or_misnames_members_is_refused(tmp_path, change):
    """20000 index entries at one member's bytes read them 20000 times (1.6 GB from an 80 KB shard); a surrogate in a
    key was a UnicodeEncodeError. Each member must lie after the previous one, under its own tar header."""
    path = write_shard(tmp_path / "rat7m-train-000000.tar", good_samples())
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    entries = json.loads(index.read_text())
    key, members = next(iter(entries["samples"].items()))
    if change == "overlap":
        members["cam2.jpg"] = members["cam1.jpg"]
    elif change == "surrogate":
        entries["samples"] = {key + "\ud800": members}
    else:
        members.update({f"x{k}": members["json"] for k in range(20000)})
    index.write_text(json.dumps(entries))
    with pytest.raises(BadInputError, match=rf"^{re.escape(str(path))}"):
        read_all(path)


def test_a_shard_that_is_not_a_regular_file_is_refused_without_hanging(tmp_path):
    path = tmp_path / "rat7m-train-000000.tar"
    os.mkfifo(path)  # opened blocking, a FIFO waits for a writer for ever (so did webdataset's reader)
    with pytest.raises(BadInputError, match=rf"^shard {re.escape(str(path))} is a FIFO \(named pipe\); expected a"):
        read_all(path)


def test_image_files_of_other_formats_or_sides_opencv_refuses_are_one_error(tmp_path):
    """read_image reads JPEG and PNG headers only (Pillow's other readers raised NotImplementedError, AttributeError
    on damaged files), and what OpenCV refuses is the file's fault: before, a 1,100,000 x 1 px TIFF was a cv2.error."""
    import io

    from PIL import Image

    wide = Image.fromarray(np.zeros((1, 1_100_000), np.uint8))
    for name, fmt, reason in [("wide.png", "PNG", "OpenCV can decode"), ("wide.jpg", "TIFF", "not a JPEG or PNG"),
                              ("dds.jpg", "DDS", "not a JPEG or PNG")]:  # fmt: skip
        out = io.BytesIO()
        (wide if fmt != "DDS" else Image.new("RGBA", (4, 4))).save(out, format=fmt)
        (tmp_path / name).write_bytes(out.getvalue())
        with pytest.raises(BadInputError, match=rf"^{re.escape(str(tmp_path / name))}: .*{reason}"):
            images.read_image(tmp_path / name)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        with pytest.raises(BadInputError, match="is a folder; expected a regular file"):
            images.read_image(tmp_path)  # a folder: its descriptor closed each time
    assert len(os.listdir("/proc/self/fd")) == before


def test_whole_views_of_different_sizes_are_one_error():
    ann = crops.from_json(crops.to_json(_annotation(3)))
    views = [jpeg(v, (64, 48) if v else (80, 48)) for v in range(len(CAMERAS))]
    with pytest.raises(BadInputError, match=r"views differ in size \(Camera1 80 x 48, Camera2 64 x 48"):
        crops.make_samples([ann], [views], crops.CropSpec(size=None))


def test_shards_written_by_webdataset_or_tar_of_a_folder_are_read(tmp_path):
    """webdataset's own writer puts a pax header (each member's mtime) before every member, and a tar of a folder
    starts with the folder: both read as ours do (the first version of our walk refused them)."""
    wds = pytest.importorskip("webdataset")
    samples = good_samples()
    path = tmp_path / "rat7m-train-000000.tar"
    with wds.TarWriter(str(path)) as sink:
        for key, members in samples.items():
            sink.write({"__key__": key, **members})
    assert any(block[156:157] == b"x" for block in _blocks(path))
    assert [s["key"] for s in read_all(path)] == list(samples)
    folder = tmp_path / "rat7m-train-000001.tar"
    with tarfile.open(folder, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(_folder("shards"))
        for key, members in samples.items():
            for suffix, data in members.items():
                info = tarfile.TarInfo(f"shards/{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    assert [s["key"] for s in read_all(folder)] == list(samples)


def _folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    return info


def _blocks(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [data[i : i + 512] for i in range(0, len(data), 512)]


def _progressive_bomb(scans: int) -> bytes:
    """A valid progressive JPEG whose smallest scan is repeated until it has ``scans`` scans."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(out, "JPEG", progressive=True, quality=90)
    data, segments, at = out.getvalue(), [], 2
    while data[at + 1] != 0xD9:  # split into segments, each scan with its entropy-coded data
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if data[at + 1] == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] != 0 and not 0xD0 <= data[end + 1] <= 0xD7):
                end += 1
        segments.append(data[at:end])
        at = end
    scan = min((s for s in segments if s[1] == 0xDA), key=len)
    count = sum(s[1] == 0xDA for s in segments)
    return data[:2] + b"".join(segments) + scan * (scans - count) + b"\xff\xd9"


def test_a_progressive_jpeg_of_too_many_scans_is_refused_before_decoding():
    """Each scan is a pass over the image: 20000 of them in 419 KB took 6 s (a review's find). Up to MAX_SCANS a
    progressive JPEG decodes as before, with both decoders."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(out, "JPEG", progressive=True)
    images.check_scans(_progressive_bomb(images.MAX_SCANS), "within.jpg")  # counted, and let through
    over = _progressive_bomb(images.MAX_SCANS + 1)
    hidden = over[:2] + b"\xff\xd0" + over[2:]  # a marker of no length first: the walk read one and skipped the rest
    stray = over[:2] + b"\xff\x00" + over[2:]  # a stray byte libjpeg skips, which the walk misread as a length
    for decode in (images._decode_simplejpeg, images._decode_opencv):
        assert decode(out.getvalue(), "ok.jpg").shape == (48, 64, 3)
        for bomb in (over, hidden, stray):
            with pytest.raises(BadInputError, match=r"^bomb\.jpg: (a JPEG of over 500 scans|not a JPEG)"):
                decode(bomb, "bomb.jpg")
    # a sequential JPEG whose first scan holds fewer components than its frame: libjpeg reads any number of scans
    baseline = bytearray(cv2.imencode(".jpg", np.zeros((48, 64, 3), np.uint8))[1].tobytes())
    sos = baseline.index(b"\xff\xda")
    extra = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * (images.MAX_SCANS + 1)
    images.check_scans(bytes(baseline[:-2] + extra + baseline[-2:]), "one.jpg")  # one full scan: the rest ignored
    baseline[sos + 4] = 1  # the first scan of 1 of 3 components
    with pytest.raises(BadInputError, match=r"^partial\.jpg: a JPEG of over 500 scans"):
        images.check_scans(bytes(baseline[:-2] + extra + baseline[-2:]), "partial.jpg")


def test_index_entries_of_two_samples_may_not_share_bytes_and_folders_hold_none(tmp_path):
    path = write_shard(tmp_path / "rat7m-train-000000.tar", good_samples())
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    entries = json.loads(index.read_text())
    first, second = entries["samples"].values()
    second["cam1.jpg"] = first["cam1.jpg"]  # another sample's bytes (its header names the first sample's member)
    index.write_text(json.dumps(entries))
    with pytest.raises(BadInputError, match=r"over another member"):
        read_all(path)
    index.unlink()
    folder = tarfile.TarInfo("shards")
    folder.type, folder.size = tarfile.DIRTYPE, 512  # tarfile would read its "contents" as headers; ours skipped them
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(folder, io.BytesIO(bytes(512)))
    path.write_bytes(out.getvalue()[: -2 * tarfile.BLOCKSIZE] + path.read_bytes())
    with pytest.raises(BadInputError, match=r"of type b'5'"):
        read_all(path)
