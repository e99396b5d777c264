"""Leaf photosynthesis and stomatal resistance (CLM4 tech note, Oleson et al. 2010, chapter 8; CLM4.0
``CanopyFluxesMod``: subroutine ``Stomata``, CN version). The soil-water stress BTRAN that limits them
is ``kernels.physics.soil_properties.soil_water_stress``.

- Photosynthesis: Farquhar, von Caemmerer and Berry (1980) for C3 and Collatz, Ribas-Carbo and Berry
  (1992) for C4 plants, as minimum of the Rubisco-limited rate w_c, the light-limited rate w_j and
  the export (C3) / PEP-carboxylase (C4) limited rate w_e (CLM4 section 8.2).
- Stomatal conductance: Ball, Woodrow and Berry (1987), g_s = m A h_s p_atm / c_s + b (CLM4 section
  8.1), solved with the leaf boundary layer resistance r_b as CLM4 does: three fixed-point iterations
  on the intercellular CO2 c_i, each solving the quadratic for r_s.
- Vcmax25 from leaf nitrogen (CLM4 section 8.2, CN version): vcmax25 = N_a flnr fnr a_R25 dayl_factor
  with the leaf N per unit leaf area N_a = 1 / (SLA leafcn), SLA the mean specific leaf area of the
  sunlit or of the shaded leaves (``slasun``/``slasha`` of
  ``kernels.physics.canopy_radiation.sunlit_shaded_sla``, CLM4.0; Thornton and Zimmermann 2007),
  flnr, fnr = 7.16, a_R25 = 3.6 umol mgRubisco-1 min-1, and CLM4.0 CanopyFluxes' seasonal
  day-length factor dayl_factor = min(1, max(0.01, (dayl / max_dayl)^2)) (``max_dayl`` the day
  length at the cell's summer solstice; :func:`dayl_factor`); temperature response Q10 = 2.4 times
  the high-temperature inhibition f(T) = 1 + exp((-2.2e5 + 710 T) / (0.001 R T)); kc, ko with Q10
  2.1 and 1.2.

Reads (arguments): leaf temperature, absorbed PAR of sunlit and shaded leaves, canopy air and leaf
vapour pressures, boundary layer resistance, BTRAN, PFT parameters (``engine.pftcon.pft_record()``) and
CLM4 constants (``engine.pftcon.constants_record()``). Writes only its out_* arrays: rssun/rssha (s/m),
psnsun/psnsha (umol CO2 m-2 leaf s-1), ci, FPSN (umol CO2 m-2 ground s-1) and GPP (gC m-2 s-1).
"""

from __future__ import annotations

import math

from kernels._jit import njit, njit_inline
from kernels.physics.constants import RGAS_MOL, TFRZ
from kernels.physics.saturation import esat
from kernels.vmath import vexp, vlog

#: O2 mole fraction (CLM ``o2_molar_const``).
O2_MOLAR = 0.209
#: gC per umol CO2 (12.011 g/mol * 1e-6), CLM4 CN's conversion of psn to carbon flux.
GC_PER_UMOL = 12.011e-6
#: Number of c_i iterations in CLM4.0 Stomata (``niter``).
NITER_CI = 3


@njit_inline
def f_q10(q10, tc):
    """CLM4 statement function f1: q10 ** ((tc - 25) / 10), tc in degC, as exp(ln(q10) (tc - 25) / 10)
    with ``kernels.vmath`` (vectorises; :func:`f_q10_ln` with ln(q10) precomputed gives the same bits)."""
    return f_q10_ln(vlog(q10), tc)


@njit_inline
def f_q10_ln(ln_q10, tc):
    """:func:`f_q10` with ln(q10) given (``vmath.vlog``), for loops in which q10 is fixed."""
    return vexp((tc - 25.0) / 10.0 * ln_q10)


@njit_inline
def f_high_temperature(tc):
    """CLM4 statement function f2 (high-temperature inhibition of Vcmax): 1 + exp((-2.2e5 + 710 T) /
    (0.001 R T)), T = tc + 273.15 K (CLM4 section 8.2)."""
    tk = tc + TFRZ
    return 1.0 + vexp((-2.2e05 + 710.0 * tk) / (RGAS_MOL * tk))


@njit
def dayl_factor(dayl, max_dayl):
    """CLM4.0 CanopyFluxes' seasonal scaling of Vcmax by day length: min(1, max(0.01, (dayl /
    max_dayl)^2)); dayl the day length (s), max_dayl the day length at the summer solstice (s)."""
    return min(1.0, max(0.01, (dayl * dayl) / (max_dayl * max_dayl)))


@njit
def dayl_factors(dayl, max_dayl, out):
    """:func:`dayl_factor` of every column: out[c] from dayl[c], max_dayl[c] (s)."""
    for c in range(dayl.shape[0]):
        out[c] = dayl_factor(dayl[c], max_dayl[c])


@njit
def vcmax_leaf(tc, sla, leafcn, flnr, btran, fdayl, cons):
    """Maximum carboxylation rate (umol CO2 m-2 s-1) at leaf temperature ``tc`` (degC) of CLM4.0 CN:
    lnc flnr fnr act25 q10act^((tc-25)/10) / f2(tc) * btran * fdayl, lnc = 1/(sla leafcn) (gN m-2
    leaf); sla the leaves' specific leaf area (m2 gC-1), leafcn (gC gN-1), flnr (1), btran (0-1),
    fdayl the day-length factor (:func:`dayl_factor`, 0.01-1); cons = ``constants_record()``."""
    lnc = 1.0 / (sla * leafcn)
    act = cons.act25 * 1000.0 / 60.0 * f_q10(cons.q10act, tc)  # umol gRubisco-1 s-1
    return lnc * flnr * cons.fnr * act / f_high_temperature(tc) * btran * fdayl


@njit
def leaf_kinetics(tc, o2, cons):
    """Temperature-dependent constants of CLM4.0 Stomata at leaf temperature ``tc`` (degC) and O2 partial
    pressure ``o2`` (Pa): (kc, ko, awc = kc (1 + o2/ko), cp = 0.5 kc/ko 0.21 o2), all in Pa; kc and ko with
    Q10s akc = 2.1 and ako = 1.2 from kc25 = 30 Pa and ko25 = 30000 Pa (CLM4 section 8.2)."""
    kc = cons.kc25 * f_q10(cons.akc, tc)
    ko = cons.ko25 * f_q10(cons.ako, tc)
    return kc, ko, kc * (1.0 + o2 / ko), 0.5 * kc / ko * o2 * 0.21


@njit_inline
def _limiting_rates(ci, j, vcmax, awc, cp, c3psn, pbot):
    wj = max(ci - cp, 0.0) * j / (ci + 2.0 * cp) * c3psn + j * (1.0 - c3psn)
    wc = max(ci - cp, 0.0) * vcmax / (ci + awc) * c3psn + vcmax * (1.0 - c3psn)
    we = 0.5 * vcmax * c3psn + 4000.0 * vcmax * ci / pbot * (1.0 - c3psn)
    return wc, wj, we


@njit
def leaf_rates(ci, tc, apar, vcmax, qe25, c3psn, o2, pbot, cons):
    """Limiting gross assimilation rates (umol CO2 m-2 s-1) of CLM4.0 Stomata for given intercellular
    CO2 ``ci`` (Pa) at leaf temperature ``tc`` (degC), PAR absorbed per unit leaf area ``apar`` (W m-2),
    ``vcmax`` (umol m-2 s-1), quantum efficiency ``qe25``, pathway ``c3psn`` (1 C3, 0 C4), O2 partial
    pressure ``o2`` and air pressure ``pbot`` (Pa).

    C3 (Farquhar et al. 1980): w_c = vcmax (ci - G*)/(ci + Kc(1 + o2/Ko)), w_j = J (ci - G*)/(ci + 2 G*)
    with J = 4.6 apar qe25 (4.6 umol photons per J of PAR), w_e = vcmax/2. C4 (Collatz et al. 1992):
    w_c = vcmax, w_j = J, w_e = 4000 vcmax ci / pbot. G* = 0.5 Kc/Ko 0.21 o2 (CLM4's CO2 compensation
    point). Returns (wc, wj, we, cp).
    """
    _kc, _ko, awc, cp = leaf_kinetics(tc, o2, cons)
    wc, wj, we = _limiting_rates(ci, 4.6 * apar * qe25, vcmax, awc, cp, c3psn, pbot)
    return wc, wj, we, cp


@njit
def stomata_leaf(apar, tl, ei, ea, o2, co2, rb, btran, pbot, tgcm, ivt, pft, cons):
    """CLM4.0 ``Stomata`` (CN version) for one leaf at the canopy top (SLA = slatop) on the longest day
    of the year (day-length factor 1).

    apar: PAR absorbed per unit leaf area (W m-2); tl: leaf temperature (K); ei: saturation vapour
    pressure at tl (Pa); ea: canopy air vapour pressure (Pa); o2, co2: partial pressures (Pa); rb: leaf
    boundary layer resistance (s/m); btran (0-1); pbot: air pressure (Pa); tgcm: air temperature for
    the unit conversion (K); ivt: PFT index; pft: ``pft_record()``; cons: ``constants_record()``.

    Returns (rs [s/m], psn [umol CO2 m-2 s-1], ci [Pa], vcmax [umol m-2 s-1], cs [Pa], es [Pa]): cs and
    es are the leaf-surface CO2 and vapour pressure of the last iteration, for which r_s solves the
    Ball-Berry equation 1/r_s = m psn pbot (es/ei) / cs + b exactly (r_s in s m2 umol-1, before the
    cap at rsmax0). At night (apar <= 0): r_s = min(rsmax0, cf / b), psn = 0.
    """
    cf = pbot / (RGAS_MOL * tgcm) * 1.0e06  # umol m-3: s m2 umol-1 -> s/m
    if apar <= 0.0:
        return min(cons.rsmax0, cf / cons.bp), 0.0, 0.0, 0.0, co2, min(ea, ei)
    tc = tl - TFRZ
    vcmx = vcmax_leaf(tc, pft.slatop[ivt], pft.leafcn[ivt], pft.flnr[ivt], btran, 1.0, cons)
    _kc, _ko, awc, cp = leaf_kinetics(tc, o2, cons)
    rs, psn, ci, cs, es = _ci_iteration(apar, ei, ea, co2, rb, pbot, cf, vcmx, awc, cp, ivt, pft, cons)
    return rs, psn, ci, vcmx, cs, es


@njit
def _ci_iteration(apar, ei, ea, co2, rb, pbot, cf, vcmx, awc, cp, ivt, pft, cons):
    """The three c_i iterations of CLM4.0 Stomata for apar > 0 (see :func:`stomata_leaf`)."""
    bp = cons.bp
    c3 = pft.c3psn[ivt]
    mp = pft.mp[ivt]
    j = 4.6 * apar * pft.qe25[ivt]
    ci = 0.7 * co2 * c3 + 0.4 * co2 * (1.0 - c3)
    rbm = rb / cf  # s m2 umol-1
    cea = max(0.25 * ei * c3 + 0.40 * ei * (1.0 - c3), min(ea, ei))
    psn = 0.0
    rs = 0.0
    cs = co2
    for _ in range(NITER_CI):
        wc, wj, we = _limiting_rates(ci, j, vcmx, awc, cp, c3, pbot)
        psn = min(wj, wc, we)
        cs = max(co2 - 1.37 * rbm * pbot * psn, 1.0e-6)
        atmp = mp * psn * pbot * cea / (cs * ei) + bp
        btmp = (mp * psn * pbot / cs + bp) * rbm - 1.0
        ctmp = -rbm
        if btmp >= 0.0:
            q = -0.5 * (btmp + math.sqrt(btmp * btmp - 4.0 * atmp * ctmp))
        else:
            q = -0.5 * (btmp - math.sqrt(btmp * btmp - 4.0 * atmp * ctmp))
        r1 = q / atmp
        r2 = ctmp / q
        rs = max(r1, r2)
        ci = max(cs - psn * pbot * 1.65 * rs, 0.0)
    es = (cea * rs + ei * rbm) / (rbm + rs)  # leaf-surface vapour pressure implied by the quadratic
    return min(cons.rsmax0, rs * cf), psn, ci, cs, es


@njit_inline
def ci_iteration_lane(apar, ei, ea, co2, rb, pbot, cf, vcmx, awc, cp, c3, mp, qe25, bp, rsmax0):
    """:func:`_ci_iteration` with the PFT parameters (c3psn, mp, qe25) and the constants (bp, rsmax0)
    given as numbers and without branches (the quadratic's root chosen by a select), for loops over
    ensemble lanes that should vectorise; the same operations in the same order, so (rs [s/m], psn
    [umol CO2 m-2 s-1]) are bit-identical to ``_ci_iteration``'s. Meaningful for apar > 0 only (the
    caller selects the night values otherwise)."""
    j = 4.6 * apar * qe25
    ci = 0.7 * co2 * c3 + 0.4 * co2 * (1.0 - c3)
    rbm = rb / cf
    cea = max(0.25 * ei * c3 + 0.40 * ei * (1.0 - c3), min(ea, ei))
    psn = 0.0
    rs = 0.0
    for _ in range(NITER_CI):
        wc, wj, we = _limiting_rates(ci, j, vcmx, awc, cp, c3, pbot)
        psn = min(wj, wc, we)
        cs = max(co2 - 1.37 * rbm * pbot * psn, 1.0e-6)
        atmp = mp * psn * pbot * cea / (cs * ei) + bp
        btmp = (mp * psn * pbot / cs + bp) * rbm - 1.0
        ctmp = -rbm
        sq = math.sqrt(btmp * btmp - 4.0 * atmp * ctmp)
        q = -0.5 * (btmp + sq) if btmp >= 0.0 else -0.5 * (btmp - sq)
        r1 = q / atmp
        r2 = ctmp / q
        rs = max(r1, r2)
        ci = max(cs - psn * pbot * 1.65 * rs, 0.0)
    return min(rsmax0, rs * cf), psn


@njit
def stomata_sun_shade(parsun, parsha, slasun, slasha, fdayl, tl, ei, ea, o2, co2, rb, btran, pbot, tgcm, ivt, pft,
                      cons):
    """CLM4.0 ``Stomata`` for the sunlit and the shaded leaves at once (same leaf temperature, so the
    temperature functions are evaluated once), each with its mean specific leaf area ``slasun`` /
    ``slasha`` (m2 gC-1) and the day-length factor ``fdayl``; with slasun = slasha = slatop and
    fdayl = 1 the results are identical to two :func:`stomata_leaf` calls.

    Returns (rssun, psnsun, cisun, rssha, psnsha, cisha) in s/m, umol CO2 m-2 s-1, Pa.
    """
    cf = pbot / (RGAS_MOL * tgcm) * 1.0e06
    rs_night = min(cons.rsmax0, cf / cons.bp)
    if parsun <= 0.0 and parsha <= 0.0:
        return rs_night, 0.0, 0.0, rs_night, 0.0, 0.0
    tc = tl - TFRZ
    _kc, _ko, awc, cp = leaf_kinetics(tc, o2, cons)
    if parsun > 0.0:
        vcmx = vcmax_leaf(tc, slasun, pft.leafcn[ivt], pft.flnr[ivt], btran, fdayl, cons)
        rssun, psnsun, cisun, _cs, _es = _ci_iteration(parsun, ei, ea, co2, rb, pbot, cf, vcmx, awc, cp, ivt, pft,
                                                       cons)
    else:
        rssun, psnsun, cisun = rs_night, 0.0, 0.0
    if parsha > 0.0:
        vcmx = vcmax_leaf(tc, slasha, pft.leafcn[ivt], pft.flnr[ivt], btran, fdayl, cons)
        rssha, psnsha, cisha, _cs, _es = _ci_iteration(parsha, ei, ea, co2, rb, pbot, cf, vcmx, awc, cp, ivt, pft,
                                                       cons)
    else:
        rssha, psnsha, cisha = rs_night, 0.0, 0.0
    return rssun, psnsun, cisun, rssha, psnsha, cisha


@njit
def photosynthesis(patch_col, patch_pft, t_veg, parsun, parsha, laisun, laisha, slasun, slasha, btran, eah, rb,
                   forc_pbot, forc_t, fdayl, co2_ppmv, pft, cons, out_rssun, out_rssha, out_psnsun, out_psnsha, out_cisun,
                   out_cisha, out_fpsn, out_gpp):
    """Sunlit and shaded leaf photosynthesis and stomatal resistance for given leaf temperature and
    canopy air humidity (the same :func:`stomata_sun_shade` that ``canopy_fluxes`` calls inside its
    vegetation-temperature iteration; this kernel is for use outside that loop and for tests).

    Patch arrays (npatch, nmem): t_veg (K), parsun/parsha (PAR absorbed per unit sunlit/shaded leaf
    area, W m-2), laisun/laisha (m2/m2), slasun/slasha (m2 gC-1, ``canopy_radiation.sunlit_shaded_sla``),
    btran (0-1), eah (canopy air vapour pressure, Pa), rb (leaf boundary layer resistance, s/m). Column
    arrays (ncol, nmem): forc_pbot (Pa), forc_t (K, used for the conductance unit conversion).
    fdayl[c]: day-length factor (:func:`dayl_factor`). co2_ppmv: atmospheric CO2 (umol/mol). O2 = 0.209 pbot.
    Fills out_rssun/out_rssha (s/m), out_psnsun/out_psnsha (umol CO2 m-2 leaf s-1), out_cisun/out_cisha
    (Pa), out_fpsn = psnsun laisun + psnsha laisha (umol CO2 m-2 s-1) and out_gpp = fpsn * 12.011e-6
    (gC m-2 s-1). Bare-soil patches (PFT 0) get rs = rsmax0 and zero photosynthesis.
    """
    npatch, nmem = t_veg.shape
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        for m in range(nmem):
            if ivt == 0:
                out_rssun[p, m] = cons.rsmax0
                out_rssha[p, m] = cons.rsmax0
                out_psnsun[p, m] = 0.0
                out_psnsha[p, m] = 0.0
                out_cisun[p, m] = 0.0
                out_cisha[p, m] = 0.0
                out_fpsn[p, m] = 0.0
                out_gpp[p, m] = 0.0
                continue
            pbot = forc_pbot[c, m]
            co2 = co2_ppmv * 1.0e-6 * pbot
            o2 = O2_MOLAR * pbot
            ei, _d = esat(t_veg[p, m])
            rssun, psnsun, cisun, rssha, psnsha, cisha = stomata_sun_shade(
                parsun[p, m], parsha[p, m], slasun[p, m], slasha[p, m], fdayl[c], t_veg[p, m], ei, eah[p, m], o2, co2, rb[p, m], btran[p, m], pbot,
                forc_t[c, m], ivt, pft, cons)
            out_rssun[p, m] = rssun
            out_psnsun[p, m] = psnsun
            out_cisun[p, m] = cisun
            out_rssha[p, m] = rssha
            out_psnsha[p, m] = psnsha
            out_cisha[p, m] = cisha
            out_fpsn[p, m] = out_psnsun[p, m] * laisun[p, m] + out_psnsha[p, m] * laisha[p, m]
            out_gpp[p, m] = out_fpsn[p, m] * GC_PER_UMOL



__all__ = [
    "GC_PER_UMOL", "NITER_CI", "ci_iteration_lane", "O2_MOLAR", "dayl_factor", "dayl_factors", "f_high_temperature",
    "f_q10", "f_q10_ln", "leaf_kinetics", "leaf_rates", "photosynthesis", "stomata_leaf", "stomata_sun_shade", "vcmax_leaf",
]
