"""Soil water: surface runoff, infiltration, Richards equation in the 10 hydrologically active
layers, root water uptake, soil evaporation and drainage (CLM4 tech note, Oleson et al. 2010,
chapter 7; CLM4.0 ``SoilHydrologyMod``: SurfaceRunoff, Infiltration, SoilWater, Drainage).

Order within one call, per column and member:

1. Frozen fraction and saturation diagnostics. Impermeable ice fraction of layer j (CLM4.0, Niu &
   Yang 2006): F_ice = max(0, exp(-3 (1 - theta_ice/theta_sat)) - exp(-3)) / (1 - exp(-3)).
   Water table: this module carries no aquifer (CLM4's prognostic water table is not represented),
   so the water table depth is diagnosed from the column's mean wetness, as CLM3.0 did:
   z_wt = sum_j dz_j (1 - s_j) over the 10 layers (the depth the air-filled pore fraction would
   occupy if gathered at the top), s_j = min(1, (theta_liq + theta_ice)/theta_sat). A saturated
   column has z_wt = 0, a completely dry one 3.8 m.
2. Surface runoff (CLM4 TOPMODEL-based saturated fraction with CLM4.5's infiltration capacity):
       f_sat = (1 - F_ice,1) f_max exp(-0.5 f_over z_wt) + F_ice,1,    f_over = 0.5 1/m
       q_inmax = min_{j=1..3} 10^(-6 F_ice,j) k_sat,j
       q_over = f_sat q_top + (1 - f_sat) max(0, q_top - q_inmax)
   ``wtfact[c]`` is f_max (CLM4's maximum saturated fraction from the surface data set).
   Infiltration into layer 1: q_infl = q_top - q_over - E_soil (E_soil: evaporation from the top
   soil layer, > 0; dew < 0), as CLM4.0 ``Infiltration``.
3. Richards equation in the standard theta-based form of CLM3.5 (CLM4.0 itself uses the modified
   form of Zeng and Decker 2009, which subtracts the equilibrium matric potential of a water table
   below the column; without that water table the standard form is used here), one linearised
   implicit step: for layer j, dz_j d(theta_j)/dt = q_{j-1} - q_j - e_j with q_j = -k_j [(psi_{j+1} - psi_j) -
   (z_{j+1} - z_j)] / (z_{j+1} - z_j) (positive downward, mm/s), psi_j = psi_sat,j s_j^-B_j (s_j =
   max(0.01, min(1, theta_j/theta_sat,j)), psi >= -1e8 mm) and the interface conductivity
   k_j = (1 - (F_ice,j + F_ice,j+1)/2) k_sat,j s^(2 B_j + 3), s = (theta_j + theta_j+1)/(theta_sat,j
   + theta_sat,j+1) <= 1, as CLM3.5/CLM4.0 ``SoilWater``. Fluxes are linearised in d(theta) with the
   derivatives dpsi/dtheta = -B psi/(s theta_sat) and dk/dtheta = (2B + 3) k / (s (theta_sat,j +
   theta_sat,j+1)), giving the tridiagonal system of CLM4 ch. 7 (solved for all members at once).
   Each layer then changes by the divergence of the realised fluxes q_j + (dq_j/dtheta) d(theta)
   (finite-volume form: equal to dz d(theta) up to the solve's roundoff, and conservative).
   theta here is the total (liquid + ice) volumetric water; only liquid water moves.
4. Root water uptake: the column transpiration ``qflx_tran`` is taken from the layers in the shares
   ``rootr_col`` (CLM's rootr: root fraction times layer wetness factor, normalised;
   ``soil_properties.soil_water_stress`` and ``column_rootr``). If all shares are 0 while
   transpiration is asked for, it is drawn in proportion to the layers' liquid water.
5. Bottom boundary (documented choice, ``free_drainage``): free gravity drainage q_N = k_N(theta_N)
   (unit hydraulic gradient, k_N from layer N alone, linearised like the interior fluxes) when True;
   zero flux when False (for hydrostatic tests). CLM4's topographic baseflow from an aquifer is not
   represented.
6. Corrections of CLM4.0 ``Drainage``: liquid above the effective porosity (theta_sat - theta_ice)
   moves up layer by layer; what exceeds the top layer's leaves as saturation excess, counted in the
   drainage as CLM4.0's ``qflx_rsub_sat``. Negative liquid (strong evaporation or uptake) is taken
   from the layer below; a deficit left in layer 10 is taken from below the column and counted as
   negative drainage (the role of CLM4's aquifer).

Water budget (checked every call, float64): (q_top - q_over - E_soil - T - q_drain) dt = change of
the liquid + ice water of the 10 layers; ``out_resid`` (mm) is the roundoff left (<= 1e-9 mm is the
acceptance bound). Water added to or removed from a layer carries its enthalpy at the layer's
temperature (CLM convention); ``out_eflx_adv`` (W/m2) is the resulting change of the column heat
content (``soil_temperature`` definition), for the driver's energy budget.

Reads ``h2osoi_liq, h2osoi_ice, t_soisno [c, 15, m]`` (mm, mm, K), soil parameters ``[c, 15]``
(``soil_properties.SoilParams``), the fluxes below. Writes the ``out_*`` arrays; ``out_h2osoi_liq``
may be ``h2osoi_liq`` itself. Ice is not changed here (the heat solve freezes and thaws).
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.vmath import vexp, vlog
from kernels.physics.constants import CPLIQ, DENICE, HFUS, SMPMIN, TFRZ
from kernels.physics.soil_layers import NLEVSOI, tridiagonal_members

#: decay factor of the saturated fraction with water table depth (1/m), CLM4 f_over
FOVER = 0.5
#: ice impedance exponent of the infiltration capacity (CLM4.5)
E_ICE = 6.0
_EXPM3 = math.exp(-3.0)
_LN10 = math.log(10.0)


@njit
def soil_water(dt, z, dz, watsat, sucsat, bsw, hksat, wtfact, free_drainage,
               qflx_top_soil, qflx_evap_soi, qflx_tran, rootr_col, t_soisno, h2osoi_liq, h2osoi_ice,
               out_h2osoi_liq, out_h2osoi_vol, out_qflx_surf, out_qflx_infl, out_qflx_drain, out_zwt,
               out_fsat, out_eflx_adv, out_resid):
    """Advance soil liquid water by one step (CLM4 ch. 7; module docstring for the equations).

    Inputs:
      dt                          step (s)
      z, dz [15]                  node depths and thicknesses (m; ``soil_layers.soil_levels``)
      watsat, sucsat, bsw, hksat [c, 15]  theta_sat (m3/m3), psi_sat (mm, < 0), B (1), k_sat (mm/s)
      wtfact [c]                  maximum saturated fraction f_max (1)
      free_drainage               True: gravity drainage at the bottom; False: zero flux
      qflx_top_soil [c, m]        liquid water reaching the soil surface: throughfall rain, snow
                                  outflow, dew (mm/s, >= 0)
      qflx_evap_soi [c, m]        evaporation from the top soil layer (mm/s; < 0 is dew)
      qflx_tran [c, m]            transpiration of the column (mm/s, >= 0)
      rootr_col [c, 10, m]        shares of transpiration per layer (1)
      t_soisno [c, 15, m]         soil temperature (K), for the enthalpy of moved water
      h2osoi_liq, h2osoi_ice [c, 15, m]   liquid and ice water (mm)
    Outputs:
      out_h2osoi_liq [c, 15, m]   new liquid water (mm; levels 11-15 copied)
      out_h2osoi_vol [c, 10, m]   volumetric water H2OSOI = liq/(rho_w dz) + ice/(rho_i dz) (m3/m3)
      out_qflx_surf [c, m]        surface runoff (mm/s)
      out_qflx_infl [c, m]        infiltration into layer 1 net of soil evaporation (mm/s)
      out_qflx_drain [c, m]       drainage out of the column bottom incl. saturation excess (mm/s)
      out_zwt [c, m]              diagnosed water table depth (m)
      out_fsat [c, m]             saturated (and frozen) fraction f_sat (1)
      out_eflx_adv [c, m]         heat content change carried by the moved water (W/m2)
      out_resid [c, m]            water budget residual (mm), see module docstring

    The powers and exponentials use ``vmath.vexp``/``vlog`` (a few ulp from the C library's) so that
    the member loops vectorise; F_ice is evaluated only for layers where some member holds ice.
    """
    ncol, nlev, nm = h2osoi_liq.shape
    nl = NLEVSOI
    liq = np.empty((nl, nm))
    liq0 = np.empty((nl, nm))
    vtot = np.empty((nl, nm))
    eff = np.empty((nl, nm))
    fice = np.empty((nl, nm))
    smp = np.empty((nl, nm))
    dsmp = np.empty((nl, nm))
    hk = np.empty((nl, nm))
    dhk = np.empty((nl, nm))
    qout = np.empty((nl, nm))
    dqo1 = np.empty((nl, nm))
    dqo2 = np.empty((nl, nm))
    a = np.empty((nl, nm))
    b = np.empty((nl, nm))
    cc = np.empty((nl, nm))
    r = np.empty((nl, nm))
    u = np.empty((nl, nm))
    rs = np.empty((nl, nm))
    qinfl = np.empty(nm)
    qdrain = np.empty(nm)
    zwt = np.empty(nm)
    qinmax = np.empty(nm)
    tot = np.empty(nm)
    lsum = np.empty(nm)
    dw = np.empty(nm)
    dh = np.empty(nm)
    zmm = np.empty(nl)
    dzmm = np.empty(nl)
    for k in range(nl):
        zmm[k] = 1000.0 * z[k]
        dzmm[k] = 1000.0 * dz[k]
    # Every member loop below is branch-free (selects) and calls only vmath's exp/log, so it
    # vectorises; loops over layers run outside the member loops, in the same order per member.
    for c in range(ncol):
        # ---- state and diagnostics (step 1)
        any_ice3 = False
        for m in range(nm):
            zwt[m] = 0.0
            qinmax[m] = 1.0e30
        for k in range(nl):
            ws = watsat[c, k]
            dzi = dz[k] * DENICE
            dzk = dz[k]
            for m in range(nm):
                lq = h2osoi_liq[c, k, m]
                liq[k, m] = lq
                liq0[k, m] = lq
                vi = min(ws, h2osoi_ice[c, k, m] / dzi)
                eff[k, m] = max(0.01, ws - vi)
                vt = lq / dzmm[k] + h2osoi_ice[c, k, m] / dzi
                vtot[k, m] = vt
                fice[k, m] = vi  # F_ice below where the column has ice
                zwt[m] += dzk * (1.0 - min(1.0, vt / ws))
            frozen = False
            for m in range(nm):
                frozen |= fice[k, m] > 0.0
            if frozen:
                for m in range(nm):
                    vi = fice[k, m]
                    fi = max(0.0, vexp(-3.0 * (1.0 - vi / ws)) - _EXPM3) / (1.0 - _EXPM3)
                    fice[k, m] = fi if vi > 0.0 else 0.0
                if k < 3:
                    any_ice3 = True
        for k in range(3):
            hks = hksat[c, k]
            for m in range(nm):
                fk = fice[k, m]
                imp = vexp(-E_ICE * _LN10 * fk) if any_ice3 else 1.0  # 10^(-E_ICE F_ice)
                qinmax[m] = min(qinmax[m], hks * (imp if fk > 0.0 else 1.0))
        f_max = wtfact[c]
        for m in range(nm):
            out_zwt[c, m] = zwt[m]
            fsat = (1.0 - fice[0, m]) * f_max * vexp(-0.5 * FOVER * zwt[m]) + fice[0, m]
            out_fsat[c, m] = fsat
            # ---- surface runoff and infiltration (step 2)
            qtop = qflx_top_soil[c, m]
            qsurf = fsat * qtop + (1.0 - fsat) * max(0.0, qtop - qinmax[m])
            qsurf = qsurf if qtop > 0.0 else 0.0
            out_qflx_surf[c, m] = qsurf
            qi = qtop - qsurf - qflx_evap_soi[c, m]
            qinfl[m] = qi
            out_qflx_infl[c, m] = qi
        # ---- matric potential and conductivity (step 3)
        for k in range(nl):
            ws = watsat[c, k]
            rws = 1.0 / ws
            psat = sucsat[c, k]
            bk = bsw[c, k]
            for m in range(nm):
                s = min(1.0, max(0.01, vtot[k, m] * rws))
                sm = max(SMPMIN, psat * vexp(-bk * vlog(s)))  # psi_sat s^-B
                smp[k, m] = sm
                dsmp[k, m] = -bk * sm / (s * ws)
        for k in range(nl - 1):
            wsum = watsat[c, k] + watsat[c, k + 1]
            rwsum = 1.0 / wsum
            ex = 2.0 * bsw[c, k] + 2.0
            hks = hksat[c, k]
            for m in range(nm):
                s1 = min(1.0, (vtot[k, m] + vtot[k + 1, m]) * rwsum)
                imped = 1.0 - 0.5 * (fice[k, m] + fice[k + 1, m])
                s2 = hks * vexp(ex * vlog(s1))  # k_sat s1^(2B+2)
                s2 = s2 if s1 > 0.0 else 0.0
                hk[k, m] = imped * s1 * s2
                dhk[k, m] = imped * (ex + 1.0) * s2 / wsum
        k = nl - 1
        ws = watsat[c, k]
        ex = 2.0 * bsw[c, k] + 2.0
        hks = hksat[c, k]
        for m in range(nm):
            s1 = min(1.0, vtot[k, m] / ws)
            imped = 1.0 - fice[k, m]
            s2 = hks * vexp(ex * vlog(s1))
            s2 = s2 if s1 > 0.0 else 0.0
            hk[k, m] = imped * s1 * s2
            dhk[k, m] = imped * (ex + 1.0) * s2 / ws
        for k in range(nl - 1):
            den = zmm[k + 1] - zmm[k]
            rden = 1.0 / den
            for m in range(nm):
                num = (smp[k + 1, m] - smp[k, m]) - den
                qout[k, m] = -hk[k, m] * num * rden
                dqo1[k, m] = -(-hk[k, m] * dsmp[k, m] + num * dhk[k, m]) * rden
                dqo2[k, m] = -(hk[k, m] * dsmp[k + 1, m] + num * dhk[k, m]) * rden
        for m in range(nm):
            qout[nl - 1, m] = hk[nl - 1, m] if free_drainage else 0.0
            dqo1[nl - 1, m] = dhk[nl - 1, m] if free_drainage else 0.0
            dqo2[nl - 1, m] = 0.0
        # ---- root water uptake shares (step 4)
        for m in range(nm):
            tot[m] = 0.0
            lsum[m] = 0.0
        for k in range(nl):
            for m in range(nm):
                tot[m] += rootr_col[c, k, m]
                lsum[m] += max(liq[k, m], 0.0)
        for k in range(nl):
            for m in range(nm):
                qt = qflx_tran[c, m]
                by_liq = qt * max(liq[k, m], 0.0) / lsum[m] if lsum[m] > 0.0 else (qt if k == 0 else 0.0)
                rs[k, m] = qt * rootr_col[c, k, m] / tot[m] if tot[m] > 0.0 else by_liq
        # ---- tridiagonal system in d(theta) (CLM4.0 SoilWater)
        for m in range(nm):
            r[0, m] = qinfl[m] - qout[0, m] - rs[0, m]
            a[0, m] = -0.0
            b[0, m] = dzmm[0] / dt - 0.0 + dqo1[0, m]
            cc[0, m] = dqo2[0, m]
        for k in range(1, nl):
            bdiag = dzmm[k] / dt
            for m in range(nm):
                r[k, m] = qout[k - 1, m] - qout[k, m] - rs[k, m]
                a[k, m] = -dqo1[k - 1, m]
                b[k, m] = bdiag - dqo2[k - 1, m] + dqo1[k, m]
                cc[k, m] = dqo2[k, m]
        tridiagonal_members(a, b, cc, r, u, 0, nl)
        # realised (linearised) interface fluxes; the layers change by their flux divergence, so
        # the column budget telescopes exactly whatever the roundoff of the solve
        for m in range(nm):
            qdrain[m] = qinfl[m]  # flux into the layer below the interface being updated
        for k in range(nl):
            for m in range(nm):
                qk = qout[k, m] + dqo1[k, m] * u[k, m]
                if k < nl - 1:
                    qk += dqo2[k, m] * u[k + 1, m]
                liq[k, m] += (qdrain[m] - qk - rs[k, m]) * dt
                qdrain[m] = qk
        # ---- saturation excess and negative water (step 6)
        for k in range(nl - 1, 0, -1):
            for m in range(nm):
                xs = max(liq[k, m] - eff[k, m] * dzmm[k], 0.0)
                liq[k, m] -= xs
                liq[k - 1, m] += xs
        for m in range(nm):
            xs = max(liq[0, m] - eff[0, m] * dzmm[0], 0.0)
            liq[0, m] -= xs
            qdrain[m] += xs / dt
        for k in range(nl - 1):
            for m in range(nm):
                lk = liq[k, m]
                neg = lk < 0.0
                liq[k + 1, m] = liq[k + 1, m] + lk if neg else liq[k + 1, m]
                liq[k, m] = 0.0 if neg else lk
        for m in range(nm):
            lk = liq[nl - 1, m]
            neg = lk < 0.0
            qdrain[m] = qdrain[m] + lk / dt if neg else qdrain[m]
            liq[nl - 1, m] = 0.0 if neg else lk
        # ---- outputs and budgets
        for m in range(nm):
            dw[m] = 0.0
            dh[m] = 0.0
        for k in range(nl):
            for m in range(nm):
                d = liq[k, m] - liq0[k, m]
                dw[m] += d
                dh[m] += (CPLIQ * (t_soisno[c, k, m] - TFRZ) + HFUS) * d
        for m in range(nm):
            out_qflx_drain[c, m] = qdrain[m]
            out_eflx_adv[c, m] = dh[m] / dt
            qin_net = qflx_top_soil[c, m] - out_qflx_surf[c, m] - qflx_evap_soi[c, m] - qflx_tran[c, m] - qdrain[m]
            out_resid[c, m] = qin_net * dt - dw[m]
        for k in range(nl):
            dzi = dz[k] * DENICE
            for m in range(nm):
                out_h2osoi_liq[c, k, m] = liq[k, m]
                out_h2osoi_vol[c, k, m] = liq[k, m] / dzmm[k] + h2osoi_ice[c, k, m] / dzi
        for k in range(nl, nlev):
            for m in range(nm):
                out_h2osoi_liq[c, k, m] = h2osoi_liq[c, k, m]


__all__ = ["FOVER", "E_ICE", "soil_water"]
