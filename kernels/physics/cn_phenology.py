"""CLM4CN phenology, litterfall, live-wood turnover and gap-phase mortality (CLM4 tech note, Oleson
et al. 2010, chapters "Vegetation Phenology" and "Plant Mortality"; CLM4.0 ``CNPhenologyMod``
and ``CNGapMortalityMod``; White, Thornton & Running 1997 for the deciduous triggers).

Leaf habits (``pftcon`` flags evergreen / season_decid / stress_decid):

- evergreen (CNEvergreenPhenology): background litterfall of leaves and fine roots at
  bglfr = 1/(leaf_long 365 d); no storage cycle (fcur = 1).
- seasonal deciduous (CNSeasonDecidPhenology): after the winter solstice (day length increasing) a
  growing-degree-day sum over soil layer 3 temperature above freezing starts; onset when it exceeds
  crit_onset_gdd = exp(4.8 + 0.13 (annavg_t2m - 273.15)) degC day. At onset fstor2tran = 0.5 of every
  storage pool moves to transfer, and transfer pools are displayed over ndays_on = 30 days with a
  linearly decreasing rate (t1 = 2/onset_counter, all of it in the last step). Offset when, after the
  summer solstice, day length < crit_dayl = 39300 s; leaves and fine roots fall over ndays_off = 15
  days with a linearly increasing rate (CNOffsetLitterfall), all in the last step.
  (CLM4.0 uses 30-day onset and 15-day offset periods; the brief's "15-day onset/offset" is read as
  the offset period.)
- stress deciduous (CNStressDecidPhenology): onset when the soil water index (days with layer-3
  water potential >= -2 MPa) exceeds 15 days, after a freezing trigger (15 days of frozen soil) also
  requiring the GDD sum, and never with day length <= 6 h; offset after 15 days of water stress
  (psi <= -2 MPa, recovering on wet days), 15 freezing days, or day length <= 6 h. After 365 active
  days a long-growing-season factor lgsf ramps in background litterfall (1/leaf_long) and a background
  storage -> transfer -> display flow (1/year).

Litterfall N: leaf litter leaves at the litter C:N lflitcn, the rest of the leaf N (at the pool's own
N:C, i.e. 1/leafcn for pools grown by the allocation kernel) is retranslocated to ``retransn``; fine
root litter carries the pool's N. Litter C and N enter litter 1-3 by lf_flab/lf_fcel/lf_flig and
fr_flab/fr_fcel/fr_flig, weighted by patch_wt (CLM4 CNLitterToColumn).
Live wood turnover: live stem and live coarse root C -> dead at 0.7 yr-1 (lwtop), their N at the
dead-wood C:N, the rest of the N retranslocated (CNLivewoodTurnover).
Gap-phase mortality (CNGapMortality): 2 % per year of every patch pool: leaf and fine root pools to
litter by their fractions, live/dead stem and coarse root to coarse woody debris, storage, transfer and
growth-respiration pools (and retransn) to litter 1.

Dead-wood acceleration of the AD spin-up (CTSM ``spinup_factor_deadwood``, CNGapMortalityMod; not in
CLM4.0, whose spin-up needed centuries for the dead wood's 50-year turnover): in AD mode the gap
mortality of the displayed dead stem and dead coarse root pools (C and N) is multiplied by
``deadwood_factor`` (``AD_DEADWOOD_FACTOR`` = 10, CTSM's AD value; 1 in normal mode), so those pools
settle at 1/factor of their normal steady state while their flux to CWD is already the normal one;
``ad_exit_deadwood`` multiplies them back (CTSM's restart on leaving spin-up).

Reads soil temperature and water potential of layer 3, day length and its previous value, the PFT
record; reads and writes the packed patch state (phenology flags, accumulators and pools) and the
column litter/CWD pools; fills patch fluxes (litterfall, mortality, transfer growth respiration).
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit, njit_inline
from kernels.physics.cn_state import (
    BGLFR, BGTR, CWDC, DAYS_ACTIVE, DEADCROOTC, DEADSTEMC, DORMANT_FLAG, F_AR, F_CLAMP_C, F_CLAMP_N,
    F_FROOTC_TO_LITTER, F_GR, F_LEAFC_TO_LITTER, F_LEAFN_TO_RETRANSN, F_LITFALL_C, F_LITFALL_N,
    F_MORT_C, FROOTC, GRESP_STORAGE, GRESP_XFER, LEAFC, LGSF, LITR1C, LITR2C, LITR3C,
    LIVECROOTC, LIVESTEMC, NC0, NCOL_C, NTISSUE, OFFSET_COUNTER, OFFSET_FDD, OFFSET_FLAG, OFFSET_SWI,
    ONSET_COUNTER, ONSET_FDD, ONSET_FLAG, ONSET_GDD, ONSET_GDDFLAG, ONSET_SWI, ANNAVG_T2M,
    PREV_FROOTC_TO_LITTER, PREV_LEAFC_TO_LITTER, RETRANSN, T_DEADCROOT, T_DEADSTEM, XSMRPOOL,
)
from kernels.physics.constants import DAYSPYR, SECSPDAY, TFRZ
from kernels.vmath import vexp

#: CLM4.0 CNPhenology constants (Biome-BGC v4.1.2 / White et al. 1997).
CRIT_DAYL = 39300.0  # s, critical day length for seasonal-deciduous offset
NDAYS_ON = 30.0  # days of the onset period
NDAYS_OFF = 15.0  # days of the offset period
FSTOR2TRAN = 0.5  # fraction of storage moved to transfer at onset
CRIT_ONSET_FDD = 15.0  # days of frozen soil that set the freeze trigger (stress deciduous)
CRIT_ONSET_SWI = 15.0  # days of wet soil for onset (stress deciduous)
SOILPSI_ON = -2.0  # MPa
CRIT_OFFSET_FDD = 15.0
CRIT_OFFSET_SWI = 15.0
SOILPSI_OFF = -2.0  # MPa
SECSPQTRDAY = SECSPDAY / 4.0  # 6 h: no onset / forced offset at shorter day length
LWTOP_PER_YEAR = 0.7  # live wood turnover (yr-1, CNLivewoodTurnover)
AM_PER_YEAR = 0.02  # gap-phase mortality (yr-1, CNGapMortality)
#: AD spin-up multiplier of the dead stem and dead coarse root mortality (CTSM spinup_factor_deadwood).
AD_DEADWOOD_FACTOR = 10.0
#: Soil layer (0-based) whose temperature and water potential drive phenology (CLM4: layer 3).
PHENOLOGY_LAYER = 2


@njit
def crit_onset_gdd(annavg_t2m):
    """Critical growing-degree-day sum for onset (degC day) from the annual mean 2-m temperature
    (K): exp(4.8 + 0.13 (T - 273.15)) (CLM4.0, Biome-BGC v4.1.2). (The phenology kernel evaluates
    the same formula with ``vmath.vexp``, within 1 ulp of this.)"""
    return math.exp(4.8 + 0.13 * (annavg_t2m - TFRZ))


# Per-member scratch rows of the phenology kernel (one patch at a time).
(_W_S2X, _W_X2D, _W_XDC, _W_LC1, _W_LC2, _W_LC3, _W_LN1, _W_LN2, _W_LN3, _W_CWDC, _W_CWDN, _W_MORTC, _W_CRIT,
 _W_LCLIT, _W_FCLIT, _W_LNLIT, _W_FNLIT, _W_LNRETR) = range(18)
_NW = 18


@njit_inline
def _count_down(off, offc, dorm, days_active, prevl, prevf, on, onc, dt):
    """Count the offset and onset periods down by dt (s), as CLM4.0 CNSeasonDecidPhenology and
    CNStressDecidPhenology both do: at the end of the offset period the patch becomes dormant; at the
    end of the onset period ``flush`` is True (CLM4 zeroes the transfer pools there; we display the
    remainder instead). Select form of the flag logic (no branches), so the member loop vectorises.
    Returns the updated (off, offc, dorm, days_active, prevl, prevf, on, onc, flush)."""
    is_off = off == 1.0
    offc1 = offc - dt
    end_off = is_off & (offc1 < 0.5 * dt)
    offc = (0.0 if end_off else offc1) if is_off else offc
    off = 0.0 if end_off else off
    dorm = 1.0 if end_off else dorm
    days_active = 0.0 if end_off else days_active
    prevl = 0.0 if end_off else prevl
    prevf = 0.0 if end_off else prevf
    is_on = on == 1.0
    onc1 = onc - dt
    flush = is_on & (onc1 < 0.5 * dt)
    onc = (0.0 if flush else onc1) if is_on else onc
    on = 0.0 if flush else on
    return off, offc, dorm, days_active, prevl, prevf, on, onc, flush


@njit_inline
def _transfer_rates(onset_now, flush, on, onc, bgtr, dt):
    """Storage -> transfer and transfer -> displayed rates (s-1): FSTOR2TRAN/dt at the onset trigger
    or the background rate bgtr; during onset 2/onset_counter (all of it in the last step); 1/dt with
    background transfer or at the end of the onset period; both at most 1/dt."""
    f_s2x = FSTOR2TRAN / dt if onset_now else (bgtr if bgtr > 0.0 else 0.0)
    f_on = 1.0 / dt if abs(onc - dt) <= 0.5 * dt else 2.0 / onc
    f_x2d = f_on if on == 1.0 else 0.0
    f_x2d = 1.0 / dt if ((bgtr > 0.0) | flush) else f_x2d
    return min(f_s2x, 1.0 / dt), min(f_x2d, 1.0 / dt)


@njit_inline
def _store_season_state(ps, p, m, off, offc, dorm, days_active, prevl, prevf, on, onc, gddflag, gdd):
    """Write the onset/offset state shared by the seasonal- and stress-deciduous phenologies back into
    ``ps[:, p, m]``."""
    ps[OFFSET_FLAG, p, m] = off
    ps[OFFSET_COUNTER, p, m] = offc
    ps[DORMANT_FLAG, p, m] = dorm
    ps[DAYS_ACTIVE, p, m] = days_active
    ps[PREV_LEAFC_TO_LITTER, p, m] = prevl
    ps[PREV_FROOTC_TO_LITTER, p, m] = prevf
    ps[ONSET_FLAG, p, m] = on
    ps[ONSET_COUNTER, p, m] = onc
    ps[ONSET_GDDFLAG, p, m] = gddflag
    ps[ONSET_GDD, p, m] = gdd


@njit
def phenology(patch_pft, patch_col, patch_wt, t_soi, soilpsi, dayl, prev_dayl, pft, dt, deadwood_factor, ps, cs,
              pf):
    """One step of CLM4CN phenology, litterfall, live-wood turnover and gap mortality for every patch
    and member (see the module docstring for the equations).

    ``t_soi[c, lev, m]`` soil temperature (K) and ``soilpsi[c, lev, m]`` soil water potential (MPa);
    layer ``PHENOLOGY_LAYER`` (CLM4's layer 3) is used. ``dayl[c]``/``prev_dayl[c]`` day length of this
    and the previous step (s). ``pft`` = ``pft_record()``; dt (s); ``deadwood_factor`` multiplies the
    dead stem and dead coarse root mortality (AD spin-up; 1.0 normally). Updates the packed patch state
    ``ps`` (flags, accumulators, pools) and the column litter/CWD pools of ``cs``; accumulates into
    ``pf``: transfer growth respiration (F_GR, F_AR), litterfall (F_LEAFC_TO_LITTER, ...,
    F_LITFALL_C/N), mortality (F_MORT_C), clamps (F_CLAMP_C/N).

    Computed per patch in passes over the members, one pool at a time (flags, transfers, litterfall,
    turnover, mortality, clamps, litter to the column), with the flag logic in select form, so that
    every member loop vectorises; each member's arithmetic and summation order are those of the
    member-by-member formulation. The onset GDD threshold uses ``vmath.vexp`` (within 1 ulp of
    :func:`crit_onset_gdd`).
    """
    lwtop = LWTOP_PER_YEAR / (DAYSPYR * SECSPDAY)
    mort = AM_PER_YEAR / (DAYSPYR * SECSPDAY)
    fracday = dt / SECSPDAY
    nmem = ps.shape[2]
    wk = np.zeros((_NW, nmem))
    s2x_r = wk[_W_S2X]
    x2d_r = wk[_W_X2D]
    xdc = wk[_W_XDC]
    lc1 = wk[_W_LC1]
    lc2 = wk[_W_LC2]
    lc3 = wk[_W_LC3]
    ln1 = wk[_W_LN1]
    ln2 = wk[_W_LN2]
    ln3 = wk[_W_LN3]
    cwdc = wk[_W_CWDC]
    cwdn = wk[_W_CWDN]
    mortc = wk[_W_MORTC]
    crit_r = wk[_W_CRIT]
    lc_r = wk[_W_LCLIT]  # leaf and fine root litterfall C, leaf and fine root litter N, leaf N retranslocated
    fc_r = wk[_W_FCLIT]
    lnl_r = wk[_W_LNLIT]
    fnl_r = wk[_W_FNLIT]
    lnr_r = wk[_W_LNRETR]
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        if ivt == 0:
            continue
        c = patch_col[p]
        wt = patch_wt[p]
        evergreen = pft.evergreen[ivt] == 1.0
        season = pft.season_decid[ivt] == 1.0
        stress = pft.stress_decid[ivt] == 1.0
        woody = pft.woody[ivt] == 1.0
        g1 = pft.grperc[ivt]
        g2 = pft.grpnow[ivt]
        lflitcn = pft.lflitcn[ivt]
        lf_flab = pft.lf_flab[ivt]
        lf_fcel = pft.lf_fcel[ivt]
        lf_flig = pft.lf_flig[ivt]
        fr_flab = pft.fr_flab[ivt]
        fr_fcel = pft.fr_fcel[ivt]
        fr_flig = pft.fr_flig[ivt]
        deadwdcn = pft.deadwdcn[ivt]
        bglfr_ever = 1.0 / (pft.leaf_long[ivt] * DAYSPYR * SECSPDAY)
        bglfr_stress = pft.leaf_long[ivt] * DAYSPYR * SECSPDAY
        dl = dayl[c]
        ws = dl >= prev_dayl[c]
        short_day = dl <= SECSPQTRDAY

        # ---- phenology flags (CLM4.0 CNEvergreen/CNSeasonDecid/CNStressDecidPhenology) -> transfer rates
        nact = 0
        if evergreen:
            for m in range(nmem):
                ps[BGLFR, p, m] = bglfr_ever
                ps[BGTR, p, m] = 0.0
                ps[LGSF, p, m] = 0.0
                f_s2x, f_x2d = _transfer_rates(False, False, ps[ONSET_FLAG, p, m], ps[ONSET_COUNTER, p, m], 0.0, dt)
                s2x_r[m] = f_s2x
                x2d_r[m] = f_x2d
                nact += 1 if ((f_s2x > 0.0) | (f_x2d > 0.0)) else 0
        elif season:
            for m in range(nmem):
                soilt = t_soi[c, PHENOLOGY_LAYER, m]
                off, offc, dorm, days_active, prevl, prevf, on, onc, flush = _count_down(
                    ps[OFFSET_FLAG, p, m], ps[OFFSET_COUNTER, p, m], ps[DORMANT_FLAG, p, m],
                    ps[DAYS_ACTIVE, p, m], ps[PREV_LEAFC_TO_LITTER, p, m], ps[PREV_FROOTC_TO_LITTER, p, m],
                    ps[ONSET_FLAG, p, m], ps[ONSET_COUNTER, p, m], dt)
                gddflag = ps[ONSET_GDDFLAG, p, m]
                gdd = ps[ONSET_GDD, p, m]
                crit = vexp(4.8 + 0.13 * (ps[ANNAVG_T2M, p, m] - TFRZ))
                dormant = dorm == 1.0
                start = dormant & (gddflag == 0.0) & ws
                gddflag = 1.0 if start else gddflag
                gdd = 0.0 if start else gdd
                stop = dormant & (gddflag == 1.0) & (not ws)
                gddflag = 0.0 if stop else gddflag
                gdd = 0.0 if stop else gdd
                warm = dormant & (gddflag == 1.0) & (soilt > TFRZ)
                gdd = gdd + (soilt - TFRZ) * fracday if warm else gdd
                onset_now = dormant & (gdd > crit)
                on = 1.0 if onset_now else on
                dorm = 0.0 if onset_now else dorm
                gddflag = 0.0 if onset_now else gddflag
                gdd = 0.0 if onset_now else gdd
                onc = NDAYS_ON * SECSPDAY if onset_now else onc
                go_off = (not dormant) & (off == 0.0) & (not ws) & (dl < CRIT_DAYL)
                off = 1.0 if go_off else off
                offc = NDAYS_OFF * SECSPDAY if go_off else offc
                prevl = 0.0 if go_off else prevl
                prevf = 0.0 if go_off else prevf
                _store_season_state(ps, p, m, off, offc, dorm, days_active, prevl, prevf, on, onc, gddflag, gdd)
                ps[BGLFR, p, m] = 0.0
                ps[BGTR, p, m] = 0.0
                ps[LGSF, p, m] = 0.0
                f_s2x, f_x2d = _transfer_rates(onset_now, flush, on, onc, 0.0, dt)
                s2x_r[m] = f_s2x
                x2d_r[m] = f_x2d
                nact += 1 if ((f_s2x > 0.0) | (f_x2d > 0.0)) else 0
        elif stress:
            # the onset GDD threshold matters only to members with the GDD trigger set (before or in
            # this step): evaluated behind a real branch (a select would evaluate vexp for all)
            need_crit = False
            for m in range(nmem):
                need_crit |= (ps[ONSET_GDDFLAG, p, m] == 1.0) | (ps[ONSET_FDD, p, m] + fracday > CRIT_ONSET_FDD)
            if need_crit:
                for m in range(nmem):
                    crit_r[m] = vexp(4.8 + 0.13 * (ps[ANNAVG_T2M, p, m] - TFRZ))
            for m in range(nmem):
                soilt = t_soi[c, PHENOLOGY_LAYER, m]
                psi = soilpsi[c, PHENOLOGY_LAYER, m]
                off, offc, dorm, days_active, prevl, prevf, on, onc, flush = _count_down(
                    ps[OFFSET_FLAG, p, m], ps[OFFSET_COUNTER, p, m], ps[DORMANT_FLAG, p, m],
                    ps[DAYS_ACTIVE, p, m], ps[PREV_LEAFC_TO_LITTER, p, m], ps[PREV_FROOTC_TO_LITTER, p, m],
                    ps[ONSET_FLAG, p, m], ps[ONSET_COUNTER, p, m], dt)
                gddflag = ps[ONSET_GDDFLAG, p, m]
                gdd = ps[ONSET_GDD, p, m]
                fdd = ps[ONSET_FDD, p, m]
                swi = ps[ONSET_SWI, p, m]
                ofdd = ps[OFFSET_FDD, p, m]
                oswi = ps[OFFSET_SWI, p, m]
                crit = crit_r[m]
                # dormant: freezing trigger, GDD and soil water index -> onset
                dormant = dorm == 1.0
                fdd = fdd + fracday if (dormant & (gddflag == 0.0) & (soilt < TFRZ)) else fdd
                trig = dormant & (fdd > CRIT_ONSET_FDD)
                gddflag = 1.0 if trig else gddflag
                fdd = 0.0 if trig else fdd
                swi = 0.0 if trig else swi
                gdd = gdd + (soilt - TFRZ) * fracday if (dormant & (gddflag == 1.0) & (soilt > TFRZ)) else gdd
                swi = swi + fracday if (dormant & (psi >= SOILPSI_ON)) else swi
                onset_now = (dormant & (swi > CRIT_ONSET_SWI) & (not ((gddflag == 1.0) & (gdd < crit)))
                             & (not short_day))
                on = 1.0 if onset_now else on
                dorm = 0.0 if onset_now else dorm
                days_active = 0.0 if onset_now else days_active
                gddflag = 0.0 if onset_now else gddflag
                fdd = 0.0 if onset_now else fdd
                gdd = 0.0 if onset_now else gdd
                swi = 0.0 if onset_now else swi
                onc = NDAYS_ON * SECSPDAY if onset_now else onc
                # active, not yet in offset: water stress, freezing or short days -> offset
                active = (not dormant) & (off == 0.0)
                dry = psi <= SOILPSI_OFF
                oswi = oswi + fracday if (active & dry) else oswi
                off = 1.0 if (active & dry & (oswi >= CRIT_OFFSET_SWI) & (on == 0.0)) else off
                oswi = max(oswi - fracday, 0.0) if (active & (not dry) & (psi >= SOILPSI_ON)) else oswi
                ofdd = max(ofdd - fracday, 0.0) if (active & (ofdd > 0.0) & (soilt > TFRZ)) else ofdd
                frozen = active & (soilt <= TFRZ)
                ofdd = ofdd + fracday if frozen else ofdd
                off = 1.0 if (frozen & (ofdd > CRIT_OFFSET_FDD) & (on == 0.0)) else off
                off = 1.0 if (active & short_day) else off
                go_off = active & (off == 1.0)
                ofdd = 0.0 if go_off else ofdd
                oswi = 0.0 if go_off else oswi
                offc = NDAYS_OFF * SECSPDAY if go_off else offc
                prevl = 0.0 if go_off else prevl
                prevf = 0.0 if go_off else prevf
                days_active = days_active + fracday if dorm == 0.0 else days_active
                lgsf = max(min((days_active - DAYSPYR) / DAYSPYR, 1.0), 0.0)
                bglfr = 0.0 if off == 1.0 else lgsf / bglfr_stress
                bgtr = 0.0 if ((on == 1.0) | (dorm == 1.0)) else lgsf / (DAYSPYR * SECSPDAY)
                _store_season_state(ps, p, m, off, offc, dorm, days_active, prevl, prevf, on, onc, gddflag, gdd)
                ps[ONSET_FDD, p, m] = fdd
                ps[ONSET_SWI, p, m] = swi
                ps[OFFSET_FDD, p, m] = ofdd
                ps[OFFSET_SWI, p, m] = oswi
                ps[LGSF, p, m] = lgsf
                ps[BGLFR, p, m] = bglfr
                ps[BGTR, p, m] = bgtr
                f_s2x, f_x2d = _transfer_rates(onset_now, flush, on, onc, bgtr, dt)
                s2x_r[m] = f_s2x
                x2d_r[m] = f_x2d
                nact += 1 if ((f_s2x > 0.0) | (f_x2d > 0.0)) else 0
        else:
            for m in range(nmem):
                f_s2x, f_x2d = _transfer_rates(False, False, ps[ONSET_FLAG, p, m], ps[ONSET_COUNTER, p, m],
                                               ps[BGTR, p, m], dt)
                s2x_r[m] = f_s2x
                x2d_r[m] = f_x2d
                nact += 1 if ((f_s2x > 0.0) | (f_x2d > 0.0)) else 0

        # ---- storage -> transfer, transfer -> displayed; transfer growth respiration (CNGResp) ----
        if nact > 0:
            for m in range(nmem):
                xdc[m] = 0.0
            for t in range(NTISSUE):
                i = 3 * t
                for m in range(nmem):  # carbon: the displayed growth pays transfer growth respiration
                    a = s2x_r[m]
                    b = x2d_r[m]
                    act = (a > 0.0) | (b > 0.0)
                    sto = ps[i + 1, p, m]
                    xfr = ps[i + 2, p, m]
                    s2x = a * sto
                    x2d = b * xfr
                    ps[i + 1, p, m] = sto - dt * s2x if act else sto
                    ps[i + 2, p, m] = xfr + dt * (s2x - x2d) if act else xfr
                    ps[i, p, m] = ps[i, p, m] + dt * x2d if act else ps[i, p, m]
                    xdc[m] = xdc[m] + x2d if act else xdc[m]
                i = 3 * t + NC0
                for m in range(nmem):  # nitrogen
                    a = s2x_r[m]
                    b = x2d_r[m]
                    act = (a > 0.0) | (b > 0.0)
                    sto = ps[i + 1, p, m]
                    xfr = ps[i + 2, p, m]
                    s2x = a * sto
                    x2d = b * xfr
                    ps[i + 1, p, m] = sto - dt * s2x if act else sto
                    ps[i + 2, p, m] = xfr + dt * (s2x - x2d) if act else xfr
                    ps[i, p, m] = ps[i, p, m] + dt * x2d if act else ps[i, p, m]
            for m in range(nmem):
                a = s2x_r[m]
                act = (a > 0.0) | (x2d_r[m] > 0.0)
                gsto = ps[GRESP_STORAGE, p, m]
                gs2x = a * gsto
                ps[GRESP_STORAGE, p, m] = gsto - dt * gs2x if act else gsto
                gx = ps[GRESP_XFER, p, m]
                gx = gx + dt * gs2x if act else gx
                # transfer growth respiration, paid from gresp_xfer (never beyond it)
                tr_gr = min(xdc[m] * g1 * (1.0 - g2), max(gx, 0.0) / dt)
                pay = tr_gr > 0.0
                ps[GRESP_XFER, p, m] = gx - dt * tr_gr if pay else gx
                pf[F_GR, p, m] = pf[F_GR, p, m] + tr_gr if pay else pf[F_GR, p, m]
                pf[F_AR, p, m] = pf[F_AR, p, m] + tr_gr if pay else pf[F_AR, p, m]

        # ---- litterfall of leaves and fine roots (CNOffsetLitterfall, CNBackgroundLitterfall) ----
        # (three member loops, litter rates, pools, column shares: one loop touching all these rows
        # would need too many run-time alias checks to vectorise)
        for m in range(nmem):
            leafc = ps[LEAFC, p, m]
            frootc = ps[FROOTC, p, m]
            pl = ps[PREV_LEAFC_TO_LITTER, p, m]
            pr = ps[PREV_FROOTC_TO_LITTER, p, m]
            oc = ps[OFFSET_COUNTER, p, m]
            bglfr = ps[BGLFR, p, m]
            in_offset = ps[OFFSET_FLAG, p, m] == 1.0
            last = abs(oc - dt) <= 0.5 * dt
            t1 = dt * 2.0 / (oc * oc)
            lo = leafc / dt if last else pl + t1 * (leafc - pl * oc)
            fo = frootc / dt if last else pr + t1 * (frootc - pr * oc)
            lo = min(max(lo, 0.0), max(leafc, 0.0) / dt)
            fo = min(max(fo, 0.0), max(frootc, 0.0) / dt)
            rate = min(bglfr, 1.0 / dt)
            background = bglfr > 0.0
            lb = rate * max(leafc, 0.0) if background else 0.0
            fb = rate * max(frootc, 0.0) if background else 0.0
            lc_r[m] = lo if in_offset else lb
            fc_r[m] = fo if in_offset else fb
            ps[PREV_LEAFC_TO_LITTER, p, m] = lo if in_offset else pl
            ps[PREV_FROOTC_TO_LITTER, p, m] = fo if in_offset else pr
        for m in range(nmem):
            leafc = ps[LEAFC, p, m]
            frootc = ps[FROOTC, p, m]
            leafn = ps[LEAFC + NC0, p, m]
            frootn = ps[FROOTC + NC0, p, m]
            lc_lit = lc_r[m]
            fc_lit = fc_r[m]
            # leaf litter N at the litter C:N, the rest retranslocated; fine root litter at the pool's N:C
            split = (leafc > 0.0) & (lc_lit > 0.0)
            nloss = lc_lit * max(leafn, 0.0) / leafc
            lit = min(lc_lit / lflitcn, nloss)
            ln_lit = lit if split else 0.0
            ln_retr = nloss - lit if split else 0.0
            fn_lit = fc_lit * max(frootn, 0.0) / frootc if frootc > 0.0 else 0.0
            ps[LEAFC, p, m] = leafc - dt * lc_lit
            ps[FROOTC, p, m] = frootc - dt * fc_lit
            ps[LEAFC + NC0, p, m] = leafn - dt * (ln_lit + ln_retr)
            ps[FROOTC + NC0, p, m] = frootn - dt * fn_lit
            ps[RETRANSN, p, m] += dt * ln_retr
            lnl_r[m] = ln_lit
            fnl_r[m] = fn_lit
            lnr_r[m] = ln_retr
        for m in range(nmem):
            lc_lit = lc_r[m]
            fc_lit = fc_r[m]
            ln_lit = lnl_r[m]
            fn_lit = fnl_r[m]
            pf[F_LEAFC_TO_LITTER, p, m] = lc_lit
            pf[F_FROOTC_TO_LITTER, p, m] = fc_lit
            pf[F_LEAFN_TO_RETRANSN, p, m] = lnr_r[m]
            # to the column litter pools (per m2 of column: weighted by the patch weight, below)
            lc1[m] = lc_lit * lf_flab + fc_lit * fr_flab
            lc2[m] = lc_lit * lf_fcel + fc_lit * fr_fcel
            lc3[m] = lc_lit * lf_flig + fc_lit * fr_flig
            ln1[m] = ln_lit * lf_flab + fn_lit * fr_flab
            ln2[m] = ln_lit * lf_fcel + fn_lit * fr_fcel
            ln3[m] = ln_lit * lf_flig + fn_lit * fr_flig
            cwdc[m] = 0.0
            cwdn[m] = 0.0
            mortc[m] = 0.0

        # ---- live wood turnover (woody PFTs, CNLivewoodTurnover) ----
        if woody:
            for ilive in (LIVESTEMC, LIVECROOTC):
                for m in range(nmem):
                    lc = max(ps[ilive, p, m], 0.0)
                    ln = max(ps[ilive + NC0, p, m], 0.0)
                    c2d = lwtop * lc
                    turn = c2d > 0.0
                    nturn = c2d * ln / lc
                    n2d = min(c2d / deadwdcn, nturn)
                    ps[ilive, p, m] = ps[ilive, p, m] - dt * c2d if turn else ps[ilive, p, m]
                    ps[ilive + 3, p, m] = ps[ilive + 3, p, m] + dt * c2d if turn else ps[ilive + 3, p, m]
                    ps[ilive + NC0, p, m] = ps[ilive + NC0, p, m] - dt * nturn if turn else ps[ilive + NC0, p, m]
                    ps[ilive + 3 + NC0, p, m] = (ps[ilive + 3 + NC0, p, m] + dt * n2d if turn
                                                 else ps[ilive + 3 + NC0, p, m])
                    ps[RETRANSN, p, m] = ps[RETRANSN, p, m] + dt * (nturn - n2d) if turn else ps[RETRANSN, p, m]

        # ---- gap-phase mortality: every patch pool at rate mort (CNGapMortality) ----
        for t in range(NTISSUE):
            for k in range(3):
                ic = 3 * t + k
                in_ = ic + NC0
                if k > 0:  # storage and transfer: labile
                    for m in range(nmem):
                        dc = mort * max(ps[ic, p, m], 0.0)
                        dn = mort * max(ps[in_, p, m], 0.0)
                        ps[ic, p, m] -= dt * dc
                        ps[in_, p, m] -= dt * dn
                        mortc[m] += dc
                        lc1[m] += dc
                        ln1[m] += dn
                elif t <= 1:  # leaf and fine root: litter fractions
                    f1 = lf_flab if t == 0 else fr_flab
                    f2 = lf_fcel if t == 0 else fr_fcel
                    f3 = lf_flig if t == 0 else fr_flig
                    for m in range(nmem):
                        dc = mort * max(ps[ic, p, m], 0.0)
                        dn = mort * max(ps[in_, p, m], 0.0)
                        ps[ic, p, m] -= dt * dc
                        ps[in_, p, m] -= dt * dn
                        mortc[m] += dc
                        lc1[m] += dc * f1
                        lc2[m] += dc * f2
                        lc3[m] += dc * f3
                        ln1[m] += dn * f1
                        ln2[m] += dn * f2
                        ln3[m] += dn * f3
                else:  # wood: coarse woody debris (dead wood accelerated in AD spin-up)
                    mw = mort * deadwood_factor if (t == T_DEADSTEM or t == T_DEADCROOT) else mort
                    for m in range(nmem):
                        dc = mw * max(ps[ic, p, m], 0.0)
                        dn = mw * max(ps[in_, p, m], 0.0)
                        ps[ic, p, m] -= dt * dc
                        ps[in_, p, m] -= dt * dn
                        mortc[m] += dc
                        cwdc[m] += dc
                        cwdn[m] += dn
        for ig in (GRESP_STORAGE, GRESP_XFER):
            for m in range(nmem):
                dc = mort * max(ps[ig, p, m], 0.0)
                ps[ig, p, m] -= dt * dc
                mortc[m] += dc
                lc1[m] += dc
        for m in range(nmem):
            dn = mort * max(ps[RETRANSN, p, m], 0.0)
            ps[RETRANSN, p, m] -= dt * dn
            ln1[m] += dn
            pf[F_MORT_C, p, m] = mortc[m]

        # ---- round-off clamps of the patch pools (accounted; xsmrpool may hold a debt); a pool is
        # clamped only where some member is negative (rare), tested first with a real branch ----
        for i in range(NC0 + 20):
            if i == XSMRPOOL:
                continue
            ic = F_CLAMP_C if i < NC0 else F_CLAMP_N
            any_neg = False
            for m in range(nmem):
                any_neg |= ps[i, p, m] < 0.0
            if not any_neg:
                continue
            for m in range(nmem):
                x = ps[i, p, m]
                neg = x < 0.0
                pf[ic, p, m] = pf[ic, p, m] + -x / dt if neg else pf[ic, p, m]
                ps[i, p, m] = 0.0 if neg else x

        # ---- litter and CWD to the column (CNLitterToColumn) ----
        dtw = dt * wt
        for m in range(nmem):
            pf[F_LITFALL_C, p, m] = lc1[m] + lc2[m] + lc3[m] + cwdc[m]
            pf[F_LITFALL_N, p, m] = ln1[m] + ln2[m] + ln3[m] + cwdn[m]
            cs[LITR1C, c, m] += dtw * lc1[m]
            cs[LITR2C, c, m] += dtw * lc2[m]
            cs[LITR3C, c, m] += dtw * lc3[m]
            cs[CWDC, c, m] += dtw * cwdc[m]
            cs[LITR1C + NCOL_C, c, m] += dtw * ln1[m]
            cs[LITR2C + NCOL_C, c, m] += dtw * ln2[m]
            cs[LITR3C + NCOL_C, c, m] += dtw * ln3[m]
            cs[CWDC + NCOL_C, c, m] += dtw * cwdn[m]


@njit
def ad_exit_deadwood(deadwood_factor, patch_col, patch_wt, ps, out_added_c, out_added_n):
    """Leave AD spin-up for the dead wood: the displayed dead stem and dead coarse root C and N of
    every patch times ``deadwood_factor`` (CTSM, on leaving spin-up), the normal-mortality steady
    state for the same inputs. Adds the C and N this creates, per column and member and weighted by
    patch weight (gC m-2, gN m-2), to ``out_added_c/n[c, m]``; a one-off state conversion outside any
    step budget."""
    for p in range(ps.shape[1]):
        c = patch_col[p]
        w = patch_wt[p]
        for m in range(ps.shape[2]):
            for i in (DEADSTEMC, DEADCROOTC):
                out_added_c[c, m] += w * (deadwood_factor - 1.0) * ps[i, p, m]
                out_added_n[c, m] += w * (deadwood_factor - 1.0) * ps[i + NC0, p, m]
                ps[i, p, m] *= deadwood_factor
                ps[i + NC0, p, m] *= deadwood_factor


__all__ = ["AD_DEADWOOD_FACTOR", "ad_exit_deadwood", "crit_onset_gdd", "phenology"]
