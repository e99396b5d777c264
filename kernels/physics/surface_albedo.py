"""Ground albedos: soil colour and top-layer moisture, snow (BATS), snow-cover weighting; snow age.

Soil and ground: CLM4 technical note (Oleson et al. 2010, NCAR/TN-478+STR) section 3.2, with the
equation labels of its reStructuredText edition (``ESCOMP/CTSM``,
``doc/source/tech_note/Surface_Albedos``): ground albedo = soil albedo (1 - f_sno) + snow albedo
f_sno (eqs. 3.58-3.59); soil albedo (alpha_sat + Delta) <= alpha_dry with
Delta = max(0.11 - 0.40 theta_1, 0) (eq. 3.61) and the 20 soil colour classes of the table "Dry and
saturated soil albedos" (CLM4.0 ``SurfaceAlbedoMod`` ``albsat``/``albdry`` for mxsoil_color = 20).

Snow: CLM4.0 computes snow albedo with SNICAR (Flanner and Zender 2005, Flanner et al. 2007), which
needs snow layers, grain size and aerosol state that laida does not carry. This module uses instead
the documented BATS scheme (Dickinson, Henderson-Sellers and Kennedy 1993, NCAR/TN-387+STR, as used
by CLM2 and CLM3.0: CLM3.0 technical note, Oleson et al. 2004, NCAR/TN-461+STR, section 3.2
"Ground Albedos", snow albedo and snow age; constants as in CLM2/CLM3's ``SnowAlbedo``/``SnowAge``
code), i.e. CLM3's snow albedo with its age and zenith-angle corrections:

    diffuse:  alpha_vis = 0.95 (1 - 0.2 F_age),  alpha_nir = 0.65 (1 - 0.5 F_age),  F_age = tau/(1+tau)
    direct:   alpha_dir = alpha_dif + 0.4 f(mu) (1 - alpha_dif),
              f(mu) = max(0, [(1 + 1/b)/(1 + 2 b mu) - 1/b]),  b = 2

and the non-dimensional snow age tau (BATS/CLM3 ``SnowAge``):

    d tau = 1e-6 dt [exp(5000 (1/T_f - 1/T_g)) + exp(min(0, 50000 (1/T_f - 1/T_g))) + 0.3]
    tau <- max(0, (tau + d tau)(1 - 0.1 max(0, W_sno - W_sno_old)))     (snowfall in mm resets it)
    tau = 0 without snow or with W_sno > 800 mm (permanent snow stays fresh)

Reads column state ``h2osoi_vol_top[c, m]`` (volumetric water of soil layer 1, m3/m3), soil colour
``isoicol[c]`` (1-20), ``frac_sno[c, m]`` (snow-covered fraction, 1), ``snow_age[c, m]`` (1),
``t_grnd[c, m]`` (K), ``h2osno[c, m]`` (mm) and ``coszen[c]``. Writes only its ``out_*`` arrays.
Band 0 is visible, 1 near-infrared.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.physics.constants import TFRZ


#: soil albedo, saturated, by colour class 1..20 (row 0 unused), bands (vis, nir):
#: CLM4 tech note table "Dry and saturated soil albedos"; CLM4.0 ``albsat`` (mxsoil_color = 20)
SOIL_ALBSAT = np.array(
    [[np.nan, np.nan]]
    + [list(v) for v in zip(
        (0.25, 0.23, 0.21, 0.20, 0.19, 0.18, 0.17, 0.16, 0.15, 0.14,
         0.13, 0.12, 0.11, 0.10, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04),
        (0.50, 0.46, 0.42, 0.40, 0.38, 0.36, 0.34, 0.32, 0.30, 0.28,
         0.26, 0.24, 0.22, 0.20, 0.18, 0.16, 0.14, 0.12, 0.10, 0.08))],
    dtype=np.float64)

#: soil albedo, dry, by colour class 1..20 (row 0 unused), bands (vis, nir): CLM4.0 ``albdry``
SOIL_ALBDRY = np.array(
    [[np.nan, np.nan]]
    + [list(v) for v in zip(
        (0.36, 0.34, 0.32, 0.31, 0.30, 0.29, 0.28, 0.27, 0.26, 0.25,
         0.24, 0.23, 0.22, 0.20, 0.18, 0.16, 0.14, 0.12, 0.10, 0.08),
        (0.61, 0.57, 0.53, 0.51, 0.49, 0.48, 0.45, 0.43, 0.41, 0.39,
         0.37, 0.35, 0.33, 0.31, 0.29, 0.27, 0.25, 0.23, 0.21, 0.16))],
    dtype=np.float64)

#: number of soil colour classes
NSOILCOLOR = 20

#: BATS fresh-snow albedos (zenith < 60 deg): visible, near-infrared (Dickinson et al. 1993)
SNOW_ALB0_VIS = 0.95
SNOW_ALB0_NIR = 0.65
#: BATS snow-age reduction coefficients C_s (visible) and C_n (near-infrared)
SNOW_AGE_CVIS = 0.2
SNOW_AGE_CNIR = 0.5
#: BATS zenith-angle factor b
SNOW_ZEN_B = 2.0


def check_soil_color(isoicol) -> None:
    """Raise ``ValueError`` naming the offending columns if any soil colour is outside 1..20."""
    a = np.asarray(isoicol)
    bad = np.flatnonzero((a < 1) | (a > NSOILCOLOR))
    if bad.size:
        raise ValueError(
            f"soil colour class (isoicol) must be 1..{NSOILCOLOR} (CLM4 20-class table); "
            f"columns {bad[:10].tolist()} have {a[bad[:10]].tolist()}")


@njit
def soil_albedo(isoicol, h2osoi_vol_top, albsat, albdry, out_albsod, out_albsoi):
    """Soil albedo from colour class and top-layer water (tech note eq. 3.61).

    Inputs: ``isoicol[c]`` colour class 1..20; ``h2osoi_vol_top[c, m]`` volumetric water content
    of soil layer 1 (m3/m3); ``albsat``, ``albdry`` tables [class, band] (:data:`SOIL_ALBSAT`,
    :data:`SOIL_ALBDRY`). Outputs ``out_albsod[c, b, m]``, ``out_albsoi[c, b, m]``: direct and
    diffuse soil albedo (1), equal (no zenith dependence):
    min(albsat + max(0.11 - 0.40 theta_1, 0), albdry).
    """
    ncol = h2osoi_vol_top.shape[0]
    nmem = h2osoi_vol_top.shape[1]
    for c in range(ncol):
        k = isoicol[c]
        for ib in range(2):
            sat = albsat[k, ib]
            dry = albdry[k, ib]
            for m in range(nmem):
                inc = max(0.11 - 0.40 * h2osoi_vol_top[c, m], 0.0)
                a = min(sat + inc, dry)
                out_albsod[c, ib, m] = a
                out_albsoi[c, ib, m] = a


@njit
def snow_albedo_bats(coszen, snow_age, out_albsnd, out_albsni):
    """BATS snow albedo with age and zenith-angle corrections (Dickinson et al. 1993; CLM3.0 tech
    note section 3.2; see the module docstring for the equations).

    Inputs: ``coszen[c]`` cosine of the solar zenith angle (floored at 0.001 as CLM3 does);
    ``snow_age[c, m]`` non-dimensional snow age tau (>= 0). Outputs ``out_albsnd[c, b, m]`` and
    ``out_albsni[c, b, m]``: direct and diffuse snow albedo (1).
    """
    ncol = snow_age.shape[0]
    nmem = snow_age.shape[1]
    b = SNOW_ZEN_B
    for c in range(ncol):
        mu = max(0.001, coszen[c])
        fzen = max((1.0 + 1.0 / b) / (1.0 + 2.0 * b * mu) - 1.0 / b, 0.0)
        for m in range(nmem):
            tau = snow_age[c, m]
            fage = tau / (1.0 + tau)
            avis = SNOW_ALB0_VIS * (1.0 - SNOW_AGE_CVIS * fage)
            anir = SNOW_ALB0_NIR * (1.0 - SNOW_AGE_CNIR * fage)
            out_albsni[c, 0, m] = avis
            out_albsni[c, 1, m] = anir
            out_albsnd[c, 0, m] = avis + 0.4 * fzen * (1.0 - avis)
            out_albsnd[c, 1, m] = anir + 0.4 * fzen * (1.0 - anir)


@njit
def snow_age_bats(dtime, t_grnd, h2osno, h2osno_old, snow_age, out_snow_age):
    """Advance the BATS non-dimensional snow age by one step (CLM3 ``SnowAge``; Dickinson et al.
    1993; equations in the module docstring).

    Inputs: ``dtime`` step (s); ``t_grnd[c, m]`` ground (snow surface) temperature (K);
    ``h2osno[c, m]`` and ``h2osno_old[c, m]`` snow water equivalent now and at the previous step
    (mm); ``snow_age[c, m]`` age at the previous step (1). Output ``out_snow_age[c, m]`` (may be the
    same array as ``snow_age``). New snow of 10 mm water equivalent resets the age to 0.
    """
    ncol = t_grnd.shape[0]
    nmem = t_grnd.shape[1]
    for c in range(ncol):
        for m in range(nmem):
            w = h2osno[c, m]
            if w <= 0.0 or w > 800.0:
                out_snow_age[c, m] = 0.0
                continue
            arg = 5000.0 * (1.0 / TFRZ - 1.0 / t_grnd[c, m])
            arg2 = min(0.0, 10.0 * arg)
            dela = 1.0e-6 * dtime * (np.exp(arg) + np.exp(arg2) + 0.3)
            dels = 0.1 * max(0.0, w - h2osno_old[c, m])
            out_snow_age[c, m] = max(0.0, (snow_age[c, m] + dela) * (1.0 - dels))


@njit
def ground_albedo(albsod, albsoi, albsnd, albsni, frac_sno, out_albgrd, out_albgri):
    """Ground albedo weighted by snow cover (tech note eqs. 3.58-3.59).

    Inputs ``albsod, albsoi, albsnd, albsni [c, b, m]`` soil and snow albedos, direct/diffuse (1);
    ``frac_sno[c, m]`` fraction of the ground covered by snow (1). Outputs
    ``out_albgrd[c, b, m] = albsod (1 - f_sno) + albsnd f_sno`` and the same for diffuse.
    """
    ncol = frac_sno.shape[0]
    nmem = frac_sno.shape[1]
    for c in range(ncol):
        for ib in range(2):
            for m in range(nmem):
                f = frac_sno[c, m]
                out_albgrd[c, ib, m] = albsod[c, ib, m] * (1.0 - f) + albsnd[c, ib, m] * f
                out_albgri[c, ib, m] = albsoi[c, ib, m] * (1.0 - f) + albsni[c, ib, m] * f


__all__ = [
    "NSOILCOLOR",
    "SOIL_ALBDRY",
    "SOIL_ALBSAT",
    "check_soil_color",
    "ground_albedo",
    "snow_age_bats",
    "snow_albedo_bats",
    "soil_albedo",
]
