"""Ensemble filter maths for one observation at a time, with DART's conventions.

Pure numba kernels over plain arrays (no MPI, files or configuration). The split follows DART's
``assim_tools_mod``: observation-space increments (:func:`obs_increment_eakf`,
:func:`obs_increment_enkf`), regression of the increments onto one state element
(:func:`regress_update`), localization (:func:`gaspari_cohn`); plus DART's adaptive inflation
(``adaptive_inflate_mod``: :func:`update_varying_ss_inflation`), deterministic inflation and a
lower-bound guard for non-negative variables.

Conventions (those of DART, so results compare directly):
- an ensemble is a 1-D array of N members; sample variances and covariances divide by N - 1;
- observation error variance ``r`` and observed value ``yo`` are in the units of the observation;
- increments are *added* to the prior members.

References: Anderson (2001) MWR 129, 2884-2903 (EAKF, eqs. 4.3-4.6 in the scalar form used here);
Anderson (2003) MWR 131, 634-642 (regression onto state, eq. 2.4); Burgers et al. (1998) MWR 126,
1719-1724 (perturbed observations); Gaspari & Cohn (1999) QJRMS 125, 723-757 eq. 4.10;
Anderson (2009) Tellus 61A, 72-83 (adaptive inflation, eqs. 4-8); Whitaker & Hamill (2012)
MWR 140, 3078-3089 (RTPS, eq. 3). Random draws: Steele et al. (2014) OOPSLA, SplitMix64.

Reads and writes only the arrays passed in.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_TWO_PI = 2.0 * math.pi
TINY = 2.2250738585072014e-308  # Fortran TINY(0.0_r8), as in DART's adaptive_inflate_mod
SMALL = 2.220446049250313e-16  # Fortran EPSILON(1.0_r8): DART's `small` in adaptive_inflate_mod


# --------------------------------------------------------------------------- counter-based draws
@njit
def splitmix64(x):
    """SplitMix64 finaliser of a uint64 (Steele et al. 2014): a bijective, well-mixed hash."""
    z = np.uint64(x) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit
def counter_uniform(seed, a, b, c):
    """Uniform draw in (0, 1) that is a pure function of the key (seed, a, b, c), all int >= 0.

    Counter-based: the draw for (obs k, member n) does not depend on which rank makes it or on
    how many draws were made before, so results do not depend on the decomposition.
    """
    h = splitmix64(np.uint64(seed))
    h = splitmix64(h ^ np.uint64(a))
    h = splitmix64(h ^ np.uint64(b))
    h = splitmix64(h ^ np.uint64(c))
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)  # 53 bits


@njit
def counter_normal(seed, a, b):
    """Standard normal draw keyed by (seed, a, b) (Box-Muller on two keyed uniforms)."""
    u1 = counter_uniform(seed, a, b, 0)
    u2 = counter_uniform(seed, a, b, 1)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(_TWO_PI * u2)


@njit
def fill_counter_normals(seed, a, b0, out):
    """out[i] = counter_normal(seed, a, b0 + i): e.g. members of one observation's perturbations."""
    for i in range(out.shape[0]):
        out[i] = counter_normal(seed, a, b0 + i)


# --------------------------------------------------------------------------- ensemble statistics
@njit
def ens_mean_var(y):
    """Sample mean and variance (divisor N - 1) of one ensemble y[N].

    An ensemble whose members are all equal has variance exactly 0 (and mean y[0]), not the
    round-off residue of the two-pass formula: the zero-spread cases are decided exactly.
    """
    n = y.shape[0]
    same = True
    for i in range(1, n):
        if y[i] != y[0]:
            same = False
            break
    if same:
        return y[0], 0.0
    s = 0.0
    for i in range(n):
        s += y[i]
    mean = s / n
    v = 0.0
    for i in range(n):
        d = y[i] - mean
        v += d * d
    return mean, v / (n - 1)


# --------------------------------------------------------------------------- observation space
@njit
def _degenerate_increments(y, yo, r, s2, out_dy):
    """The limits shared by both filters: s2 = 0 -> dy = 0 (no spread is invented, even when
    r = 0); r = 0 -> dy = yo - y. Fills out_dy and returns True when one applies."""
    if s2 <= 0.0:
        for i in range(y.shape[0]):
            out_dy[i] = 0.0
        return True
    if r <= 0.0:
        for i in range(y.shape[0]):
            out_dy[i] = yo - y[i]
        return True
    return False


@njit
def obs_increment_eakf(y, yo, r, out_dy):
    """EAKF observation-space increments (Anderson 2001, eqs. 4.3-4.6; DART obs_increment_eakf).

    y[N]: prior observation ensemble (obs units); yo: observed value; r: error variance (units^2).
    With ybar, s2 the sample mean and variance: ratio = r/(s2+r); posterior mean
    = ratio*(ybar + s2*yo/r); a = sqrt(ratio); dy_n = a*(y_n - ybar) + posterior mean - y_n.
    Limits: s2 = 0 -> dy = 0 (nothing to regress on, no spread is invented, even when r = 0);
    r = 0 -> dy = yo - y (every member moves onto the exact observation).
    Fills out_dy[N].
    """
    n = y.shape[0]
    ybar, s2 = ens_mean_var(y)
    if _degenerate_increments(y, yo, r, s2, out_dy):
        return
    ratio = r / (s2 + r)
    post_mean = ratio * (ybar + s2 * yo / r)
    a = math.sqrt(ratio)
    for i in range(n):
        out_dy[i] = a * (y[i] - ybar) + post_mean - y[i]


@njit
def obs_increment_enkf(y, yo, r, seed, obs_key, out_dy):
    """Perturbed-observation EnKF increments (Burgers et al. 1998; DART obs_increment_enkf).

    Perturbed values yo_n = yo + sqrt(r) * (z_n - mean(z)) with z_n = counter_normal(seed, obs_key, n)
    (re-centred so that their mean is yo, as DART does); dy_n = s2/(s2+r) * (yo_n - y_n).
    Same limits as the EAKF: s2 = 0 -> dy = 0; r = 0 -> dy = yo - y. Fills out_dy[N].
    """
    n = y.shape[0]
    ybar, s2 = ens_mean_var(y)
    if _degenerate_increments(y, yo, r, s2, out_dy):
        return
    fill_counter_normals(seed, obs_key, 0, out_dy)
    zbar = 0.0
    for i in range(n):
        zbar += out_dy[i]
    zbar = zbar / n
    sd = math.sqrt(r)
    gain = s2 / (s2 + r)
    for i in range(n):
        out_dy[i] = gain * (yo + sd * (out_dy[i] - zbar) - y[i])


# --------------------------------------------------------------------------- state space
@njit
def regress_update(x, y, ybar, s2, dy, weight):
    """Regress observation increments onto one state element, in place (Anderson 2003, eq. 2.4).

    x[N]: the element's ensemble (its units); y[N], ybar, s2: the observation's prior ensemble, mean
    and variance (N - 1) at the time it is assimilated; dy[N]: its increments; weight: localization
    factor rho in [0, 1]. b = cov(x, y)/s2 (divisor N - 1); x_n += rho*b*dy_n. Nothing happens for
    s2 <= 0. Returns (cov(x, y), var(x)) of the prior, for adaptive inflation.

    Sums use four interleaved partial sums in a fixed order (written out here, not left to the
    compiler): the same bits on every rank and machine, and ~4x the speed of one serial chain.
    """
    n = x.shape[0]
    m4 = n - n % 4
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    a3 = 0.0
    for i in range(0, m4, 4):
        a0 += x[i]
        a1 += x[i + 1]
        a2 += x[i + 2]
        a3 += x[i + 3]
    for i in range(m4, n):
        a0 += x[i]
    xbar = ((a0 + a1) + (a2 + a3)) / n
    c0 = 0.0
    c1 = 0.0
    c2 = 0.0
    c3 = 0.0
    v0 = 0.0
    v1 = 0.0
    v2 = 0.0
    v3 = 0.0
    for i in range(0, m4, 4):
        d0 = x[i] - xbar
        d1 = x[i + 1] - xbar
        d2 = x[i + 2] - xbar
        d3 = x[i + 3] - xbar
        c0 += d0 * (y[i] - ybar)
        c1 += d1 * (y[i + 1] - ybar)
        c2 += d2 * (y[i + 2] - ybar)
        c3 += d3 * (y[i + 3] - ybar)
        v0 += d0 * d0
        v1 += d1 * d1
        v2 += d2 * d2
        v3 += d3 * d3
    for i in range(m4, n):
        d0 = x[i] - xbar
        c0 += d0 * (y[i] - ybar)
        v0 += d0 * d0
    cov = ((c0 + c1) + (c2 + c3)) / (n - 1)
    var = ((v0 + v1) + (v2 + v3)) / (n - 1)
    if s2 > 0.0:
        f = weight * (cov / s2)
        for i in range(n):
            x[i] += f * dy[i]
    return cov, var


@njit
def gaspari_cohn(dist, half_width):
    """Gaspari & Cohn (1999) eq. 4.10 fifth-order taper, DART's comp_cov_factor.

    dist and half_width c in the same units (radians on the sphere); rho = 1 at 0, 0 for dist >= 2c.
    c = 0 means column-only localization: rho = 1 at distance exactly 0, else 0.
    """
    c = half_width
    if c <= 0.0:
        return 1.0 if dist == 0.0 else 0.0
    if dist >= 2.0 * c:
        return 0.0
    r = dist / c
    if dist <= c:
        return (((-0.25 * r + 0.5) * r + 0.625) * r - 5.0 / 3.0) * r * r + 1.0
    return ((((r / 12.0 - 0.5) * r + 0.625) * r + 5.0 / 3.0) * r - 5.0) * r + 4.0 - 2.0 / (3.0 * r)


@njit
def dist_periodic1d(a, b):
    """Distance on the unit circle [0, 1) (DART's oned location module, cyclic)."""
    d = abs(a - b)
    if d > 0.5:
        d = 1.0 - d
    return d


@njit
def dist_sphere(lat1, lon1, lat2, lon2):
    """Great-circle distance in radians on the unit sphere (DART threed_sphere horizontal get_dist).

    Latitudes and longitudes in radians. Spherical law of cosines, clipped to [-1, 1], as DART.
    """
    dlon = abs(lon1 - lon2)
    if dlon > math.pi:
        dlon = 2.0 * math.pi - dlon
    c = math.sin(lat1) * math.sin(lat2) + math.cos(lat1) * math.cos(lat2) * math.cos(dlon)
    if c > 1.0:
        c = 1.0
    if c < -1.0:
        c = -1.0
    return math.acos(c)


# --------------------------------------------------------------------------- inflation
@njit
def inflate_row(x, mean, factor):
    """Deterministic inflation of one element: x = x*s + mean*(1 - s), s = sqrt(factor).

    DART inflate_ens (the form that leaves x unchanged for factor 1). factor: variance ratio.
    """
    s = math.sqrt(factor)
    for i in range(x.shape[0]):
        x[i] = x[i] * s + mean * (1.0 - s)


@njit
def solve_quadratic(a, b, c):
    """Roots of a x^2 + b x + c with DART's scaling (adaptive_inflate_mod solve_quadratic)."""
    scaling = max(abs(a), abs(b), abs(c))
    a_s = a / scaling
    b_s = b / scaling
    c_s = c / scaling
    disc = math.sqrt(b_s * b_s - 4.0 * a_s * c_s)
    if b_s > 0.0:
        r1 = (-b_s - disc) / (2.0 * a_s)
    else:
        r1 = (-b_s + disc) / (2.0 * a_s)
    r2 = (c_s / a_s) / r1
    return r1, r2


@njit
def compute_new_density(dist_2, sigma_p_2, sigma_o_2, lambda_mean, lambda_sd, gamma, lam):
    """Product of the Gaussian inflation prior and the likelihood at lam (Anderson 2009, eq. 5)."""
    exponent_prior = (lam - lambda_mean) ** 2 / (-2.0 * lambda_sd * lambda_sd)
    theta_2 = (1.0 + gamma * (math.sqrt(lam) - 1.0)) ** 2 * sigma_p_2 + sigma_o_2
    theta = math.sqrt(theta_2)
    exponent_likelihood = dist_2 / (-2.0 * theta_2)
    return math.exp(exponent_likelihood + exponent_prior) / (2.0 * math.pi * lambda_sd * theta)


@njit
def linear_bayes(dist_2, sigma_p_2, sigma_o_2, lambda_mean, lambda_sd_2, gamma):
    """Mode of the inflation posterior with a linearised likelihood (Anderson 2009, eqs. 6-8)."""
    theta_bar_2 = (1.0 + gamma * (math.sqrt(lambda_mean) - 1.0)) ** 2 * sigma_p_2 + sigma_o_2
    theta_bar = math.sqrt(theta_bar_2)
    u_bar = 1.0 / (math.sqrt(2.0 * math.pi) * theta_bar)
    v_bar = math.exp(dist_2 / (-2.0 * theta_bar_2))
    like_bar = u_bar * v_bar
    if like_bar <= 0.0:
        return lambda_mean
    dtheta_dlambda = (0.5 * sigma_p_2 * gamma * (1.0 - gamma + gamma * math.sqrt(lambda_mean))
                      / (theta_bar * math.sqrt(lambda_mean)))
    like_prime = (u_bar * v_bar * dtheta_dlambda / theta_bar) * (dist_2 / theta_bar_2 - 1.0)
    if like_prime == 0.0:
        return lambda_mean
    a = 1.0
    b = like_bar / like_prime - 2.0 * lambda_mean
    c = lambda_mean * lambda_mean - lambda_sd_2 - like_bar * lambda_mean / like_prime
    plus_root, minus_root = solve_quadratic(a, b, c)
    if abs(minus_root - lambda_mean) < abs(plus_root - lambda_mean):
        return minus_root
    return plus_root


@njit
def bayes_cov_inflate(x_p, sigma_p_2, y_o, sigma_o_2, lambda_mean, lambda_sd, gamma, sd_lower_bound):
    """Update (mean, sd) of the Gaussian inflation pdf with one observation (DART inf_flavor 2).

    x_p, sigma_p_2: observation prior mean and (de-inflated) variance; y_o, sigma_o_2: observed value
    and error variance; gamma: localization times |correlation| of element and observation.
    """
    if gamma <= 0.0:
        return lambda_mean, lambda_sd
    lambda_sd_2 = lambda_sd * lambda_sd
    dist_2 = (y_o - x_p) ** 2
    new_mean = linear_bayes(dist_2, sigma_p_2, sigma_o_2, lambda_mean, lambda_sd_2, gamma)
    if abs(lambda_sd - sd_lower_bound) <= TINY:
        return new_mean, lambda_sd
    new_max = compute_new_density(dist_2, sigma_p_2, sigma_o_2, lambda_mean, lambda_sd, gamma, new_mean)
    new_1_sd = compute_new_density(dist_2, sigma_p_2, sigma_o_2, lambda_mean, lambda_sd, gamma,
                                   new_mean + lambda_sd)
    if abs(new_max) <= TINY or abs(new_1_sd) <= TINY:
        return new_mean, lambda_sd
    ratio = new_1_sd / new_max
    if ratio > 0.99:
        return new_mean, lambda_sd
    new_sd = math.sqrt(-1.0 * lambda_sd_2 / (2.0 * math.log(ratio)))
    if new_sd > lambda_sd:
        return new_mean, lambda_sd
    return new_mean, new_sd


@njit
def update_varying_ss_inflation(inf_mean, inf_sd, ss_inflate_base, obs_prior_mean, obs_prior_var,
                                yo, r, reg_factor, correl, mean_lower, mean_upper, sd_lower):
    """Spatially varying adaptive prior inflation for one state element and one observation.

    DART adaptive_inflate_mod update_varying_state_space_inflation + update_inflation (prior
    inflation, inf_flavor 2; Anderson 2009). ss_inflate_base is the inflation applied to this
    element's prior this cycle; reg_factor the localization; correl the prior correlation of
    element and observation. Returns the new (mean, sd), clipped to the bounds.
    """
    if inf_mean <= 0.0 or inf_sd <= 0.0:
        return inf_mean, inf_sd
    gamma = reg_factor * abs(correl)
    if abs(gamma) > SMALL:
        var_deflate = obs_prior_var / (1.0 + gamma * (math.sqrt(ss_inflate_base) - 1.0)) ** 2
    else:
        var_deflate = obs_prior_var
    new_mean, new_sd = bayes_cov_inflate(obs_prior_mean, var_deflate, yo, r, inf_mean, inf_sd,
                                         gamma, sd_lower)
    if new_mean < mean_lower:
        new_mean = mean_lower
    if new_mean > mean_upper:
        new_mean = mean_upper
    if new_sd < sd_lower:
        new_sd = sd_lower
    return new_mean, new_sd


@njit
def rtps_row(x, prior_sd, alpha):
    """Relaxation to prior spread of one element (Whitaker & Hamill 2012, eq. 3), DART's form.

    x[N] posterior members; prior_sd: this element's prior spread (N - 1); alpha in [0, 1].
    Anomalies are scaled by 1 + alpha*(prior_sd - post_sd)/post_sd when both spreads are > 0.
    """
    mean, var = ens_mean_var(x)
    post_sd = math.sqrt(var)
    if post_sd > 0.0 and prior_sd > 0.0:
        f = 1.0 + alpha * ((prior_sd - post_sd) / post_sd)
        for i in range(x.shape[0]):
            x[i] = x[i] * f + mean * (1.0 - f)


# --------------------------------------------------------------------------- bounds
@njit
def bounded_inflation_factor(x, mean, factor, lower):
    """Largest variance factor <= `factor` (and >= 1) that keeps min(x) >= lower after inflation.

    For a bounded element the inflation is limited so that no member crosses the bound: with
    s = sqrt(factor), the member x_min moves to mean + s*(x_min - mean) >= lower iff
    s <= (mean - lower)/(mean - x_min). Returns factor unchanged when nothing would cross.
    """
    xmin = x[0]
    for i in range(1, x.shape[0]):
        if x[i] < xmin:
            xmin = x[i]
    if not (xmin < mean):  # zero spread: inflation changes nothing
        return factor
    if not (mean > lower):  # mean on or below the bound: no room to inflate
        return 1.0
    s_max = (mean - lower) / (mean - xmin)
    f_max = s_max * s_max
    if f_max < 1.0:
        f_max = 1.0  # never deflate here; enforce_lower_bound repairs a prior below the bound
    return factor if factor <= f_max else f_max


@njit
def enforce_lower_bound(x, lower):
    """Mean-preserving contraction of one element's anomalies onto x >= lower, in place.

    If some member is below `lower` and the ensemble mean m is above it, the anomalies are scaled
    by f = (m - lower)/(m - x_min) so the lowest member lands on the bound: the mean is kept and
    the spread only shrinks (no spread is invented). If the mean itself is at or below the bound,
    every member is set to `lower` (the mean rises to the bound). Returns 0 (nothing done),
    1 (contracted) or 2 (collapsed onto the bound).
    """
    n = x.shape[0]
    xmin = x[0]
    for i in range(1, n):
        if x[i] < xmin:
            xmin = x[i]
    if xmin >= lower:
        return 0
    mean = 0.0
    for i in range(n):
        mean += x[i]
    mean = mean / n
    if mean > lower:
        f = (mean - lower) / (mean - xmin)
        for i in range(n):
            v = mean + f * (x[i] - mean)
            x[i] = v if v > lower else lower
        return 1
    for i in range(n):
        x[i] = lower
    return 2
