"""Plain-NumPy reference of DART's serial ensemble filter: readable and slow, for the tests only.

Written from DART's algorithm (assim_tools_mod's sequential loop, obs_increment_eakf /
obs_increment_enkf, update_from_obs_inc, comp_cov_factor; adaptive_inflate_mod for inf_flavor 2)
and the conventions of issue 5, independently of the numba kernels: scalar Python and NumPy, one
observation and one element at a time. It mirrors engine.filter's QC, inflation, RTPS and bounds
choices so that the two can be compared to 1e-12. Reads and writes only its arguments.
"""

from __future__ import annotations

import math

import numpy as np

MASK64 = (1 << 64) - 1


# ---------------------------------------------------------------- counter-based normal draws
def splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def counter_uniform(seed: int, a: int, b: int, c: int) -> float:
    h = splitmix64(seed & MASK64)
    h = splitmix64(h ^ a)
    h = splitmix64(h ^ b)
    h = splitmix64(h ^ c)
    return ((h >> 11) + 0.5) / 2.0**53


def counter_normal(seed: int, a: int, b: int) -> float:
    u1, u2 = counter_uniform(seed, a, b, 0), counter_uniform(seed, a, b, 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


# ---------------------------------------------------------------- one observation
def mean_var(y):
    """Sample mean and variance (N - 1); exactly 0 for an ensemble of equal members."""
    if np.all(y == y[0]):
        return y[0], 0.0
    return y.mean(), y.var(ddof=1)


def eakf_increments(y, yo, r):
    ybar, s2 = mean_var(y)  # prior mean and variance (N - 1)
    if s2 <= 0:
        return np.zeros_like(y)  # nothing to regress on
    if r <= 0:
        return yo - y  # exact observation
    ratio = r / (s2 + r)
    post_mean = ratio * (ybar + s2 * yo / r)  # Gaussian product
    a = math.sqrt(ratio)  # square-root contraction of the anomalies
    return a * (y - ybar) + post_mean - y


def enkf_increments(y, yo, r, seed, k):
    ybar, s2 = mean_var(y)
    if s2 <= 0:
        return np.zeros_like(y)
    if r <= 0:
        return yo - y
    z = np.array([counter_normal(seed, k, n) for n in range(y.size)])
    yo_pert = yo + math.sqrt(r) * (z - z.mean())  # perturbed obs, centred on yo
    return s2 / (s2 + r) * (yo_pert - y)


def gaspari_cohn(d, c):
    if c <= 0:
        return 1.0 if d == 0 else 0.0
    if d >= 2 * c:
        return 0.0
    z = d / c
    if d <= c:
        return -0.25 * z**5 + 0.5 * z**4 + 0.625 * z**3 - 5.0 / 3.0 * z**2 + 1.0
    return z**5 / 12.0 - 0.5 * z**4 + 0.625 * z**3 + 5.0 / 3.0 * z**2 - 5.0 * z + 4.0 - 2.0 / (3.0 * z)


def distance(a, b, geometry):
    if geometry == "periodic1d":
        d = abs(a[0] - b[0])
        return min(d, 1.0 - d)
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    c = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(lon1 - lon2)
    return math.acos(min(1.0, max(-1.0, c)))


# ---------------------------------------------------------------- adaptive inflation (DART inf_flavor 2)
def _density(d2, sp2, so2, lm, lsd, g, lam):
    theta2 = (1 + g * (math.sqrt(lam) - 1)) ** 2 * sp2 + so2
    return math.exp(-d2 / (2 * theta2) - (lam - lm) ** 2 / (2 * lsd**2)) / (2 * math.pi * lsd * math.sqrt(theta2))


def inflation_update(lm, lsd, base, ybar, s2, yo, r, rho, correl, lower, upper, sd_lower):
    """Anderson (2009) update of one element's inflation (mean lm, sd lsd) by one observation."""
    if lm <= 0 or lsd <= 0:
        return lm, lsd
    g = rho * abs(correl)
    if g <= 0:
        return lm, lsd
    sp2 = s2 / (1 + g * (math.sqrt(base) - 1)) ** 2 if g > np.finfo(float).eps else s2  # de-inflate
    d2 = (yo - ybar) ** 2
    theta2 = (1 + g * (math.sqrt(lm) - 1)) ** 2 * sp2 + r
    theta = math.sqrt(theta2)
    like = math.exp(-d2 / (2 * theta2)) / (math.sqrt(2 * math.pi) * theta)
    new = lm
    if like > 0:
        dtheta = 0.5 * sp2 * g * (1 - g + g * math.sqrt(lm)) / (theta * math.sqrt(lm))
        dlike = like * dtheta / theta * (d2 / theta2 - 1)
        if dlike != 0:
            b = like / dlike - 2 * lm
            c = lm**2 - lsd**2 - like * lm / dlike
            roots = np.roots([1.0, b, c]).real  # the Taylor-linearised posterior mode
            new = roots[np.argmin(np.abs(roots - lm))]
    new_sd = lsd
    if abs(lsd - sd_lower) > 2.2250738585072014e-308:
        top = _density(d2, sp2, r, lm, lsd, g, new)
        one = _density(d2, sp2, r, lm, lsd, g, new + lsd)
        if top > 1e-300 and one > 1e-300 and one / top <= 0.99:
            new_sd = min(lsd, math.sqrt(-lsd**2 / (2 * math.log(one / top))))
    return min(max(new, lower), upper), max(new_sd, sd_lower)


# ---------------------------------------------------------------- bounds
def bound_ok_factor(x, f, lo):
    m, xmin = x.mean(), x.min()
    if not xmin < m:
        return f
    if not m > lo:
        return 1.0
    return min(f, max(1.0, ((m - lo) / (m - xmin)) ** 2))


def enforce_bound(x, lo):
    if x.min() >= lo:
        return x, 0
    m = x.mean()
    if m > lo:
        return np.maximum(m + (m - lo) / (m - x.min()) * (x - m), lo), 1
    return np.full_like(x, lo), 2


# ---------------------------------------------------------------- the filter
def reference_assimilate(E, y, r, H, *, state_loc, obs_loc, cutoff, geometry, kind="eakf", inflation=1.0,
                         seed=0, outlier_threshold=3.0, obs_range=(-np.inf, np.inf),
                         fill_values=(-888888.0, 9.969209968386869e36), evaluate_only=None,
                         lower_bounds=None, rtps=0.0, adaptive=None):
    """Serial EAKF/EnKF. E (N, Nx). adaptive: dict(mean, sd, damping, lower, upper, sd_lower) or None.

    Returns (E_post (N, Nx), qc (Ny,), inflation mean (Nx,) or None, inflation sd or None).
    """
    X = np.array(E, dtype=float).T.copy()  # (Nx, N): one row per state element
    nx, N = X.shape
    y, r = np.asarray(y, float), np.asarray(r, float)
    ny = y.size
    indptr, indices, weights = (np.asarray(a) for a in H)
    sloc = np.asarray(state_loc, float).reshape(nx, -1)
    oloc = np.asarray(obs_loc, float).reshape(ny, -1)
    lo_b = np.full(nx, -np.inf) if lower_bounds is None else np.where(np.isnan(lower_bounds), -np.inf, lower_bounds)

    # QC on values, operators and locations
    qc = np.zeros(ny, dtype=int)
    for k in range(ny):
        row = indices[indptr[k]:indptr[k + 1]]
        if geometry == "periodic1d":
            loc_ok = np.isfinite(oloc[k, 0]) and 0 <= oloc[k, 0] < 1
        else:
            loc_ok = np.all(np.isfinite(oloc[k])) and abs(oloc[k, 0]) <= 90
        if row.size == 0 or not loc_ok or np.any((row < 0) | (row >= nx)):
            qc[k] = 4
        elif (not np.isfinite(y[k]) or y[k] < obs_range[0] or y[k] > obs_range[1] or y[k] in fill_values
              or not np.isfinite(r[k]) or r[k] < 0):
            qc[k] = 6
        elif evaluate_only is not None and evaluate_only[k]:
            qc[k] = 1

    # prior inflation
    if adaptive is not None:
        inf_mean = 1 + adaptive["damping"] * (np.asarray(adaptive["mean"], float) - 1)
        inf_sd = np.asarray(adaptive["sd"], float).copy()
        factors = inf_mean.copy()
    else:
        factors = np.full(nx, float(inflation))
    base = np.empty(nx)
    for i in range(nx):
        m = mean_var(X[i])[0]
        f = factors[i] if lo_b[i] == -np.inf else bound_ok_factor(X[i], factors[i], lo_b[i])
        if f != 1.0 and np.any(X[i] != X[i][0]):  # zero spread: nothing to inflate
            s = math.sqrt(f)
            X[i] = X[i] * s + m * (1 - s)
        base[i] = f
        if lo_b[i] > -np.inf:
            X[i] = enforce_bound(X[i], lo_b[i])[0]
    prior_sd = X.std(axis=1, ddof=1)

    # observation priors, forward-operator and outlier QC on the initial priors
    Y = np.zeros((ny, N))
    for k in range(ny):
        if qc[k] == 4:
            continue
        for p in range(indptr[k], indptr[k + 1]):
            Y[k] += weights[p] * X[indices[p]]
        if qc[k] <= 1 and not np.all(np.isfinite(Y[k])):
            qc[k] = 4
        elif qc[k] <= 1 and outlier_threshold is not None and outlier_threshold > 0:
            if abs(y[k] - Y[k].mean()) > outlier_threshold * math.sqrt(Y[k].var(ddof=1) + r[k]):
                qc[k] = 7

    # the sequential loop over observations, in their given order
    for k in range(ny):
        if qc[k] != 0:
            continue
        yk = Y[k].copy()
        dy = eakf_increments(yk, y[k], r[k]) if kind == "eakf" else enkf_increments(yk, y[k], r[k], seed, k)
        ybar, s2 = mean_var(yk)
        if s2 <= 0:
            continue
        for i in range(nx):
            rho = 1.0 if cutoff is None else gaspari_cohn(distance(oloc[k], sloc[i], geometry), cutoff)
            if rho <= 0:
                continue
            xa = X[i] - X[i].mean()
            cov = np.sum(xa * (yk - ybar)) / (N - 1)  # regression with N - 1
            var = np.sum(xa * xa) / (N - 1)
            X[i] = X[i] + rho * cov / s2 * dy
            if adaptive is not None:
                correl = cov / math.sqrt(var * s2) if var > 0 else 0.0
                inf_mean[i], inf_sd[i] = inflation_update(inf_mean[i], inf_sd[i], base[i], ybar, s2, y[k], r[k],
                                                          rho, correl, adaptive["lower"], adaptive["upper"],
                                                          adaptive["sd_lower"])
        for j in range(k + 1, ny):  # extended state: later observation priors
            if qc[j] != 0:
                continue
            rho = 1.0 if cutoff is None else gaspari_cohn(distance(oloc[k], oloc[j], geometry), cutoff)
            if rho > 0:
                cov = np.sum((Y[j] - Y[j].mean()) * (yk - ybar)) / (N - 1)
                Y[j] = Y[j] + rho * cov / s2 * dy

    # relaxation to prior spread, then bounds
    if rtps > 0:
        for i in range(nx):
            sa = X[i].std(ddof=1)
            if sa > 0 and prior_sd[i] > 0:
                f = 1 + rtps * (prior_sd[i] - sa) / sa
                X[i] = X[i] * f + X[i].mean() * (1 - f)
    for i in range(nx):
        if lo_b[i] > -np.inf:
            X[i] = enforce_bound(X[i], lo_b[i])[0]
    if adaptive is None:
        return X.T.copy(), qc, None, None
    return X.T.copy(), qc, inf_mean, inf_sd
