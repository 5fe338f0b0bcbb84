"""save_predictions and read_predictions agree on what a prediction file holds (issue 20).

The format has no "missing" value: the reader refuses NaN and inf, so the writer refuses them too,
before writing anything. Whatever the writer accepts, the reader reads back.
"""

from __future__ import annotations

import numpy as np
import pytest

from rat7m import predictions
from rat7m.errors import BadInputError


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_predictions_are_refused_before_anything_is_written(tmp_path, suffix, bad):
    """Old: ``nan`` written, then ``compute_metrics`` refused the file it had been given."""
    path = tmp_path / f"p{suffix}"
    path.write_text("an earlier file")
    pred = np.random.default_rng(0).normal(size=(4, 20, 3)) * 100
    pred[2, 7, 1] = bad
    with pytest.raises(BadInputError, match=rf"not writing .*p\{suffix}: sample 2, joint Offset2 has y = {bad}; "):
        predictions.save_predictions(path, pred)
    assert path.read_text() == "an earlier file" and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("suffix", [".csv", ".npy"])
def test_whatever_is_written_reads_back(tmp_path, suffix):
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(50, 20, 3)) * 10.0 ** rng.integers(-3, 6, size=(50, 20, 3))
    pred[0, 0] = [-0.0, 0.0, 1e-9]
    pred[1, 1] = [1e99, -1e99, 123456789.123456]
    predictions.save_predictions(tmp_path / f"p{suffix}", pred)
    back = predictions.read_predictions(tmp_path / f"p{suffix}")
    if suffix == ".npy":
        np.testing.assert_array_equal(back, pred)
    else:  # six decimals: absolute 5e-7, and the relative precision of a double for large values
        np.testing.assert_allclose(back, pred, atol=5e-7, rtol=1e-15)
