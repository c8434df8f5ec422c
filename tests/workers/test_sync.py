"""SparseDeltaSync (workers/raytrain/sync.py) among logical workers: exact against the dense sum of deltas."""
from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from firth.workers.raytrain.sync import LocalAllReduce, SparseDeltaSync

ROWS, DIM = 12, 3


def _sync_all(states: list[torch.Tensor], combine: str, changes: list[dict[int, np.ndarray]]) -> list[SparseDeltaSync]:
    """One sync of len(states) logical workers (threads) after each applied its `changes` {row: added values}."""
    reduce = LocalAllReduce(len(states))
    syncs = [SparseDeltaSync(state, len(states), combine, reduce.for_rank(rank)) for rank, state in enumerate(states)]
    for sync, change in zip(syncs, changes):
        for row, values in change.items():
            sync.state[row] += torch.from_numpy(values)  # (rows, D) view of the state
    threads = [threading.Thread(target=sync) for sync in syncs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return syncs


def _start() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).random((ROWS, DIM), dtype=np.float32))


# worker 0 moves rows 1 and 5, worker 1 rows 5 and 7, worker 2 row 5 only: row 5 by all three
CHANGES = [{1: np.array([1.0, 2.0, 3.0], np.float32), 5: np.array([0.5, 0.25, -1.0], np.float32)},
           {5: np.array([1.5, -0.75, 2.0], np.float32), 7: np.array([-2.0, 0.0, 4.0], np.float32)},
           {5: np.array([1.0, 1.0, 1.0], np.float32)}]


@pytest.mark.parametrize("combine", ["sum", "touched", "mean", "aligned"])
def test_sparse_sync_moves_only_changed_rows_and_leaves_every_worker_identical(combine):
    start = _start()
    states = [start.clone() for _ in CHANGES]
    syncs = _sync_all(states, combine, CHANGES)
    for state in states[1:]:
        assert torch.equal(state, states[0])  # bit for bit, every worker
    untouched = [r for r in range(ROWS) if r not in (1, 5, 7)]
    assert torch.equal(states[0][untouched], start[untouched])
    summed5 = CHANGES[0][5] + CHANGES[1][5] + CHANGES[2][5]
    expected = {"sum": (CHANGES[0][1], summed5, CHANGES[1][7]),
                "touched": (CHANGES[0][1], summed5 / 3, CHANGES[1][7]),  # row 5: all three moved it
                "mean": (CHANGES[0][1] / 3, summed5 / 3, CHANGES[1][7] / 3),
                # row 5: |Σ δ|² 13.25 over Σ |δ|² 11.125, the three changes are far from one direction
                "aligned": (CHANGES[0][1], summed5 / (13.25 / 11.125), CHANGES[1][7])}[combine]
    for row, delta in zip((1, 5, 7), expected):
        np.testing.assert_allclose(states[0][row].numpy(), start[row].numpy() + delta, rtol=1e-6)
    # payload: the (rows, 2) counts and squares, and the 3 changed rows
    assert [(s.syncs, s.rows_moved, s.bytes_moved) for s in syncs] == [(1, 3, ROWS * 2 * 4 + 3 * DIM * 4)] * 3


def test_sparse_sum_equals_the_dense_sum_of_deltas_exactly():
    """The sum of the changed rows' deltas is the dense all-reduce of the whole delta, bit for bit."""
    rng = np.random.default_rng(1)
    start = _start()
    changes = [{int(r): rng.normal(size=DIM).astype(np.float32) for r in rng.choice(ROWS, 4, replace=False)}
               for _ in range(4)]
    states = [start.clone() for _ in changes]
    _sync_all(states, "sum", changes)
    deltas = [start.clone() for _ in changes]
    for delta, change in zip(deltas, changes):
        for row, values in change.items():
            delta[row] += torch.from_numpy(values)
        delta.sub_(start)
    dense = start + (deltas[0] + deltas[1] + deltas[2] + deltas[3])  # anchor + Σ δ, the old DeltaSync
    assert torch.equal(states[0], dense)


def test_aligned_divides_equal_changes_by_their_number_and_sums_orthogonal_ones():
    start = _start()
    states = [start.clone() for _ in range(4)]
    same = np.array([1.0, -2.0, 0.5], np.float32)
    axes = np.eye(DIM, dtype=np.float32)
    changes = [{0: same, 1: axes[rank % DIM] * (rank + 1)} for rank in range(3)] + [{0: same}]
    _sync_all(states, "aligned", changes)
    np.testing.assert_allclose(states[0][0].numpy(), start[0].numpy() + same, rtol=1e-6)  # 4 equal: the mean
    np.testing.assert_allclose(states[0][1].numpy(), start[1].numpy() + np.array([1.0, 2.0, 3.0]), rtol=1e-6)


def test_a_glove_shaped_state_syncs_by_its_last_axis_in_place():
    """GloVe's (2, 2V, D+1) state: rows are its last axis; the tensor itself is updated."""
    states = [torch.zeros((2, 4, 3)), torch.zeros((2, 4, 3))]
    syncs = _sync_all(states, "touched", [{6: np.ones(3, np.float32)}, {6: np.full(3, 3.0, np.float32)}])
    expected = torch.zeros((2, 4, 3))
    expected[1, 2] = 2.0  # row 6 of the (8, 3) view, moved by both: (1 + 3) / 2
    assert torch.equal(states[0], expected) and torch.equal(states[1], expected)
    assert syncs[0].rows_moved == 1


def test_one_worker_never_syncs_and_an_unknown_combine_is_refused():
    state = _start()
    before = state.clone()
    sync = SparseDeltaSync(state, 1, "touched", lambda t: pytest.fail("one worker all-reduced"))
    state[0] += 1
    sync()
    assert torch.equal(state[0], before[0] + 1) and sync.syncs == 0
    with pytest.raises(ValueError, match="sync combine 'avg': choose one of sum, touched, mean, aligned"):
        SparseDeltaSync(state, 2, "avg")
