"""The distributed filter gives the serial result bit for bit on any number of ranks (run under mpiexec).

Every rank builds the same global problem, computes the one-process result itself
(serial_assimilate_full), then runs the distributed driver on its block and compares with
np.array_equal: no tolerance, because rank count must not change a bit.
"""

import numpy as np
import pytest

import filter_reference as ref
from engine import comm
from engine.filter import AdaptiveInflation, assimilate_block, identity_operator, serial_assimilate_full


def cell_blocks(ncell, per_cell, nranks, seed):
    """Uneven contiguous blocks cut at cell boundaries: (starts, counts) in elements."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, nranks)
    cuts = np.round(np.cumsum(w) / w.sum() * ncell).astype(int)
    cuts[-1] = ncell
    cell_counts = np.diff(np.r_[0, cuts])
    counts = cell_counts * per_cell
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    return starts.astype(np.int64), counts.astype(np.int64)


def problem(geometry, ncell, per_cell, ny, N, seed, order="shuffled"):
    rng = np.random.default_rng(seed)
    if geometry == "periodic1d":
        cell_loc = np.sort(rng.random(ncell))
        state_loc = np.repeat(cell_loc, per_cell)
    else:
        cell_loc = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, ncell))), rng.uniform(0, 360, ncell)]
        state_loc = np.repeat(cell_loc, per_cell, axis=0)
    cells = rng.choice(ncell, ny, replace=ny > ncell)
    if order == "spatial":
        cells = np.sort(cells)
    indptr, ind, w = [0], [], []
    for c in cells:  # an "LAI" observation: weighted sum of the first two variables of one cell
        npart = min(2, per_cell)
        ind += [c * per_cell + q for q in range(npart)]
        w += list(rng.uniform(0.3, 0.7, npart))
        indptr.append(len(ind))
    H = (np.array(indptr), np.array(ind), np.array(w))
    E = rng.gamma(3.0, 0.5, size=(N, ncell * per_cell))
    y = rng.gamma(3.0, 0.5, size=ny)
    r = rng.uniform(0.05, 0.3, ny)
    return E, y, r, H, state_loc, cell_loc[cells]


def run_both(geometry, cutoff, *, ncell=120, per_cell=3, ny=100, N=16, seed=0, order="shuffled", **kw):
    E, y, r, H, sloc, oloc = problem(geometry, ncell, per_cell, ny, N, seed, order)
    nx = E.shape[1]
    serial = serial_assimilate_full(E, y, r, H, state_loc=sloc, obs_loc=oloc, cutoff=cutoff, geometry=geometry, **kw)
    starts, counts = cell_blocks(ncell, per_cell, comm.size(), seed + 1)
    me = comm.rank()
    a, b = starts[me], starts[me] + counts[me]
    loc_kw = dict(kw)
    if isinstance(kw.get("inflation"), AdaptiveInflation):
        inf = kw["inflation"]
        loc_kw["inflation"] = AdaptiveInflation(inf.mean[a:b].copy(), inf.sd[a:b].copy(), inf.damping, inf.lower,
                                                inf.upper, inf.sd_lower)
    if kw.get("lower_bounds") is not None:
        loc_kw["lower_bounds"] = kw["lower_bounds"][a:b]
    dist = assimilate_block(np.ascontiguousarray(E[:, a:b].T), starts, counts, sloc[a:b], y, r, H, oloc,
                            cutoff=cutoff, geometry=geometry, **loc_kw)
    return serial, dist, (a, b), (E, y, r, H, sloc, oloc)


def assert_identical(serial, dist, block, prior=None):
    a, b = block
    if prior is not None:
        assert np.abs(serial.X - prior.T).max() > 0.01
    assert np.array_equal(dist.qc, serial.qc)
    assert np.array_equal(dist.X, serial.X[a:b]), f"rank {comm.rank()}: block differs from the serial result"
    if serial.inflation is not None:
        assert np.array_equal(dist.inflation.mean, serial.inflation.mean[a:b])
        assert np.array_equal(dist.inflation.sd, serial.inflation.sd[a:b])
    for name in ("obs_prior_mean", "obs_prior_spread", "obs_post_mean", "obs_post_spread"):
        # each rank reports the observations it owns; together they are the serial run's
        assert np.array_equal(getattr(dist, name), getattr(serial, name)[dist.obs_index], equal_nan=True)
    assert np.sum(serial.qc == 0) > 10  # the case really assimilates


@pytest.mark.mpi
@pytest.mark.parametrize("order", ["shuffled", "spatial"])
@pytest.mark.parametrize("kind", ["eakf", "enkf"])
def test_periodic_localized_bit_identical(order, kind):
    serial, dist, block, case = run_both("periodic1d", 0.03, order=order, kind=kind, seed=3, inflation=1.1)
    assert_identical(serial, dist, block, case[0])
    # support-limited communication: far fewer records than one per observation per other rank
    if comm.size() > 1:
        assert 0 < dist.counts["records_sent"] < np.sum(serial.qc == 0) * (comm.size() - 1)


@pytest.mark.mpi
def test_sphere_localized_adaptive_rtps_bounds_bit_identical():
    ncell, per_cell = 150, 3
    rng = np.random.default_rng(5)
    nx = ncell * per_cell
    inf = AdaptiveInflation(rng.uniform(1.0, 1.4, nx), np.full(nx, 0.6), damping=0.9, sd_lower=0.3)
    lb = np.tile([0.0, 0.0, np.nan], ncell)
    serial, dist, block, case = run_both("sphere", 0.25, ncell=ncell, per_cell=per_cell, ny=120, seed=5,
                                         inflation=inf, rtps=0.3, lower_bounds=lb)
    assert_identical(serial, dist, block)
    a, b = block
    assert np.all(dist.X[np.isfinite(lb[a:b])] >= 0)
    if comm.rank() == 0:  # and the serial path is DART's algorithm (NumPy reference, 1e-12 as the API test)
        E, y, r, H, sloc, oloc = case
        Er, qcr, im, isd = ref.reference_assimilate(
            E, y, r, H, state_loc=sloc, obs_loc=oloc, cutoff=0.25, geometry="sphere", rtps=0.3, lower_bounds=lb,
            adaptive=dict(mean=inf.mean, sd=inf.sd, damping=0.9, lower=1.0, upper=1e6, sd_lower=0.3))
        np.testing.assert_allclose(serial.X.T, Er, rtol=0, atol=1e-12)
        np.testing.assert_allclose(serial.inflation.mean, im, rtol=0, atol=1e-12)


@pytest.mark.mpi
def test_out_of_order_walk_is_exercised_and_identical():
    """A rank goes on past a foreign observation whose record is late, only where supports are disjoint.

    Observations in random order and a narrow cutoff: records from other ranks are often not there
    yet when a rank reaches them, and most later items do not touch their supports.
    """
    ahead = 0
    for attempt in range(3):  # whether a record is late depends on timing: a few tries make it certain
        serial, dist, block, case = run_both("periodic1d", 0.01, ncell=400, per_cell=1, ny=400, seed=13 + attempt)
        assert_identical(serial, dist, block, case[0])
        ahead = dist.counts["processed_ahead"]  # a global sum: the same on every rank, so all stop together
        if ahead > 0:
            break
    if comm.size() > 1:
        assert ahead > 0  # some items really went ahead of a waiting one


@pytest.mark.mpi
def test_no_localization_bit_identical():
    serial, dist, block, _ = run_both("periodic1d", None, ncell=60, ny=40, seed=7, inflation=1.05)
    assert_identical(serial, dist, block)


@pytest.mark.mpi
def test_column_only_needs_no_communication():
    serial, dist, block, _ = run_both("sphere", 0.0, ncell=100, ny=80, seed=9)
    assert_identical(serial, dist, block)
    assert dist.counts["records_sent"] == 0 and dist.counts["messages_sent"] == 0


@pytest.mark.mpi
def test_identity_observations_of_lorenz_like_state():
    """Identity observations of every element, ordered along the ring (the benchmark's layout)."""
    nx, N = 400, 20
    rng = np.random.default_rng(11)
    E = rng.normal(size=(N, nx))
    y = rng.normal(size=nx)
    r = np.ones(nx)
    loc = np.arange(nx) / nx
    H = identity_operator(np.arange(nx))
    serial = serial_assimilate_full(E, y, r, H, state_loc=loc, obs_loc=loc, cutoff=0.01, geometry="periodic1d")
    p = comm.size()
    counts = np.full(p, nx // p)
    counts[: nx % p] += 1
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    a, b = starts[comm.rank()], starts[comm.rank()] + counts[comm.rank()]
    dist = assimilate_block(np.ascontiguousarray(E[:, a:b].T), starts, counts, loc[a:b], y, r, H, loc,
                            cutoff=0.01, geometry="periodic1d")
    assert np.array_equal(dist.X, serial.X[a:b])


@pytest.mark.mpi
def test_bad_input_on_one_rank_raises_everywhere_without_hanging():
    nx, N = 40, 8
    p, me = comm.size(), comm.rank()
    counts = np.full(p, nx // p)
    counts[: nx % p] += 1
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    X = np.random.default_rng(0).normal(size=(counts[me], N))
    loc = (np.arange(nx) / nx)[starts[me]:starts[me] + counts[me]].copy()
    if me == p - 1:
        loc[0] = 1.5  # outside the periodic domain on the last rank only
    with pytest.raises(ValueError, match="state_loc" if me == p - 1 else "another rank"):
        assimilate_block(X, starts, counts, loc, np.zeros(3), np.ones(3), identity_operator([0, 5, 9]),
                         np.array([0.0, 0.125, 0.225]), cutoff=0.1, geometry="periodic1d")
