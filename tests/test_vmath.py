"""kernels.vmath against the C library (numpy's exp/log/arctan/power call it): ulp error bounds over the
full argument ranges, special values, and that a loop calling them gives the same bits as scalar calls."""

from __future__ import annotations

import numpy as np
import pytest

from kernels._jit import njit
from kernels.vmath import X_MAX, X_MIN, vatan, vexp, vlog, vpow


@njit
def _apply(kind, x, y, out):
    for i in range(x.size):
        if kind == 0:
            out[i] = vexp(x[i])
        elif kind == 1:
            out[i] = vlog(x[i])
        elif kind == 2:
            out[i] = vatan(x[i])
        else:
            out[i] = vpow(x[i], y[i])


@njit
def _exp_loop(x, out):  # a branch-free loop: the compiler vectorises this one
    for i in range(x.size):
        out[i] = vexp(x[i])


def run(kind, x, y=None):
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.zeros_like(x) if y is None else np.ascontiguousarray(y, dtype=np.float64)
    out = np.empty_like(x)
    _apply(kind, x, y, out)
    return out


def ulps(got, ref):
    return np.abs(got - ref) / np.spacing(np.abs(ref))


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261204)


def test_exp_within_one_ulp(rng):
    x = np.concatenate([rng.uniform(X_MIN, X_MAX, 400_000), rng.uniform(-1, 1, 200_000),
                        rng.uniform(-1e-8, 1e-8, 100_000), np.arange(-700, 700, 0.25)])
    u = ulps(run(0, x), np.exp(x))
    assert u.max() <= 1.0, (u.max(), x[u.argmax()])
    assert run(0, np.array([0.0]))[0] == 1.0


def test_log_within_two_ulp(rng):
    x = np.concatenate([np.exp(rng.uniform(-700, 709, 400_000)), rng.uniform(0.5, 2.0, 300_000),
                        1.0 + rng.uniform(-1e-6, 1e-6, 100_000), np.array([1e-310, 5e-324, 2.0 ** -1030])])
    u = ulps(run(1, x), np.log(x))
    assert u.max() <= 2.0, (u.max(), x[u.argmax()])
    assert run(1, np.array([1.0]))[0] == 0.0


def test_atan_within_four_ulp(rng):
    x = np.concatenate([rng.uniform(-3, 3, 400_000), np.tan(rng.uniform(-1.57, 1.57, 300_000)),
                        rng.uniform(-1e-9, 1e-9, 10_000), np.array([1e300, -1e300, 0.0])])
    ref = np.arctan(x)
    got = run(2, x)
    nz = ref != 0
    u = ulps(got[nz], ref[nz])
    assert u.max() <= 4.0, (u.max(), x[nz][u.argmax()])
    assert np.all(got[~nz] == 0.0)


def test_pow_relative_error_bound(rng):
    x = rng.uniform(1e-3, 1.0, 300_000)
    y = rng.uniform(-15, 15, 300_000)
    ref = np.power(x, y)
    rel = np.abs(run(3, x, y) - ref) / ref
    bound = (np.abs(y * np.log(x)) + 3.0) * 2.0 ** -52
    assert np.all(rel <= bound)


def test_special_values():
    inf, nan = np.inf, np.nan
    e = run(0, np.array([-inf, inf, nan, -800.0, 800.0, X_MAX, X_MIN - 1.0]))
    assert e[0] == 0.0 and e[1] == inf and np.isnan(e[2]) and e[3] == 0.0 and e[4] == inf
    assert np.isfinite(e[5]) and e[6] == 0.0
    lg = run(1, np.array([0.0, -1.0, inf, -inf, nan]))
    assert lg[0] == -inf and np.isnan(lg[1]) and lg[2] == inf and np.isnan(lg[3]) and np.isnan(lg[4])
    at = run(2, np.array([inf, -inf, nan]))
    assert at[0] == np.pi / 2 and at[1] == -np.pi / 2 and np.isnan(at[2])
    pw = run(3, np.array([0.0, 0.0, 2.0, -2.0, 1.0]), np.array([2.0, -1.0, 0.0, 0.5, 7.3]))
    assert pw[0] == 0.0 and pw[1] == inf and pw[2] == 1.0 and np.isnan(pw[3]) and pw[4] == 1.0


def test_vector_loop_same_bits_as_scalar_calls(rng):
    x = rng.uniform(-50, 50, 1001)
    out = np.empty_like(x)
    _exp_loop(x, out)  # vectorised loop (with a scalar remainder)
    scalar = np.array([vexp(v) for v in x])  # one compiled call per value
    assert np.array_equal(out, scalar)
