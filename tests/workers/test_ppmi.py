"""PPMI kernel (workers/count/ppmi.py) on a hand-computed 3×3 co-occurrence matrix."""
import math

import numpy as np
import pytest

from firth.workers.count import ppmi

# X (symmetric), T = 12, row sums = column sums = [3, 3, 6]
X = np.array([[0, 2, 1],
              [2, 0, 1],
              [1, 1, 4]], dtype=np.float32)
I, J = np.nonzero(X)
VALUES = X[I, J]


def dense(matrix):
    return matrix.toarray().astype(np.float64)


def test_ppmi_without_smoothing_matches_hand_computed_values():
    # PMI(w, c) = log(X_wc · T / (X_w · X_c)):  (0,1): 2·12/(3·3) = 8/3;  (2,2): 4·12/(6·6) = 4/3;
    # (0,2), (1,2): 1·12/(3·6) = 2/3 < 1 → negative → 0;  zeros stay 0
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = math.log(8 / 3)
    expected[2, 2] = math.log(4 / 3)
    np.testing.assert_allclose(dense(ppmi.ppmi_matrix(I, J, VALUES, 3, alpha=1.0)), expected, rtol=1e-6)


def test_ppmi_with_context_smoothing_matches_hand_computed_values():
    # α = 0.5: P_α(c) = √X_c / Z, Z = √3 + √3 + √6;  PMI = log(X_wc · Z / (X_w · √X_c))
    z = 2 * math.sqrt(3) + math.sqrt(6)
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = math.log(2 * z / (3 * math.sqrt(3)))  # 0.8225
    expected[2, 2] = math.log(4 * z / (6 * math.sqrt(6)))  # 0.4757
    # (0,2): log(z / (3√6)) = -0.217; (2,0): log(z / (6√3)) = -0.564 → both dropped
    result = dense(ppmi.ppmi_matrix(I, J, VALUES, 3, alpha=0.5))
    np.testing.assert_allclose(result, expected, rtol=1e-6)
    assert result[0, 1] < math.log(8 / 3), "smoothing lowers the PMI of the rarer context"


def test_shift_subtracts_log_k_and_drops_what_falls_to_zero():
    # k = 2: (0,1): log(8/3) - log 2 = log(4/3) stays; (2,2): log(4/3) - log 2 < 0 is dropped
    matrix = ppmi.ppmi_matrix(I, J, VALUES, 3, alpha=1.0, shift=2.0)
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = math.log(4 / 3)
    np.testing.assert_allclose(dense(matrix), expected, rtol=1e-6)
    assert matrix.nnz == 2 and matrix.dtype == np.float32


def test_parts_transformed_with_global_marginals_equal_the_whole_matrix():
    rng = np.random.default_rng(0)
    x = rng.random((40, 40)) * (rng.random((40, 40)) < 0.3)
    i, j = np.nonzero(x)
    values = x[i, j]
    whole = ppmi.ppmi_matrix(i, j, values, 40)
    parts = [np.flatnonzero(i % 3 == b) for b in range(3)]  # as the co-occurrence buckets, i % n_buckets
    sums = [ppmi.marginals(i[p], j[p], values[p], 40) for p in parts]
    rows, columns = sum(s[0] for s in sums), sum(s[1] for s in sums)
    entries = [ppmi.ppmi_entries(i[p], j[p], values[p], rows, columns) for p in parts]
    stitched = ppmi.entries_to_csr(*(np.concatenate(c) for c in zip(*entries)), shape=(40, 40))
    np.testing.assert_array_equal(stitched.toarray(), whole.toarray())
    assert (whole.data > 0).all()


def test_misuse_is_refused_with_the_setting_named():
    with pytest.raises(ValueError, match="model.context_smoothing"):
        ppmi.ppmi_matrix(I, J, VALUES, 3, alpha=0.0)
    with pytest.raises(ValueError, match="model.shift"):
        ppmi.ppmi_matrix(I, J, VALUES, 3, shift=0.5)
    with pytest.raises(ValueError, match="different runs"):
        ppmi.ppmi_matrix(I, J, VALUES, 2)
