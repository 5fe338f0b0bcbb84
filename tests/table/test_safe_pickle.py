"""The safe loader: real tables in every form load; pickles that would run code are refused unrun."""

import functools
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.matfile import MocapRecording
from rat7m.safe_pickle import UnsafePickleError, safe_load
from rat7m.table import load_annotation
from rat7m.table_build import build_table
from tests.helpers.plausible_rig import make_cameras, make_mocap


@pytest.fixture(scope="module")
def table():
    rec = MocapRecording("Subject5-Day1", make_cameras(0, 40), make_mocap(40), catalogue.recording_by_name("s5-d1"))
    return build_table([rec])


def assert_same_table(a, b):
    assert a.keys() == b.keys() and a["table"].keys() == b["table"].keys()
    np.testing.assert_array_equal(a["camera_names"], b["camera_names"])
    for key, value in a["table"].items():
        if isinstance(value, dict):
            for cam in value:
                np.testing.assert_array_equal(value[cam], b["table"][key][cam])
                assert value[cam].dtype == b["table"][key][cam].dtype
        else:
            np.testing.assert_array_equal(value, b["table"][key])
    np.testing.assert_array_equal(a["cameras"][5][1]["Camera4"]["RadialDistortion"],
                                  b["cameras"][5][1]["Camera4"]["RadialDistortion"])  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_plain_pickles_of_every_protocol_load(tmp_path, table, protocol):
    path = tmp_path / "t.pkl"
    path.write_bytes(pickle.dumps(table, protocol=protocol))
    assert_same_table(load_annotation(path), table)


def test_numpy_1x_pickles_load(tmp_path, table):
    # numpy 1.x writes numpy.core.multiarray where numpy 2.x writes numpy._core.multiarray
    data = pickle.dumps(table, protocol=2)
    assert b"numpy._core.multiarray" in data
    path = tmp_path / "t.pkl"
    path.write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
    assert_same_table(load_annotation(path), table)


def test_npy_file_of_a_dict_loads(tmp_path, table):
    path = tmp_path / "t.npy"
    np.save(path, table)  # what np.save(path, dict) users write: a 0-d object array
    assert_same_table(load_annotation(path), table)


def _payload(target, kind):
    """A pickle that, when loaded by pickle or np.load(allow_pickle=True), creates ``target``."""
    command = f"touch {target}"
    reducers = {
        "os.system": (os.system, (command,)),
        "subprocess": (subprocess.check_call, (["touch", str(target)],)),
        "eval": (eval, (f"open({str(target)!r}, 'w').close()",)),
        "exec": (exec, (f"open({str(target)!r}, 'w').close()",)),
        "partial": (functools.partial(os.system, command), ()),
    }

    class Payload:
        def __reduce__(self):
            return reducers[kind]

    return Payload()


@pytest.mark.parametrize(
    ("kind", "named"),
    [
        ("os.system", f"{os.system.__module__}.system"),
        ("subprocess", "subprocess.check_call"),
        ("eval", "builtins.eval"),
        ("exec", "builtins.exec"),
        ("partial", "functools.partial"),
    ],
)
def test_code_running_pickles_are_refused_unrun(tmp_path, table, kind, named):
    target = tmp_path / "pwned"
    evil = dict(table)
    evil["table"] = {**table["table"], "extra": [1, _payload(target, kind)]}  # deep inside a real table
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(evil, protocol=4))
    with pytest.raises(UnsafePickleError, match=rf"evil\.pkl: .*global '{named}'"):
        load_annotation(path)
    assert not target.exists()


def test_the_payload_is_live(tmp_path):
    # the same payload does run under np.load(allow_pickle=True): the refusal above is what stops it
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": _payload(target, "os.system")}))
    code = f"import numpy as np; np.load({str(path)!r}, allow_pickle=True)"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert target.exists()


def test_payloads_inside_arrays_and_npy_files_are_refused(tmp_path):
    target = tmp_path / "pwned"
    object_array = np.array([1, _payload(target, "os.system")], dtype=object)
    npy = tmp_path / "evil.npy"
    np.save(npy, {"table": object_array})
    with pytest.raises(UnsafePickleError, match=rf"{os.system.__module__}\.system"):
        safe_load(npy)
    handmade = tmp_path / "handmade.pkl"  # protocol 0, GLOBAL opcode written by hand
    handmade.write_bytes(
        b"cnumpy.testing._private.utils\nrunstring\n(S'open(\"" + str(target).encode() + b'", "w")\'\ntR.'
    )
    with pytest.raises(UnsafePickleError, match=r"numpy\.testing\._private\.utils\.runstring"):
        safe_load(handmade)
    numpy_load = tmp_path / "numpy_load.pkl"  # numpy itself is not trusted wholesale
    numpy_load.write_bytes(pickle.dumps({"x": functools.partial(np.load, "other.pkl", allow_pickle=True)}))
    with pytest.raises(UnsafePickleError, match=r"functools\.partial"):
        safe_load(numpy_load)
    assert not target.exists()


def test_truncated_pickles_say_so(tmp_path, table):
    data = pickle.dumps(table, protocol=4)
    path = tmp_path / "t.pkl"
    for cut in (1, 100, len(data) // 3, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(
            BadInputError, match=rf"t\.pkl: the pickle ends early \({cut} bytes\): the file is truncated"
        ):
            load_annotation(path)
    npy = tmp_path / "t.npy"
    np.save(npy, table)
    npy.write_bytes(npy.read_bytes()[:-50])
    with pytest.raises(BadInputError, match="truncated"):
        load_annotation(npy)


def test_other_unreadable_files(tmp_path):
    with pytest.raises(BadInputError, match=r"missing\.pkl: cannot read"):
        safe_load(tmp_path / "missing.pkl")
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    with pytest.raises(BadInputError, match="empty"):
        safe_load(empty)
    html = tmp_path / "drive.pkl"  # what Google Drive sends instead of a large file
    html.write_bytes(b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title>")
    with pytest.raises(BadInputError, match=r"drive\.pkl: not a readable pickle"):
        safe_load(html)
    plain = tmp_path / "plain.npy"
    np.save(plain, np.zeros((3, 20, 2)))
    with pytest.raises(BadInputError, match=r"plain float64 array of shape \(3, 20, 2\), not a pickled table"):
        safe_load(plain)


class _Reduces:
    """Pickles as ``callable(*args)``, then ``__setstate__(state)`` if a state is given."""

    def __init__(self, *reduction):
        self.reduction = reduction

    def __reduce__(self):
        return self.reduction


_FORGED_DTYPE_STATE = (3, "|", None, ("a",), {"a": (np.dtype(object), 0)}, 8, 1, 0)
_MEMORY_ATTACKS = {
    # an object array whose "pointers" are the pickle's bytes
    "ndarray_over_bytes": _Reduces(np.ndarray, ((1,), np.dtype(object), b"AAAAAAAA")),
    # a dtype whose forged state gives it an object field but flags saying it holds no objects
    "forged_dtype": _Reduces(
        np.zeros(0).__reduce__()[0],
        (np.ndarray, (0,), b"b"),
        (1, (1,), _Reduces(np.dtype, ("V8", False, True), _FORGED_DTYPE_STATE), False, b"AAAAAAAA"),
    ),
}


def test_allowed_numpy_callables_cannot_forge_memory(tmp_path):
    # each pickle crashes (or misleads) np.load(allow_pickle=True); the safe loader refuses it
    # before numpy sees the forged state. A child process, so a regression is a failure, not a crash.
    for name, attack in _MEMORY_ATTACKS.items():
        (tmp_path / f"{name}.pkl").write_bytes(pickle.dumps({"table": attack}, protocol=2))
    # BUILD (setstate) on an allowed function, written by hand: would set _codecs.encode.foo = 1
    (tmp_path / "state_on_a_function.pkl").write_bytes(b"\x80\x02c_codecs\nencode\n}X\x03\x00\x00\x00fooK\x01sb.")
    code = (
        "import sys, pathlib\n"
        "from rat7m.safe_pickle import UnsafePickleError, safe_load\n"
        "for path in sorted(pathlib.Path(sys.argv[1]).glob('*.pkl')):\n"
        "    try:\n"
        "        safe_load(path)\n"
        "        print(path.stem, 'LOADED')\n"
        "    except UnsafePickleError as exc:\n"
        "        print(path.stem, 'refused', exc)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    said = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert said.keys() == {*_MEMORY_ATTACKS, "state_on_a_function"}
    assert said["ndarray_over_bytes"].startswith("refused") and "call numpy.ndarray" in said["ndarray_over_bytes"]
    assert said["forged_dtype"].startswith("refused") and "refusing dtype state" in said["forged_dtype"]
    assert (
        said["state_on_a_function"].startswith("refused") and "set the state of function" in said["state_on_a_function"]
    )
    # the forged dtype is live: numpy's own loader builds an array that claims to hold no objects
    probe = "import pickle, sys; a = pickle.load(open(sys.argv[1], 'rb'))['table']; print(a.dtype.hasobject)"
    done = subprocess.run([sys.executable, "-c", probe, tmp_path / "forged_dtype.pkl"], capture_output=True, text=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("protocol", [2, 4])
def test_an_object_column_of_the_official_size_loads(protocol):
    """The official table's image_path and train_test are object arrays of 112,730 strings: their state lists one
    item per row. A bound on what BUILD takes, fixed at 100,000 items, refused them (a fifth review's find)."""
    from rat7m.safe_pickle import safe_loads
    from tests.helpers.numpy1_pickle import numpy1_dumps

    column = np.array([f"images_unpacked/s1-d1/camera1/frame_{i:06d}.jpg" for i in range(112_730)], dtype=object)
    for data in (numpy1_dumps({"image_path": column}, protocol), pickle.dumps({"image_path": column}, protocol)):
        loaded = safe_loads(data, "table.pkl")["image_path"]
        assert loaded.dtype == object and len(loaded) == 112_730 and loaded[-1] == column[-1]


def _cycle_through_an_array() -> dict:
    array = np.empty(1, dtype=object)
    table = {"arr": array}
    array[0] = table
    return table


def _plain_cycle() -> dict:
    table: dict = {"a": 1}
    table["self"] = table
    return table


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    "build",
    [
        _cycle_through_an_array,
        _plain_cycle,
        lambda: {i: i for i in range(5000)},  # integer keys hash to themselves: no collisions to bound
        lambda: {"x": [(i, 1) for i in range(112_730)]},
        lambda: {"x": [np.float64(i) for i in range(20_000)], "y": [np.zeros((2, 3), np.float32)] * 3},
    ],
    ids=["cycle through an object array", "plain cycle", "5000 int keys", "112730 tuples", "scalars and arrays"],
)
def test_what_pickle_dump_writes_of_ordinary_values_loads(build, protocol):
    """The bounds against hostile pickles leave what pickle.dump writes of ordinary values alone (a sixth review
    found each of these refused by an earlier version of them)."""
    from rat7m.model import Table
    from rat7m.safe_pickle import safe_loads

    value = build()
    loaded = safe_loads(pickle.dumps(value, protocol), "t.pkl")
    assert type(loaded) is dict and loaded.keys() == value.keys()
    if protocol > 2:  # a Table at protocol 2 names __builtin__.dict, never allowed
        paths = [f"images_unpacked/s1-d1/camera1/frame_{i:06d}.jpg" for i in range(112_730)]
        assert safe_loads(pickle.dumps(Table({"p": paths}), protocol), "t.pkl")["p"] == paths
