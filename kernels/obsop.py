"""Numba kernels of the LAI observation operator and of the area-weighted regridder from a regular
lat/lon product grid (or the 0.05 deg "satellite" raster of the twin experiment) to model cells.

Pure functions on plain arrays (no files, no MPI, no configuration objects); they fill the ``out_*``
arrays they are given and read nothing else. Drivers: ``engine/observations.py``.

Observation operator
--------------------
Grid-cell LAI (m2/m2) is the patch-weight-weighted sum of patch LAI over the vegetated land unit of
the cell (CLM4's grid-cell average of a PFT-level field, Oleson et al. 2010, CLM4 tech note
sect. 1.2.1: weights are the PFT fractions of the vegetated land unit). As a sparse matrix H in CSR
form ``(indptr, indices, weights)``: row ``o`` holds the state elements ``indices[indptr[o]:indptr[o+1]]``
and their weights; ``y[o, m] = sum_k weights[k] * x[indices[k], m]`` (:func:`apply_operator`).

Regridder
---------
The overlap area of a source cell (lat band [s, n], lon band [w, e]) with a model cell on the sphere
of radius R is ``R**2 * (overlap of [w, e]) * (overlap of [sin s, sin n])`` (lat/lon rectangles),
so it factorises into a latitude part and a longitude part. The drivers build, per model row, the
source rows it overlaps with weights in sin(lat) units and, per model column, the source columns
with weights in radians (CSR, see ``engine.observations.overlap_1d``); the kernels multiply them.

A model cell's value is the overlap-weighted mean of its valid source pixels,
``y = sum_i w_i v_i / sum_i w_i``, computed as ``v_0 + sum_i w_i (v_i - v_0) / sum_i w_i`` with
``v_0`` the first valid pixel (the shifted-data form, Chan, Golub & LeVeque 1983, Am. Stat. 37:242),
which returns a constant field exactly. With independent pixel errors of variance ``s_i**2`` the
variance of that mean is ``sum_i w_i**2 s_i**2 / (sum_i w_i)**2`` (for equal weights: the mean
pixel variance over the number of valid pixels).

Randomness of the synthetic observations: counter-based streams of :mod:`kernels.forcing`
(splitmix64, Steele et al. 2014) keyed by (seed, stream tag, 0.05 deg pixel id, time key), so a
pixel's cloud flag and error never depend on which cells are computed together.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.forcing import combine, normal_pair, stream_prefix

#: Stream tags of the synthetic observations (the ``member`` slot of kernels.forcing.stream_prefix).
TAG_CLOUD = 7_001
TAG_PIXEL_ERROR = 7_002
TAG_REPRESENTATIVENESS = 7_003

_S11 = np.uint64(11)
_INV53 = 2.0 ** -53


@njit
def uniform01(prefix, k, j):
    """Uniform number in (0, 1) for record ``k``, draw ``j`` of the stream ``prefix`` (top 53 bits)."""
    h = combine(combine(prefix, np.uint64(k)), np.uint64(j))
    return (np.float64(h >> _S11) + 0.5) * _INV53


@njit
def apply_operator(indptr, indices, weights, x, out_y):
    """Apply the CSR operator to an ensemble: ``out_y[o, m] = sum_k weights[k] * x[indices[k], m]``.

    indptr (n_obs + 1,) int64; indices (nnz,) int64 state elements (rows of ``x``); weights (nnz,)
    float64 (patch weight, dimensionless); x (n_state, n_members) patch LAI, m2/m2; out_y
    (n_obs, n_members) m2/m2, overwritten. Sums run in the stored order (bit-reproducible).
    """
    n_obs = indptr.size - 1
    n_mem = x.shape[1]
    for o in range(n_obs):
        for m in range(n_mem):
            out_y[o, m] = 0.0
        for k in range(indptr[o], indptr[o + 1]):
            w = weights[k]
            e = indices[k]
            for m in range(n_mem):
                out_y[o, m] += w * x[e, m]


@njit
def cell_normals(seed, tag, keys, tkey, out_z):
    """One standard normal per key (e.g. a parent-grid cell index) for time key ``tkey``."""
    for c in range(keys.size):
        pre = stream_prefix(seed, tag, keys[c])
        out_z[c] = normal_pair(pre, tkey, 0)[0]


@njit
def regrid_cells(values, variances, cell_j, cell_i, lat_ptr, lat_idx, lat_w, lon_ptr, lon_idx, lon_w,
                 out_mean, out_var, out_w_valid, out_w_total, out_n_valid):
    """Overlap-weighted mean of a product field over model cells (the regridder of real products).

    values (n_rows, n_cols) float64 LAI m2/m2, NaN where invalid; variances (n_rows, n_cols) pixel
    error variance (m2/m2)**2 (NaN where unknown: then out_var is NaN); cell_j, cell_i (n_cells,)
    model row/column of each cell; lat_* CSR over model rows (source rows, weights in sin(lat)),
    lon_* CSR over model columns (source columns, weights in rad). Outputs per cell: out_mean
    (NaN if no valid pixel), out_var = sum w**2 var / (sum w)**2, out_w_valid = sum of w over valid
    pixels, out_w_total = sum of w over all source pixels (sr: area / R**2), out_n_valid = number of
    valid pixels touching the cell.
    """
    for c in range(cell_j.size):
        jj = cell_j[c]
        ii = cell_i[c]
        ref = 0.0
        have = False
        acc = 0.0
        wsum = 0.0
        vsum = 0.0
        wtot = 0.0
        n = 0
        for a in range(lat_ptr[jj], lat_ptr[jj + 1]):
            r = lat_idx[a]
            wa = lat_w[a]
            for b in range(lon_ptr[ii], lon_ptr[ii + 1]):
                q = lon_idx[b]
                w = wa * lon_w[b]
                wtot += w
                v = values[r, q]
                if not math.isfinite(v):
                    continue
                if not have:
                    ref = v
                    have = True
                acc += w * (v - ref)
                wsum += w
                vsum += w * w * variances[r, q]
                n += 1
        out_w_total[c] = wtot
        out_w_valid[c] = wsum
        out_n_valid[c] = n
        if n > 0:
            out_mean[c] = ref + acc / wsum
            out_var[c] = vsum / (wsum * wsum)
        else:
            out_mean[c] = np.nan
            out_var[c] = np.nan


@njit
def synthetic_cells(cell_j, cell_i, lat_ptr, lat_idx, lat_w, lon_ptr, lon_idx, lon_w,
                    pix_row_cell, pix_col_cell, nlon_parent, land_pos, truth_cell, observable, pix_lat,
                    seed, tkey, sd_a, sd_b, sd_min, p_dry, p_wet, lat_width, n_cols_raster,
                    out_mean, out_var, out_w_valid, out_w_obs, out_n_valid, out_n_obs):
    """Synthetic GLASS-like 0.05 deg pixels, generated and aggregated to model cells in one pass.

    Raster: rows north to south, columns west to east (MCD12C1 layout); pixel id = row * n_cols + col.
    A pixel is observable when ``observable[row, col]`` and the model cell containing its centre
    (``pix_row_cell[row]``, ``pix_col_cell[col]`` in the parent grid of ``nlon_parent`` columns) is a
    land cell (``land_pos`` >= 0). Its truth is that cell's LAI ``truth_cell`` (m2/m2). It is
    cloud-covered (missing) with probability ``p_dry + (p_wet - p_dry) * exp(-(lat/lat_width)**2)``
    (lat = ``pix_lat[row]``, deg), else observed as ``max(truth + sd * z, 0)`` with
    ``sd = max(sd_min, sd_a + sd_b * truth)`` and z standard normal. Randomness keyed by
    (seed, tag, pixel id, tkey). The aggregation is :func:`regrid_cells`' (same weights, same
    shifted-data mean, same variance formula with the pixel variances sd**2).
    Outputs per cell: out_mean (NaN when no valid pixel), out_var (pixel part of the error variance),
    out_w_valid, out_w_obs (overlap weight of valid / observable pixels), out_n_valid, out_n_obs.
    """
    for c in range(cell_j.size):
        jj = cell_j[c]
        ii = cell_i[c]
        ref = 0.0
        have = False
        acc = 0.0
        wsum = 0.0
        vsum = 0.0
        wobs = 0.0
        n = 0
        nobs = 0
        for a in range(lat_ptr[jj], lat_ptr[jj + 1]):
            r = lat_idx[a]
            wa = lat_w[a]
            x = pix_lat[r] / lat_width
            p_gap = p_dry + (p_wet - p_dry) * math.exp(-x * x)
            for b in range(lon_ptr[ii], lon_ptr[ii + 1]):
                q = lon_idx[b]
                if observable[r, q] == 0:
                    continue
                pos = land_pos[pix_row_cell[r] * nlon_parent + pix_col_cell[q]]
                if pos < 0:
                    continue
                w = wa * lon_w[b]
                wobs += w
                nobs += 1
                pid = r * n_cols_raster + q
                if uniform01(stream_prefix(seed, TAG_CLOUD, pid), tkey, 0) < p_gap:
                    continue
                t = truth_cell[pos]
                sd = max(sd_min, sd_a + sd_b * t)
                z = normal_pair(stream_prefix(seed, TAG_PIXEL_ERROR, pid), tkey, 0)[0]
                v = max(t + sd * z, 0.0)
                if not have:
                    ref = v
                    have = True
                acc += w * (v - ref)
                wsum += w
                vsum += w * w * sd * sd
                n += 1
        out_w_obs[c] = wobs
        out_w_valid[c] = wsum
        out_n_valid[c] = n
        out_n_obs[c] = nobs
        if n > 0:
            out_mean[c] = ref + acc / wsum
            out_var[c] = vsum / (wsum * wsum)
        else:
            out_mean[c] = np.nan
            out_var[c] = np.nan
