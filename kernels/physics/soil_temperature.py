"""Soil and snow heat: Crank-Nicolson conduction through one snow layer and 15 soil levels, with
freezing and thawing (CLM4 tech note, Oleson et al. 2010, chapter 6).

Heat equation (CLM4 section 6.1): for node k with heat capacity C_k (J/m2/K) and the conductance
g_k = lambda[zh_k] / (z_{k+1} - z_k) between nodes k and k+1, where lambda[zh_k] is the interface
conductivity lambda_k lambda_{k+1} (z_{k+1} - z_k) / (lambda_k (z_{k+1} - zh_k) + lambda_{k+1}
(zh_k - z_k)) (CLM4 section 6.1), the flux into node k from below is F_k = g_k (T_{k+1} - T_k) and

    C_k / dt (T_k' - T_k) = alpha (F_k' - F_{k-1}') + (1 - alpha)(F_k - F_{k-1}),   alpha = 0.5

The top node (the snow layer when one exists, else soil level 1) receives the ground heat flux
linearised in its own temperature as CLM does, h' = h + (dh/dT)(T_top' - T_top), fully implicit;
the bottom node receives ``eflx_bot`` (CLM4: zero flux). The tridiagonal system is solved for all
members of a column at once (``soil_layers.tridiagonal_members``).

Snow: one snow layer (``kernels.physics.snow``) is a node of its own when its depth is at least
``SNOW_DZMIN`` = 0.01 m (CLM4's threshold for creating a snow layer), with node depth -dz_snow/2
and Jordan (1991) conductivity. Thinner snow has no layer: as in CLM4 its heat capacity is added to
soil level 1 and it sits at that level's temperature (``t_snow`` is set to it). A layer that melts
below the minimum depth in a step gives its heat to soil level 1 (common temperature, energy
conserved).

Phase change (CLM4 section 6.2), after the solve, per node: with E = C (T - T_f) the energy above
freezing, a node with ice and T > T_f melts min(ice, E/L_f), a node with liquid water above the
supercooled limit and T < T_f freezes min(liq - supercool, -E/L_f), and the rest of E sets the
new temperature T_f + E_rest / C_new, C_new being the heat capacity with the new liquid/ice
masses. Supercooled soil water (CLM4.0 PhaseChange, after Zhao 1997 and Koren 1999):
w_liq,max = theta_sat dz rho_w (psi / psi_sat)^(-1/B), psi = 1000 L_f (T - T_f) / (g T) mm.
Unlayered snow melts before soil ice of level 1 (CLM4); its melt water goes to the snow liquid
store, which ``snow.snow_water`` passes to the soil.

Energy bookkeeping (checked every call): the column heat content

    H = sum_nodes C_k (T_k - T_f) + L_f (liquid water of soil and snow)          (J/m2)

changes by exactly (h' + eflx_bot) dt; ``out_resid`` = dH/dt - h' - eflx_bot (W/m2) is the
roundoff left (|resid| <= 1e-6 W/m2 is the acceptance bound). The realised ground heat flux h' is
returned in ``out_fgr``.

Reads ``t_soisno, h2osoi_liq, h2osoi_ice [c, 15, m]`` (K, mm, mm), the snow state ``t_snow,
snow_liq, snow_ice, snow_depth [c, m]`` (K, mm, mm, m), soil parameters ``[c, 15]``
(``soil_properties.SoilParams``) and the ground heat flux; writes the ``out_*`` arrays, which may be
the input arrays themselves (each column is read completely before it is written).
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit, njit_inline
from kernels.vmath import vexp, vlog, vpow
from kernels.physics.soil_layers import tridiagonal_members
from kernels.physics.constants import CPICE, CPLIQ, DENH2O, DENICE, GRAV, HFUS, TFRZ
from kernels.physics.soil_properties import (
    _INV_LN10, _LOG_TKICE, _LOG_TKWAT, snow_thermal_conductivity, soil_heat_capacity,
)

#: Crank-Nicolson weight (CLM4 ``cnfac``)
CNFAC = 0.5
#: minimum snow depth (m) for the snow to form a layer of its own (CLM4)
SNOW_DZMIN = 0.01


@njit
def supercooled_liquid(t, dz, watsat, sucsat, bsw):
    """Maximum liquid water (mm) a soil layer keeps below freezing (CLM4.0 PhaseChange; Koren 1999).

    ``t`` (K), ``dz`` (m), ``watsat`` (m3/m3), ``sucsat`` psi_sat (mm, < 0), ``bsw`` B (1). Returns
    0 for bedrock (watsat = 0) and a value above the pore volume for t >= TFRZ. The power is
    ``vmath.vpow`` and the cases are selects, so member loops calling this vectorise.
    """
    smp = 1000.0 * HFUS * (t - TFRZ) / (GRAV * t)
    sc = watsat * dz * 1000.0 * vpow(smp / sucsat, -1.0 / bsw)
    sc = 2.0 * watsat * dz * 1000.0 if t >= TFRZ else sc
    return sc if watsat > 0.0 else 0.0


@njit_inline
def _supercooled_members(t, k, dz, watsat, sucsat, bsw, out):
    """:func:`supercooled_liquid` (mm) for every member of row ``k`` of ``t[row, m]`` (K) into ``out[m]``,
    same bits; the power (``vmath.vpow``, a vectorised member loop) is evaluated only when some member
    is below T_f in a layer that holds water, the other cases are one select."""
    nm = out.shape[0]
    sc_thawed = 2.0 * watsat * dz * 1000.0
    cold = False
    if watsat > 0.0:
        for m in range(nm):
            cold |= t[k, m] < TFRZ
    if cold:
        nib = -1.0 / bsw
        for m in range(nm):
            tm = t[k, m]
            smp = 1000.0 * HFUS * (tm - TFRZ) / (GRAV * tm)
            sc = watsat * dz * 1000.0 * vpow(smp / sucsat, nib)
            out[m] = sc_thawed if tm >= TFRZ else sc
    else:
        for m in range(nm):
            out[m] = sc_thawed if (t[k, m] >= TFRZ and watsat > 0.0) else 0.0


@njit
def _phase_change_dm(e, liq, ice, sc):
    """Water (mm) a soil node with energy ``e`` = C (T - T_f) (J/m2) above freezing melts (> 0) or
    freezes (< 0), given its liquid and ice (mm) and supercooled limit ``sc`` (mm) (CLM4 section 6.2)."""
    melt = min(ice, e / HFUS)
    freeze = -min(max(liq - sc, 0.0), -e / HFUS)
    dm = freeze if e < 0.0 else 0.0
    return melt if (e > 0.0 and ice > 0.0) else dm


@njit
def column_heat_content(dz, watsat, csol, t_soisno, h2osoi_liq, h2osoi_ice, t_snow, snow_liq, snow_ice,
                        snow_depth, out_h):
    """Heat content H (J/m2) of each column and member relative to ice at T_f (module docstring).

    Inputs as for :func:`soil_snow_temperature`; snow thinner than SNOW_DZMIN is counted at the
    temperature of soil level 1. Output ``out_h[c, m]`` (J/m2).
    """
    ncol, nlev, nm = t_soisno.shape
    for c in range(ncol):
        # levels outer, members inner (contiguous, vectorised); each member's sum runs over the levels in order
        for m in range(nm):
            out_h[c, m] = 0.0
        for k in range(nlev):
            dzk = dz[k]
            ws = watsat[c, k]
            cs = csol[c, k]
            for m in range(nm):
                liq = h2osoi_liq[c, k, m]
                cv = soil_heat_capacity(liq, h2osoi_ice[c, k, m], dzk, ws, cs)
                out_h[c, m] += cv * (t_soisno[c, k, m] - TFRZ) + HFUS * liq
        for m in range(nm):
            ts = t_snow[c, m] if snow_depth[c, m] >= SNOW_DZMIN else t_soisno[c, 0, m]
            h = (CPICE * snow_ice[c, m] + CPLIQ * snow_liq[c, m]) * (ts - TFRZ) + HFUS * snow_liq[c, m]
            out_h[c, m] += h


@njit
def ground_temperature(t_soisno, t_snow, snow_depth, out_t_grnd):
    """Temperature of the top node (K): the snow layer when snow_depth >= SNOW_DZMIN, else soil
    level 1 (CLM4.0 ``t_grnd = t_soisno(snl+1)``). Inputs [c, 15, m] (K), [c, m] (K), [c, m] (m)."""
    ncol, _, nm = t_soisno.shape
    for c in range(ncol):
        for m in range(nm):
            out_t_grnd[c, m] = t_snow[c, m] if snow_depth[c, m] >= SNOW_DZMIN else t_soisno[c, 0, m]


@njit
def soil_snow_temperature(dt, z, zi, dz, watsat, sucsat, bsw, tkmg, tkdry, csol,
                          eflx_gnet, deflx_dt, eflx_bot,
                          t_soisno, h2osoi_liq, h2osoi_ice, t_snow, snow_liq, snow_ice, snow_depth,
                          out_t_soisno, out_h2osoi_liq, out_h2osoi_ice, out_t_snow, out_snow_liq,
                          out_snow_ice, out_snow_depth, out_fgr, out_qflx_snomelt, out_resid):
    """Advance soil and snow temperature by one step with phase change (CLM4 ch. 6; module docstring).

    Inputs:
      dt                     step (s)
      z, dz [15], zi [16]    node depths, thicknesses, interfaces (m; ``soil_layers.soil_levels``)
      watsat, sucsat, bsw, tkmg, tkdry, csol [c, 15]   soil parameters (``SoilParams`` units)
      eflx_gnet [c, m]       ground heat flux into the top node (W/m2, > 0 warms)
      deflx_dt [c, m]        its derivative w.r.t. the top node temperature (W/m2/K, <= 0)
      eflx_bot               heat flux into the bottom of the column (W/m2; CLM4: 0)
      t_soisno, h2osoi_liq, h2osoi_ice [c, 15, m]      soil temperature (K), liquid, ice (mm)
      t_snow, snow_liq, snow_ice, snow_depth [c, m]    snow temperature (K), liquid, ice (mm), depth (m)
    Outputs (may alias the inputs):
      out_t_soisno, out_h2osoi_liq, out_h2osoi_ice [c, 15, m]; out_t_snow, out_snow_liq,
      out_snow_ice, out_snow_depth [c, m] (depth scaled with the ice left after melt);
      out_fgr [c, m]          realised ground heat flux h + dh/dT dT_top (W/m2)
      out_qflx_snomelt [c, m] snow ice melted (> 0) or liquid frozen (< 0) in the snow (mm/s)
      out_resid [c, m]        energy residual dH/dt - out_fgr - eflx_bot (W/m2)

    The conductivities and the supercooled limit are written out in member loops with ``vmath``
    functions (a few ulp from the C library's) so that those loops vectorise; each is evaluated only
    for the levels of a column that need it (thawed or icy members, members below T_f).
    """
    ncol, nlev, nm = t_soisno.shape
    n = nlev + 1  # row 0 = snow, row k + 1 = soil level k
    T = np.empty((n, nm))
    Cs = np.empty((n, nm))  # heat capacity of each node's own material (J/m2/K)
    Csys = np.empty((n, nm))  # heat capacity in the system (unlayered snow lumped into row 1)
    lam = np.empty((n, nm))
    liq = np.empty((n, nm))
    ice = np.empty((n, nm))
    g = np.empty((n, nm))
    a = np.empty((n, nm))
    b = np.empty((n, nm))
    cc = np.empty((n, nm))
    r = np.empty((n, nm))
    u = np.empty((n, nm))
    sat = np.empty(nm)
    wexp = np.empty(nm)
    dkt = np.empty(nm)
    dks = np.empty(nm)
    sc = np.empty(nm)  # supercooled limit of one level (mm)
    act = np.empty(nm, dtype=np.bool_)
    depth = np.empty(nm)
    hbefore = np.empty(nm)
    hafter = np.empty(nm)
    fac = 1.0 / dt
    for c in range(ncol):
        # ---- gather the column and its thermal properties
        for m in range(nm):
            depth[m] = snow_depth[c, m]
            act[m] = depth[m] >= SNOW_DZMIN
            liq[0, m] = snow_liq[c, m]
            ice[0, m] = snow_ice[c, m]
            Cs[0, m] = CPICE * ice[0, m] + CPLIQ * liq[0, m]
        for k in range(nlev):
            dzk = dz[k]
            ws = watsat[c, k]
            cs = csol[c, k]
            tm = tkmg[c, k]
            td = tkdry[c, k]
            for m in range(nm):
                lq = h2osoi_liq[c, k, m]
                ic = h2osoi_ice[c, k, m]
                tk = t_soisno[c, k, m]
                liq[k + 1, m] = lq
                ice[k + 1, m] = ic
                T[k + 1, m] = tk
                cv = soil_heat_capacity(lq, ic, dzk, ws, cs)
                Cs[k + 1, m] = cv
                Csys[k + 1, m] = cv
            if ws > 0.0:
                # soil_properties.soil_thermal_conductivity written out: LLVM does not inline a helper
                # holding both vlog and vexp, and the call would keep this loop scalar. Each runs in a
                # loop of its own behind a real branch (a select would evaluate it anyway): the logarithm
                # (Kersten number) only where some member is thawed, the exponential only where some
                # member holds ice; without ice fl = 1 and k_sat = tkmg k_liq^theta_sat is one number for
                # the level (the same bits as the member formula)
                dzl = DENH2O * dzk
                dzi = DENICE * dzk
                thawed = False
                icy = False
                for m in range(nm):
                    thawed |= T[k + 1, m] >= TFRZ
                    icy |= ice[k + 1, m] != 0.0
                for m in range(nm):
                    vliq = liq[k + 1, m] / dzl
                    vice = ice[k + 1, m] / dzi
                    satw = min(1.0, (vliq + vice) / ws)
                    sat[m] = satw
                    fl = vliq / (vliq + vice)
                    wexp[m] = ws * (fl * _LOG_TKWAT + (1.0 - fl) * _LOG_TKICE)
                if thawed:
                    for m in range(nm):
                        dkt[m] = max(0.0, vlog(sat[m]) * _INV_LN10 + 1.0)  # log10(S_r) + 1
                if icy:
                    for m in range(nm):
                        dks[m] = tm * vexp(wexp[m])
                else:
                    dksat_thawed = tm * vexp(ws * _LOG_TKWAT)
                    for m in range(nm):
                        dks[m] = dksat_thawed
                for m in range(nm):
                    satw = sat[m]
                    dke = dkt[m] if T[k + 1, m] >= TFRZ else satw
                    lk = dke * dks[m] + (1.0 - dke) * td
                    lam[k + 1, m] = lk if satw > 1.0e-7 else td
            else:  # bedrock
                for m in range(nm):
                    lam[k + 1, m] = td
        for m in range(nm):
            ac = act[m]
            T[0, m] = t_snow[c, m] if ac else T[1, m]
            Csys[0, m] = Cs[0, m] if ac else 0.0
            Csys[1, m] = Csys[1, m] if ac else Csys[1, m] + Cs[0, m]
            lam[0, m] = snow_thermal_conductivity(liq[0, m], ice[0, m], depth[m]) if ac else 1.0
        for m in range(nm):
            hbefore[m] = 0.0
        for k in range(n):
            for m in range(nm):
                hbefore[m] += Cs[k, m] * (T[k, m] - TFRZ) + HFUS * liq[k, m]
        # ---- interface conductances g_k between rows k and k + 1 (W/m2/K)
        for m in range(nm):
            zn0 = -0.5 * depth[m]
            g0 = lam[0, m] * lam[1, m] / (lam[0, m] * (z[0] - 0.0) + lam[1, m] * (0.0 - zn0))
            g[0, m] = g0 if act[m] else 0.0
        for k in range(1, n - 1):
            zn = z[k - 1]
            zn1 = z[k]
            zh = zi[k]
            for m in range(nm):
                g[k, m] = lam[k, m] * lam[k + 1, m] / (lam[k, m] * (zn1 - zh) + lam[k + 1, m] * (zh - zn))
        # ---- Crank-Nicolson tridiagonal system
        for m in range(nm):
            h = eflx_gnet[c, m]
            dh = deflx_dt[c, m]
            ac = act[m]
            # with a snow layer: rows 0 and 1 coupled, the ground flux into row 0
            f0 = g[0, m] * (T[1, m] - T[0, m])
            f1 = g[1, m] * (T[2, m] - T[1, m])
            b0_snow = Csys[0, m] * fac + CNFAC * g[0, m] - dh
            r0_snow = Csys[0, m] * fac * T[0, m] + h - dh * T[0, m] + (1.0 - CNFAC) * f0
            a1_snow = -CNFAC * g[0, m]
            b1_snow = Csys[1, m] * fac + CNFAC * (g[0, m] + g[1, m])
            r1_snow = Csys[1, m] * fac * T[1, m] + (1.0 - CNFAC) * (f1 - f0)
            # without: row 0 is the identity T_0' = T_1', the ground flux into row 1
            b1_soil = Csys[1, m] * fac + CNFAC * g[1, m] - dh
            r1_soil = Csys[1, m] * fac * T[1, m] + h - dh * T[1, m] + (1.0 - CNFAC) * f1
            a[0, m] = 0.0
            b[0, m] = b0_snow if ac else 1.0
            cc[0, m] = -CNFAC * g[0, m] if ac else -1.0
            r[0, m] = r0_snow if ac else 0.0
            a[1, m] = a1_snow if ac else 0.0
            b[1, m] = b1_snow if ac else b1_soil
            cc[1, m] = -CNFAC * g[1, m]
            r[1, m] = r1_snow if ac else r1_soil
        for k in range(2, n - 1):
            for m in range(nm):
                fup = g[k - 1, m] * (T[k, m] - T[k - 1, m])
                fdn = g[k, m] * (T[k + 1, m] - T[k, m])
                a[k, m] = -CNFAC * g[k - 1, m]
                b[k, m] = Csys[k, m] * fac + CNFAC * (g[k - 1, m] + g[k, m])
                cc[k, m] = -CNFAC * g[k, m]
                r[k, m] = Csys[k, m] * fac * T[k, m] + (1.0 - CNFAC) * (fdn - fup)
        k = n - 1
        for m in range(nm):
            fup = g[k - 1, m] * (T[k, m] - T[k - 1, m])
            a[k, m] = -CNFAC * g[k - 1, m]
            b[k, m] = Csys[k, m] * fac + CNFAC * g[k - 1, m]
            cc[k, m] = 0.0
            r[k, m] = Csys[k, m] * fac * T[k, m] - (1.0 - CNFAC) * fup + eflx_bot
        tridiagonal_members(a, b, cc, r, u, 0, n)
        for m in range(nm):
            dtop = u[0, m] - T[0, m] if act[m] else u[1, m] - T[1, m]
            out_fgr[c, m] = eflx_gnet[c, m] + deflx_dt[c, m] * dtop
        # ---- phase change (CLM4 section 6.2); u holds the new temperatures
        _supercooled_members(u, 1, dz[0], watsat[c, 0], sucsat[c, 0], bsw[c, 0], sc)
        for m in range(nm):
            ice0_snow = ice[0, m]
            # snow layer, or unlayered snow lumped into soil level 1
            if act[m]:
                e = Csys[0, m] * (u[0, m] - TFRZ)
                if e > 0.0 and ice[0, m] > 0.0:
                    dm = min(ice[0, m], e / HFUS)
                    ice[0, m] -= dm
                    liq[0, m] += dm
                    e -= HFUS * dm
                    cnew = CPICE * ice[0, m] + CPLIQ * liq[0, m]
                    u[0, m] = TFRZ + e / cnew if cnew > 0.0 else TFRZ
                elif e < 0.0 and liq[0, m] > 0.0:
                    dm = min(liq[0, m], -e / HFUS)
                    liq[0, m] -= dm
                    ice[0, m] += dm
                    e += HFUS * dm
                    cnew = CPICE * ice[0, m] + CPLIQ * liq[0, m]
                    u[0, m] = TFRZ + e / cnew
            k = 1
            e = Csys[1, m] * (u[1, m] - TFRZ)
            changed = False
            if e > 0.0:
                if not act[m] and ice[0, m] > 0.0:
                    dm = min(ice[0, m], e / HFUS)
                    ice[0, m] -= dm
                    liq[0, m] += dm
                    e -= HFUS * dm
                    changed = True
                if e > 0.0 and ice[1, m] > 0.0:
                    dm = min(ice[1, m], e / HFUS)
                    ice[1, m] -= dm
                    liq[1, m] += dm
                    e -= HFUS * dm
                    changed = True
            elif e < 0.0:
                if not act[m] and liq[0, m] > 0.0:
                    dm = min(liq[0, m], -e / HFUS)
                    liq[0, m] -= dm
                    ice[0, m] += dm
                    e += HFUS * dm
                    changed = True
                if e < 0.0 and liq[1, m] > sc[m]:
                    dm = min(liq[1, m] - sc[m], -e / HFUS)
                    liq[1, m] -= dm
                    ice[1, m] += dm
                    e += HFUS * dm
                    changed = True
            if changed:
                cnew = soil_heat_capacity(liq[1, m], ice[1, m], dz[0], watsat[c, 0], csol[c, 0])
                if not act[m]:
                    cnew += CPICE * ice[0, m] + CPLIQ * liq[0, m]
                u[1, m] = TFRZ + e / cnew
            if not act[m]:
                u[0, m] = u[1, m]
            # snow depth follows the snow ice lost to melt
            if ice[0, m] < ice0_snow:
                depth[m] = depth[m] * ice[0, m] / ice0_snow if ice0_snow > 0.0 else 0.0
            out_qflx_snomelt[c, m] = (ice0_snow - ice[0, m]) / dt
            if ice[0, m] <= 0.0:
                depth[m] = 0.0
            if act[m] and depth[m] < SNOW_DZMIN:
                # the layer melted below the minimum: its heat joins soil level 1 (energy conserved)
                c0 = CPICE * ice[0, m] + CPLIQ * liq[0, m]
                c1 = soil_heat_capacity(liq[1, m], ice[1, m], dz[0], watsat[c, 0], csol[c, 0])
                u[1, m] = TFRZ + (c0 * (u[0, m] - TFRZ) + c1 * (u[1, m] - TFRZ)) / (c0 + c1)
                u[0, m] = u[1, m]
        for k in range(2, n):
            j = k - 1
            dzj = dz[j]
            ws = watsat[c, j]
            cs = csol[c, j]
            _supercooled_members(u, k, dzj, ws, sucsat[c, j], bsw[c, j], sc)
            for m in range(nm):
                uk = u[k, m]
                lk = liq[k, m]
                ik = ice[k, m]
                e = Csys[k, m] * (uk - TFRZ)
                dm = _phase_change_dm(e, lk, ik, sc[m])
                changed = dm != 0.0
                ik2 = ik - dm
                lk2 = lk + dm
                cnew = soil_heat_capacity(lk2, ik2, dzj, ws, cs)
                u[k, m] = TFRZ + (e - HFUS * dm) / cnew if changed else uk
                ice[k, m] = ik2 if changed else ik
                liq[k, m] = lk2 if changed else lk
        # ---- write back and close the energy budget
        for m in range(nm):
            hafter[m] = (CPICE * ice[0, m] + CPLIQ * liq[0, m]) * (u[0, m] - TFRZ) + HFUS * liq[0, m]
        for k in range(1, n):
            j = k - 1
            dzj = dz[j]
            ws = watsat[c, j]
            cs = csol[c, j]
            for m in range(nm):
                cv = soil_heat_capacity(liq[k, m], ice[k, m], dzj, ws, cs)
                hafter[m] += cv * (u[k, m] - TFRZ) + HFUS * liq[k, m]
        for m in range(nm):
            out_resid[c, m] = (hafter[m] - hbefore[m]) * fac - out_fgr[c, m] - eflx_bot
            out_t_snow[c, m] = u[0, m]
            out_snow_liq[c, m] = liq[0, m]
            out_snow_ice[c, m] = ice[0, m]
            out_snow_depth[c, m] = depth[m]
        for k in range(nlev):
            for m in range(nm):
                out_t_soisno[c, k, m] = u[k + 1, m]
                out_h2osoi_liq[c, k, m] = liq[k + 1, m]
                out_h2osoi_ice[c, k, m] = ice[k + 1, m]


__all__ = ["CNFAC", "SNOW_DZMIN", "supercooled_liquid", "column_heat_content", "ground_temperature",
           "soil_snow_temperature"]
