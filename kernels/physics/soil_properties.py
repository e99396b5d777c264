"""Soil hydraulic and thermal properties from texture, root fractions and the soil-water stress
factor (CLM4 tech note, Oleson et al. 2010, chapters 6, 7 and 8).

Hydraulic (Clapp and Hornberger 1978 functional forms with the Cosby et al. 1984 pedotransfer
regressions, as CLM4 ch. 7 uses them for mineral soil; CLM4's organic-matter mixing is not applied):

    theta_sat = 0.489 - 0.00126 (%sand)                           porosity (m3/m3)
    psi_sat   = -10 * 10^(1.88 - 0.0131 (%sand))                  saturated matric potential (mm, < 0)
    B         = 2.91 + 0.159 (%clay)                              Clapp-Hornberger exponent (1)
    k_sat     = 0.0070556 * 10^(-0.884 + 0.0153 (%sand))          saturated conductivity (mm/s)
    psi = psi_sat s^-B,  k = k_sat s^(2B + 3),  s = theta/theta_sat

Thermal (CLM4 section 6.3 'Soil and snow thermal properties'; Farouki 1981, Johansen 1975):

    lambda_s   = (8.80 %sand + 2.92 %clay) / (%sand + %clay)      solid conductivity (W/m/K)
    lambda_dry = (0.135 rho_d + 64.7) / (2700 - 0.947 rho_d),  rho_d = 2700 (1 - theta_sat)   (W/m/K)
    lambda_sat = lambda_s^(1 - theta_sat) lambda_liq^(f_l theta_sat) lambda_ice^((1 - f_l) theta_sat)
    Ke         = log10(S_r) + 1 (>= 0) unfrozen,   Ke = S_r frozen   (Kersten number)
    lambda     = Ke lambda_sat + (1 - Ke) lambda_dry   (lambda_dry when S_r <= 1e-7)
    c_s        = (2.128 %sand + 2.385 %clay) / (%sand + %clay) * 1e6       (J/m3/K)
    C          = c_s (1 - theta_sat) dz + c_ice w_ice + c_liq w_liq       (J/m2/K per layer)

S_r is the degree of saturation (liquid + ice volume over theta_sat) and f_l the liquid share of
the water volume. Bedrock (levels 11-15): lambda = 3 W/m/K, c_s = 2e6 J/m3/K, no pores (CLM4).

Rooting (Zeng 2001; CLM4 ch. 8, ``rootfr``): the fraction of roots in layer j is
    r_j = 0.5 [exp(-r_a zi_{j-1}) + exp(-r_b zi_{j-1}) - exp(-r_a zi_j) - exp(-r_b zi_j)],  j < 10
    r_10 = 0.5 [exp(-r_a zi_9) + exp(-r_b zi_9)]     (all roots below zi_9 in the last active layer)
with the per-PFT r_a, r_b of ``engine.pftcon`` (``roota_par``, ``rootb_par``).

Soil-water stress (CLM4 ch. 8, ``rootr``/``btran`` of CanopyFluxes): for layers with liquid water
and T > T_f - 2 K, w_j = min(1, (theta_eff/theta_sat) (psi_j - psi_c)/(psi_o - psi_c)) with
psi_j = max(psi_c, psi_sat s^-B) and s = max(0.01, theta_liq/theta_eff), theta_eff = theta_sat -
theta_ice; btran = sum_j r_j w_j and rootr_j = r_j w_j / btran (the share of transpiration drawn
from layer j).

Reads: texture ``sand[c, k]``, ``clay[c, k]`` (percent, k = 0..9 for CLM layers 1..10); soil state
``h2osoi_liq/ice[c, k, m]`` (mm) and ``t_soisno[c, k, m]`` (K) for the stress factor. Writes only
the returned or ``out_*`` arrays.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from kernels._jit import njit
from kernels.vmath import vexp, vlog, vpow
from kernels.physics.constants import (
    CPICE, CPLIQ, CSOL_BEDROCK, DENH2O, DENICE, TFRZ, TKAIR, TKBEDROCK, TKICE, TKWAT,
)
from kernels.physics.soil_layers import NLEVGRND, NLEVSOI

_LOG_TKWAT = math.log(TKWAT)
_INV_LN10 = 1.0 / math.log(10.0)
_LOG_TKICE = math.log(TKICE)

#: Soil parameters per column and soil level (all float64 arrays of shape (ncol, NLEVGRND)):
#: ``watsat`` porosity (m3/m3, 0 in bedrock), ``sucsat`` psi_sat (mm, < 0), ``bsw`` B (1), ``hksat``
#: k_sat (mm/s, 0 in bedrock), ``tkmg`` lambda_s^(1 - theta_sat) (W/m/K), ``tkdry`` (W/m/K),
#: ``csol`` solid heat capacity (J/m3/K). Bedrock levels (k >= NLEVSOI) copy sucsat and bsw of level
#: NLEVSOI - 1; they hold no water.
SoilParams = namedtuple("SoilParams", ["watsat", "sucsat", "bsw", "hksat", "tkmg", "tkdry", "csol"])


@njit
def soil_params_fill(sand, clay, out_watsat, out_sucsat, out_bsw, out_hksat, out_tkmg, out_tkdry, out_csol):
    """Fill the (ncol, NLEVGRND) parameter arrays from texture (CLM4 chs. 6-7; module docstring).

    Inputs ``sand[c, k]``, ``clay[c, k]`` (percent, k = 0..NLEVSOI-1; sand + clay > 0). Outputs in
    the units of :data:`SoilParams`.
    """
    ncol = sand.shape[0]
    for c in range(ncol):
        for k in range(NLEVGRND):
            kk = min(k, NLEVSOI - 1)
            sa = sand[c, kk]
            cl = clay[c, kk]
            out_sucsat[c, k] = -10.0 * 10.0 ** (1.88 - 0.0131 * sa)
            out_bsw[c, k] = 2.91 + 0.159 * cl
            if k < NLEVSOI:
                ws = 0.489 - 0.00126 * sa
                out_watsat[c, k] = ws
                out_hksat[c, k] = 0.0070556 * 10.0 ** (-0.884 + 0.0153 * sa)
                tkm = (8.80 * sa + 2.92 * cl) / (sa + cl)
                out_tkmg[c, k] = tkm ** (1.0 - ws)
                bd = 2700.0 * (1.0 - ws)
                out_tkdry[c, k] = (0.135 * bd + 64.7) / (2700.0 - 0.947 * bd)
                out_csol[c, k] = (2.128 * sa + 2.385 * cl) / (sa + cl) * 1.0e6
            else:
                out_watsat[c, k] = 0.0
                out_hksat[c, k] = 0.0
                out_tkmg[c, k] = TKBEDROCK
                out_tkdry[c, k] = TKBEDROCK
                out_csol[c, k] = CSOL_BEDROCK


def soil_params(sand, clay) -> SoilParams:
    """:class:`SoilParams` for texture ``sand[c, NLEVSOI]``, ``clay[c, NLEVSOI]`` (percent).

    Raises ValueError naming the variable if a texture is outside [0, 100], not finite, if
    sand + clay exceeds 100 or is 0, or if the shapes differ from (ncol, NLEVSOI).
    """
    sand = np.ascontiguousarray(sand, dtype=np.float64)
    clay = np.ascontiguousarray(clay, dtype=np.float64)
    for name, a in (("sand", sand), ("clay", clay)):
        if a.ndim != 2 or a.shape[1] != NLEVSOI:
            raise ValueError(f"soil_params: {name} must have shape (ncol, {NLEVSOI}), got {a.shape}")
        if not np.all(np.isfinite(a)) or np.any(a < 0.0) or np.any(a > 100.0):
            raise ValueError(f"soil_params: {name} (percent) must be finite and within [0, 100]")
    if sand.shape != clay.shape:
        raise ValueError(f"soil_params: sand {sand.shape} and clay {clay.shape} differ in shape")
    tot = sand + clay
    if np.any(tot > 100.0 + 1e-9) or np.any(tot <= 0.0):
        raise ValueError("soil_params: sand + clay (percent) must lie in (0, 100]")
    ncol = sand.shape[0]
    arrs = [np.empty((ncol, NLEVGRND)) for _ in SoilParams._fields]
    soil_params_fill(sand, clay, *arrs)
    return SoilParams(*arrs)


@njit
def soil_thermal_conductivity(liq, ice, dz, t, watsat, tkmg, tkdry):
    """Thermal conductivity (W/m/K) of one soil layer (CLM4 section 6.3, Johansen/Farouki).

    ``liq``, ``ice`` layer water (mm = kg/m2); ``dz`` thickness (m); ``t`` temperature (K);
    ``watsat`` porosity (0 marks bedrock: returns ``tkdry``); ``tkmg`` lambda_s^(1-theta_sat) and
    ``tkdry`` dry conductivity (W/m/K). Written with selects instead of branches and with
    ``vmath``'s log and exp (a few ulp from the C library's), so that member loops calling it
    vectorise; the branches not taken may produce inf or nan, which the selects discard.
    """
    vliq = liq / (DENH2O * dz)
    vice = ice / (DENICE * dz)
    satw = min(1.0, (vliq + vice) / watsat)
    dke_thawed = max(0.0, vlog(satw) * _INV_LN10 + 1.0)  # log10(S_r) + 1
    dke = dke_thawed if t >= TFRZ else satw
    fl = vliq / (vliq + vice)
    # tkmg * TKWAT**(fl watsat) * TKICE**((1 - fl) watsat), with one exp
    dksat = tkmg * vexp(watsat * (fl * _LOG_TKWAT + (1.0 - fl) * _LOG_TKICE))
    lam = dke * dksat + (1.0 - dke) * tkdry
    lam = lam if satw > 1.0e-7 else tkdry
    return lam if watsat > 0.0 else tkdry


@njit
def soil_heat_capacity(liq, ice, dz, watsat, csol):
    """Heat capacity (J/m2/K) of one soil layer: c_s (1 - theta_sat) dz + c_ice ice + c_liq liq
    (CLM4 section 6.3); ``liq``, ``ice`` in mm, ``dz`` in m, ``csol`` in J/m3/K."""
    return csol * (1.0 - watsat) * dz + CPICE * ice + CPLIQ * liq


@njit
def snow_thermal_conductivity(liq, ice, dz):
    """Snow thermal conductivity (W/m/K), Jordan (1991) as CLM4 section 6.3:
    lambda = lambda_air + (7.75e-5 rho + 1.105e-6 rho^2)(lambda_ice - lambda_air), rho = (liq+ice)/dz."""
    rho = (liq + ice) / dz
    return TKAIR + (7.75e-5 * rho + 1.105e-6 * rho * rho) * (TKICE - TKAIR)


def root_fractions(roota: float, rootb: float) -> np.ndarray:
    """Zeng (2001) root fractions of the NLEVSOI hydrologically active layers (sum exactly 1 in
    exact arithmetic; CLM4 ``rootfr``). ``roota``, ``rootb`` in 1/m."""
    from kernels.physics.soil_layers import soil_levels

    _, _, zi = soil_levels()
    r = np.empty(NLEVSOI)
    for j in range(NLEVSOI - 1):
        r[j] = 0.5 * (np.exp(-roota * zi[j]) + np.exp(-rootb * zi[j])
                      - np.exp(-roota * zi[j + 1]) - np.exp(-rootb * zi[j + 1]))
    r[NLEVSOI - 1] = 0.5 * (np.exp(-roota * zi[NLEVSOI - 1]) + np.exp(-rootb * zi[NLEVSOI - 1]))
    return r


def patch_root_fractions(patch_pft, roota_par, rootb_par) -> np.ndarray:
    """``rootfr[p, NLEVSOI]`` for patches with PFT ``patch_pft[p]`` and the per-PFT Zeng parameters
    ``roota_par``, ``rootb_par`` (1/m; ``engine.pftcon.pft_record()``). PFT 0 (bare soil) gets zeros."""
    patch_pft = np.asarray(patch_pft)
    out = np.zeros((patch_pft.size, NLEVSOI))
    for p, ivt in enumerate(patch_pft):
        if ivt > 0:
            out[p] = root_fractions(float(roota_par[ivt]), float(rootb_par[ivt]))
    return out


@njit
def soil_water_stress(patch_col, patch_pft, rootfr, smpso, smpsc, dz, watsat, sucsat, bsw,
                      h2osoi_liq, h2osoi_ice, t_soisno, out_rootr, out_btran):
    """Layer wetness factors, BTRAN and the transpiration shares ``rootr`` (CLM4 ch. 8, CanopyFluxes).

    Inputs: ``patch_col[p]``, ``patch_pft[p]`` (int); ``rootfr[p, NLEVSOI]`` (1); ``smpso``, ``smpsc``
    per-PFT potentials at full opening / closure (mm, < 0; pftcon); ``dz[NLEVGRND]`` (m); soil
    parameters ``watsat, sucsat, bsw [c, NLEVGRND]``; ``h2osoi_liq, h2osoi_ice [c, NLEVGRND, m]``
    (mm); ``t_soisno[c, NLEVGRND, m]`` (K). Outputs ``out_rootr[p, NLEVSOI, m]`` (1, sums to 1
    when btran > 0, else all 0) and ``out_btran[p, m]`` (1, in [0, 1]; 0 for bare soil, PFT 0).

    The column part (effective porosity and psi = sucsat s^-b of every layer and member) is computed
    once per column and reused by the column's following patches (patches of a column are usually
    adjacent in ``patch_col``); the result does not depend on the patch order.
    """
    npatch = patch_col.shape[0]
    nm = h2osoi_liq.shape[2]
    eff_col = np.empty((NLEVSOI, nm))  # effective porosity (1); < 0 marks a layer without uptake
    psi_col = np.empty((NLEVSOI, nm))  # matric potential before the PFT's lower limit (mm)
    bt_acc = np.empty(nm)  # BTRAN of the patch being done, per member
    c_done = -1
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        if ivt == 0:
            for k in range(NLEVSOI):
                for m in range(nm):
                    out_rootr[p, k, m] = 0.0
            for m in range(nm):
                out_btran[p, m] = 0.0
            continue
        if c != c_done:
            # branch-free member loops (selects), s^-B by vmath.vpow: they vectorise
            for k in range(NLEVSOI):
                ws = watsat[c, k]
                psat = sucsat[c, k]
                nb = -bsw[c, k]
                dzi = dz[k] * DENICE
                dzl = dz[k] * DENH2O
                for m in range(nm):
                    liq = h2osoi_liq[c, k, m]
                    vol_ice = min(ws, h2osoi_ice[c, k, m] / dzi)
                    eff = ws - vol_ice
                    vol_liq = min(eff, liq / dzl)
                    s = max(vol_liq / eff, 0.01)
                    ok = liq > 0.0 and t_soisno[c, k, m] > TFRZ - 2.0 and vol_liq > 0.0
                    eff_col[k, m] = eff if ok else -1.0
                    psi_col[k, m] = psat * vpow(s, nb)
            c_done = c
        # layers outer, members inner (contiguous); each member's BTRAN sum runs over the layers in order
        psc = smpsc[ivt]
        dpsi = smpso[ivt] - psc
        for m in range(nm):
            bt_acc[m] = 0.0
        for k in range(NLEVSOI):
            ws = watsat[c, k]
            rf = rootfr[p, k]
            for m in range(nm):
                eff = eff_col[k, m]
                smp = max(psc, psi_col[k, m])
                w = min(1.0, (eff / ws) * (smp - psc) / dpsi)
                rw = rf * w if eff >= 0.0 else 0.0
                out_rootr[p, k, m] = rw
                bt_acc[m] += rw
        for m in range(nm):
            out_btran[p, m] = bt_acc[m]
        for k in range(NLEVSOI):
            for m in range(nm):
                bt = bt_acc[m]
                out_rootr[p, k, m] = out_rootr[p, k, m] / bt if bt > 0.0 else out_rootr[p, k, m]


@njit
def column_rootr(patch_col, patch_wt, qflx_tran_patch, rootr, out_qflx_tran, out_rootr_col):
    """Column transpiration and its layer shares from the patches (CLM4 Hydrology2 ``rootr_col``).

    Inputs ``patch_col[p]``, ``patch_wt[p]`` (1, column fractions); ``qflx_tran_patch[p, m]``
    (mm/s); ``rootr[p, NLEVSOI, m]`` (1). Outputs ``out_qflx_tran[c, m]`` = sum_p wt_p q_p (mm/s)
    and ``out_rootr_col[c, NLEVSOI, m]`` = sum_p wt_p q_p rootr_p / out_qflx_tran (1; 0 where the
    column transpires nothing).
    """
    ncol = out_qflx_tran.shape[0]
    nm = out_qflx_tran.shape[1]
    for c in range(ncol):
        for m in range(nm):
            out_qflx_tran[c, m] = 0.0
        for k in range(NLEVSOI):
            for m in range(nm):
                out_rootr_col[c, k, m] = 0.0
    q = np.empty(nm)
    for p in range(patch_col.shape[0]):
        c = patch_col[p]
        for m in range(nm):
            q[m] = patch_wt[p] * qflx_tran_patch[p, m]
            out_qflx_tran[c, m] += q[m]
        for k in range(NLEVSOI):
            for m in range(nm):
                out_rootr_col[c, k, m] += q[m] * rootr[p, k, m]
    for c in range(ncol):
        for k in range(NLEVSOI):
            for m in range(nm):
                qc = out_qflx_tran[c, m]
                out_rootr_col[c, k, m] = out_rootr_col[c, k, m] / qc if qc != 0.0 else 0.0


__all__ = [
    "SoilParams", "soil_params", "soil_params_fill",
    "soil_thermal_conductivity", "soil_heat_capacity", "snow_thermal_conductivity", "root_fractions",
    "patch_root_fractions", "soil_water_stress", "column_rootr",
]
