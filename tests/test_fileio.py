"""atomic_write: a final name only ever holds a complete file."""

import os
import stat

import pytest

from rat7m.fileio import atomic_write


def test_complete_file_appears_with_normal_permissions(tmp_path):
    target = tmp_path / "sub" / "table.pkl"
    with atomic_write(target) as f:
        f.write(b"abc")
        assert not target.exists()  # nothing under the final name while writing
    assert target.read_bytes() == b"abc"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.pkl"]


def test_error_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "result.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half of the new")
        raise RuntimeError("killed")
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.csv"]
