"""Lorenz (1996) 40-variable model with a numba RK4 step, for the filter's tests and benchmarks.

dx_i/dt = (x_{i+1} - x_{i-2}) x_{i-1} - x_i + F, cyclic, F = 8, time step dt = 0.05 ("6 hours").
Also a twin-experiment driver: a truth run, synthetic observations of every variable with error
variance R drawn from counter-based normals keyed by (seed, cycle, variable) (so runs are
reproducible and independent of how they are split), and a cycling ensemble filter through
engine.filter. Not part of laida's product namespace. Reads and writes only its arguments.
"""

from __future__ import annotations

import numpy as np

from engine.filter import AdaptiveInflation, identity_operator, serial_assimilate_full
from kernels._jit import njit
from kernels.filter.eakf import counter_normal

F_DEFAULT = 8.0
DT_DEFAULT = 0.05


@njit
def _tendency(x, F, out):
    n = x.shape[0]
    for i in range(n):
        out[i] = (x[(i + 1) % n] - x[(i - 2) % n]) * x[(i - 1) % n] - x[i] + F


@njit
def rk4_steps(X, nsteps, dt, F):
    """Advance every row of X[member, variable] by nsteps RK4 steps of length dt, in place."""
    nv = X.shape[1]
    k1 = np.empty(nv)
    k2 = np.empty(nv)
    k3 = np.empty(nv)
    k4 = np.empty(nv)
    tmp = np.empty(nv)
    for m in range(X.shape[0]):
        x = X[m]
        for _ in range(nsteps):
            _tendency(x, F, k1)
            for i in range(nv):
                tmp[i] = x[i] + 0.5 * dt * k1[i]
            _tendency(tmp, F, k2)
            for i in range(nv):
                tmp[i] = x[i] + 0.5 * dt * k2[i]
            _tendency(tmp, F, k3)
            for i in range(nv):
                tmp[i] = x[i] + dt * k3[i]
            _tendency(tmp, F, k4)
            for i in range(nv):
                x[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])


@njit
def counter_normals(seed, key, n, out):
    """out[i] = standard normal keyed by (seed, key, i)."""
    for i in range(n):
        out[i] = counter_normal(seed, key, i)


def twin_experiment(*, members, cycles, burn_in, kind="eakf", inflation=1.0, cutoff=None, adaptive=False,
                    nvar=40, r=1.0, seed=1, F=F_DEFAULT, dt=DT_DEFAULT, spinup=1000):
    """Cycle the filter on Lorenz-96; return the time-mean analysis RMSE over cycles after burn_in.

    Every variable is observed every step (dt) with error variance r. The truth starts from
    x = F with a small kick, spun up `spinup` steps; the initial ensemble is truth plus unit noise.
    """
    truth = np.full((1, nvar), F)
    truth[0, 0] += 0.01
    rk4_steps(truth, spinup, dt, F)
    noise = np.empty(nvar)
    E = np.empty((members, nvar))
    for m in range(members):
        counter_normals(seed + 1, 10_000_000 + m, nvar, noise)
        E[m] = truth[0] + noise
    loc = np.arange(nvar) / nvar
    H = identity_operator(np.arange(nvar))
    rr = np.full(nvar, r)
    inf = AdaptiveInflation.initial(nvar, mean=1.0, sd=0.6, damping=0.9) if adaptive else inflation
    errs = []
    for c in range(cycles):
        rk4_steps(truth, 1, dt, F)
        rk4_steps(E, 1, dt, F)
        counter_normals(seed, c, nvar, noise)
        y = truth[0] + np.sqrt(r) * noise
        res = serial_assimilate_full(E, y, rr, H, state_loc=loc, obs_loc=loc, cutoff=cutoff,
                                     geometry="periodic1d", kind=kind, inflation=inf, seed=seed + 7 + c,
                                     outlier_threshold=None)
        E = np.ascontiguousarray(res.X.T)
        if adaptive:
            inf = res.inflation
        if c >= burn_in:
            errs.append(np.sqrt(np.mean((E.mean(axis=0) - truth[0]) ** 2)))
    return float(np.mean(errs))
