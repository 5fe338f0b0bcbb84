"""Hostile pickles run for real, each in a subprocess under a memory limit and a timeout: a crash
(segfault), a hang or a memory blow-up fails the test instead of the machine."""

import pickle
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
        "refusing a dict key or set item nested more than 64 deep",
    ),
    # dict(pairs) hashes each key in C, unchecked: 347 bytes never returned (keys sharing sub-tuples, 80 deep), and a
    # key nested 10^6 deep overflowed the C stack (found by a review)
    "dict() of wide shared keys": (
        b"\x80\x04cbuiltins\ndict\n]K\x01" + b"".join(b"\x94h" + bytes([i]) + b"\x86" for i in range(80))
        + b"K\x00\x86a\x85R.",
        "refusing dict() of anything but a dict",
    ),
    "dict() of a deep key": (
        b"\x80\x02cbuiltins\ndict\n]K\x01" + b"\x85" * DEEP + b"K\x00\x86a\x85R.",
        "refusing dict() of anything but a dict",
    ),
    "deep tuple through FROZENSET": (
        b"\x80\x04(" + b")" + b"\x85" * DEEP + b"\x91.",
        "refusing a dict key or set item nested more than 64 deep",
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
    assert message in done.stdout and len(done.stdout.splitlines()) == 1, done.stdout
    assert str(path) in done.stdout
