"""Snow pack water bookkeeping: one snow layer's accumulation, rain, sublimation, liquid retention
and outflow, compaction, depth and snow-covered fraction (CLM4 tech note, Oleson et al. 2010,
chapter 7, "Snow"; CLM4.0 ``Hydrology1``/``SnowHydrologyMod``).

State per column and member (arrays [c, m]): ``snow_ice`` and ``snow_liq`` (mm), ``t_snow`` (K),
``snow_depth`` (m). H2OSNO = snow_ice + snow_liq. The snow forms a layer of its own (a node of the
heat solve) when snow_depth >= ``soil_temperature.SNOW_DZMIN`` = 0.01 m; thinner snow has no layer
and is held at the temperature of soil level 1 (CLM4).

Melting and refreezing happen in ``soil_temperature.soil_snow_temperature`` (phase change); this
module then moves the water. Order in one step (as CLM4.0: Hydrology1 before the heat solve,
SnowWater after it; either order keeps the budgets):

1. sublimation/evaporation ``qflx_sub_snow`` (> 0 removes ice first, then liquid; what the pack
   cannot supply is returned in ``out_qflx_sub_excess`` for the caller to take from the soil;
   < 0 is frost, added as ice);
2. snowfall adds ice and depth at the fresh-snow density of CLM4 (Anderson 1976):
   rho_new = 50 + 1.7 (T - T_f + 15)^1.5 kg/m3 for T_f - 15 < T <= T_f + 2 (50 below, the T_f + 2
   value above), T = ``forc_t``;
3. rain enters the liquid store when a layer exists, else goes straight to the soil surface;
4. a layer created from thin snow starts at min(T_f, forc_t) (CLM4 ``Hydrology1``);
5. compaction of a layer (CLM4.0 ``Compaction``, Anderson 1976): destructive metamorphism
   -2.777e-6 exp(-0.04 (T_f - T)) 1/s (times exp(-0.046 (rho_ice - 100)) above 100 kg/m3, times 2
   with liquid water) and overburden -P exp(-0.08 (T_f - T) - 0.023 rho_ice) / eta_0 1/s with P
   half the layer's mass (kg/m2) and eta_0 = 9e5 kg s/m2, for layers with more than 0.1 mm of ice
   and a void fraction above 0.001 (as CLM4.0); melt compaction follows from the depth scaling in
   the heat solve;
6. liquid beyond the holding capacity S_r = 0.033 of the pore volume leaves the layer (CLM4
   ``SnowWater``: q_out = max(0, w_liq - S_r rho_w (dz - w_ice/rho_ice))); thin snow keeps no liquid;
7. snow-covered fraction (Niu and Yang 2007, CLM4):
   f_sno = tanh(z_sno / (2.5 z_0g (rho_sno/rho_new)^m)), z_0g = 0.01 m, rho_new = 100 kg/m3, m = 1,
   rho_sno = min(800, H2OSNO / z_sno) kg/m3, as CLM4.0 computes it.

Budgets (checked every call): water (qflx_snow + qflx_rain - sublimation taken - outflow) dt =
change of snow_ice + snow_liq; ``out_resid`` (mm) is the roundoff left. Energy: the snow's heat
content (definition of ``soil_temperature.column_heat_content``) changes only through the mass moved
here (snowfall enters at the snow temperature, outflow leaves at it, a new layer takes its start
temperature, a vanished layer the soil temperature); ``out_eflx_adv`` (W/m2) is that change, for the
driver's energy budget.

Reads ``t_soisno[c, 15, m]`` (K, level 1 only) and the snow state; writes only its ``out_*`` arrays,
which may be the input arrays themselves.
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.constants import CPICE, CPLIQ, DENH2O, DENICE, HFUS, TFRZ
from kernels.physics.soil_temperature import SNOW_DZMIN

#: irreducible liquid water saturation of snow (CLM4 ``ssi``)
SSI = 0.033
#: ground roughness length for the snow-covered fraction (m), CLM4 ``zlnd``
Z0G = 0.01
#: reference fresh-snow density for the snow-covered fraction (kg/m3)
RHO_NEW_FSNO = 100.0
#: Niu-Yang melting factor m
MFSNO = 1.0


@njit
def fresh_snow_density(forc_t):
    """Density of new snow (kg/m3) at air temperature ``forc_t`` (K), CLM4 (Anderson 1976)."""
    if forc_t > TFRZ + 2.0:
        return 50.0 + 1.7 * 17.0 ** 1.5
    if forc_t > TFRZ - 15.0:
        return 50.0 + 1.7 * (forc_t - TFRZ + 15.0) ** 1.5
    return 50.0


@njit
def snow_cover_fraction(snow_depth, h2osno):
    """Snow-covered fraction (1) from depth (m) and water equivalent (mm), Niu and Yang (2007)."""
    if snow_depth <= 0.0 or h2osno <= 0.0:
        return 0.0
    rho = min(800.0, h2osno / snow_depth)  # bulk density, capped as CLM4.0 does
    return math.tanh(snow_depth / (2.5 * Z0G * (rho / RHO_NEW_FSNO) ** MFSNO))


@njit
def snow_water(dt, qflx_snow, qflx_rain, qflx_sub_snow, forc_t, t_soisno, snow_ice, snow_liq, t_snow,
               snow_depth, out_snow_ice, out_snow_liq, out_t_snow, out_snow_depth, out_qflx_top_soil,
               out_qflx_sub_excess, out_frac_sno, out_eflx_adv, out_resid):
    """One step of snow water bookkeeping (module docstring, steps 1-7).

    Inputs:
      dt                                  step (s)
      qflx_snow, qflx_rain [c, m]         snowfall and rain reaching the ground (mm/s, >= 0)
      qflx_sub_snow [c, m]                sublimation/evaporation from the snow (mm/s; < 0 frost)
      forc_t [c, m]                       air temperature (K)
      t_soisno [c, 15, m]                 soil temperature (K; level 1 used)
      snow_ice, snow_liq, t_snow, snow_depth [c, m]   snow state (mm, mm, K, m)
    Outputs (may alias the inputs):
      out_snow_ice, out_snow_liq, out_t_snow, out_snow_depth [c, m]
      out_qflx_top_soil [c, m]            liquid water leaving to the soil surface (mm/s)
      out_qflx_sub_excess [c, m]          sublimation the pack could not supply (mm/s, >= 0)
      out_frac_sno [c, m]                 snow-covered fraction (1)
      out_eflx_adv [c, m]                 snow heat content change by mass moves (W/m2)
      out_resid [c, m]                    water budget residual (mm)
    """
    ncol, nm = snow_ice.shape
    for c in range(ncol):
        for m in range(nm):
            t1 = t_soisno[c, 0, m]
            ice = snow_ice[c, m]
            liq = snow_liq[c, m]
            depth = snow_depth[c, m]
            ts = t_snow[c, m]
            act0 = depth >= SNOW_DZMIN
            ts0 = ts if act0 else t1
            h0 = (CPICE * ice + CPLIQ * liq) * (ts0 - TFRZ) + HFUS * liq
            w0 = ice + liq
            top = 0.0
            # 1. sublimation / frost
            d = qflx_sub_snow[c, m] * dt
            excess = 0.0
            if d > 0.0:
                take = min(d, ice)
                if ice > 0.0:
                    depth = depth * (ice - take) / ice
                ice -= take
                rem = d - take
                take2 = min(rem, liq)
                liq -= take2
                excess = rem - take2
            elif d < 0.0:
                if depth <= 0.0:
                    depth = -d / fresh_snow_density(forc_t[c, m])
                ice -= d
            # 2. snowfall
            qs = qflx_snow[c, m] * dt
            if qs > 0.0:
                depth += qs / fresh_snow_density(forc_t[c, m])
                ice += qs
            # 3. rain
            if act0:
                liq += qflx_rain[c, m] * dt
            else:
                top += qflx_rain[c, m] * dt
            act1 = depth >= SNOW_DZMIN and ice > 0.0
            # 4. new layer
            if act1 and not act0:
                ts = min(TFRZ, forc_t[c, m])
            if act1:
                # 5. compaction (CLM4.0 Compaction), layer temperature at most T_f
                tc = min(ts, TFRZ)
                bi = ice / depth
                ddz1 = -2.777e-6 * math.exp(-0.04 * (TFRZ - tc))
                if bi > 100.0:
                    ddz1 = ddz1 * math.exp(-0.046 * (bi - 100.0))
                if liq > 0.01 * depth:
                    ddz1 = ddz1 * 2.0
                burden = 0.5 * (ice + liq)  # kg/m2 (CLM: burden of layers above + half this one)
                ddz2 = -burden * math.exp(-0.08 * (TFRZ - tc) - 0.023 * bi) / 9.0e5
                if ice > 0.1 and depth - ice / DENICE - liq / DENH2O > 0.001 * depth:
                    depth = depth * (1.0 + (ddz1 + ddz2) * dt)
                    depth = max(depth, ice / DENICE + liq / DENH2O)
                # 6. liquid retention and outflow
                cap = max(0.0, SSI * DENH2O * (depth - ice / DENICE))
                q = max(0.0, liq - cap)
                liq -= q
                top += q
                act1 = depth >= SNOW_DZMIN
            if not act1:
                top += liq
                liq = 0.0
                ts = t1
            if ice <= 0.0:
                ice = 0.0
                depth = 0.0
            out_snow_ice[c, m] = ice
            out_snow_liq[c, m] = liq
            out_snow_depth[c, m] = depth
            out_t_snow[c, m] = ts
            out_qflx_top_soil[c, m] = top / dt
            out_qflx_sub_excess[c, m] = excess / dt
            out_frac_sno[c, m] = snow_cover_fraction(depth, ice + liq)
            h1 = (CPICE * ice + CPLIQ * liq) * (ts - TFRZ) + HFUS * liq
            out_eflx_adv[c, m] = (h1 - h0) / dt
            out_resid[c, m] = (qs + qflx_rain[c, m] * dt - (d - excess) - top) - (ice + liq - w0)


__all__ = ["SSI", "Z0G", "fresh_snow_density", "snow_cover_fraction", "snow_water"]
