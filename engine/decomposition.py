"""Domain decomposition: the land cells, in the global land order of :mod:`engine.grid`, split into
contiguous blocks, one per MPI rank, balanced by a per-cell cost weight.

Reads a weight per land cell (e.g. the number of vegetated patches, :func:`engine.grid.estimated_patches`;
"uniform" = 1 each); writes nothing. The land model has no lateral exchange, so a block is all a rank
needs for the forecast; restarts and history hold the global land-cell axis and each rank reads and
writes the hyperslab ``[start:start + count]`` (:func:`local_block`).

The split is a pure function of (weights, nranks): with prefix sums ``S[0] = 0, S[b] = w[0] + ... +
w[b-1]`` and total ``W``, cut ``k`` (k = 1..P-1) is the cell boundary ``b`` whose ``S[b]`` is nearest
to ``k*W/P`` (the lower one on a tie), moved the least needed so that every block holds at least one
cell. This is the direct-cut heuristic for the 1-D chains-on-chains partitioning problem (Pinar &
Aykanat 2004, J. Parallel Distrib. Comput. 64, 974-996). No block weighs more than ``W/P + max(w)``:
each nearest cut lies within ``max(w)/2`` of its target, and a cut moved to keep a block non-empty
leaves a one-cell block behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WEIGHT_KINDS = ("uniform", "patches")


@dataclass(frozen=True, eq=False)
class Decomposition:
    """Contiguous blocks of the global land-cell axis: rank r owns ``[starts[r], starts[r] + counts[r])``."""

    starts: np.ndarray  # (nranks,) int64, first global land index of each block
    counts: np.ndarray  # (nranks,) int64, cells per block, all >= 1
    block_weight: np.ndarray  # (nranks,) float64, summed cost weight of each block

    @property
    def nranks(self) -> int:
        return self.starts.size

    @property
    def n_cells(self) -> int:
        return int(self.starts[-1] + self.counts[-1])

    @property
    def imbalance(self) -> float:
        """Heaviest block weight over the mean block weight (1.0 = perfect balance)."""
        return float(self.block_weight.max() / self.block_weight.mean())

    def owner(self, global_land_index) -> np.ndarray | int:
        """Rank owning each global land index (vectorised; a scalar in, a scalar out)."""
        idx = np.asarray(global_land_index)
        if idx.dtype.kind not in "iu":
            raise ValueError(f"owner: global land indices must be integers, got dtype {idx.dtype}")
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_cells):
            raise ValueError(f"owner: global land index out of range [0, {self.n_cells}): min {idx.min()}, max {idx.max()}")
        out = np.searchsorted(self.starts, idx, side="right") - 1
        return int(out) if out.ndim == 0 else out

    def local_to_global(self, rank: int) -> np.ndarray:
        """(counts[rank],) global land indices of ``rank``'s cells, in order."""
        start, count = local_block(self, rank)
        return np.arange(start, start + count, dtype=np.int64)

    def global_to_local(self, rank: int, global_land_index) -> np.ndarray | int:
        """Position within ``rank``'s block of each global land index; all must be owned by ``rank``."""
        start, count = local_block(self, rank)
        idx = np.asarray(global_land_index)
        if idx.dtype.kind not in "iu":
            raise ValueError(f"global_to_local: indices must be integers, got dtype {idx.dtype}")
        local = idx - start
        if local.size and (local.min() < 0 or local.max() >= count):
            raise ValueError(
                f"global_to_local: rank {rank} owns global land indices [{start}, {start + count}), "
                f"got indices in [{idx.min()}, {idx.max()}]"
            )
        return int(local) if local.ndim == 0 else local.astype(np.int64)

    def __repr__(self) -> str:
        return f"Decomposition(nranks={self.nranks}, n_cells={self.n_cells}, imbalance={self.imbalance:.4f})"


def _check_rank(decomp: Decomposition, rank) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or not 0 <= rank < decomp.nranks:
        raise ValueError(f"rank must be an integer in [0, {decomp.nranks}), got {rank!r}")
    return int(rank)


def local_block(decomp: Decomposition, rank: int) -> tuple[int, int]:
    """(start, count) of ``rank``'s hyperslab of the global land-cell axis."""
    r = _check_rank(decomp, rank)
    return int(decomp.starts[r]), int(decomp.counts[r])


def decompose(weights, nranks: int) -> Decomposition:
    """Split ``len(weights)`` land cells into ``nranks`` contiguous, weight-balanced, non-empty blocks.

    ``weights``: (n_cells,) finite, positive cost per land cell, in the global land order.
    """
    if isinstance(nranks, bool) or not isinstance(nranks, (int, np.integer)) or nranks < 1:
        raise ValueError(f"decompose: nranks must be a positive integer, got {nranks!r}")
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"decompose: weights must be one value per land cell (1-D), got shape {w.shape}")
    n, p = w.size, int(nranks)
    if n < p:
        raise ValueError(
            f"region has {n} land cells, cannot split over {p} ranks; use fewer ranks or a larger box"
        )
    if not np.isfinite(w).all() or (w <= 0).any():
        bad = np.flatnonzero(~np.isfinite(w) | (w <= 0))
        raise ValueError(
            f"decompose: weights must be finite and > 0; {bad.size} are not (first at land cell {bad[0]}: {w[bad[0]]})"
        )
    prefix = np.concatenate(([0.0], np.cumsum(w)))  # prefix[b] = weight of cells [0, b)
    total = prefix[-1]
    targets = total * np.arange(1, p) / p
    hi = np.clip(np.searchsorted(prefix, targets, side="left"), 1, n)  # first b with prefix[b] >= target
    lo = hi - 1
    cuts = np.where(targets - prefix[lo] <= prefix[hi] - targets, lo, hi)
    bounds = np.empty(p + 1, dtype=np.int64)
    bounds[0], bounds[-1] = 0, n
    for k in range(1, p):  # every block non-empty: cut k in [bounds[k-1] + 1, n - (p - k)]
        bounds[k] = min(max(int(cuts[k - 1]), int(bounds[k - 1]) + 1), n - (p - k))
    starts = bounds[:-1].copy()
    counts = np.diff(bounds)
    block_weight = prefix[bounds[1:]] - prefix[bounds[:-1]]
    for a in (starts, counts, block_weight):
        a.setflags(write=False)
    return Decomposition(starts=starts, counts=counts, block_weight=block_weight)


def cell_weights(grid, kind: str = "patches") -> np.ndarray:
    """(n_land,) cost weight per land cell of ``grid`` for ``[decomposition] weight = kind``:
    'uniform' (1 each) or 'patches' (estimated vegetated patches, :func:`engine.grid.estimated_patches`)."""
    if kind == "uniform":
        return np.ones(grid.n_land, dtype=np.float64)
    if kind == "patches":
        from engine.grid import estimated_patches

        return estimated_patches(grid).astype(np.float64)
    raise ValueError(f"[decomposition] weight must be one of {list(WEIGHT_KINDS)}, got {kind!r}")
