"""The filter: DART-equivalent serial EAKF / perturbed-obs EnKF, distributed over MPI ranks.

State read and written: the local block of the prior ensemble ``X[element, member]`` (member axis
last, float64) of each rank, the adaptive-inflation fields of that block (:class:`AdaptiveInflation`,
mean and sd per element; the caller checkpoints them), and a replicated set of observations (values
``y``, error variances ``r``, locations, a sparse linear forward operator ``H`` as CSR arrays over
global element numbers). Returns the posterior block, one DART QC code per observation, updated
inflation fields and counts. The maths is in ``kernels.filter``; this module orders the observations,
applies QC, inflation and bounds, and moves data between ranks (only through engine.comm).

Standalone use (one process, DART/DAPPER layout ``E[member, element]``)::

    E_post, qc = serial_assimilate(E, y, r, (indptr, indices, weights), state_loc=..., obs_loc=...,
                                   cutoff=0.1, geometry="periodic1d")

Algorithm (DART's sequential filter, Anderson 2001, 2003; Anderson & Collins 2007)
----------------------------------------------------------------------------------
1. Prior inflation of every element (fixed factor, or the damped adaptive field of Anderson 2009),
   limited for bounded elements so that no member crosses the bound (see Bounds).
2. Observation priors ``Y = H X`` for each observation by the rank owning its first state element
   (rows of H must stay inside one rank's block, e.g. patches of one grid cell).
3. QC, once, on these initial priors as DART does before its loop: 6 for values that are NaN, a fill
   value, outside ``obs_range`` or with a non-finite / negative error variance (DART: incoming QC
   rejected); 4 for a failed forward operator (empty row, element out of range, non-finite H x) or
   a location outside the domain (DART's answer for observations outside the grid, DART #675);
   1 for evaluate-only; 7 when |y - mean| > outlier_threshold * sqrt(var + r) (DART default 3;
   <= 0 disables). QC 0 observations are assimilated; the rest are left alone.
4. The QC-0 observations are assimilated one at a time in their global order (the input order).
   For observation k: increments ``dy`` from its current prior ensemble (``obs_increment_eakf`` or
   ``obs_increment_enkf``), then every state element and every not-yet-assimilated observation prior
   (DART's extended state) within 2*cutoff gets ``x += rho * cov(x, y_k)/var(y_k) * dy`` with
   Gaspari-Cohn rho (``cutoff`` is its half-width; cutoff=None: no localization, rho = 1;
   cutoff=0: column-only, rho = 1 at distance 0). Adaptive inflation fields are updated for each
   element touched (DART inf_flavor 2). H(x) is not recomputed inside the loop.
5. Optional RTPS (Whitaker & Hamill 2012) per element, then the lower bounds.

Distribution (rank count never changes a bit of the result)
-----------------------------------------------------------
Each rank holds a contiguous block of the global element order and owns the observations whose
first H element is in its block. Setup: every rank runs the same QC on replicated inputs, an
allreduce(max) merges the owner-side QC codes, and each rank finds, with a uniform-bin spatial
index (sorted 1-D bins on the circle, a lat/lon bin grid of bin size >= 2*cutoff on the sphere),
which foreign observations touch its elements or its pending observation priors; one allgather of
those (observation, rank) pairs tells each owner where to send what.

Loop: each rank works through *its* list (owned observations plus the foreign ones it needs) in
global order. An owned observation's record (index, value, variance, prior ensemble, increments:
3 + 2N doubles) is sent point-to-point to each rank in its support as soon as it is computed
(a run of consecutive records goes as one message per destination); a foreign one waits for the
owner's record. While it waits, the rank goes on with later items that do not depend on it: each
item waits only for the last earlier item touching each element of its support (local elements
and pending priors within 2*cutoff, and its own prior), so items that go ahead commute exactly
with those that wait. Every element thus sees the same updates in the same (global) order,
computed by the same kernel from the same bits, whatever the decomposition: bit-identical results
for any rank count. There is no broadcast per observation: with column-only localization nothing
is sent at all; with a cutoff only ranks within 2*cutoff take part. No deadlock: every computed
record is already sent when a rank blocks, so the lowest unprocessed observation can always be
processed by its owner.

Cost per cycle: compute O(sum_k n_k * N) for observations k with n_k elements (and pending
observation priors) within 2*cutoff, split over the ranks holding them; index queries O(bins +
candidates) per observation, once more on ranks that talk (for the dependency graph, whose size
is at most the sum of the support sizes); O(list length) flag checks per pass (one pass per batch
of arriving records); communication O(N) doubles per (observation, foreign rank in its support);
setup one allreduce of Ny integers, one allgather of the need pairs, O(Ny) location checks.

Limit: the serial algorithm is itself a chain when observations are ordered along space with
overlapping supports (observation k's prior depends on k-1's update), so a block boundary crossed
by that chain serialises the ranks on either side. Orders that interleave space let ranks work at
the same time: randomly ordered sequences, or :func:`tiled_order` (tiles >= 4*cutoff in a
checkerboard of colours), which the land driver can apply since any fixed order is DART-valid.
No rank count changes the answer, only the waiting.

Bounds (LAI, leaf C, leaf N >= 0; DART issues #681, #734, #749, PR #240)
-----------------------------------------------------------------------
Optional per-element lower bounds. Inflation is limited per element so that the lowest member stays
on or above the bound (``bounded_inflation_factor``: never deflates). After the analysis (and after
RTPS) an element with a member below its bound has its anomalies contracted about the unchanged mean
until the lowest member sits on the bound (``enforce_lower_bound``); if the mean itself is below the
bound every member is set to the bound. So no NaN, no crash, the mean is kept whenever it is
feasible, and the spread only ever shrinks (none is invented). Zero-spread priors (e.g. every member
at LAI = 0 while the observation says something grows) get zero increments (s2 = 0): the filter
cannot create spread; the count of such observations is reported (``zero_spread_obs``) so the model
side can re-seed growth, and elements are never divided by a zero variance. Counts of contracted and
collapsed elements are reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from engine import comm
from kernels.filter import serial as S

QC_ASSIMILATED = 0
QC_EVALUATED = 1
QC_PRIOR_FOP_FAILED = 4
QC_INCOMING_REJECTED = 6
QC_OUTLIER = 7
QC_MEANING = {
    0: "assimilated", 1: "evaluated only", 2: "assimilated, posterior forward operator failed",
    3: "evaluated only, posterior forward operator failed", 4: "prior forward operator failed",
    5: "not used (not selected)", 6: "rejected: bad incoming value or error variance",
    7: "rejected: outlier threshold test", 8: "vertical conversion failed",
}
DART_MISSING = -888888.0  # DART's missing_r8
NC_FILL_DOUBLE = 9.969209968386869e36  # netCDF default _FillValue for doubles
GEOMETRIES = ("periodic1d", "sphere")
KINDS = ("eakf", "enkf")
_TAG = 4242


@dataclass
class AdaptiveInflation:
    """Spatially varying adaptive prior inflation (Anderson 2009; DART inf_flavor 2) of one block.

    mean, sd: one value per local state element (checkpoint them between cycles). damping: DART's
    inf_damping (1 = none); lower/upper: bounds on the mean (DART inf_lower_bound/inf_upper_bound);
    sd_lower: inf_sd_lower_bound (equal to the initial sd: the sd stays fixed).
    """

    mean: np.ndarray
    sd: np.ndarray
    damping: float = 0.9
    lower: float = 1.0
    upper: float = 1.0e6
    sd_lower: float = 0.6

    @classmethod
    def initial(cls, n: int, mean: float = 1.0, sd: float = 0.6, **kw) -> "AdaptiveInflation":
        kw.setdefault("sd_lower", sd)
        return cls(np.full(n, float(mean)), np.full(n, float(sd)), **kw)

    def copy(self) -> "AdaptiveInflation":
        return AdaptiveInflation(self.mean.copy(), self.sd.copy(), self.damping, self.lower, self.upper,
                                 self.sd_lower)


@dataclass
class FilterResult:
    """What the filter returns on each rank: the posterior block X[element, member], the global QC
    codes (identical on every rank), the updated inflation fields of the block (or None), counts
    (global sums) and, for the observations this rank owns, prior and posterior H(x) mean and spread
    (DART's obs_seq.final copies; NaN where the forward operator failed)."""

    X: np.ndarray
    qc: np.ndarray
    inflation: AdaptiveInflation | None
    counts: dict = field(default_factory=dict)
    obs_index: np.ndarray | None = None  # global numbers of the observations this rank owns
    obs_prior_mean: np.ndarray | None = None  # their H(x) mean and spread (N - 1) before the analysis
    obs_prior_spread: np.ndarray | None = None
    obs_post_mean: np.ndarray | None = None  # and H(x) of the posterior state (computed afterwards)
    obs_post_spread: np.ndarray | None = None


class _SerialComm:
    """This process alone (the standalone API, even under mpiexec)."""

    @staticmethod
    def rank():
        return 0

    @staticmethod
    def size():
        return 1

    @staticmethod
    def allreduce(value, op="sum"):
        return value

    @staticmethod
    def allgather_rows(arr):
        return arr

    @staticmethod
    def any_rank(flag):
        return bool(flag)


class _WorldComm:
    """All ranks, through engine.comm (and its proposed point-to-point additions)."""

    @staticmethod
    def rank():
        return comm.rank()

    @staticmethod
    def size():
        return comm.size()

    @staticmethod
    def allreduce(value, op="sum"):
        return comm.allreduce(value, op)

    @staticmethod
    def allgather_rows(arr):
        return comm.gather_array(arr, allgather=True)

    @staticmethod
    def any_rank(flag):
        return comm.any_rank(flag)


# --------------------------------------------------------------------------- input checking
def _locations(loc, n, geometry, what):
    """Locations as float64 (n, 5): periodic1d -> (x, 0, 0, 0, 0); sphere degrees -> (lat, lon)
    radians and the unit vector (kernels.filter.serial.unit_vectors)."""
    a = np.asarray(loc, dtype=np.float64)
    if geometry == "periodic1d":
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.shape != (n,):
            raise ValueError(f"{what}: periodic1d locations must have shape ({n},), got {a.shape}")
        out = np.zeros((n, 5))
        out[:, 0] = a
        return out
    if a.shape != (n, 2):
        raise ValueError(f"{what}: sphere locations must be (lat, lon) degrees of shape ({n}, 2), got {a.shape}")
    out = np.zeros((n, 5))
    out[:, 0] = np.deg2rad(a[:, 0])
    out[:, 1] = np.deg2rad(np.mod(a[:, 1], 360.0))
    out[:, 1] = np.where(out[:, 1] >= 2 * np.pi, 0.0, out[:, 1])
    S.unit_vectors(out)
    return out


def _valid_locations(a_deg_or_x, geometry):
    a = np.asarray(a_deg_or_x, dtype=np.float64)
    if geometry == "periodic1d":
        a = a.reshape(a.shape[0], -1)[:, 0]
        return np.isfinite(a) & (a >= 0.0) & (a < 1.0)
    return np.isfinite(a).all(axis=1) & (np.abs(a[:, 0]) <= 90.0)


def _bins_for(geometry, cutoff, n):
    """Bin grid (nb1, nb2) with bins at least 2*cutoff wide (finer grids for column-only)."""
    if geometry == "periodic1d":
        if cutoff is None:
            return 1, 1
        if cutoff > 0:
            nb = int(1.0 / (2.0 * cutoff))
        else:
            nb = n
        return max(1, min(nb, max(4 * n, 16), 1 << 22)), 1
    if cutoff is None:
        return 1, 1
    if cutoff > 0:
        nlat = int(math.pi / (2.0 * cutoff))
    else:
        nlat = int(math.sqrt(max(n, 1) / 2.0)) + 1
    nlat = max(1, min(nlat, 720))
    return nlat, 2 * nlat


def _check_h(H, ny, nx):
    try:
        indptr, indices, weights = (np.asarray(a) for a in H)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"H: expected CSR arrays (indptr, indices, weights), got {type(H).__name__}") from exc
    if indptr.shape != (ny + 1,) or indptr.dtype.kind not in "iu":
        raise ValueError(f"H: indptr must be integer of shape ({ny + 1},), got {indptr.dtype} {indptr.shape}")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.shape[0]:
        raise ValueError("H: indptr must start at 0, not decrease and end at len(indices)")
    if indices.ndim != 1 or indices.dtype.kind not in "iu" or weights.shape != indices.shape:
        raise ValueError(f"H: indices (integer) and weights must be 1-D of equal length, got "
                         f"{indices.dtype} {indices.shape} and {weights.shape}")
    return (indptr.astype(np.int64), indices.astype(np.int64), weights.astype(np.float64))


# --------------------------------------------------------------------------- the distributed driver
def assimilate_block(X, block_starts, block_counts, state_loc, y, r, H, obs_loc, *, cutoff, geometry,
                     kind="eakf", inflation=1.0, seed=0, outlier_threshold=3.0,
                     obs_range=(-np.inf, np.inf), fill_values=(DART_MISSING, NC_FILL_DOUBLE),
                     evaluate_only=None, lower_bounds=None, rtps=0.0, _serial=False) -> FilterResult:
    """Assimilate one cycle of observations into this rank's block (collective over all ranks).

    X: (n_local, N) prior block, member axis last, float64 (not modified; a copy is returned).
    block_starts, block_counts: (nranks,) first global element and element count of every rank's
    block (contiguous, in rank order, covering 0..Nx-1). state_loc: this block's locations,
    (n_local,) in [0, 1) for "periodic1d" or (n_local, 2) (lat, lon) degrees for "sphere".
    y, r: (Ny,) observed values and error variances (obs units, units^2), the same on all ranks;
    H = (indptr, indices, weights): CSR rows over global element numbers; obs_loc like state_loc
    for all Ny observations. cutoff: Gaspari-Cohn half-width (unit-circle units, or radians),
    None for no localization, 0 for column-only. kind: "eakf" or "enkf" (perturbed observations
    keyed by (seed, observation, member)). inflation: a fixed variance factor or an
    AdaptiveInflation for this block (its fields are not modified; the updated copy is returned).
    lower_bounds: (n_local,) lower bound per element (NaN or -inf: none). rtps: relaxation to prior
    spread alpha (0 = off). Returns a FilterResult.
    """
    cx = _SerialComm if _serial else _WorldComm
    me, nranks = cx.rank(), cx.size()
    err = None
    try:  # local checks first, then agree on them: a bad input on one rank stops all, none hangs
        if geometry not in GEOMETRIES:
            raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if cutoff is not None and not (np.isfinite(cutoff) and cutoff >= 0):
            raise ValueError(f"cutoff must be None or a finite number >= 0, got {cutoff!r}")
        X = np.array(X, dtype=np.float64, order="C", copy=True)
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(f"X: expected (n_local, N >= 2) member-last block, got shape {X.shape}")
        nloc, N = X.shape
        starts = np.asarray(block_starts, dtype=np.int64).reshape(-1)
        counts = np.asarray(block_counts, dtype=np.int64).reshape(-1)
        if starts.shape != (nranks,) or counts.shape != (nranks,):
            raise ValueError(f"block_starts/block_counts need {nranks} entries, got {starts.shape}, {counts.shape}")
        if starts[0] != 0 or np.any(starts[1:] != starts[:-1] + counts[:-1]) or np.any(counts < 0):
            raise ValueError("block_starts/block_counts must describe contiguous blocks in rank order from 0")
        if counts[me] != nloc:
            raise ValueError(f"X has {nloc} rows but block_counts[{me}] = {counts[me]}")
        nx_global = int(starts[-1] + counts[-1])
        first = int(starts[me])
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        ny = y.shape[0]
        r = np.asarray(r, dtype=np.float64).reshape(-1)
        if r.shape != (ny,):
            raise ValueError(f"r: expected shape ({ny},) like y, got {r.shape}")
        indptr, indices, weights = _check_h(H, ny, nx_global)
        xloc = _locations(state_loc, nloc, geometry, "state_loc")
        if not _valid_locations(np.asarray(state_loc, dtype=np.float64).reshape(nloc, -1), geometry).all():
            raise ValueError(f"state_loc: locations outside the {geometry} domain or not finite")
        obs_loc_in = np.asarray(obs_loc, dtype=np.float64)
        if obs_loc_in.shape[0] != ny:
            raise ValueError(f"obs_loc: expected {ny} locations, got shape {obs_loc_in.shape}")
        loc_ok = _valid_locations(obs_loc_in.reshape(ny, -1), geometry)
        oloc = _locations(np.where(loc_ok[:, None], obs_loc_in.reshape(ny, -1), 0.0).reshape(obs_loc_in.shape),
                          ny, geometry, "obs_loc")
        lb = None
        if lower_bounds is not None:
            lb = np.asarray(lower_bounds, dtype=np.float64).reshape(-1)
            if lb.shape != (nloc,):
                raise ValueError(f"lower_bounds: expected ({nloc},), got {lb.shape}")
            lb = np.where(np.isnan(lb), -np.inf, lb)
        if not (0.0 <= rtps <= 1.0):
            raise ValueError(f"rtps must be in [0, 1], got {rtps}")

        # ---- QC that every rank can do on the replicated inputs
        qc = np.zeros(ny, dtype=np.int64)
        lo, hi = obs_range
        bad_value = ~np.isfinite(y) | (y < lo) | (y > hi) | ~np.isfinite(r) | (r < 0)
        for fv in fill_values:
            bad_value |= y == fv
        nrow = np.diff(indptr)
        row_first = np.where(nrow > 0, indices[np.minimum(indptr[:-1], max(indices.shape[0] - 1, 0))], -1)
        fop_bad = (nrow == 0) | ~loc_ok | (row_first < 0) | (row_first >= nx_global)
        if indices.size:
            out_of_range = (indices < 0) | (indices >= nx_global)
            fop_bad |= np.add.reduceat(out_of_range.astype(np.int64), np.minimum(indptr[:-1], indices.size - 1)) \
                * (nrow > 0) > 0
        owner = np.full(ny, -1, dtype=np.int64)
        ok_rows = ~fop_bad
        owner[ok_rows] = np.searchsorted(starts, row_first[ok_rows], side="right") - 1
        if indices.size and ok_rows.any():
            row_of = np.repeat(np.arange(ny), nrow)
            own_of_entry = np.searchsorted(starts, np.clip(indices, 0, nx_global - 1), side="right") - 1
            spans = ok_rows[row_of] & (own_of_entry != owner[row_of])
            if spans.any():
                k = int(row_of[np.argmax(spans)])
                raise ValueError(f"H: row {k} uses elements of more than one rank's block; rows must stay "
                                 "within one block (e.g. the patches of one grid cell)")
        qc[fop_bad] = QC_PRIOR_FOP_FAILED
        qc[bad_value & ~fop_bad] = QC_INCOMING_REJECTED
        if evaluate_only is not None:
            ev = np.asarray(evaluate_only, dtype=bool).reshape(-1)
            if ev.shape != (ny,):
                raise ValueError(f"evaluate_only: expected ({ny},) booleans, got {ev.shape}")
            qc[(qc == 0) & ev] = QC_EVALUATED

        # ---- prior inflation of the block (bounded elements limited), then bounds on the prior
        adaptive = isinstance(inflation, AdaptiveInflation)
        if adaptive:
            inf = inflation.copy()
            if inf.mean.shape != (nloc,) or inf.sd.shape != (nloc,):
                raise ValueError(f"inflation: mean and sd must have shape ({nloc},), "
                                 f"got {inf.mean.shape}, {inf.sd.shape}")
            if inf.damping != 1.0:
                inf.mean = 1.0 + inf.damping * (inf.mean - 1.0)
            factors = inf.mean.copy()
        else:
            inf = None
            fixed = float(inflation)
            if not (np.isfinite(fixed) and fixed > 0):
                raise ValueError(f"inflation must be a positive number or an AdaptiveInflation, got {inflation!r}")
            factors = np.full(nloc, fixed)
        lb_k = lb if lb is not None else np.full(nloc, -np.inf)
        inf_base = np.empty(nloc)
        n_prior_fix = S.inflate_block(X, factors, lb_k, inf_base)
        prior_sd = np.sqrt(S.row_mean_var(X)[1]) if rtps > 0 else np.empty(0)

        # ---- observation priors of the owned observations, owner-side QC
        own_rows = np.flatnonzero(owner == me)
        Yp = np.empty((own_rows.size, N))
        S.csr_apply(indptr, indices, weights, own_rows, X, first, Yp)
        qc_own = qc[own_rows].copy()
        finite = np.isfinite(Yp).all(axis=1)
        qc_own[(qc_own <= QC_EVALUATED) & ~finite] = QC_PRIOR_FOP_FAILED
        ymean, yvar = S.row_mean_var(Yp)
        prior_mean, prior_var = ymean.copy(), yvar.copy()
        if outlier_threshold is not None and outlier_threshold > 0:
            cand = qc_own <= QC_EVALUATED
            dist = np.abs(y[own_rows] - ymean)
            with np.errstate(invalid="ignore"):
                outl = cand & (dist > outlier_threshold * np.sqrt(yvar + r[own_rows]))
            qc_own[outl] = QC_OUTLIER
        zero_spread = int(np.sum((qc_own == 0) & (np.ptp(Yp, axis=1) == 0))) if Yp.size else 0
    except (ValueError, TypeError) as exc:
        err = exc
    if nranks > 1 and cx.any_rank(err is not None) and err is None:
        raise ValueError("assimilate_block: invalid input on another rank (its own error says which)")
    if err is not None:
        raise err
    merged = np.full(ny, -1, dtype=np.int64)
    merged[own_rows] = qc_own
    if me == 0:
        merged[owner < 0] = qc[owner < 0]
    qc = cx.allreduce(merged, "max") if nranks > 1 else merged
    active = qc == QC_ASSIMILATED

    # ---- spatial indexes of the block's elements and of its pending observation priors
    localize = cutoff is not None
    cut = float(cutoff) if localize else 0.0
    geom = S.GEOM_PERIODIC1D if geometry == "periodic1d" else S.GEOM_SPHERE
    nb1, nb2 = _bins_for(geometry, cutoff, max(nloc, own_rows.size))
    bins = np.empty(nb1 * nb2, dtype=np.int64)
    xptr, xmem = S.build_bins(geom, xloc, nb1, nb2)
    yptr, ymem = S.build_bins(geom, np.ascontiguousarray(oloc[own_rows]), nb1, nb2)
    own_rows, Yp = own_rows[ymem], Yp[ymem]  # priors in bin order: neighbours sit together in memory
    prior_mean, prior_var = prior_mean[ymem], prior_var[ymem]
    ymem = np.arange(own_rows.size, dtype=np.int64)
    yloc = np.ascontiguousarray(oloc[own_rows])
    yp_active = active[own_rows]

    # ---- who needs which observation: one allgather of (observation, rank) pairs
    if nranks > 1:
        cands = np.flatnonzero(active & (owner != me))
        flags = np.zeros(cands.size, dtype=np.int64)
        S.needed_observations(cands, oloc, nloc, xloc, xptr, xmem, own_rows, yp_active, yloc, yptr, ymem,
                              geom, cut, localize, nb1, nb2, bins, flags)
        need = cands[flags > 0]
        pairs = np.stack([need, np.full(need.size, me, dtype=np.int64)], axis=1).astype(np.int64)
        allpairs = cx.allgather_rows(pairs)
    else:
        need = np.empty(0, dtype=np.int64)
        allpairs = np.empty((0, 2), dtype=np.int64)

    # ---- this rank's work list in global order
    owned_active = own_rows[yp_active]
    items = np.union1d(owned_active, need)
    T = items.size
    row_of_obs = np.full(ny, -1, dtype=np.int64)
    row_of_obs[own_rows] = np.arange(own_rows.size)
    item_row = np.where(owner[items] == me, row_of_obs[items], -1).astype(np.int64)
    item_yo = y[items].copy()
    item_r = r[items].copy()
    item_y = np.zeros((T, N))
    item_dy = np.zeros((T, N))
    if adaptive:
        inf_mean, inf_sd = inf.mean, inf.sd
        inf_lo, inf_hi, inf_sdlo = float(inf.lower), float(inf.upper), float(inf.sd_lower)
    else:
        inf_mean = inf_sd = np.empty(0)
        inf_lo = inf_hi = inf_sdlo = 0.0
    kcode = S.KIND_EAKF if kind == "eakf" else S.KIND_ENKF
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF

    proc_args = (items, item_row, item_yo, item_r, item_y, item_dy, oloc, X, xloc, xptr, xmem, Yp, own_rows,
                 yp_active, yloc, yptr, ymem, geom, cut, localize, nb1, nb2, kcode, np.uint64(seed), adaptive,
                 inf_mean, inf_sd, inf_base, inf_lo, inf_hi, inf_sdlo, bins)
    sent_records = sent_messages = ahead = 0
    talks = need.size > 0 or (allpairs.size > 0 and bool(np.any(owner[allpairs[:, 0]] == me)))
    if not talks:
        S.process_items(0, T, *proc_args)
    else:
        dep_args = (items, item_row, oloc, nloc, xloc, xptr, xmem, own_rows, yp_active, yloc, yptr, ymem, geom,
                    cut, localize, nb1, nb2, bins)
        sent_records, sent_messages, ahead = _distributed_loop(proc_args, dep_args, items, item_row, item_yo,
                                                               item_r, item_y, item_dy, owner, allpairs, me,
                                                               nranks, N)

    # ---- posterior: RTPS, bounds
    if rtps > 0:
        S.rtps_block(X, prior_sd, float(rtps))
    n_contract = n_collapse = 0
    if lb is not None:
        codes = S.enforce_block(X, lb_k)
        n_contract = int(np.sum(codes == 1))
        n_collapse = int(np.sum(codes == 2))
    local = np.array([zero_spread, n_contract, n_collapse, n_prior_fix, sent_records, sent_messages, ahead],
                     dtype=np.int64)
    tot = cx.allreduce(local, "sum") if nranks > 1 else local
    counts_out = {f"qc_{c}": int(np.sum(qc == c)) for c in np.unique(qc)}
    counts_out.update(zero_spread_obs=int(tot[0]), bound_contracted=int(tot[1]), bound_collapsed=int(tot[2]),
                      prior_bound_fixed=int(tot[3]), records_sent=int(tot[4]), messages_sent=int(tot[5]),
                      processed_ahead=int(tot[6]))
    if adaptive:
        inf.mean, inf.sd = inf_mean, inf_sd
    order = np.argsort(own_rows)
    obs_index = own_rows[order]
    Ypost = np.empty((obs_index.size, N))
    S.csr_apply(indptr, indices, weights, obs_index, X, first, Ypost)
    post_mean, post_var = S.row_mean_var(Ypost)
    return FilterResult(X=X, qc=qc.astype(np.int32), inflation=inf, counts=counts_out, obs_index=obs_index,
                        obs_prior_mean=prior_mean[order], obs_prior_spread=np.sqrt(prior_var[order]),
                        obs_post_mean=post_mean, obs_post_spread=np.sqrt(post_var))


def _distributed_loop(proc_args, dep_args, items, item_row, item_yo, item_r, item_y, item_dy, owner, allpairs, me,
                      nranks, N):
    """Walk the work list; send owned records to the ranks that need them, receive foreign ones.

    The dependency graph of the work list (kernels.filter.serial.build_dependencies: each item waits
    for the last earlier item touching each element of its support) is built once. A pass
    (walk_items) processes every item whose data are here and whose predecessors are done; it
    pauses after each run of records for other ranks, which go out at once (one message per
    destination), and resumes. When a pass ends with items still waiting, the rank blocks until a
    record arrives, takes all that have arrived, and starts a new pass from the first waiting item.
    A rank never waits on a record that is not already on its way.
    """

    T = items.size
    mine = allpairs[owner[allpairs[:, 0]] == me] if allpairs.size else np.empty((0, 2), dtype=np.int64)
    sendable = np.zeros(T, dtype=bool)
    dests_of: dict[int, list[int]] = {}
    if mine.size:
        tpos = np.searchsorted(items, mine[:, 0])
        sendable[tpos] = True
        for t, d in zip(tpos.tolist(), mine[:, 1].tolist()):
            dests_of.setdefault(t, []).append(d)
    available = item_row >= 0
    done = np.zeros(T, dtype=bool)
    npred, succ_ptr, succ = S.build_dependencies(*dep_args)
    out_sent = np.empty(T, dtype=np.int64)
    width = 3 + 2 * N
    requests, keep = [], []
    sent_records = sent_messages = ahead = 0
    head, pos, status = 0, 0, 0
    while head < T:
        if status != 1:  # a new pass from the head
            pos = head
        head, pos, nsent, n_ahead, status = S.walk_items(head, pos, available, done, npred, succ_ptr, succ,
                                                         sendable, out_sent, *proc_args)
        ahead += n_ahead
        if nsent:
            per_dest: dict[int, list[int]] = {}
            for t in out_sent[:nsent].tolist():
                for d in dests_of[t]:
                    per_dest.setdefault(d, []).append(t)
            for d, ts in per_dest.items():
                idx = np.asarray(ts, dtype=np.int64)
                msg = np.empty((idx.size, width))
                msg[:, 0] = items[idx]
                msg[:, 1] = item_yo[idx]
                msg[:, 2] = item_r[idx]
                msg[:, 3:3 + N] = item_y[idx]
                msg[:, 3 + N:] = item_dy[idx]
                keep.append(msg)
                requests.append(comm.isend_array(msg.reshape(-1), d, _TAG))
                sent_records += idx.size
                sent_messages += 1
        if head < T and status != 1:  # wait for one record, take all that are already here
            while True:
                msg = comm.recv_array(None, _TAG).reshape(-1, width)
                tpos = np.searchsorted(items, msg[:, 0].astype(np.int64))
                if np.any(tpos >= T) or np.any(items[np.minimum(tpos, T - 1)] != msg[:, 0].astype(np.int64)) \
                        or np.any(available[tpos]):
                    raise RuntimeError(f"filter: rank {me} received records it did not expect: {msg[:, 0]}")
                item_y[tpos] = msg[:, 3:3 + N]
                item_dy[tpos] = msg[:, 3 + N:]
                available[tpos] = True
                if not comm.message_waiting(None, _TAG):
                    break
    comm.wait_all(requests)
    return sent_records, sent_messages, ahead


# --------------------------------------------------------------------------- the standalone API
def serial_assimilate(E, y, r, H, *, state_loc, obs_loc, cutoff, geometry, kind="eakf", inflation=1.0,
                      seed=0, **options):
    """Serial EAKF/EnKF of one ensemble on this process (DART's algorithm; no MPI).

    E: (N members, Nx) float64 prior ensemble (DART/DAPPER layout; transposed to member-last
    inside). y, r: (Ny,) observed values and error variances. H: CSR (indptr, indices, weights)
    over the Nx state elements (an identity observation is one weight 1.0). state_loc, obs_loc:
    (Nx,), (Ny,) in [0, 1) for geometry "periodic1d", or (., 2) (lat, lon) degrees for "sphere".
    cutoff: Gaspari-Cohn half-width (unit-circle units or radians on the unit sphere as DART's
    threed_sphere), None for none. kind: "eakf" or "enkf". inflation: fixed prior variance factor or
    an AdaptiveInflation (then use :func:`serial_assimilate_full` to get its update back).
    Options: outlier_threshold (3), obs_range, fill_values, evaluate_only, lower_bounds, rtps.
    Returns (E_post (N, Nx), qc (Ny,) DART QC codes).
    """
    res = serial_assimilate_full(E, y, r, H, state_loc=state_loc, obs_loc=obs_loc, cutoff=cutoff,
                                 geometry=geometry, kind=kind, inflation=inflation, seed=seed, **options)
    return res.X.T.copy(), res.qc


def serial_assimilate_full(E, y, r, H, *, state_loc, obs_loc, cutoff, geometry, kind="eakf", inflation=1.0,
                           seed=0, **options) -> FilterResult:
    """Like :func:`serial_assimilate` but returns the FilterResult (X member-last, inflation, counts)."""
    E = np.asarray(E, dtype=np.float64)
    if E.ndim != 2:
        raise ValueError(f"E: expected (N members, Nx) array, got shape {E.shape}")
    if "lower_bounds" in options and options["lower_bounds"] is not None:
        options["lower_bounds"] = np.asarray(options["lower_bounds"], dtype=np.float64)
    nx = E.shape[1]
    return assimilate_block(E.T, [0], [nx], state_loc, y, r, H, obs_loc, cutoff=cutoff, geometry=geometry,
                            kind=kind, inflation=inflation, seed=seed, _serial=True, **options)


def tiled_order(obs_loc, cutoff, geometry):
    """A decomposition-independent observation order that lets ranks work at the same time.

    The serial filter's answer depends on the order of the observations (as DART's does), never on
    the rank count; but observations in spatial order form one dependency chain across the domain.
    This order groups observations into tiles at least 4*cutoff wide (two observations whose
    supports of radius 2*cutoff can share an element lie in the same or in adjacent tiles; on the
    sphere longitude tiles are widened by 1/cos(latitude), a heuristic near the poles) and
    colours the tiles so that adjacent tiles differ: all tiles of the first colour, then the second,
    ... Within a colour, tiles are independent, so ranks owning different tiles proceed in parallel
    and exchange records only between colours. Ties keep the input order. Returns a permutation
    (apply it to y, r, H's rows and obs_loc). obs_loc and cutoff as for serial_assimilate.
    """
    if geometry not in GEOMETRIES:
        raise ValueError(f"geometry must be one of {GEOMETRIES}, got {geometry!r}")
    a = np.asarray(obs_loc, dtype=np.float64)
    n = a.shape[0]
    if cutoff is None or cutoff <= 0 or n == 0:
        return np.arange(n)  # no localization: one chain anyway; column-only: nothing to interleave
    w = 4.0 * float(cutoff)
    if geometry == "periodic1d":
        x = np.mod(a.reshape(n, -1)[:, 0], 1.0)
        nt = max(1, int(1.0 / w))
        tile = np.minimum((x * nt).astype(np.int64), nt - 1)
        colour = tile % 2
        if nt % 2 == 1 and nt > 1:
            colour[tile == nt - 1] = 2  # odd ring: the last tile touches tile 0
        return np.lexsort((np.arange(n), tile, colour))
    lat = np.radians(np.clip(a[:, 0], -90, 90))
    lon = np.radians(np.mod(a[:, 1], 360.0))
    nb = max(1, int(np.pi / w))
    band = np.minimum(((lat + np.pi / 2) / np.pi * nb).astype(np.int64), nb - 1)
    lat_far = np.maximum(np.abs(-np.pi / 2 + band * np.pi / nb), np.abs(-np.pi / 2 + (band + 1) * np.pi / nb))
    cosf = np.cos(np.minimum(lat_far + w, np.pi / 2))
    nl = np.where(cosf * 2 * np.pi / w >= 2, np.floor(cosf * 2 * np.pi / w), 1).astype(np.int64)
    lt = np.minimum((lon / (2 * np.pi) * nl).astype(np.int64), nl - 1)
    lcol = lt % 2
    lcol[(nl % 2 == 1) & (nl > 1) & (lt == nl - 1)] = 2
    colour = (band % 2) * 3 + lcol
    return np.lexsort((np.arange(n), lt, band, colour))


def identity_operator(obs_elements, nx=None):
    """CSR arrays (indptr, indices, weights) observing the given state elements one by one."""
    idx = np.asarray(obs_elements, dtype=np.int64).reshape(-1)
    return np.arange(idx.size + 1, dtype=np.int64), idx.copy(), np.ones(idx.size)
