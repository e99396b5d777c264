"""engine.filter.serial_assimilate against the plain-NumPy DART reference, QC, inflation and bounds."""

import numpy as np
import pytest

import filter_reference as ref
from engine.filter import (AdaptiveInflation, identity_operator, serial_assimilate, serial_assimilate_full)

# The kernel and the reference sum in different orders: differences are a few ulps of O(1-10)
# values per observation; 1e-12 absolute (the figure) is still ~1000x that.
ATOL = 1e-12


def random_case(seed, geometry, N=14, nx=36, ny=22):
    rng = np.random.default_rng(seed)
    if geometry == "periodic1d":
        sloc = rng.random(nx)
        oloc = rng.random(ny)
    else:
        sloc = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, nx))), rng.uniform(0, 360, nx)]
        oloc = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, ny))), rng.uniform(-180, 360, ny)]
    indptr, ind, w = [0], [], []
    for _ in range(ny):
        m = int(rng.integers(1, 4))
        ind += list(rng.choice(nx, m, replace=False))
        w += list(rng.uniform(0.2, 1.0, m))
        indptr.append(len(ind))
    H = (np.array(indptr), np.array(ind), np.array(w))
    E = rng.normal(size=(N, nx)) @ np.diag(rng.uniform(0.5, 2, nx)) + 3.0
    y = rng.normal(size=ny) * 1.5 + 3.0 * np.add.reduceat(np.array(w), np.array(indptr[:-1]))
    r = rng.uniform(0.2, 2.0, ny)
    return E, y, r, H, sloc, oloc


CASES = [(g, c, k) for g, cuts in (("periodic1d", (None, 0.05, 0.2)), ("sphere", (None, 0.15, 0.6)))
         for c in cuts for k in ("eakf", "enkf")]


@pytest.mark.parametrize("geometry,cutoff,kind", CASES)
def test_matches_numpy_reference(geometry, cutoff, kind):
    for seed in range(3):
        E, y, r, H, sloc, oloc = random_case(100 * seed + len(geometry), geometry)
        kw = dict(state_loc=sloc, obs_loc=oloc, cutoff=cutoff, geometry=geometry, kind=kind, seed=seed,
                  inflation=1.05)
        E0 = E.copy()
        Ep, qc = serial_assimilate(E, y, r, H, **kw)
        Er, qcr, _, _ = ref.reference_assimilate(E, y, r, H, **kw)
        np.testing.assert_array_equal(E, E0)  # the input is not modified
        np.testing.assert_array_equal(qc, qcr)
        assert np.sum(qc == 0) >= 15  # the case really assimilates
        assert np.abs(Ep - E).max() > 0.05
        np.testing.assert_allclose(Ep, Er, rtol=0, atol=ATOL)


@pytest.mark.parametrize("geometry,cutoff", [("periodic1d", 0.15), ("sphere", 0.4), ("periodic1d", None)])
def test_adaptive_inflation_rtps_and_bounds_match_reference(geometry, cutoff):
    for seed in range(2):
        E, y, r, H, sloc, oloc = random_case(7 + seed, geometry)
        nx = E.shape[1]
        rng = np.random.default_rng(seed)
        ai = AdaptiveInflation(mean=rng.uniform(1.0, 1.6, nx), sd=rng.uniform(0.3, 0.8, nx), damping=0.9,
                               lower=1.0, upper=50.0, sd_lower=0.25)
        lb = np.where(rng.random(nx) < 0.5, 2.5, np.nan)  # half the elements bounded below (cuts members)
        kw = dict(state_loc=sloc, obs_loc=oloc, cutoff=cutoff, geometry=geometry, seed=seed, rtps=0.4,
                  lower_bounds=lb)
        res = serial_assimilate_full(E, y, r, H, inflation=ai, **kw)
        Er, qcr, im, isd = ref.reference_assimilate(
            E, y, r, H, adaptive=dict(mean=ai.mean, sd=ai.sd, damping=0.9, lower=1.0, upper=50.0, sd_lower=0.25), **kw)
        np.testing.assert_array_equal(res.qc, qcr)
        np.testing.assert_allclose(res.X.T, Er, rtol=0, atol=ATOL)
        np.testing.assert_allclose(res.inflation.mean, im, rtol=0, atol=ATOL)
        np.testing.assert_allclose(res.inflation.sd, isd, rtol=0, atol=ATOL)
        assert np.abs(res.inflation.mean - (1 + 0.9 * (ai.mean - 1))).max() > 1e-3  # it adapted
        assert res.counts["bound_contracted"] + res.counts["prior_bound_fixed"] > 0  # bounds were exercised
        bounded = ~np.isnan(lb)
        assert np.all(res.X[bounded] >= 2.5)


def test_qc_codes():
    E, y, r, H, sloc, oloc = random_case(3, "periodic1d", ny=10)
    indptr, indices, weights = (a.copy() for a in H)
    y, r, oloc = y.copy(), r.copy(), oloc.copy()
    y[0] = np.nan  # NaN value -> 6
    y[1] = -888888.0  # DART missing value -> 6
    y[2] = 1e3  # far outside the prior: outlier -> 7
    oloc[3] = 1.5  # outside the domain -> 4
    r[4] = -1.0  # impossible error variance -> 6
    y[5] = 2e4  # outside obs_range -> 6
    indices[indptr[6]] = 10_000  # forward operator references a missing element -> 4
    ev = np.zeros(10, dtype=bool)
    ev[7] = True  # evaluate only -> 1
    E2 = E.copy()
    E2[:, indices[indptr[8]]] = np.nan  # prior forward operator gives NaN -> 4
    kw = dict(state_loc=sloc, obs_loc=oloc, cutoff=0.2, geometry="periodic1d", obs_range=(-50.0, 1e4),
              evaluate_only=ev)
    res = serial_assimilate_full(E2, y, r, (indptr, indices, weights), **kw)
    assert res.qc.tolist() == [6, 6, 7, 4, 6, 6, 4, 1, 4, 0]
    assert res.counts["qc_0"] == 1 and res.counts["qc_6"] == 4
    Er, qcr, _, _ = ref.reference_assimilate(E2, y, r, (indptr, indices, weights), **kw)
    assert qcr.tolist() == res.qc.tolist()
    finite = np.isfinite(E2).all(axis=0)
    np.testing.assert_allclose(res.X.T[:, finite], Er[:, finite], rtol=0, atol=ATOL)
    # the outlier test is DART's |y - mean| > k sqrt(var + r) on the prior; k <= 0 or None turns it off
    res = serial_assimilate_full(E2, y, r, (indptr, indices, weights), outlier_threshold=None, **kw)
    assert res.qc[2] == 0


def test_column_only_localization_touches_only_colocated_elements():
    rng = np.random.default_rng(9)
    cells = np.repeat(np.arange(10) / 10.0, 3)  # 10 cells, 3 variables each, same location
    E = rng.normal(size=(20, 30)) + 1.0
    H = identity_operator([0, 9, 21])
    Ep, qc = serial_assimilate(E, np.array([0.0, 2.0, 1.0]), np.full(3, 0.5), H, state_loc=cells,
                               obs_loc=cells[[0, 9, 21]], cutoff=0.0, geometry="periodic1d", outlier_threshold=None)
    changed = np.flatnonzero(np.abs(Ep - E).max(axis=0) > 0)
    assert changed.tolist() == [0, 1, 2, 9, 10, 11, 21, 22, 23]


def test_zero_spread_lai_stays_zero_without_nan():
    """All members at LAI = 0 and an observation of growth (DART #734/#749): no change, no NaN."""
    E = np.zeros((20, 4))
    E[:, 2:] = np.random.default_rng(1).gamma(2.0, 0.5, size=(20, 2))  # two other cells with LAI > 0
    H = identity_operator([0, 1, 2])
    res = serial_assimilate_full(E, np.array([1.5, 0.0, 0.1]), np.array([0.1, 0.1, 0.05]), H,
                                 state_loc=np.array([0.1, 0.1, 0.5, 0.5]), obs_loc=np.array([0.1, 0.1, 0.5]),
                                 cutoff=0.0, geometry="periodic1d", inflation=1.3, lower_bounds=np.zeros(4),
                                 outlier_threshold=None)
    X = res.X
    assert np.all(np.isfinite(X)) and np.all(X >= 0)
    np.testing.assert_array_equal(X[:2], 0.0)  # nothing invented for the zero-spread cells
    assert res.counts["zero_spread_obs"] == 2
    assert X[2].std(ddof=1) < E[:, 2].std(ddof=1) * np.sqrt(1.3)  # no spread beyond the inflated prior
    # an observation that pulls LAI below zero is absorbed by contraction, the mean kept if it is >= 0
    E = np.random.default_rng(2).gamma(1.5, 0.3, size=(30, 1))
    res = serial_assimilate_full(E, np.array([-0.4]), np.array([0.01]), identity_operator([0]),
                                 state_loc=np.array([0.3]), obs_loc=np.array([0.3]), cutoff=None,
                                 geometry="periodic1d", lower_bounds=np.zeros(1), outlier_threshold=None)
    assert res.X.min() >= 0 and np.all(np.isfinite(res.X))
    assert res.counts["bound_contracted"] + res.counts["bound_collapsed"] == 1


def test_clear_errors():
    E, y, r, H, sloc, oloc = random_case(1, "periodic1d")
    kw = dict(state_loc=sloc, obs_loc=oloc, cutoff=0.1, geometry="periodic1d")
    with pytest.raises(ValueError, match="geometry"):
        serial_assimilate(E, y, r, H, **{**kw, "geometry": "plane"})
    with pytest.raises(ValueError, match="kind"):
        serial_assimilate(E, y, r, H, kind="pf", **kw)
    with pytest.raises(ValueError, match="r: expected"):
        serial_assimilate(E, y, r[:-1], H, **kw)
    with pytest.raises(ValueError, match="H: indptr"):
        serial_assimilate(E, y, r, (H[0][:-1], H[1], H[2]), **kw)
    with pytest.raises(ValueError, match="state_loc"):
        serial_assimilate(E, y, r, H, **{**kw, "state_loc": sloc + 1.0})
    with pytest.raises(ValueError, match="cutoff"):
        serial_assimilate(E, y, r, H, **{**kw, "cutoff": -1.0})
    with pytest.raises(ValueError, match="inflation"):
        serial_assimilate(E, y, r, H, inflation=0.0, **kw)


def test_obs_space_diagnostics_prior_and_posterior():
    E, y, r, H, sloc, oloc = random_case(21, "sphere")
    res = serial_assimilate_full(E, y, r, H, state_loc=sloc, obs_loc=oloc, cutoff=0.3, geometry="sphere")
    indptr, indices, weights = H
    Hd = np.zeros((y.size, E.shape[1]))
    for k in range(y.size):
        np.add.at(Hd[k], indices[indptr[k]:indptr[k + 1]], weights[indptr[k]:indptr[k + 1]])
    np.testing.assert_array_equal(res.obs_index, np.arange(y.size))
    # dense products vs CSR sums: round-off only
    np.testing.assert_allclose(res.obs_prior_mean, (E @ Hd.T).mean(0), rtol=0, atol=ATOL)
    np.testing.assert_allclose(res.obs_post_spread, (res.X.T @ Hd.T).std(0, ddof=1), rtol=0, atol=ATOL)
    ok = res.qc == 0
    # the analysis draws H(x) towards the observations on average
    assert np.mean(np.abs(res.obs_post_mean - y)[ok]) < np.mean(np.abs(res.obs_prior_mean - y)[ok])


@pytest.mark.parametrize("geometry", ["periodic1d", "sphere"])
def test_tiled_order_is_a_permutation_separating_same_colour_tiles(geometry):
    from engine.filter import tiled_order
    from kernels.filter.serial import distance
    rng = np.random.default_rng(4)
    n, c = 3000, 0.02
    if geometry == "periodic1d":
        loc = rng.random(n)
        x = np.c_[loc, np.zeros(n)]
    else:
        loc = np.c_[np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(0, 360, n)]
        x = np.radians(loc)
    perm = tiled_order(loc, c, geometry)
    assert np.array_equal(np.sort(perm), np.arange(n))
    # consecutive observations in the new order that are far apart show the interleaving;
    # two observations of one colour block lying in different tiles never conflict (distance >= 4c)
    d = np.array([distance(0 if geometry == "periodic1d" else 1, *x[perm[i]], *x[perm[i + 1]]) for i in range(n - 1)])
    assert np.mean(d > 4 * c) > 0.005
    if geometry == "periodic1d":
        nt = int(1 / (4 * c))
        tile = np.minimum((loc * nt).astype(int), nt - 1)
        col = tile % 2
        for cc in (0, 1):
            sel = np.flatnonzero(col == cc)
            t = tile[sel]
            a, b = np.meshgrid(loc[sel], loc[sel])
            dd = np.minimum(np.abs(a - b), 1 - np.abs(a - b))
            other = t[:, None] != t[None, :]
            assert dd[other].min() >= 4 * c - 1e-12


def test_inflation_never_invents_spread_or_crosses_bounds():
    """DART #749: inflating members that sit on the bound went below it. Equal members stay equal."""
    E = np.zeros((30, 3))
    E[:, 1] = 0.37  # equal members, not zero: the mean may round, the members must not move
    E[:, 2] = np.r_[np.zeros(10), np.random.default_rng(0).gamma(2.0, 0.5, 20)]  # a third on the bound
    res = serial_assimilate_full(E, np.array([1.0]), np.array([0.1]), identity_operator([0]),
                                 state_loc=np.array([0.1, 0.5, 0.9]), obs_loc=np.array([0.1]), cutoff=0.0,
                                 geometry="periodic1d", inflation=2.5, lower_bounds=np.zeros(3),
                                 outlier_threshold=None)
    np.testing.assert_array_equal(res.X[0], 0.0)
    np.testing.assert_array_equal(res.X[1], 0.37)
    assert res.X[2].min() >= 0.0 and res.X[2].mean() == pytest.approx(E[:, 2].mean(), abs=1e-12)
    assert res.X[2].std(ddof=1) == pytest.approx(E[:, 2].std(ddof=1), abs=1e-12)  # limited to factor 1
