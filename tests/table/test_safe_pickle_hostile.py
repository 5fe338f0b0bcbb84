"""Hostile pickles run for real, each in a subprocess under a memory limit and a timeout: a crash
(segfault), a hang or a memory blow-up fails the test instead of the machine."""

import pickle
import pickletools
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.shared import load_with_headroom

_RECONSTRUCT = np.zeros(1).__reduce__()[0]


class _Forged:
    """Pickles as ``_reconstruct(ndarray, shape, b'b')`` then BUILD with ``state``."""

    def __init__(self, shape, state):
        self.shape, self.state = shape, state

    def __reduce__(self):
        return (_RECONSTRUCT, (np.ndarray, self.shape, b"b"), self.state)


def _global(module: str, name: str) -> bytes:
    """STACK_GLOBAL of ``module.name`` (two SHORT_BINUNICODE strings, each memoised as a protocol 4 pickle does)."""
    return b"".join(b"\x8c" + bytes([len(t)]) + t.encode() + b"\x94" for t in (module, name)) + b"\x93"


def _shared_list(levels: int, first: int) -> bytes:
    """A list holding the previous level twice, ``levels`` deep (memo entries from ``first`` on): 2**levels items."""
    get = [b"j" + struct.pack("<I", first + i) for i in range(levels)]
    return b"]\x94" + b"".join(b"0]\x94(" + get[i] * 2 + b"e" for i in range(levels))


def _grown_behind_an_array(depth: int) -> bytes:
    """An object array holding an empty list, then (after its BUILD) that list given a ``depth``-deep shared list."""
    inner: list = []
    array = np.empty(1, dtype=object)
    array[0] = inner
    data = pickle.dumps(array, protocol=2)
    ops = list(pickletools.genops(data))
    memo = [ops[i + 1][1] for i, (op, _, _) in enumerate(ops) if op.name == "EMPTY_LIST"][-1]  # the array's list

    def put(n: int) -> bytes:
        return b"r" + struct.pack("<I", n)

    def get(n: int) -> bytes:
        return b"j" + struct.pack("<I", n)

    grown = b"]" + put(1000) + b"0"
    for k in range(1, depth + 1):
        grown += b"](" + get(1000 + k - 1) * 2 + b"e" + put(1000 + k) + b"0"
    return data[:-1] + grown + get(memo) + get(1000 + depth) + b"a0."


def _long1(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(data)]) + data


def _load_in_subprocess(path: Path) -> subprocess.CompletedProcess:
    return load_with_headroom("rat7m.safe_pickle.safe_load", "Rat7mError", path, headroom_mb=300)


DEEP = 1_000_000
HOSTILE = {
    # numpy reads 1000 object pointers past the end of an empty list: a segfault (exit 139)
    "object state longer than its list": (
        pickle.dumps(_Forged((0,), (1, (1000,), np.dtype(object), False, [])), 2),
        "refusing an object array of shape (1000,) holding 0 items",
    ),
    "float state longer than its bytes": (
        pickle.dumps(_Forged((0,), (1, (10**8,), np.dtype(np.float64), False, b"\0" * 8)), 4),
        "refusing a float64 array of shape (100000000,) (800000000 bytes) from 8 bytes",
    ),
    # an 88-byte file returned a 10^10-element array
    "huge shape in _reconstruct": (
        pickle.dumps(_Forged((10**10,), None), 4).replace(b"N\x62", b"\x62"),
        "refusing _reconstruct with shape (10000000000,)",
    ),
    # hashing a tuple nested 10^6 deep recurses in C without a guard
    "deep tuple as a dict key": (
        b"\x80\x02}" + b")" + b"\x85" * DEEP + b"K\x01s.",
        "refusing a dict key or set item nested more than 64 deep | builds more containers than its size allows",
    ),
    # dict(pairs) hashes each key in C, unchecked: 347 bytes never returned (keys sharing sub-tuples, 80 deep), and a
    # key nested 10^6 deep overflowed the C stack (found by a review)
    "dict() of wide shared keys": (
        b"\x80\x04cbuiltins\ndict\n]K\x01" + b"".join(b"\x94h" + bytes([i]) + b"\x86" for i in range(80))
        + b"K\x00\x86a\x85R.",
        "refusing dict() of anything but a dict | expands to over",
    ),
    "dict() of a deep key": (
        b"\x80\x02cbuiltins\ndict\n]K\x01" + b"\x85" * DEEP + b"K\x00\x86a\x85R.",
        "refusing dict() of anything but a dict | builds more containers than its size allows | expands to over",
    ),
    # a list shared two ways at each of 24 levels (427 bytes): 2**24 items to numpy's parse of a shape, or to a
    # message's repr (4 s, 100 MB of message); a fourth review's find, as the next two
    "a shape shared 2**24 ways": (
        b"\x80\x04" + _global("numpy._core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
        + _shared_list(24, first=4) + b"C\x02f8\x87R.",
        "refusing _reconstruct with shape [[[[...] | expands to over",
    ),
    # integers hash to known values: 20000 colliding keys took 4 s, growing with the square of their number
    "colliding integer keys": (
        b"\x80\x04}(" + b"".join(_long1(k * ((1 << 61) - 1)) + b"N" for k in range(1, 20001)) + b"u.",
        "refusing over 4096 dict keys or set items that are not text",
    ),
    # 2 MB of EMPTY_SET built 494 MB of sets
    "two million empty sets": (
        b"\x80\x04](" + b"\x8f" * 2_000_000 + b"e.",
        "builds more containers than its size allows",
    ),
    # a list handed to BUILD in an object array, then grown into a list shared 60 levels deep: the array's repr, or
    # a comparison of two such, never ended (a review's find); the result's walk goes into object arrays
    "a list grown behind an object array": (_grown_behind_an_array(60), "expands to over"),
    "deep tuple through FROZENSET": (
        b"\x80\x04(" + b")" + b"\x85" * DEEP + b"\x91.",
        "refusing a dict key or set item nested more than 64 deep | builds more containers than its size allows",
    ),
    # unpickled straight from the file: a stated byte count or frame size of 1 TiB must not be allocated first
    "a terabyte of bytes stated in a 20-byte file": (
        b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abcdefghi",
        "the pickle ends early (20 bytes)",
    ),
    "a terabyte frame stated in a 20-byte file": (
        b"\x80\x04\x95" + (1 << 40).to_bytes(8, "little") + b"abcdefghi",
        "the pickle ends early (20 bytes)",
    ),
    # the pure-Python unpickler allocates a BYTEARRAY8's stated length before reading it (1.5 GB here)
    "a 1.5 GB bytearray stated in a 20-byte file": (
        b"\x80\x05\x96" + (1_500_000_000).to_bytes(8, "little") + b"abcdefghi",
        "a bytearray of 1500000000 bytes stated in a pickle of 20",
    ),
    # 60 levels of t = (t, t): shallow enough, but hashing a tuple walks all 2^60 paths (a hang)
    "shared tuples doubling as a dict key": (
        b"\x80\x02}" + b")" + b"2\x86" * 60 + b"K\x01s.",
        "refusing a dict key or set item made of more than 100000 nested tuples or frozensets",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_pickle_gives_one_line_not_a_crash(case, tmp_path):
    data, message = HOSTILE[case]
    path = tmp_path / "evil.pkl"
    path.write_bytes(data)
    done = _load_in_subprocess(path)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr[-1500:])
    assert any(m in done.stdout for m in message.split(" | ")) and len(done.stdout.splitlines()) == 1, done.stdout
    assert str(path) in done.stdout
