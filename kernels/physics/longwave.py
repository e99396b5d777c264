"""Longwave radiation: emissivities, canopy and ground net longwave with their temperature
derivatives, emitted longwave and FIRA.

CLM4 technical note (Oleson et al. 2010, NCAR/TN-478+STR) section 4.2 "Longwave Fluxes", with the
equation labels of its reStructuredText edition (``ESCOMP/CTSM``,
``doc/source/tech_note/Radiative_Fluxes``, CLM5.0 text with CLM4's longwave equations):
eq. 4.9 net longwave L = L_up - L_atm_dn (CLM history FIRA, positive = net loss to the
atmosphere); 4.11-4.14 upward longwave above bare ground and above the vegetation/ground system;
4.15-4.16 upward from the ground and downward below the canopy; 4.17 net longwave of the ground;
4.18 net longwave of the vegetation; 4.19 ground emissivity; 4.20 canopy emissivity
eps_v = 1 - exp(-(L + S)/mu_bar), mu_bar = 1. The code follows CLM4.0
``CanopyFluxes`` (air, bir, cir, dlrad, ulrad) and ``Biogeophysics2``/``SoilFluxes``
(eflx_lwrad_out, eflx_lwrad_net).

Radiation budget (absorptivity = emissivity, canopy transmissivity 1 - eps_v, no canopy
reflection): of the atmospheric flux L_atm, the canopy absorbs eps_v [1 + (1 - eps_g)(1 - eps_v)],
the ground eps_g (1 - eps_v) and (1 - eps_g)(1 - eps_v)^2 is reflected back to space; these sum to
1. With emission, FIRA = (net loss of the canopy) + (net loss of the ground), exactly.

Emission is linearised about the previous temperature as CLM does for the implicit solves:
sigma T^4 -> sigma T_n^3 (T_n + 4 dT) for the vegetation (dT = T_v^{n+1} - T_v^n) and the ground
(dT = T_g^{n+1} - T_g^n). As in CLM4 (eq. 4.13), the ground's change 4 eps_g sigma T_g^3 dT_g goes
to the atmosphere in full and is not seen by the canopy, whose balance was closed before the soil
solve; so FIRA = L_v + L_g holds for any dT_g. With dT = 0 the kernels give the fluxes at T_n and
the derivatives the solvers need: d(L_v)/dT_v = 4 eps_v sigma [2 - eps_v (1 - eps_g)] T_v^3
(CLM4.0 ``-4 bir T^3``) and d(L_g)/dT_g = 4 eps_g sigma T_g^3.

Reads patch state ``elai, esai, t_veg [p, m]``, the vegetated flag ``frac_veg_nosno[p, m]`` (1 if
elai + esai >= 0.05, CLM4's delta_veg) and column state ``t_grnd, frac_sno, forc_lwrad [c, m]``.
Writes only its ``out_*`` arrays.
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.constants import SB


#: emissivity of bare soil and of snow (tech note eq. 4.19)
EMISS_SOIL = 0.96
EMISS_SNOW = 0.97

#: average inverse optical depth for longwave radiation (tech note eq. 4.20)
MUBAR_LW = 1.0


@njit
def ground_emissivity(frac_sno, out_emg):
    """Ground emissivity eps_g = 0.96 (1 - f_sno) + 0.97 f_sno (tech note eq. 4.19).

    Input ``frac_sno[c, m]`` snow-covered fraction of the ground (1); output ``out_emg[c, m]`` (1).
    """
    ncol = frac_sno.shape[0]
    nmem = frac_sno.shape[1]
    for c in range(ncol):
        for m in range(nmem):
            f = frac_sno[c, m]
            out_emg[c, m] = EMISS_SOIL * (1.0 - f) + EMISS_SNOW * f


@njit
def ground_emission(t_grnd, emg, out_lwrad_emit, out_dlwrad_emit):
    """Longwave emitted by the ground and its temperature derivative (tech note eqs. 4.15, 4.17;
    CLM4.0 ``SoilTemperature`` ``lwrad_emit``, ``dlwrad_emit``), the terms of the soil/snow
    surface energy balance.

    Inputs ``t_grnd[c, m]`` ground temperature (K), ``emg[c, m]`` ground emissivity (1). Outputs
    ``out_lwrad_emit[c, m] = eps_g sigma T_g^4`` (W/m2) and
    ``out_dlwrad_emit[c, m] = 4 eps_g sigma T_g^3`` (W m-2 K-1).
    """
    ncol = t_grnd.shape[0]
    nmem = t_grnd.shape[1]
    for c in range(ncol):
        for m in range(nmem):
            tg = t_grnd[c, m]
            tg3 = tg * tg * tg
            out_lwrad_emit[c, m] = emg[c, m] * SB * tg3 * tg
            out_dlwrad_emit[c, m] = 4.0 * emg[c, m] * SB * tg3


@njit
def canopy_emissivity(elai, esai, out_emv):
    """Canopy emissivity eps_v = 1 - exp(-(elai + esai)/mu_bar), mu_bar = 1 (tech note eq. 4.20).

    Inputs ``elai[p, m]``, ``esai[p, m]`` exposed leaf and stem area index (m2/m2); output
    ``out_emv[p, m]`` in [0, 1).
    """
    npatch = elai.shape[0]
    nmem = elai.shape[1]
    for p in range(npatch):
        for m in range(nmem):
            out_emv[p, m] = 1.0 - math.exp(-(elai[p, m] + esai[p, m]) / MUBAR_LW)


@njit
def longwave_fluxes(forc_lwrad, t_grnd, dt_grnd, emg, t_veg, dt_veg, emv, frac_veg_nosno, patch_col,
                    out_lwrad_veg_net, out_dlwrad_veg_dtv, out_lwrad_grnd_net, out_dlwrad_grnd_dtg,
                    out_dlrad, out_ulrad, out_lwrad_out, out_fira):
    """Net, emitted and reflected longwave per patch (tech note eqs. 4.9-4.18; CLM4.0 ``CanopyFluxes``
    and ``Biogeophysics2``).

    Inputs:
      forc_lwrad[c, m]      downward atmospheric longwave L_atm (W/m2)
      t_grnd[c, m]          ground (snow/soil surface) temperature at the previous step T_g^n (K)
      dt_grnd[c, m]         ground temperature change T_g^{n+1} - T_g^n (K); 0 before the soil solve
      emg[c, m]             ground emissivity (1), :func:`ground_emissivity`
      t_veg[p, m]           vegetation temperature at the previous iteration/step T_v^n (K)
      dt_veg[p, m]          vegetation temperature change T_v^{n+1} - T_v^n (K); 0 for T_v^n fluxes
      emv[p, m]             canopy emissivity (1), :func:`canopy_emissivity`
      frac_veg_nosno[p, m]  1.0 where exposed L + S >= 0.05 (vegetated, delta_veg), else 0.0
      patch_col[p]          column of patch p
    Outputs [p, m] (W/m2, fluxes positive upward / as net loss):
      out_lwrad_veg_net     net longwave lost by the vegetation L_v (eq. 4.18, emission linearised)
      out_dlwrad_veg_dtv    d L_v / d T_v = 4 eps_v sigma [2 - eps_v (1 - eps_g)] T_v^3 (W m-2 K-1)
      out_lwrad_grnd_net    net longwave lost by the ground L_g (eq. 4.17 plus the
                            4 eps_g sigma T_g^3 dT_g term that CLM adds after the soil solve)
      out_dlwrad_grnd_dtg   d L_g / d T_g = 4 eps_g sigma T_g^3 (W m-2 K-1)
      out_dlrad             downward longwave below the canopy absorbed by the ground,
                            eps_g L_v_dn (eq. 4.16 times eps_g; CLM's ``dlrad``); eps_g L_atm if bare
      out_ulrad             upward longwave above the canopy from the vegetation/ground system L_vg
                            (eq. 4.14; CLM's ``ulrad``), 0 if bare
      out_lwrad_out         emitted + reflected longwave to the atmosphere L_up (eqs. 4.11-4.13;
                            CLM history FIRE)
      out_fira              net longwave L_up - L_atm (eq. 4.9; CLM history FIRA)
    For a vegetated patch, L_up - L_atm == L_v + L_g (up to round-off); for a bare patch L_v = 0 and
    FIRA = eps_g sigma T_g^4 - eps_g L_atm (with dT_g = 0).
    """
    npatch = t_veg.shape[0]
    nmem = t_veg.shape[1]
    for p in range(npatch):
        c = patch_col[p]
        for m in range(nmem):
            latm = forc_lwrad[c, m]
            eg = emg[c, m]
            tg = t_grnd[c, m]
            tg3 = tg * tg * tg
            eg_emit0 = eg * SB * tg3 * tg  # ground emission at T_g^n
            eg_demit = 4.0 * eg * SB * tg3 * dt_grnd[c, m]  # its change with T_g (linearised)
            out_dlwrad_grnd_dtg[p, m] = 4.0 * eg * SB * tg3
            if frac_veg_nosno[p, m] > 0.0:
                ev = emv[p, m]
                tv = t_veg[p, m]
                tv3 = tv * tv * tv
                v_emit = ev * SB * tv3 * (tv + 4.0 * dt_veg[p, m])  # canopy emission each way
                ldn = (1.0 - ev) * latm + v_emit  # eq. 4.16: downward below the canopy
                lgup = (1.0 - eg) * ldn + eg_emit0  # eq. 4.15: upward from the ground
                out_lwrad_veg_net[p, m] = 2.0 * v_emit - ev * (latm + lgup)  # eq. 4.18
                out_dlwrad_veg_dtv[p, m] = 4.0 * ev * SB * tv3 * (2.0 - ev * (1.0 - eg))
                out_lwrad_grnd_net[p, m] = eg_emit0 + eg_demit - eg * ldn  # eq. 4.17 + dT_g term
                out_dlrad[p, m] = eg * ldn
                # eq. 4.14 term by term: reflected atmospheric, canopy (direct + reflected), ground
                ulrad = ((1.0 - eg) * (1.0 - ev) * (1.0 - ev) * latm
                         + (1.0 + (1.0 - eg) * (1.0 - ev)) * v_emit
                         + (1.0 - ev) * eg_emit0)
                out_ulrad[p, m] = ulrad
                lup = ulrad + eg_demit  # eq. 4.13
            else:
                out_lwrad_veg_net[p, m] = 0.0
                out_dlwrad_veg_dtv[p, m] = 0.0
                out_lwrad_grnd_net[p, m] = eg_emit0 + eg_demit - eg * latm  # eq. 4.17, delta_veg = 0
                out_dlrad[p, m] = eg * latm
                out_ulrad[p, m] = 0.0
                lup = (1.0 - eg) * latm + eg_emit0 + eg_demit  # eq. 4.12
            out_lwrad_out[p, m] = lup
            out_fira[p, m] = lup - latm


__all__ = [
    "EMISS_SNOW",
    "EMISS_SOIL",
    "MUBAR_LW",
    "canopy_emissivity",
    "ground_emission",
    "ground_emissivity",
    "longwave_fluxes",
]
