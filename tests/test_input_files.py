"""rat7m.fileio's input side: only regular files, within a size cap, without blocking (issue 20).

Real FIFOs, devices, link loops and sockets, no mocks. A FIFO without a writer would make a plain
``open`` wait forever, so each case runs under pytest-timeout's guard as well.
"""

from __future__ import annotations

import os
import socket

import pytest

from rat7m.errors import BadInputError
from rat7m.fileio import check_input, read_input

pytestmark = pytest.mark.timeout(60)


def test_a_regular_file_is_read_whole(tmp_path):
    path = tmp_path / "a.json"
    path.write_bytes(b'{"a": 1}')
    assert read_input(path, "summary") == b'{"a": 1}'
    assert check_input(path) == path
    link = tmp_path / "link.json"
    link.symlink_to(path)
    assert read_input(link) == b'{"a": 1}'


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("fifo", "is a FIFO (named pipe); expected a regular file"),
        ("device", "is a character device; expected a regular file"),
        ("folder", "is a folder; expected a regular file"),
        ("loop", "cannot read (a symbolic link loop, or a link where none may be)"),
        ("missing", "cannot read (not found)"),
        ("socket", "cannot read (a socket (or a device with no driver), not a file)"),
    ],
)
def test_anything_but_a_regular_file_is_one_line(tmp_path, kind, expected):
    path = tmp_path / "x"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    with pytest.raises(BadInputError) as caught:
        read_input(path, "summary.json")
    assert str(caught.value) == f"summary.json {path} {expected}".replace(f"{path} cannot", f"{path}: cannot")


def test_size_cap_and_no_follow(tmp_path):
    path = tmp_path / "big"
    path.write_bytes(b"x" * 101)
    with pytest.raises(BadInputError, match=r"is 101 bytes, more than the 100 such a file can be"):
        read_input(path, "summary.json", max_bytes=100)
    assert len(read_input(path, max_bytes=101)) == 101
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(BadInputError, match="a link where none may be"):
        read_input(link, follow_links=False)


def test_a_sparse_file_past_the_cap_is_refused_without_reading(tmp_path):
    path = tmp_path / "sparse"
    with open(path, "wb") as handle:
        handle.truncate(1 << 40)  # 1 TiB of nothing, on no disk
    with pytest.raises(BadInputError, match="more than the"):
        read_input(path, "summary.json")
