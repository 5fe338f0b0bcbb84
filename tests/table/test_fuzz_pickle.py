"""Property-based fuzzing (Hypothesis) of the safe unpickler: mutated real table pickles (ours and
numpy-1 official-style, protocols 2-5) and random opcode streams.

Invariant: a clean result, or a one-line error of our own type; never another exception. The
crash, hang and memory cases that need a subprocess are in tests/table/test_safe_pickle_hostile.py. The
default run is short; set ``RAT7M_FUZZ_EXAMPLES`` to run more examples.
"""

from __future__ import annotations

import os
import pickle
import pickletools

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="fuzzing needs hypothesis (requirements-dev.txt)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rat7m.errors import Rat7mError  # noqa: E402
from rat7m.safe_pickle import safe_loads  # noqa: E402
from tests.helpers.numpy1_pickle import numpy1_dumps  # noqa: E402

EXAMPLES = int(os.environ.get("RAT7M_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _small_table() -> dict:
    """A table-shaped dict with every kind of value a real one holds (kept small: fuzzing mutates it)."""
    rng = np.random.default_rng(0)
    camera = {"IntrinsicMatrix": rng.normal(size=(3, 3)), "rotationMatrix": np.eye(3),
              "translationVector": rng.normal(size=(1, 3)), "RadialDistortion": np.zeros((1, 2))}  # fmt: skip
    return {
        "cameras": {np.int64(1): {np.int64(1): {"Camera1": camera}}},
        "camera_names": np.array(["Camera1"]),
        "table": {
            "subject_idx": np.array([1.0, 1.0]),
            "train_test": np.array(["train", "test"], dtype=object),
            "frame_idx": {"Camera1": np.array([3, 4], dtype=np.int64)},
            "3D_keypoints": rng.normal(size=(2, 2, 3)),
            "key": (1, (2, (3,)), "x"),
        },
    }


SEEDS = [pickle.dumps(_small_table(), p) for p in (2, 3, 4, 5)] + [numpy1_dumps(_small_table(), 2)]


def _assert_ours(data: bytes) -> None:
    try:
        safe_loads(data, "fuzz.pkl")
    except Rat7mError as exc:
        text = str(exc)
        assert text.startswith("fuzz.pkl") and "\n" not in text, text


def test_the_seeds_load():
    for seed in SEEDS:
        assert safe_loads(seed)["table"]["frame_idx"]["Camera1"].tolist() == [3, 4]


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=6),
       st.integers(0, 10**6), st.sampled_from(["flip", "insert", "delete", "truncate"]))  # fmt: skip
def test_mutated_table_pickles_load_or_give_our_error(seed, edits, cut, how):
    data = bytearray(seed)
    for position, value in edits:
        position %= len(data)
        if how == "insert":
            data.insert(position, value)
        elif how == "delete" and len(data) > 1:
            del data[position]
        else:
            data[position] = value
    if how == "truncate":
        data = data[: cut % len(data)]
    _assert_ours(bytes(data))


_OPCODES = [op for op in pickletools.opcodes if op.proto <= 5]
_ARGS = st.one_of(st.binary(max_size=12), st.just(b"numpy.core.multiarray\n_reconstruct\n"),
                  st.just(b"numpy\nndarray\n"), st.just(b"\x00\x00\x00\x00"), st.just(b"\xff\xff\xff\x7f"))  # fmt: skip


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(_OPCODES), _ARGS), max_size=25))
def test_random_opcode_streams_load_or_give_our_error(ops):
    data = b"\x80\x04" + b"".join(op.code.encode("latin1") + arg for op, arg in ops) + b"."
    _assert_ours(data)
