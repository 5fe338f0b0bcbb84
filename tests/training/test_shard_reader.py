"""The shard reader: samples read at the index's offsets equal the tar walk's, and a wrong index is refused."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from rat7m import shards
from rat7m.errors import BadInputError


def _write(path: Path, samples: dict[str, dict[str, bytes]]) -> None:
    """A shard as the writer lays it out: members of a sample consecutive, the index beside it."""
    entries = {}
    with open(path, "wb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples.items():
            entries[key] = {suffix: shards._add(tar, f"{key}.{suffix}", data) for suffix, data in members.items()}
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    index.write_text(json.dumps({"shard": path.name, "samples": entries}))


SAMPLES = {
    f"s1-d1_f{n:06d}_r{n:06d}": {"cam1.jpg": bytes([n]) * (700 * n + 1), "cam2.jpg": b"x" * 512, "json": b"{}"}
    for n in range(1, 6)
}


def test_indexed_read_equals_the_tar_walk(tmp_path):
    path = tmp_path / "rat7m-train-000000.tar"
    _write(path, SAMPLES)
    indexed = list(shards.iter_samples(path))
    path.with_name(path.name + shards.INDEX_SUFFIX).unlink()
    walked = list(shards.iter_samples(path))
    assert indexed == walked
    assert [s["__key__"] for s in indexed] == list(SAMPLES)
    assert all(s["cam1.jpg"] == SAMPLES[s["__key__"]]["cam1.jpg"] for s in indexed)


@pytest.mark.parametrize("shift", [512, 10**9])
def test_an_index_that_does_not_match_its_tar_is_refused(tmp_path, shift):
    path = tmp_path / "rat7m-train-000000.tar"
    _write(path, SAMPLES)
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    entries = json.loads(index.read_text())
    first = next(iter(entries["samples"].values()))
    first["cam1.jpg"][0] += shift
    index.write_text(json.dumps(entries))
    with pytest.raises(BadInputError, match="rewrite the shard"):
        list(shards.iter_samples(path))


MALFORMED = [{"k": {"json": "x"}}, {"k": {"json": [1]}}, {"k": {}}, [1], {"k": {"json": [512, -3]}}]


@pytest.mark.parametrize("samples", MALFORMED)
def test_a_malformed_index_is_refused(tmp_path, samples):
    path = tmp_path / "rat7m-train-000000.tar"
    _write(path, SAMPLES)
    path.with_name(path.name + shards.INDEX_SUFFIX).write_text(json.dumps({"samples": samples}))
    with pytest.raises(BadInputError, match="rewrite the shard"):
        list(shards.iter_samples(path))


@pytest.mark.parametrize(
    "content",
    [b"{", b"[]", b'{"samples": 5}', b"\xff\xfe", b"[" * 200_000, b'{"samples": {"k": 7}}',
     b'{"samples": {"k": {"json": [true, 3]}}}', b'{"samples": {"k": {"json": [0, 1.5]}}}'],
    ids=["cut", "a list", "samples a number", "not UTF-8", "deep", "member not a dict", "bool", "float"],
)  # fmt: skip
def test_load_index_refuses_what_is_not_an_index_by_name(tmp_path, content):
    """The split's index reader (``load_index``) checks as the sample reader does: one error naming the file."""
    path = tmp_path / "rat7m-train-000000.tar"
    _write(path, SAMPLES)
    index = path.with_name(path.name + shards.INDEX_SUFFIX)
    assert set(shards.load_index(tmp_path, "train")) == set(SAMPLES)
    index.write_bytes(content)
    with pytest.raises(BadInputError, match=rf"^{index}: not a shard index; rewrite the shard"):
        shards.load_index(tmp_path, "train")
    index.unlink()
    with pytest.raises(BadInputError, match=rf"^shard index {index}: cannot read \(not found\); rewrite the shard"):
        shards.load_index(tmp_path, "train")
