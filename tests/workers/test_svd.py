"""Truncated SVD (workers/count/svd.py): invariants against a dense SVD, determinism, refusal of a bad k."""
import numpy as np
import pytest
import scipy.sparse as sp

from firth.workers.count.svd import truncated_svd, weighted


def sparse_low_rank(m=60, n=45, rank=5, seed=0):
    rng = np.random.default_rng(seed)
    dense = rng.standard_normal((m, rank)) @ (rng.standard_normal((rank, n)) * np.array([[9], [6], [4], [2], [1]]))
    return sp.csr_matrix(dense.astype(np.float32)), dense


@pytest.mark.parametrize("solver", ["randomized", "arpack"])
def test_rank_k_matrix_is_reconstructed_with_orthonormal_factors(solver):
    matrix, dense = sparse_low_rank()
    u, s, vt = truncated_svd(matrix, 5, solver=solver, seed=3)
    assert u.shape == (60, 5) and s.shape == (5,) and vt.shape == (5, 45)
    np.testing.assert_allclose(u.T @ u, np.eye(5), atol=1e-4)
    np.testing.assert_allclose(vt @ vt.T, np.eye(5), atol=1e-4)
    assert (np.diff(s) <= 0).all(), "singular values descending"
    np.testing.assert_allclose((u * s) @ vt, dense, atol=1e-3 * np.abs(dense).max())
    np.testing.assert_allclose(s, np.linalg.svd(dense, compute_uv=False)[:5], rtol=1e-4)


@pytest.mark.parametrize("solver", ["randomized", "arpack"])
def test_top_singular_values_of_a_full_rank_matrix_match_the_dense_svd(solver):
    rng = np.random.default_rng(1)
    matrix = sp.random(80, 50, density=0.2, random_state=rng, format="csr", dtype=np.float64)
    u, s, vt = truncated_svd(matrix, 8, solver=solver, n_iter=20, seed=0)
    np.testing.assert_allclose(s, np.linalg.svd(matrix.toarray(), compute_uv=False)[:8], rtol=1e-3)
    # each (u_k, s_k, v_k) is a singular triplet: A v = s u
    np.testing.assert_allclose(matrix @ vt.T, u * s, atol=1e-3)


def test_same_seed_gives_identical_vectors_and_signs_are_fixed():
    matrix, _ = sparse_low_rank(seed=2)
    first = truncated_svd(matrix, 4, seed=7)
    second = truncated_svd(matrix, 4, seed=7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    u = first[0]
    assert (u[np.abs(u).argmax(axis=0), np.arange(4)] > 0).all(), "largest entry of each column positive"


def test_eigenvalue_weighting_scales_columns_by_s_to_the_p():
    u = np.array([[1.0, 2.0], [3.0, 4.0]])
    s = np.array([4.0, 9.0])
    np.testing.assert_array_equal(weighted(u, s, 0.5), np.array([[2, 6], [6, 12]], np.float32))
    np.testing.assert_array_equal(weighted(u, s, 0.0), u.astype(np.float32))


def test_a_dimension_the_matrix_cannot_have_is_refused_naming_model_dim():
    matrix, _ = sparse_low_rank()
    with pytest.raises(ValueError, match="model.dim"):
        truncated_svd(matrix, 45)
    with pytest.raises(ValueError, match="model.solver"):
        truncated_svd(matrix, 3, solver="lanczos")
