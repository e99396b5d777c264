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

Reads soil temperature and water potential of layer 3, day length and its previous value, the PFT
record; reads and writes the packed patch state (phenology flags, accumulators and pools) and the
column litter/CWD pools; fills patch fluxes (litterfall, mortality, transfer growth respiration).
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.cn_state import (
    BGLFR, BGTR, CWDC, DAYS_ACTIVE, DORMANT_FLAG, F_AR, F_CLAMP_C, F_CLAMP_N,
    F_FROOTC_TO_LITTER, F_GR, F_LEAFC_TO_LITTER, F_LEAFN_TO_RETRANSN, F_LITFALL_C, F_LITFALL_N,
    F_MORT_C, FROOTC, GRESP_STORAGE, GRESP_XFER, LEAFC, LGSF, LITR1C, LITR2C, LITR3C,
    LIVECROOTC, LIVESTEMC, NC0, NCOL_C, NTISSUE, OFFSET_COUNTER, OFFSET_FDD, OFFSET_FLAG, OFFSET_SWI,
    ONSET_COUNTER, ONSET_FDD, ONSET_FLAG, ONSET_GDD, ONSET_GDDFLAG, ONSET_SWI, ANNAVG_T2M,
    PREV_FROOTC_TO_LITTER, PREV_LEAFC_TO_LITTER, RETRANSN, XSMRPOOL, clamp_negative_pools,
)
from kernels.physics.constants import DAYSPYR, SECSPDAY, TFRZ

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
#: Soil layer (0-based) whose temperature and water potential drive phenology (CLM4: layer 3).
PHENOLOGY_LAYER = 2


@njit
def crit_onset_gdd(annavg_t2m):
    """Critical growing-degree-day sum for onset (degC day) from the annual mean 2-m temperature
    (K): exp(4.8 + 0.13 (T - 273.15)) (CLM4.0, Biome-BGC v4.1.2)."""
    return math.exp(4.8 + 0.13 * (annavg_t2m - TFRZ))


@njit
def _near(a, b, dt):
    return abs(a - b) <= 0.5 * dt


@njit
def _count_down_periods(ps, p, m, dt):
    """Count the offset and onset periods of patch p, member m down by dt (s), as CLM4.0
    CNSeasonDecidPhenology and CNStressDecidPhenology both do: at the end of the offset period the patch
    becomes dormant; returns True at the end of the onset period (CLM4 zeroes the transfer pools there;
    we display the remainder instead)."""
    flush = False
    if ps[OFFSET_FLAG, p, m] == 1.0:
        ps[OFFSET_COUNTER, p, m] -= dt
        if ps[OFFSET_COUNTER, p, m] < 0.5 * dt:
            ps[OFFSET_FLAG, p, m] = 0.0
            ps[OFFSET_COUNTER, p, m] = 0.0
            ps[DORMANT_FLAG, p, m] = 1.0
            ps[DAYS_ACTIVE, p, m] = 0.0
            ps[PREV_LEAFC_TO_LITTER, p, m] = 0.0
            ps[PREV_FROOTC_TO_LITTER, p, m] = 0.0
    if ps[ONSET_FLAG, p, m] == 1.0:
        ps[ONSET_COUNTER, p, m] -= dt
        if ps[ONSET_COUNTER, p, m] < 0.5 * dt:
            ps[ONSET_FLAG, p, m] = 0.0
            ps[ONSET_COUNTER, p, m] = 0.0
            flush = True
    return flush


@njit
def _season_decid_flags(ps, p, m, soilt, dayl, prev_dayl, dt):
    """CLM4.0 CNSeasonDecidPhenology flag logic for one patch/member. Returns (onset_now, flush)."""
    fracday = dt / SECSPDAY
    ws_flag = 1.0 if dayl >= prev_dayl else 0.0
    onset_now = False
    flush = _count_down_periods(ps, p, m, dt)
    if ps[DORMANT_FLAG, p, m] == 1.0:
        if ps[ONSET_GDDFLAG, p, m] == 0.0 and ws_flag == 1.0:
            ps[ONSET_GDDFLAG, p, m] = 1.0
            ps[ONSET_GDD, p, m] = 0.0
        if ps[ONSET_GDDFLAG, p, m] == 1.0 and ws_flag == 0.0:
            ps[ONSET_GDDFLAG, p, m] = 0.0
            ps[ONSET_GDD, p, m] = 0.0
        if ps[ONSET_GDDFLAG, p, m] == 1.0 and soilt > TFRZ:
            ps[ONSET_GDD, p, m] += (soilt - TFRZ) * fracday
        if ps[ONSET_GDD, p, m] > crit_onset_gdd(ps[ANNAVG_T2M, p, m]):
            ps[ONSET_FLAG, p, m] = 1.0
            ps[DORMANT_FLAG, p, m] = 0.0
            ps[ONSET_GDDFLAG, p, m] = 0.0
            ps[ONSET_GDD, p, m] = 0.0
            ps[ONSET_COUNTER, p, m] = NDAYS_ON * SECSPDAY
            onset_now = True
    elif ps[OFFSET_FLAG, p, m] == 0.0:
        if ws_flag == 0.0 and dayl < CRIT_DAYL:
            ps[OFFSET_FLAG, p, m] = 1.0
            ps[OFFSET_COUNTER, p, m] = NDAYS_OFF * SECSPDAY
            ps[PREV_LEAFC_TO_LITTER, p, m] = 0.0
            ps[PREV_FROOTC_TO_LITTER, p, m] = 0.0
    ps[BGLFR, p, m] = 0.0
    ps[BGTR, p, m] = 0.0
    ps[LGSF, p, m] = 0.0
    return onset_now, flush


@njit
def _stress_decid_flags(ps, p, m, soilt, psi, dayl, leaf_long, dt):
    """CLM4.0 CNStressDecidPhenology flag logic for one patch/member. Returns (onset_now, flush)."""
    fracday = dt / SECSPDAY
    onset_now = False
    flush = _count_down_periods(ps, p, m, dt)
    if ps[DORMANT_FLAG, p, m] == 1.0:
        if ps[ONSET_GDDFLAG, p, m] == 0.0 and soilt < TFRZ:
            ps[ONSET_FDD, p, m] += fracday
        if ps[ONSET_FDD, p, m] > CRIT_ONSET_FDD:
            ps[ONSET_GDDFLAG, p, m] = 1.0
            ps[ONSET_FDD, p, m] = 0.0
            ps[ONSET_SWI, p, m] = 0.0
        if ps[ONSET_GDDFLAG, p, m] == 1.0 and soilt > TFRZ:
            ps[ONSET_GDD, p, m] += (soilt - TFRZ) * fracday
        if psi >= SOILPSI_ON:
            ps[ONSET_SWI, p, m] += fracday
        onset = False
        if ps[ONSET_SWI, p, m] > CRIT_ONSET_SWI:
            onset = True
            if ps[ONSET_GDDFLAG, p, m] == 1.0 and ps[ONSET_GDD, p, m] < crit_onset_gdd(ps[ANNAVG_T2M, p, m]):
                onset = False
        if onset and dayl <= SECSPQTRDAY:
            onset = False
        if onset:
            ps[ONSET_FLAG, p, m] = 1.0
            ps[DORMANT_FLAG, p, m] = 0.0
            ps[DAYS_ACTIVE, p, m] = 0.0
            ps[ONSET_GDDFLAG, p, m] = 0.0
            ps[ONSET_FDD, p, m] = 0.0
            ps[ONSET_GDD, p, m] = 0.0
            ps[ONSET_SWI, p, m] = 0.0
            ps[ONSET_COUNTER, p, m] = NDAYS_ON * SECSPDAY
            onset_now = True
    elif ps[OFFSET_FLAG, p, m] == 0.0:
        if psi <= SOILPSI_OFF:
            ps[OFFSET_SWI, p, m] += fracday
            if ps[OFFSET_SWI, p, m] >= CRIT_OFFSET_SWI and ps[ONSET_FLAG, p, m] == 0.0:
                ps[OFFSET_FLAG, p, m] = 1.0
        elif psi >= SOILPSI_ON:
            ps[OFFSET_SWI, p, m] = max(ps[OFFSET_SWI, p, m] - fracday, 0.0)
        if ps[OFFSET_FDD, p, m] > 0.0 and soilt > TFRZ:
            ps[OFFSET_FDD, p, m] = max(ps[OFFSET_FDD, p, m] - fracday, 0.0)
        if soilt <= TFRZ:
            ps[OFFSET_FDD, p, m] += fracday
            if ps[OFFSET_FDD, p, m] > CRIT_OFFSET_FDD and ps[ONSET_FLAG, p, m] == 0.0:
                ps[OFFSET_FLAG, p, m] = 1.0
        if dayl <= SECSPQTRDAY:
            ps[OFFSET_FLAG, p, m] = 1.0
        if ps[OFFSET_FLAG, p, m] == 1.0:
            ps[OFFSET_FDD, p, m] = 0.0
            ps[OFFSET_SWI, p, m] = 0.0
            ps[OFFSET_COUNTER, p, m] = NDAYS_OFF * SECSPDAY
            ps[PREV_LEAFC_TO_LITTER, p, m] = 0.0
            ps[PREV_FROOTC_TO_LITTER, p, m] = 0.0
    if ps[DORMANT_FLAG, p, m] == 0.0:
        ps[DAYS_ACTIVE, p, m] += fracday
    lgsf = max(min((ps[DAYS_ACTIVE, p, m] - DAYSPYR) / DAYSPYR, 1.0), 0.0)
    ps[LGSF, p, m] = lgsf
    if ps[OFFSET_FLAG, p, m] == 1.0:
        ps[BGLFR, p, m] = 0.0
    else:
        ps[BGLFR, p, m] = lgsf / (leaf_long * DAYSPYR * SECSPDAY)
    if ps[ONSET_FLAG, p, m] == 1.0 or ps[DORMANT_FLAG, p, m] == 1.0:
        ps[BGTR, p, m] = 0.0
    else:
        ps[BGTR, p, m] = lgsf / (DAYSPYR * SECSPDAY)
    return onset_now, flush


@njit
def _leaf_n_split(c_loss, pool_c, pool_n, litcn):
    """N lost with leaf litterfall ``c_loss`` (g/m2/s) from a pool (C, N): (to litter, retranslocated)."""
    if pool_c <= 0.0 or c_loss <= 0.0:
        return 0.0, 0.0
    nloss = c_loss * max(pool_n, 0.0) / pool_c
    lit = min(c_loss / litcn, nloss)
    return lit, nloss - lit


@njit
def phenology(patch_pft, patch_col, patch_wt, t_soi, soilpsi, dayl, prev_dayl, pft, dt, ps, cs, pf):
    """One step of CLM4CN phenology, litterfall, live-wood turnover and gap mortality for every patch
    and member (see the module docstring for the equations).

    ``t_soi[c, lev, m]`` soil temperature (K) and ``soilpsi[c, lev, m]`` soil water potential (MPa);
    layer ``PHENOLOGY_LAYER`` (CLM4's layer 3) is used. ``dayl[c]``/``prev_dayl[c]`` day length of this
    and the previous step (s). ``pft`` = ``pft_record()``; dt (s). Updates the packed patch state
    ``ps`` (flags, accumulators, pools) and the column litter/CWD pools of ``cs``; accumulates into
    ``pf``: transfer growth respiration (F_GR, F_AR), litterfall (F_LEAFC_TO_LITTER, ...,
    F_LITFALL_C/N), mortality (F_MORT_C), clamps (F_CLAMP_C/N).
    """
    lwtop = LWTOP_PER_YEAR / (DAYSPYR * SECSPDAY)
    mort = AM_PER_YEAR / (DAYSPYR * SECSPDAY)
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
        leafcn = pft.leafcn[ivt]
        lflitcn = pft.lflitcn[ivt]
        for m in range(ps.shape[2]):
            soilt = t_soi[c, PHENOLOGY_LAYER, m]
            psi = soilpsi[c, PHENOLOGY_LAYER, m]
            onset_now = False
            flush = False
            if evergreen:
                ps[BGLFR, p, m] = 1.0 / (pft.leaf_long[ivt] * DAYSPYR * SECSPDAY)
                ps[BGTR, p, m] = 0.0
                ps[LGSF, p, m] = 0.0
            elif season:
                onset_now, flush = _season_decid_flags(ps, p, m, soilt, dayl[c], prev_dayl[c], dt)
            elif stress:
                onset_now, flush = _stress_decid_flags(ps, p, m, soilt, psi, dayl[c], pft.leaf_long[ivt], dt)

            # ---- storage -> transfer (onset trigger or background rate), transfer -> displayed ----
            f_s2x = 0.0
            if onset_now:
                f_s2x = FSTOR2TRAN / dt
            elif ps[BGTR, p, m] > 0.0:
                f_s2x = ps[BGTR, p, m]
            f_x2d = 0.0
            if ps[ONSET_FLAG, p, m] == 1.0:
                if _near(ps[ONSET_COUNTER, p, m], dt, dt):
                    f_x2d = 1.0 / dt
                else:
                    f_x2d = 2.0 / ps[ONSET_COUNTER, p, m]
            if ps[BGTR, p, m] > 0.0 or flush:
                f_x2d = 1.0 / dt
            f_s2x = min(f_s2x, 1.0 / dt)
            f_x2d = min(f_x2d, 1.0 / dt)
            xfer_display_c = 0.0
            if f_s2x > 0.0 or f_x2d > 0.0:
                for t in range(NTISSUE):
                    for off in (0, NC0):
                        i = 3 * t + off
                        s2x = f_s2x * ps[i + 1, p, m]
                        x2d = f_x2d * ps[i + 2, p, m]
                        if off == 0:
                            xfer_display_c += x2d
                        ps[i + 1, p, m] -= dt * s2x
                        ps[i + 2, p, m] += dt * (s2x - x2d)
                        ps[i, p, m] += dt * x2d
                gs2x = f_s2x * ps[GRESP_STORAGE, p, m]
                ps[GRESP_STORAGE, p, m] -= dt * gs2x
                ps[GRESP_XFER, p, m] += dt * gs2x
            # transfer growth respiration (CNGResp), paid from gresp_xfer (never beyond it)
            tr_gr = min(xfer_display_c * g1 * (1.0 - g2), max(ps[GRESP_XFER, p, m], 0.0) / dt)
            if tr_gr > 0.0:
                ps[GRESP_XFER, p, m] -= dt * tr_gr
                pf[F_GR, p, m] += tr_gr
                pf[F_AR, p, m] += tr_gr

            # ---- litterfall of leaves and fine roots ----
            leafc = ps[LEAFC, p, m]
            frootc = ps[FROOTC, p, m]
            lc_lit = 0.0
            fc_lit = 0.0
            if ps[OFFSET_FLAG, p, m] == 1.0:
                oc = ps[OFFSET_COUNTER, p, m]
                if _near(oc, dt, dt):
                    lc_lit = leafc / dt
                    fc_lit = frootc / dt
                else:
                    t1 = dt * 2.0 / (oc * oc)
                    lc_lit = ps[PREV_LEAFC_TO_LITTER, p, m] + t1 * (leafc - ps[PREV_LEAFC_TO_LITTER, p, m] * oc)
                    fc_lit = ps[PREV_FROOTC_TO_LITTER, p, m] + t1 * (frootc - ps[PREV_FROOTC_TO_LITTER, p, m] * oc)
                lc_lit = min(max(lc_lit, 0.0), max(leafc, 0.0) / dt)
                fc_lit = min(max(fc_lit, 0.0), max(frootc, 0.0) / dt)
                ps[PREV_LEAFC_TO_LITTER, p, m] = lc_lit
                ps[PREV_FROOTC_TO_LITTER, p, m] = fc_lit
            elif ps[BGLFR, p, m] > 0.0:
                rate = min(ps[BGLFR, p, m], 1.0 / dt)
                lc_lit = rate * max(leafc, 0.0)
                fc_lit = rate * max(frootc, 0.0)
            ln_lit, ln_retr = _leaf_n_split(lc_lit, leafc, ps[LEAFC + NC0, p, m], lflitcn)
            fn_lit = fc_lit * max(ps[FROOTC + NC0, p, m], 0.0) / frootc if frootc > 0.0 else 0.0
            ps[LEAFC, p, m] -= dt * lc_lit
            ps[FROOTC, p, m] -= dt * fc_lit
            ps[LEAFC + NC0, p, m] -= dt * (ln_lit + ln_retr)
            ps[FROOTC + NC0, p, m] -= dt * fn_lit
            ps[RETRANSN, p, m] += dt * ln_retr
            pf[F_LEAFC_TO_LITTER, p, m] = lc_lit
            pf[F_FROOTC_TO_LITTER, p, m] = fc_lit
            pf[F_LEAFN_TO_RETRANSN, p, m] = ln_retr
            # to the column litter pools (per m2 of column: weighted by the patch weight)
            lit_c1 = lc_lit * pft.lf_flab[ivt] + fc_lit * pft.fr_flab[ivt]
            lit_c2 = lc_lit * pft.lf_fcel[ivt] + fc_lit * pft.fr_fcel[ivt]
            lit_c3 = lc_lit * pft.lf_flig[ivt] + fc_lit * pft.fr_flig[ivt]
            lit_n1 = ln_lit * pft.lf_flab[ivt] + fn_lit * pft.fr_flab[ivt]
            lit_n2 = ln_lit * pft.lf_fcel[ivt] + fn_lit * pft.fr_fcel[ivt]
            lit_n3 = ln_lit * pft.lf_flig[ivt] + fn_lit * pft.fr_flig[ivt]
            cwd_c = 0.0
            cwd_n = 0.0

            # ---- live wood turnover (woody PFTs) ----
            if woody:
                for ilive in (LIVESTEMC, LIVECROOTC):
                    lc = max(ps[ilive, p, m], 0.0)
                    ln = max(ps[ilive + NC0, p, m], 0.0)
                    c2d = lwtop * lc
                    if c2d > 0.0:
                        nturn = c2d * ln / lc
                        n2d = min(c2d / pft.deadwdcn[ivt], nturn)
                        ps[ilive, p, m] -= dt * c2d
                        ps[ilive + 3, p, m] += dt * c2d  # live -> dead of the same organ
                        ps[ilive + NC0, p, m] -= dt * nturn
                        ps[ilive + 3 + NC0, p, m] += dt * n2d
                        ps[RETRANSN, p, m] += dt * (nturn - n2d)

            # ---- gap-phase mortality: every patch pool at rate mort ----
            mort_c = 0.0
            for t in range(NTISSUE):
                for k in range(3):
                    ic = 3 * t + k
                    in_ = ic + NC0
                    dc = mort * max(ps[ic, p, m], 0.0)
                    dn = mort * max(ps[in_, p, m], 0.0)
                    ps[ic, p, m] -= dt * dc
                    ps[in_, p, m] -= dt * dn
                    mort_c += dc
                    if k > 0:  # storage and transfer: labile
                        lit_c1 += dc
                        lit_n1 += dn
                    elif t == 0:
                        lit_c1 += dc * pft.lf_flab[ivt]
                        lit_c2 += dc * pft.lf_fcel[ivt]
                        lit_c3 += dc * pft.lf_flig[ivt]
                        lit_n1 += dn * pft.lf_flab[ivt]
                        lit_n2 += dn * pft.lf_fcel[ivt]
                        lit_n3 += dn * pft.lf_flig[ivt]
                    elif t == 1:
                        lit_c1 += dc * pft.fr_flab[ivt]
                        lit_c2 += dc * pft.fr_fcel[ivt]
                        lit_c3 += dc * pft.fr_flig[ivt]
                        lit_n1 += dn * pft.fr_flab[ivt]
                        lit_n2 += dn * pft.fr_fcel[ivt]
                        lit_n3 += dn * pft.fr_flig[ivt]
                    else:
                        cwd_c += dc
                        cwd_n += dn
            for ig in (GRESP_STORAGE, GRESP_XFER):
                dc = mort * max(ps[ig, p, m], 0.0)
                ps[ig, p, m] -= dt * dc
                mort_c += dc
                lit_c1 += dc
            dn = mort * max(ps[RETRANSN, p, m], 0.0)
            ps[RETRANSN, p, m] -= dt * dn
            lit_n1 += dn
            pf[F_MORT_C, p, m] = mort_c

            # ---- round-off clamps of the patch pools touched here (accounted) ----
            clamp_negative_pools(ps, p, m, NC0, NC0 + 20, XSMRPOOL, dt, pf, F_CLAMP_C, F_CLAMP_N)  # xsmrpool: debt

            tot_c = lit_c1 + lit_c2 + lit_c3 + cwd_c
            tot_n = lit_n1 + lit_n2 + lit_n3 + cwd_n
            pf[F_LITFALL_C, p, m] = tot_c
            pf[F_LITFALL_N, p, m] = tot_n
            cs[LITR1C, c, m] += dt * wt * lit_c1
            cs[LITR2C, c, m] += dt * wt * lit_c2
            cs[LITR3C, c, m] += dt * wt * lit_c3
            cs[CWDC, c, m] += dt * wt * cwd_c
            cs[LITR1C + NCOL_C, c, m] += dt * wt * lit_n1
            cs[LITR2C + NCOL_C, c, m] += dt * wt * lit_n2
            cs[LITR3C + NCOL_C, c, m] += dt * wt * lit_n3
            cs[CWDC + NCOL_C, c, m] += dt * wt * cwd_n


__all__ = ["crit_onset_gdd", "phenology"]
