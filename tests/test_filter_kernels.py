"""kernels.filter: DART conventions checked against analytic cases and the NumPy reference."""

import math

import numpy as np
import pytest

import filter_reference as ref
from engine.filter import identity_operator, serial_assimilate
from kernels.filter import eakf as K
from kernels.filter import serial as S

# Round-off of a few dozen float64 operations on O(1) numbers: 1e-12 leaves >1000x margin.
TIGHT = 1e-12


def _ens(seed, n=25, loc=1.3, scale=0.8):
    return np.random.default_rng(seed).normal(loc, scale, n)


def test_eakf_posterior_is_the_gaussian_product():
    y = _ens(0)
    yo, r = 2.1, 0.4
    dy = np.empty_like(y)
    K.obs_increment_eakf(y, yo, r, dy)
    s2 = y.var(ddof=1)
    post = y + dy
    # Gaussian product: mean (r*ybar + s2*yo)/(s2 + r), variance s2*r/(s2 + r), exactly for the EAKF
    assert post.mean() == pytest.approx((r * y.mean() + s2 * yo) / (s2 + r), abs=TIGHT)
    assert post.var(ddof=1) == pytest.approx(s2 * r / (s2 + r), abs=TIGHT)
    # deterministic square root: the anomalies are a pure contraction by sqrt(r/(s2+r))
    np.testing.assert_allclose(post - post.mean(), math.sqrt(r / (s2 + r)) * (y - y.mean()), rtol=0, atol=TIGHT)


def test_eakf_limits_r_zero_and_zero_spread():
    y = _ens(1)
    dy = np.empty_like(y)
    K.obs_increment_eakf(y, 3.0, 0.0, dy)
    np.testing.assert_array_equal(y + dy, np.full_like(y, 3.0))  # r = 0: onto the observation
    flat = np.full(10, 0.7)
    dy = np.ones(10)
    K.obs_increment_eakf(flat, 3.0, 1.0, dy)
    np.testing.assert_array_equal(dy, 0.0)  # s2 = 0: nothing moves, no spread invented
    K.obs_increment_enkf(flat, 3.0, 1.0, 5, 2, dy)
    np.testing.assert_array_equal(dy, 0.0)


def test_enkf_mean_is_exact_and_draws_are_keyed():
    y = _ens(2, n=40)
    yo, r = 0.2, 0.9
    d1, d2, d3 = (np.empty_like(y) for _ in range(3))
    K.obs_increment_enkf(y, yo, r, 11, 7, d1)
    K.obs_increment_enkf(y, yo, r, 11, 7, d2)
    K.obs_increment_enkf(y, yo, r, 11, 8, d3)
    np.testing.assert_array_equal(d1, d2)  # same key, same draws
    assert not np.array_equal(d1, d3)  # another observation, other draws
    s2 = y.var(ddof=1)
    # perturbations are centred on yo, so the posterior mean is the Gaussian product exactly
    assert (y + d1).mean() == pytest.approx((r * y.mean() + s2 * yo) / (s2 + r), abs=TIGHT)
    np.testing.assert_allclose(d1, ref.enkf_increments(y, yo, r, 11, 7), rtol=0, atol=TIGHT)
    # the posterior variance is right on average (4000 keyed draws; sd of the mean ~0.4% of it)
    vs = []
    for s in range(4000):
        K.obs_increment_enkf(y, yo, r, s, 3, d1)
        vs.append((y + d1).var(ddof=1))
    assert np.mean(vs) == pytest.approx(s2 * r / (s2 + r), rel=0.02)


def test_counter_draws_match_reference_and_are_standard_normal():
    for key in [(0, 0, 0, 0), (5, 123456789, 3, 1), (2**62 + 12345, 7, 2**40, 0)]:
        assert K.counter_uniform(*key) == ref.counter_uniform(*key)  # integer hashing: exact
    assert K.counter_normal(3, 4, 5) == pytest.approx(ref.counter_normal(3, 4, 5), abs=1e-15)
    z = np.empty(200_000)
    K.fill_counter_normals(9, 1, 0, z)
    # 200k draws: sd of the sample mean 0.0022, of the sample variance 0.0032; 5 sigma bounds
    assert abs(z.mean()) < 0.012 and abs(z.var() - 1) < 0.016
    assert abs(np.mean(z[:-1] * z[1:])) < 0.012  # consecutive counters are uncorrelated


def test_regression_uses_n_minus_1_and_weight():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=15), rng.normal(size=15)
    dy = rng.normal(size=15)
    x0 = x.copy()
    cov, var = K.regress_update(x, y, y.mean(), y.var(ddof=1), dy, 0.3)
    b = np.cov(x0, y, ddof=1)[0, 1] / y.var(ddof=1)
    np.testing.assert_allclose(x, x0 + 0.3 * b * dy, rtol=0, atol=TIGHT)
    assert cov == pytest.approx(np.cov(x0, y, ddof=1)[0, 1], abs=TIGHT)
    assert var == pytest.approx(x0.var(ddof=1), abs=TIGHT)


def test_gaspari_cohn_half_width_convention():
    c = 0.2
    assert K.gaspari_cohn(0.0, c) == 1.0
    assert K.gaspari_cohn(c, c) == pytest.approx(5.0 / 24.0, abs=1e-15)  # GC at the half-width
    assert K.gaspari_cohn(2 * c, c) == 0.0 and K.gaspari_cohn(0.5, c) == 0.0
    d = np.linspace(0, 2 * c, 401)
    g = np.array([K.gaspari_cohn(v, c) for v in d])
    assert np.all(np.diff(g) <= 1e-15) and g[-2] > 0  # monotone, compact support at 2c
    assert K.gaspari_cohn(c * (1 - 1e-9), c) == pytest.approx(K.gaspari_cohn(c * (1 + 1e-9), c), abs=1e-8)
    for v in d[::17]:
        assert K.gaspari_cohn(v, c) == pytest.approx(ref.gaspari_cohn(v, c), abs=1e-14)
    assert K.gaspari_cohn(0.0, 0.0) == 1.0 and K.gaspari_cohn(1e-9, 0.0) == 0.0  # column-only


def test_serial_eakf_equals_batch_square_root_filter():
    """Linear-Gaussian, 3 correlated observations, no localization: serial EAKF = batch ETKF."""
    rng = np.random.default_rng(4)
    N, nx = 30, 6
    E = rng.normal(size=(N, nx)) @ rng.normal(size=(nx, nx)) + 1.0  # correlated prior
    Hd = np.array([[1.0, 0, 0, 0, 0, 0], [0, 0.5, 0.5, 0, 0, 0], [0, 0, 0, 0.2, 0, 0.9]])
    indptr, indices, weights = [0], [], []
    for row in Hd:
        nz = np.flatnonzero(row)
        indices += list(nz)
        weights += list(row[nz])
        indptr.append(len(indices))
    H = (np.array(indptr), np.array(indices), np.array(weights))
    y = np.array([0.5, 2.0, -1.0])
    R = np.array([0.3, 0.5, 0.8])
    Ep, qc = serial_assimilate(E, y, R, H, state_loc=np.linspace(0, 0.9, nx), obs_loc=np.array([0.0, 0.2, 0.6]),
                               cutoff=None, geometry="periodic1d", outlier_threshold=None)
    assert np.all(qc == 0)
    xb = E.mean(0)
    A = (E - xb).T / math.sqrt(N - 1)
    P = A @ A.T  # sample covariance (N - 1)
    Kg = P @ Hd.T @ np.linalg.inv(Hd @ P @ Hd.T + np.diag(R))
    xa = xb + Kg @ (y - Hd @ xb)
    Pa = (np.eye(nx) - Kg @ Hd) @ P
    # several solves and products of an O(10) covariance: 1e-10 covers their round-off
    np.testing.assert_allclose(Ep.mean(0), xa, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.cov(Ep.T, ddof=1), Pa, rtol=0, atol=1e-10)


def test_adaptive_inflation_update_matches_reference_and_moves_the_right_way():
    args = dict(inf_sd=0.6, ss_inflate_base=1.1, obs_prior_mean=1.0, obs_prior_var=0.5, r=1.0, reg_factor=0.8,
                correl=0.9, mean_lower=1.0, mean_upper=100.0, sd_lower=0.1)
    big = K.update_varying_ss_inflation(1.1, args["inf_sd"], 1.1, 1.0, 0.5, 5.0, 1.0, 0.8, 0.9, 1.0, 100.0, 0.1)
    small = K.update_varying_ss_inflation(1.1, args["inf_sd"], 1.1, 1.0, 0.5, 1.01, 1.0, 0.8, 0.9, 1.0, 100.0, 0.1)
    assert big[0] > 1.1 > small[0] >= 1.0  # large innovation inflates, small one deflates to the bound
    assert big[1] <= 0.6 and small[1] <= 0.6
    for yo in (5.0, 1.01, 2.3):
        got = K.update_varying_ss_inflation(1.3, 0.6, 1.3, 1.0, 0.5, yo, 1.0, 0.8, 0.9, 1.0, 100.0, 0.1)
        want = ref.inflation_update(1.3, 0.6, 1.3, 1.0, 0.5, yo, 1.0, 0.8, 0.9, 1.0, 100.0, 0.1)
        np.testing.assert_allclose(got, want, rtol=0, atol=TIGHT)
    # zero localization or correlation: nothing changes
    assert K.update_varying_ss_inflation(1.3, 0.6, 1.3, 1.0, 0.5, 5.0, 1.0, 0.0, 0.9, 1.0, 100.0, 0.1) == (1.3, 0.6)


def test_bounds_kernels_keep_mean_and_never_add_spread():
    x = np.array([-0.3, 0.1, 0.5, 1.2, 2.0])
    m, sd = x.mean(), x.std(ddof=1)
    assert K.enforce_lower_bound(x, 0.0) == 1
    assert x.min() == 0.0 and x.mean() == pytest.approx(m, abs=TIGHT) and x.std(ddof=1) < sd
    x = np.array([-0.5, -0.2, 0.1])
    assert K.enforce_lower_bound(x, 0.0) == 2 and np.all(x == 0.0)  # mean below the bound: collapse
    x = np.array([0.0, 0.0, 0.0])
    assert K.enforce_lower_bound(x, 0.0) == 0
    # inflation limited so the smallest member lands on the bound at most
    x = np.array([0.1, 1.0, 1.9])
    f = K.bounded_inflation_factor(x, 1.0, 4.0, 0.0)
    assert f == pytest.approx((1.0 / 0.9) ** 2, abs=TIGHT)
    K.inflate_row(x, 1.0, f)
    assert x.min() >= -1e-15 and x.mean() == pytest.approx(1.0, abs=TIGHT)
    assert K.bounded_inflation_factor(np.array([0.0, 0.0]), 0.0, 2.0, 0.0) == 2.0  # no spread: harmless
    assert K.bounded_inflation_factor(np.array([5.0, 6.0]), 5.5, 1.5, 0.0) == 1.5  # far from the bound


@pytest.mark.parametrize("geometry", ["periodic1d", "sphere"])
@pytest.mark.parametrize("cutoff", [0.0, 0.01, 0.07, 0.4])
def test_spatial_index_finds_exactly_the_support(geometry, cutoff):
    rng = np.random.default_rng(5)
    n = 700
    if geometry == "periodic1d":
        loc = np.zeros((n, 2))
        loc[:, 0] = rng.random(n)
        loc[:50, 0] = loc[50:100, 0]  # some coincident points (column-only case)
        q = np.c_[np.r_[rng.random(60), 0.0, 0.999999, loc[:5, 0]], np.zeros(67)]
        gcode = S.GEOM_PERIODIC1D
        nb1, nb2 = max(1, int(1 / (2 * cutoff))) if cutoff else 64, 1
    else:
        loc = np.c_[np.arcsin(rng.uniform(-1, 1, n)), rng.uniform(0, 2 * np.pi, n)]
        loc[:50] = loc[50:100]
        q = np.r_[np.c_[np.arcsin(rng.uniform(-1, 1, 60)), rng.uniform(0, 2 * np.pi, 60)],
                  [[1.5707, 0.3], [-1.5, 6.28], [0.0, 0.0]], loc[:4]]
        gcode = S.GEOM_SPHERE
        nb1 = max(1, int(np.pi / (2 * cutoff))) if cutoff else 20
        nb2 = 2 * nb1
    ptr, mem = S.build_bins(gcode, loc, nb1, nb2)
    bins = np.empty(nb1 * nb2, dtype=np.int64)
    for qq in q:
        nb = S.query_bins(gcode, qq[0], qq[1], 2 * cutoff, nb1, nb2, bins)
        assert len(set(bins[:nb].tolist())) == nb  # no bin twice
        found = set()
        for b in bins[:nb]:
            found.update(mem[ptr[b]:ptr[b + 1]].tolist())
        brute = {i for i in range(n)
                 if K.gaspari_cohn(S.distance(gcode, qq[0], qq[1], loc[i, 0], loc[i, 1]), cutoff) > 0}
        assert brute <= found  # every element in the support is found
        assert len(found) < n or cutoff >= 0.4  # and the index prunes


def test_identity_operator_and_csr_apply():
    X = np.arange(12.0).reshape(4, 3)
    indptr, indices, weights = identity_operator([2, 0])
    out = np.empty((2, 3))
    S.csr_apply(indptr, indices, weights, np.array([0, 1]), X, 0, out)
    np.testing.assert_array_equal(out, X[[2, 0]])


def test_chord_pretest_never_changes_a_weight():
    rng = np.random.default_rng(8)
    n = 4000
    loc = np.zeros((n, 5))
    loc[:, 0] = np.arcsin(rng.uniform(-1, 1, n))
    loc[:, 1] = rng.uniform(0, 2 * np.pi, n)
    S.unit_vectors(loc)
    for c in (0.0, 1e-4, 0.05, 0.3, 1.0, 2.0):
        ch2 = S.chord2_limit(c)
        # the partner of each point sits near distance 2c: the borderline the pre-test must not cut
        for i in range(0, n, 4):
            j = (i * 7 + 3) % n
            exact = K.gaspari_cohn(K.dist_sphere(loc[i, 0], loc[i, 1], loc[j, 0], loc[j, 1]), c)
            assert S.loc_weight(1, loc, i, loc, j, c, ch2) == exact
        near = loc.copy()
        near[:, 0] = np.clip(loc[:, 0] + 2 * c * (1 - 1e-12), -np.pi / 2, np.pi / 2)
        S.unit_vectors(near)
        for i in range(0, n, 8):
            exact = K.gaspari_cohn(K.dist_sphere(loc[i, 0], loc[i, 1], near[i, 0], near[i, 1]), c)
            assert S.loc_weight(1, loc, i, near, i, c, ch2) == exact
