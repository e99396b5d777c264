"""Canopy water: interception, storage, throughfall and drip, and the wetted leaf fraction (CLM4 tech
note, Oleson et al. 2010, section 7.1; CLM4.0 ``Hydrology1Mod``, subroutines ``Hydrology1`` (canopy
part) and ``FracWet``).

For a patch whose canopy is not buried by snow (elai + esai >= 0.05, CLM's ``frac_veg_nosno`` = 1) and
precipitation P = rain + snow > 0:

- intercepted fraction f_pi = 0.25 (1 - exp(-0.5 (L + S))), as CLM4.0's ``Hydrology1`` computes it
  (the factor 0.25 on CLM3's 1 - exp(-0.5 (L + S)) dates from CLM3.5, Lawrence et al. 2007, J.
  Hydrometeorol. 8, 862-880; the issue's brief quoted the unscaled form and asked to check the code);
- W_can <- max(0, W_can + f_pi P dt); maximum storage W_max = 0.1 (L + S) mm (``dewmx`` = 0.1 mm);
  the excess over W_max drips off in the same step (q_drip = (W_can - W_max) / dt);
- throughfall (1 - f_pi) P, and drip split into rain and snow in the proportions of P;
- wetted fraction fwet = min(1, (W_can / W_max)^(2/3)) and the dry, transpiring leaf fraction
  fdry = (1 - fwet) L / (L + S) (Deardorff 1978, CLM4 ``FracWet``).

Otherwise all precipitation reaches the ground and W_can is unchanged. The water budget closes:
P = prec_grnd_rain + prec_grnd_snow + (W_can_new - W_can_old)/dt.

Reads (arguments): rain and snow rates at the column, exposed LAI/SAI and canopy water of each patch.
Writes its out_* arrays: canopy water after interception (H2OCAN, mm), interception, throughfall, drip
and precipitation reaching the ground (mm/s), fwet and fdry (1). Evaporation and dew on the canopy are
applied afterwards by ``canopy_fluxes``.
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.constants import VAI_MIN

#: Maximum canopy water per unit leaf+stem area (mm), CLM ``dewmx``.
DEWMX = 0.1


@njit
def interception_fraction(elai, esai):
    """CLM4.0 fraction of precipitation intercepted by the canopy: 0.25 (1 - exp(-0.5 (elai + esai)))."""
    return 0.25 * (1.0 - math.exp(-0.5 * (elai + esai)))


@njit
def wet_fraction(h2ocan, elai, esai):
    """CLM4 ``FracWet``: (fwet, fdry) for canopy water ``h2ocan`` (mm) and exposed elai, esai (m2/m2)."""
    vai = elai + esai
    if vai < VAI_MIN:
        return 0.0, 0.0
    if h2ocan > 0.0:
        fwet = min((h2ocan / (DEWMX * vai)) ** (2.0 / 3.0), 1.0)
    else:
        fwet = 0.0
    return fwet, (1.0 - fwet) * elai / vai


@njit
def canopy_hydrology(patch_col, forc_rain, forc_snow, elai, esai, h2ocan, dt, out_h2ocan, out_qflx_prec_intr,
                     out_qflx_through_rain, out_qflx_through_snow, out_qflx_candrip, out_qflx_prec_grnd_rain,
                     out_qflx_prec_grnd_snow, out_fwet, out_fdry):
    """Interception, storage, drip and throughfall for every patch and member.

    patch_col (npatch,) int; forc_rain, forc_snow (ncol, nmem): precipitation rates (mm/s);
    elai, esai (npatch, nmem): exposed leaf and stem area index (m2/m2); h2ocan (npatch, nmem): canopy
    water at the start of the step (mm); dt: time step (s).
    Fills (npatch, nmem): out_h2ocan (mm), out_qflx_prec_intr (interception, mm/s),
    out_qflx_through_rain / _snow (direct throughfall, mm/s), out_qflx_candrip (drip, mm/s),
    out_qflx_prec_grnd_rain / _snow (reaching the ground: throughfall + drip, mm/s), out_fwet,
    out_fdry (1, from the canopy water after interception).
    """
    npatch, nmem = elai.shape
    for p in range(npatch):
        c = patch_col[p]
        for m in range(nmem):
            rain = forc_rain[c, m]
            snow = forc_snow[c, m]
            vai = elai[p, m] + esai[p, m]
            w = h2ocan[p, m]
            intr = 0.0
            thr_rain = rain
            thr_snow = snow
            drip = 0.0
            fracrain = 0.0
            fracsnow = 0.0
            if vai >= VAI_MIN and rain + snow > 0.0:
                fracsnow = snow / (snow + rain)
                fracrain = rain / (snow + rain)
                wmax = DEWMX * vai
                fpi = interception_fraction(elai[p, m], esai[p, m])
                thr_snow = snow * (1.0 - fpi)
                thr_rain = rain * (1.0 - fpi)
                intr = (snow + rain) * fpi
                w = max(0.0, w + dt * intr)
                xrun = (w - wmax) / dt
                if xrun > 0.0:
                    drip = xrun
                    w = wmax
            out_h2ocan[p, m] = w
            out_qflx_prec_intr[p, m] = intr
            out_qflx_through_rain[p, m] = thr_rain
            out_qflx_through_snow[p, m] = thr_snow
            out_qflx_candrip[p, m] = drip
            out_qflx_prec_grnd_snow[p, m] = thr_snow + drip * fracsnow
            out_qflx_prec_grnd_rain[p, m] = thr_rain + drip * fracrain
            fwet, fdry = wet_fraction(w, elai[p, m], esai[p, m])
            out_fwet[p, m] = fwet
            out_fdry[p, m] = fdry


__all__ = ["DEWMX", "canopy_hydrology", "interception_fraction", "wet_fraction"]
