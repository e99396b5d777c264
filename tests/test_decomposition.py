"""Domain decomposition: contiguous, weight-balanced blocks of the global land-cell axis."""

from __future__ import annotations

import numpy as np
import pytest

from engine import comm
from engine import grid as G
from engine.decomposition import Decomposition, cell_weights, decompose, local_block


@pytest.fixture(scope="module")
def f45():
    return G.make_grid("f45")


def check_partition(d: Decomposition, weights) -> None:
    """Every cell owned once, blocks contiguous and in rank order, balance within one max weight."""
    w = np.asarray(weights, dtype=np.float64)
    n, p = w.size, d.nranks
    assert d.n_cells == n
    assert (d.counts >= 1).all() and d.counts.sum() == n
    assert d.starts[0] == 0
    np.testing.assert_array_equal(d.starts[1:], np.cumsum(d.counts)[:-1])  # contiguous, in order
    owners = d.owner(np.arange(n))
    np.testing.assert_array_equal(owners, np.repeat(np.arange(p), d.counts))  # each cell once
    np.testing.assert_array_equal(np.concatenate([d.local_to_global(r) for r in range(p)]), np.arange(n))
    for r in range(p):
        start, count = local_block(d, r)
        np.testing.assert_array_equal(d.global_to_local(r, d.local_to_global(r)), np.arange(count))
        assert start == d.starts[r]
        # block weights are sums of whole integers here or compared with a round-off allowance below
        np.testing.assert_allclose(d.block_weight[r], w[start : start + count].sum(), rtol=1e-12)
    # 1e-9 * total: round-off of the prefix sums (weights are O(1), n <= 1e5)
    assert d.block_weight.max() <= w.sum() / p + w.max() + 1e-9 * w.sum()
    assert d.imbalance >= 1.0


@pytest.mark.parametrize("kind", ["patches", "uniform"])
def test_f45_one_to_eight_ranks(f45, kind):
    w = cell_weights(f45, kind)
    assert w.shape == (f45.n_land,)
    for p in range(1, 9):
        d = decompose(w, p)
        check_partition(d, w)
        again = decompose(w.copy(), p)  # deterministic: a pure function of (weights, nranks)
        np.testing.assert_array_equal(again.starts, d.starts)
        np.testing.assert_array_equal(again.counts, d.counts)
    d8 = decompose(w, 8)
    # ~1100 cells of weight <= 6 over 8 ranks: the heaviest block is within 2% of the mean
    assert d8.imbalance < 1.02


def test_uniform_blocks_differ_by_at_most_one_cell():
    for n in (7, 10, 1082):
        for p in range(1, min(n, 9) + 1):
            d = decompose(np.ones(n), p)
            assert d.counts.max() - d.counts.min() <= 1


def test_patch_weights_move_cuts(f45):
    w = cell_weights(f45, "patches")
    assert w.min() == 1 and w.max() > 1
    du, dp = decompose(np.ones_like(w), 4), decompose(w, 4)
    assert not np.array_equal(du.starts, dp.starts)
    # balancing by patches beats splitting by cell count when measured in patches
    assert dp.block_weight.max() <= max(w[s : s + c].sum() for s, c in zip(du.starts, du.counts))


def test_tiny_box():
    box = G.make_grid("f45", lat_min=46, lat_max=54, lon_min=0, lon_max=20)  # central Europe
    w = cell_weights(box, "patches")
    n = box.n_land
    assert 3 <= n <= 15
    for p in range(1, n + 1):
        check_partition(decompose(w, p), w)
    d = decompose(w, n)  # one cell each
    np.testing.assert_array_equal(d.counts, np.ones(n))
    with pytest.raises(ValueError, match=f"region has {n} land cells, cannot split over {n + 1} ranks"):
        decompose(w, n + 1)


def test_skewed_and_random_weights():
    rng = np.random.default_rng(20261124)
    for _ in range(50):
        n = int(rng.integers(1, 60))
        w = rng.lognormal(0.0, 1.5, size=n)
        for p in range(1, min(n, 12) + 1):
            check_partition(decompose(w, p), w)
    w = np.array([100.0, 1.0, 1.0, 1.0])  # one huge cell: still every block non-empty
    d = decompose(w, 4)
    np.testing.assert_array_equal(d.counts, [1, 1, 1, 1])
    check_partition(d, w)


def test_too_many_ranks_message():
    with pytest.raises(ValueError, match=r"^region has 3 land cells, cannot split over 4 ranks; use fewer ranks or a larger box$"):
        decompose(np.ones(3), 4)


@pytest.mark.parametrize(
    "weights, nranks, word",
    [
        (np.ones(5), 0, "nranks"),
        (np.ones(5), 2.0, "nranks"),
        (np.ones((2, 3)), 1, "1-D"),
        (np.array([1.0, 0.0, 2.0]), 1, "land cell 1"),
        (np.array([1.0, np.nan]), 1, "finite"),
        (np.array([1.0, -2.0]), 1, "> 0"),
    ],
)
def test_bad_arguments(weights, nranks, word):
    with pytest.raises(ValueError, match=word):
        decompose(weights, nranks)


def test_lookups_reject_foreign_indices():
    d = decompose(np.ones(10), 3)
    assert d.owner(0) == 0 and d.owner(9) == 2
    with pytest.raises(ValueError, match="out of range"):
        d.owner(np.array([3, 10]))
    with pytest.raises(ValueError, match="out of range"):
        d.owner(-1)
    with pytest.raises(ValueError, match="rank 0 owns"):
        d.global_to_local(0, np.array([0, 5]))
    with pytest.raises(ValueError, match="rank must be"):
        local_block(d, 3)
    with pytest.raises(ValueError, match=r"\[decomposition\] weight"):
        cell_weights(G.make_grid("f45"), "pfts")


@pytest.mark.mpi
def test_blocks_of_all_ranks_cover_the_land_cells_in_order():
    # rank 0 builds (or reads) the land-cover cache first, so ranks do not aggregate it all at once
    if comm.rank() == 0:
        G.make_grid("f45")
    comm.barrier()
    g = G.make_grid("f45")
    w = cell_weights(g, "patches")
    d = decompose(w, comm.size())
    root_starts = comm.bcast_array(d.starts if comm.rank() == 0 else None)
    np.testing.assert_array_equal(root_starts, d.starts)  # every rank computed the same split
    start, count = local_block(d, comm.rank())
    local = d.local_to_global(comm.rank())
    assert local.size == count and (count == 0 or local[0] == start)
    assert (d.owner(local) == comm.rank()).all()
    every = comm.gather_array(local, allgather=True)
    np.testing.assert_array_equal(every, np.arange(g.n_land))  # each land cell once, in global order
    cells = comm.gather_array(g.land_index[start : start + count], allgather=True)
    np.testing.assert_array_equal(cells, g.land_index)
    total = comm.allreduce(float(w[start : start + count].sum()))
    np.testing.assert_allclose(total, w.sum(), rtol=1e-12)  # sum order differs with the rank count
