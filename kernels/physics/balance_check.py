"""Column water storage and the energy and water budget residuals of one step (CLM4.0
``BalanceCheckMod``; CLM4 tech note, Oleson et al. 2010, the water balance of section 7.6 and the
energy balance of section 5.1), in single passes over the arrays.

Reads the canopy water of the patches with their column and weight, the snow and soil water of the
columns, and the step's fluxes; writes only its ``out_*`` arrays. Every sum is taken in the order of
the NumPy expressions it replaces (levels from the top, patches in patch order, terms left to right),
so the results are the same bits for any block of columns.
"""

from __future__ import annotations

from kernels._jit import njit
from kernels.physics.subgrid_average import patch_to_column


@njit
def soil_water_columns(h2osoi_liq, h2osoi_ice, nlev, out_liq, out_ice):
    """Soil liquid water and ice of the top ``nlev`` layers, summed from the top (mm).

    h2osoi_liq, h2osoi_ice [c, lev, m] (mm); writes out_liq[c, m], out_ice[c, m] (mm)."""
    ncol = h2osoi_liq.shape[0]
    nm = h2osoi_liq.shape[2]
    for c in range(ncol):
        for m in range(nm):
            out_liq[c, m] = h2osoi_liq[c, 0, m]
            out_ice[c, m] = h2osoi_ice[c, 0, m]
        for k in range(1, nlev):
            for m in range(nm):
                out_liq[c, m] += h2osoi_liq[c, k, m]
                out_ice[c, m] += h2osoi_ice[c, k, m]


@njit
def column_water_storage(patch_col, patch_wt, h2ocan, snow_ice, snow_liq, soil_liq, soil_ice, out):
    """Water stored in each column (mm): canopy water sum_p w_p h2ocan_p + snow ice + snow liquid +
    soil liquid + soil ice (the last two from :func:`soil_water_columns`).

    patch_col[p], patch_wt[p] (1); h2ocan[p, m] (mm); snow_ice, snow_liq, soil_liq, soil_ice [c, m]
    (mm); writes out[c, m] (mm)."""
    ncol, nm = out.shape
    patch_to_column(patch_col, patch_wt, h2ocan, out)
    for c in range(ncol):
        for m in range(nm):
            out[c, m] = out[c, m] + snow_ice[c, m] + snow_liq[c, m] + (soil_liq[c, m] + soil_ice[c, m])


@njit
def budget_residuals(dt, patch_col, patch_wt, fsa, fira, fsh, lh, qevap_can, qtran, h_before, h_after, adv_snow,
                     adv_soil, evap_g, rain, snow, qover, qdrain, w_before, w_after, out_energy, out_water):
    """Energy (W/m2) and water (mm) residuals of one step per column and member.

    Energy: sum_p w_p (FSA - FIRA - FSH - EFLX_LH_TOT) - (H_after - H_before)/dt + A_snow + A_soil;
    water: (RAIN + SNOW - ET - QOVER - QDRAI) dt - (W_after - W_before), ET = sum_p w_p (q_evap,can +
    q_tran) + ground evaporation.

    dt (s); patch_col[p], patch_wt[p] (1); fsa, fira, fsh, lh [p, m] (W/m2); qevap_can, qtran [p, m]
    (mm/s); h_before, h_after [c, m] (J/m2); adv_snow, adv_soil [c, m] (W/m2); evap_g, rain, snow,
    qover, qdrain [c, m] (mm/s); w_before, w_after [c, m] (mm). Writes out_energy, out_water [c, m]
    (out_water is used as scratch for ET on the way)."""
    ncol, nm = out_energy.shape
    for c in range(ncol):
        for m in range(nm):
            out_energy[c, m] = 0.0
            out_water[c, m] = 0.0
    for p in range(patch_col.shape[0]):
        c = patch_col[p]
        w = patch_wt[p]
        for m in range(nm):
            out_energy[c, m] += w * (fsa[p, m] - fira[p, m] - fsh[p, m] - lh[p, m])
            out_water[c, m] += w * (qevap_can[p, m] + qtran[p, m])
    for c in range(ncol):
        for m in range(nm):
            out_energy[c, m] = (out_energy[c, m] - (h_after[c, m] - h_before[c, m]) / dt + adv_snow[c, m]
                                + adv_soil[c, m])
            et = out_water[c, m] + evap_g[c, m]
            out_water[c, m] = ((rain[c, m] + snow[c, m] - et - qover[c, m] - qdrain[c, m]) * dt
                               - (w_after[c, m] - w_before[c, m]))


@njit
def within_tolerance(resid, tol):
    """True when |resid| <= tol everywhere (NaN fails), in one pass."""
    nbad = 0
    for c in range(resid.shape[0]):
        for m in range(resid.shape[1]):
            nbad += 0 if abs(resid[c, m]) <= tol else 1
    return nbad == 0


__all__ = ["budget_residuals", "column_water_storage", "soil_water_columns", "within_tolerance"]
