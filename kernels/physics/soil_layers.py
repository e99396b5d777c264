"""CLM4 soil layer structure, the study's depth bands, and the member-vectorised tridiagonal solver.

Layer structure (CLM4 tech note, Oleson et al. 2010, section 6.1, eqs. 6.5-6.7; Table 6.1):

    node depth       z_j  = f_s (exp(0.5 (j - 0.5)) - 1),      f_s = 0.025 m,   j = 1..15
    thickness        dz_1 = 0.5 (z_1 + z_2)
                     dz_j = 0.5 (z_{j+1} - z_{j-1}),           j = 2..14
                     dz_15 = z_15 - z_14
    interface depth  zi_j = 0.5 (z_j + z_{j+1}),               j = 1..14
                     zi_15 = z_15 + 0.5 dz_15,                 zi_0 = 0 (the surface)

The 10 upper layers are hydrologically active (CLM4 ``nlevsoi``); their bottom interface lies at
zi_10 = 3.80 m (CLM4 Table 6.1; CLM3's 10-layer column ended at 3.43 m because its last layer took
the dz_N rule). Layers 11-15 are bedrock for heat only; the column ends at zi_15 = 42.1 m.

Array layout used by every soil kernel: soil level index ``k = 0..14`` holds CLM layer ``j = k + 1``
(``t_soisno[c, k, m]``, ``h2osoi_liq[c, k, m]``; ``sand[c, k]`` for k < 10). The snow layer is kept
in separate arrays (``kernels.physics.snow``).

Depth bands: the reference study reports soil temperature and moisture in 0-7, 7-28, 28-100 and
100-255 cm. :func:`band_weights` gives a fixed matrix W[band, level] (rows sum to 1) and
:func:`to_depth_bands` applies it to ``x[c, level, m]``. Two weightings:

* ``"layer"``: thickness-weighted average of layer values over the overlap of each layer with the
  band (the layer value stands for the whole layer, as for a water amount). Exact for profiles that
  are constant within each layer; conserves layer-integrated amounts.
* ``"node"``: thickness-weighted average (integral over the band divided by its thickness) of the
  piecewise-linear profile through the node values (z_j, x_j), extended linearly above z_1 and below
  z_15. Exact for any profile that is linear in depth; the natural choice for temperature.

Reads and writes no model state; :func:`to_depth_bands` fills its ``out`` array.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit

#: number of soil levels for heat (CLM4 ``nlevgrnd``)
NLEVGRND = 15
#: number of hydrologically active soil levels (CLM4 ``nlevsoi``)
NLEVSOI = 10
#: CLM4 layer scale factor f_s (m), eq. 6.5
SCALEZ = 0.025
#: the study's four soil depth bands (m): 0-7, 7-28, 28-100, 100-255 cm
STUDY_BANDS_M = np.array([[0.0, 0.07], [0.07, 0.28], [0.28, 1.00], [1.00, 2.55]])


def soil_levels(nlev: int = NLEVGRND) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CLM4 node depths ``z[nlev]``, thicknesses ``dz[nlev]`` and interfaces ``zi[nlev + 1]`` (m).

    ``zi[0] = 0`` is the surface and ``zi[k + 1]`` the bottom of level k (CLM4 eqs. 6.5-6.7).
    CLM4 uses nlev = 15 (the default); other values give the structure of a column with that many
    levels (nlev = 10 is CLM3's, whose last layer differs from CLM4's layer 10).
    """
    if nlev < 2:
        raise ValueError(f"soil_levels: nlev must be >= 2, got {nlev}")
    j = np.arange(1, nlev + 1, dtype=np.float64)
    z = SCALEZ * (np.exp(0.5 * (j - 0.5)) - 1.0)
    dz = np.empty(nlev)
    dz[0] = 0.5 * (z[0] + z[1])
    dz[1:-1] = 0.5 * (z[2:] - z[:-2])
    dz[-1] = z[-1] - z[-2]
    zi = np.empty(nlev + 1)
    zi[0] = 0.0
    zi[1:-1] = 0.5 * (z[:-1] + z[1:])
    zi[-1] = z[-1] + 0.5 * dz[-1]
    return z, dz, zi


def _hat_values(zq: float, z: np.ndarray) -> np.ndarray:
    """Weights of the node values in the piecewise-linear profile at depth zq (linear extension)."""
    n = z.size
    w = np.zeros(n)
    if zq <= z[0]:
        k = 0
    elif zq >= z[-1]:
        k = n - 2
    else:
        k = int(np.searchsorted(z, zq, side="right")) - 1
        k = min(max(k, 0), n - 2)
    t = (zq - z[k]) / (z[k + 1] - z[k])
    w[k] = 1.0 - t
    w[k + 1] = t
    return w


def band_weights(method: str = "node", bands: np.ndarray | None = None, nlev: int = NLEVGRND) -> np.ndarray:
    """Weights ``W[band, level]`` mapping level values to band averages (each row sums to 1).

    ``method`` is ``"layer"`` or ``"node"`` (module docstring); ``bands`` is an (nband, 2) array of
    (top, bottom) depths in m, default :data:`STUDY_BANDS_M`. The weights are those of CLM4's
    15-level column; ``nlev`` < 15 returns the first ``nlev`` columns (e.g. 10 for H2OSOI) and
    requires that no band needs a deeper level.
    """
    if bands is None:
        bands = STUDY_BANDS_M
    bands = np.asarray(bands, dtype=np.float64)
    if not 2 <= nlev <= NLEVGRND:
        raise ValueError(f"band_weights: nlev must lie in [2, {NLEVGRND}], got {nlev}")
    z, dz, zi = soil_levels(NLEVGRND)
    if bands.ndim != 2 or bands.shape[1] != 2:
        raise ValueError(f"band_weights: bands must have shape (nband, 2), got {bands.shape}")
    if np.any(bands[:, 1] <= bands[:, 0]) or np.any(bands[:, 0] < 0.0) or np.any(bands[:, 1] > zi[-1]):
        raise ValueError(f"band_weights: each band needs 0 <= top < bottom <= {zi[-1]:.3f} m, got {bands.tolist()}")
    W = np.zeros((bands.shape[0], NLEVGRND))
    for b, (top, bot) in enumerate(bands):
        if method == "layer":
            overlap = np.clip(np.minimum(zi[1:], bot) - np.maximum(zi[:-1], top), 0.0, None)
            W[b] = overlap / (bot - top)
        elif method == "node":
            knots = np.unique(np.concatenate(([top, bot], z[(z > top) & (z < bot)])))
            for a, e in zip(knots[:-1], knots[1:]):
                W[b] += 0.5 * (e - a) * (_hat_values(a, z) + _hat_values(e, z))
            W[b] /= bot - top
        else:
            raise ValueError(f"band_weights: method must be 'layer' or 'node', got {method!r}")
    if np.any(W[:, nlev:] != 0.0):
        raise ValueError(f"band_weights: the bands {bands.tolist()} reach below level {nlev} ({method!r} weights)")
    return W[:, :nlev].copy()


@njit
def to_depth_bands(x, weights, out):
    """Band averages ``out[c, band, m] = sum_k weights[band, k] x[c, k, m]``.

    ``x[c, level, m]`` values on the soil levels (any unit); ``weights[band, level]`` from
    :func:`band_weights` (only its first ``x.shape[1]`` columns may be non-zero); ``out[c, band, m]``
    in the unit of ``x``.
    """
    ncol, nlev, nm = x.shape
    nb = weights.shape[0]
    for c in range(ncol):
        for b in range(nb):
            for m in range(nm):
                out[c, b, m] = 0.0
            for k in range(nlev):
                w = weights[b, k]
                if w != 0.0:
                    for m in range(nm):
                        out[c, b, m] += w * x[c, k, m]


@njit
def tridiagonal_members(a, b, c, r, u, k0, n):
    """Solve the tridiagonal systems a_k u_{k-1} + b_k u_k + c_k u_{k+1} = r_k, k = k0..n-1, one
    per member (Thomas algorithm, vectorised over the last axis; Press et al. 1992 section 2.4, as
    CLM4's ``Tridiagonal``). ``a, b, c, r, u`` are (nlev, nm) work arrays; ``b`` and ``r`` are
    overwritten; the solution goes to ``u[k0:n]``. a[k0] and c[n-1] are ignored.
    """
    nm = a.shape[1]
    for m in range(nm):
        b[k0, m] = 1.0 / b[k0, m]  # b holds the reciprocal pivots from here on
    for k in range(k0 + 1, n):
        for m in range(nm):
            w = a[k, m] * b[k - 1, m]
            b[k, m] = 1.0 / (b[k, m] - w * c[k - 1, m])
            r[k, m] = r[k, m] - w * r[k - 1, m]
    for m in range(nm):
        u[n - 1, m] = r[n - 1, m] * b[n - 1, m]
    for k in range(n - 2, k0 - 1, -1):
        for m in range(nm):
            u[k, m] = (r[k, m] - c[k, m] * u[k + 1, m]) * b[k, m]


__all__ = [
    "NLEVGRND",
    "NLEVSOI",
    "SCALEZ",
    "STUDY_BANDS_M",
    "soil_levels",
    "band_weights",
    "to_depth_bands",
    "tridiagonal_members",
]
