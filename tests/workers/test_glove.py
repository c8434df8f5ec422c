"""GloVe kernels (hand-checked values) and the Ray Train wiring (sync, checkpoint restore, determinism)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from firth.pipelines.config import GloveConfig
from firth.workers.glove.model import published_vectors, sgd_numba, weight
from firth.workers.glove.train import _Shard, scan_parts, train_glove
from tests.helpers.glove import ONE_ENTRY_COST, tiny_matrix, two_word_state

# ---- kernels ------------------------------------------------------------------------------------


def test_weight_on_hand_values():
    f = weight(np.array([10.0, 100.0, 250.0, 1.0]), x_max=100.0, alpha=0.75)
    np.testing.assert_allclose(f, [0.1 ** 0.75, 1.0, 1.0, 0.01 ** 0.75], rtol=1e-12)
    assert weight(np.array([1.0]), x_max=100.0, alpha=0.5)[0] == pytest.approx(0.1)


def test_numba_one_step_matches_hand_computation():
    # one entry (i=0, j=1, x=4); x_max = 10, alpha = 0.75, eta = 0.05
    state = two_word_state()
    untouched = state[:, [1, 2]].copy()
    cost = sgd_numba(state[0], state[1], np.array([0], np.int32), np.array([1], np.int32),
                     np.array([4.0], np.float32), 2, 10.0, 0.75, 0.05)
    # diff = w.w~ + b + b~ - log 4 = -1.48629436; f = 0.4^0.75 = 0.50297337; step = eta f diff
    assert cost == pytest.approx(ONE_ENTRY_COST, rel=1e-6)  # 0.5 f diff^2
    np.testing.assert_allclose(state[0, 0], [0.1112135, -0.19252434, 0.07643047], rtol=2e-6)
    np.testing.assert_allclose(state[0, 3], [0.30373783, 0.39252434, -0.06262168], rtol=2e-6)
    step = 0.05 * 0.4 ** 0.75 * (0.03 - 0.08 + 0.05 - 0.1 - np.log(4.0))  # eta f diff
    grad_w, grad_c = step * np.array([0.3, 0.4, 1.0]), step * np.array([0.1, -0.2, 1.0])  # (D+1,)
    np.testing.assert_allclose(state[1, 0], [0.0, 3.0, 1.0] + grad_w ** 2, rtol=2e-6)
    np.testing.assert_allclose(state[1, 3], grad_c ** 2, rtol=2e-6)  # tiny sums keep full precision
    assert state[1, 3, 0] == pytest.approx(1.397e-5, rel=1e-3)  # would vanish next to a float32 1.0
    np.testing.assert_array_equal(state[:, [1, 2]], untouched)


# ---- input checks (no Ray) ----------------------------------------------------------------------


def test_scan_parts_names_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no co-occurrence files part-\*\.parquet"):
        scan_parts(str(tmp_path), 10, {})
    pq.write_table(pa.table({"i": pa.array([0], pa.int64()), "j": pa.array([1], pa.int32()),
                             "x": pa.array([1.0], pa.float32())}), tmp_path / "part-00000.parquet")
    with pytest.raises(ValueError, match=r"part-00000\.parquet', field 'i': type int64, expected int32"):
        scan_parts(str(tmp_path), 10, {})


@pytest.mark.slow
def test_scan_parts_lists_s3_files_sorted_with_row_groups(s3_bucket):
    import s3fs

    bucket, fs_options, _ = s3_bucket
    fs = s3fs.S3FileSystem(**fs_options)
    table = pa.table({"i": pa.array([0, 0, 2], pa.int32()), "j": pa.array([0, 2, 0], pa.int32()),
                      "x": pa.array([1.0, 0.5, 0.5], pa.float32())})
    for name in ("part-00001.parquet", "part-00000.parquet"):
        with fs.open(f"{bucket}/cooc/{name}", "wb") as fh:
            pq.write_table(table, fh, row_group_size=2)
    assert scan_parts(f"s3://{bucket}/cooc", 3, fs_options) == [
        (f"{bucket}/cooc/part-00000.parquet", [2, 1]), (f"{bucket}/cooc/part-00001.parquet", [2, 1])]


def test_shard_streams_each_entry_once_per_epoch_and_checks_ids(tmp_path):
    i, j, x = tiny_matrix(10, seed=3)  # 100 entries
    for bucket in range(2):
        keep = i % 2 == bucket
        pq.write_table(pa.table({"i": i[keep], "j": j[keep], "x": x[keep]}), tmp_path / f"part-{bucket:05d}.parquet",
                       row_group_size=20)
    files = scan_parts(str(tmp_path), 10, {})
    assert [rows for _, rows in files] == [[20, 20, 10], [20, 20, 10]]
    shard = _Shard(str(tmp_path), {}, files, 10)
    buffers = list(shard.shuffled(np.random.default_rng(0), buffer_size=30))
    sizes = [len(b[0]) for b in buffers]  # whole row groups (20 or 10 entries) fill each buffer past 30
    assert sum(sizes) == 100 and all(30 <= n < 50 for n in sizes[:-1]) and sizes[-1] < 50
    got = np.concatenate([np.stack(b[:2]) for b in buffers], axis=1)  # (2, 100)
    assert sorted(map(tuple, got.T)) == sorted(zip(i, j))
    message = r"part-0000[01]\.parquet row group [0-2]: word id 9 is outside the vocabulary \[0, 9\)"
    with pytest.raises(ValueError, match=message):
        list(_Shard(str(tmp_path), {}, files, 9).shuffled(np.random.default_rng(0), buffer_size=30))


def test_checkpoint_dir_of_another_input_is_refused(tmp_path):
    folder = tmp_path / "cooc"
    folder.mkdir()
    i, j, x = tiny_matrix(3, seed=0)
    pq.write_table(pa.table({"i": i, "j": j, "x": x}), folder / "part-00000.parquet")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "input.json").write_text('{"seed": 1}')  # left by a run on other data
    with pytest.raises(ValueError, match=r"ckpt: holds checkpoints of another training input"):
        train_glove(str(folder), 3, GloveConfig(dim=2), checkpoint_uri=str(tmp_path / "ckpt"), progress=False)


# ---- Ray Train ----------------------------------------------------------------------------------

VOCAB = 40


@pytest.fixture(scope="module")
def cooccurrence_dir(tmp_path_factory):
    """3 bucket files (i % 3), sorted by (i, j), several row groups each: 2 workers get uneven shares."""
    folder = tmp_path_factory.mktemp("cooc")
    i, j, x = tiny_matrix(VOCAB, seed=2)
    for bucket in range(3):
        keep = i % 3 == bucket
        pq.write_table(pa.table({"i": i[keep], "j": j[keep], "x": x[keep]}), folder / f"part-{bucket:05d}.parquet",
                       row_group_size=150)
    return str(folder)


CONFIG = GloveConfig(dim=6, x_max=10.0, epochs=4, num_workers=2, syncs_per_epoch=3, shuffle_buffer=250, seed=7)


@pytest.fixture(scope="module")
def two_worker_run(ray_session, cooccurrence_dir, tmp_path_factory):
    checkpoints = tmp_path_factory.mktemp("ckpt")
    return train_glove(cooccurrence_dir, VOCAB, CONFIG, checkpoint_uri=str(checkpoints), progress=False), checkpoints


@pytest.mark.slow
def test_two_workers_lower_the_loss_every_epoch(two_worker_run):
    run, checkpoints = two_worker_run
    losses = run.epoch_losses
    assert run.epochs_run == 4 and len(losses) == 4
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < 0.5 * losses[0]
    assert run.vectors.shape == (VOCAB, 6) and run.vectors.dtype == np.float32
    # the last checkpoint (written by rank 0) holds rank 1's updates too: rank 1 alone trains the
    # word rows i % 3 == 1, so without the sync their AdaGrad sums would still be exactly 0
    state = np.load(sorted(checkpoints.glob("glove/checkpoint_*/state.npy"))[-1])
    assert (state[1, :VOCAB] > 0.0).all()
    np.testing.assert_array_equal(published_vectors(state[0], VOCAB), run.vectors)


@pytest.mark.slow
def test_fault_restores_from_last_checkpoint(two_worker_run, ray_session, cooccurrence_dir, tmp_path):
    uninterrupted, _ = two_worker_run
    marker = tmp_path / "fault-marker"
    run = train_glove(cooccurrence_dir, VOCAB, CONFIG, checkpoint_uri=str(tmp_path / "ckpt"),
                      fault_injection=str(marker), progress=False)
    assert marker.exists()  # rank 1 failed in epoch 2
    assert run.epochs_run == 4 and len(run.epoch_losses) == 4
    # restored from the epoch-1 checkpoint and replayed the same shuffles: same bytes as no failure
    np.testing.assert_array_equal(run.vectors, uninterrupted.vectors)
    assert run.epoch_losses == uninterrupted.epoch_losses
