"""CLM4CN maintenance respiration, carbon and nitrogen allocation with N limitation, growth
respiration, and the annual accumulators (CLM4 tech note, Oleson et al. 2010, chapter "Carbon-Nitrogen
Pools, Allocation, and Respiration"; CLM4.0 ``CNMRespMod``, ``CNAllocationMod``,
``CNGRespMod``, ``CNAnnualUpdateMod``).

Maintenance respiration (CLM4.0 CNMResp; Ryan 1991): MR = N br Q10^((T - 20 degC)/10) with base rate
br = 2.525e-6 gC gN-1 s-1 and Q10 = 1.5 (``constants_record()``: mr_br, mr_q10, mr_tref): leaf and live
stem with the 2-m air temperature, fine and live coarse roots summed over soil layers weighted by the
patch's root fraction with each layer's soil temperature. (CLM4.0 takes the leaf part from the
photosynthesis routine's leaf respiration; here leaf MR uses the same N-based formula as the other
tissues, as the tech note writes maintenance respiration.)

Allocation (CLM4.0 CNAllocation): GPP first pays MR (any shortfall is paid from
``xsmrpool``, which then holds a debt repaid at 1/30 of the debt per day from later GPP,
``dayscrecover`` = 30); the rest, availc, is split with the allometric ratios a1 = froot_leaf,
a2 = croot_stem, a3 = stem_leaf (dynamic for stem_leaf < 0: a3 = 2.7/(1 + exp(-0.004 (annsum_npp -
300))) - 0.4), a4 = flivewd and growth respiration g1 = grperc:

    woody:     C_allom = (1 + g1)(1 + a1 + a3 (1 + a2)),
               N_allom = 1/CN_leaf + a1/CN_froot + a3 a4 (1 + a2)/CN_livewd + a3 (1 - a4)(1 + a2)/CN_deadwd
    non-woody: C_allom = 1 + g1 + a1 + a1 g1,  N_allom = 1/CN_leaf + a1/CN_froot
    plant N demand = availc N_allom / C_allom, first met from retranslocated N (at most
    annmax_retransn/2 * gpp/annsum_potential_gpp per step), the rest from soil mineral N.

N competition (column, CLM4.0 CNAllocation): if plant demand + potential immobilisation (x dt) < sminn
both proceed at the potential rate (fpi = 1, and CLM4's excess-N denitrification applies: 0.5 per day
of the surplus); otherwise sminn/dt is shared in proportion to the two demands (fpi, fpg < 1).
Actual allocation = (sminn uptake + retranslocated N) C_allom/N_allom; the carbon that N cannot
support, excess_cflux = availc - plant_calloc, is removed from GPP (CLM4.0 down-regulates
photosynthesis: the realised GPP is gpp - excess_cflux, flux ``gpp``). In spin-up the shortfall can
instead be supplied (``supplement_to_sminn``, see :func:`nitrogen_competition`).
New growth: nlc = plant_calloc / C_allom to leaf, a1 nlc to fine root, a3 a4 nlc live stem, a3 (1 - a4)
nlc dead stem, a2 a3 a4 nlc live coarse root, a2 a3 (1 - a4) nlc dead coarse root, each fcur displayed
now and (1 - fcur) to storage; N at the tissue C:N ratios. Growth respiration (CNGResp): g1 times the
displayed growth now, g1 grpnow times the storage growth now, g1 (1 - grpnow) of it into
``gresp_storage`` (paid at display from ``gresp_xfer`` by the phenology kernel).

Reads and writes the packed patch state (``cn_state``); fluxes into the packed patch/column flux arrays.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.physics.cn_state import (
    ANNMAX_RETRANSN, ANNSUM_COUNTER, ANNSUM_NPP, ANNSUM_POTENTIAL_GPP, ANNAVG_T2M, CPOOL, DEADCROOTC,
    DEADCROOTC_STORAGE, DEADSTEMC, DEADSTEMC_STORAGE, F_AR, F_AVAILC, F_C_ALLOMETRY,
    F_CLAMP_C, F_CLAMP_N, F_EXCESS_CFLUX, F_FROOT_MR, F_GPP, F_GPP_POT, F_GR, F_DOWNREG, F_LEAF_MR,
    F_LIVECROOT_MR, F_LIVESTEM_MR, F_MR, F_N_ALLOMETRY, F_NPP, F_PLANT_CALLOC, F_PLANT_NALLOC,
    F_PLANT_NDEMAND, F_RETRANSN_TO_NPOOL, F_SMINN_TO_NPOOL, F_XSMR, F_XSMRPOOL_RECOVER, FROOTC,
    FROOTC_STORAGE, FROOTN, G_ACTUAL_IMMOB, G_COL_PLANT_NDEMAND, G_DENIT_EXCESS, G_FPG, G_FPI,
    G_POTENTIAL_IMMOB, G_SMINN_TO_PLANT, G_SUPPLEMENT_TO_SMINN, GRESP_STORAGE, LEAFC, LEAFC_STORAGE,
    LEAFN, LIVECROOTC, LIVECROOTC_STORAGE, LIVECROOTN, LIVESTEMC, LIVESTEMC_STORAGE, LIVESTEMN, NC0, NPOOL, RETRANSN,
    SMINN, TEMPAVG_T2M, TEMPMAX_RETRANSN, TEMPSUM_NPP, TEMPSUM_POTENTIAL_GPP, XSMRPOOL,
)
from kernels.physics.constants import DAYSPYR, SECSPDAY, TFRZ
from kernels.vmath import vexp

#: Days over which an xsmrpool debt is repaid (CLM4.0 CNAllocation ``dayscrecover``).
DAYSCRECOVER = 30.0
#: Bulk denitrification rate of surplus mineral N (fraction per day; CLM4.0 CNAllocation ``bdnr``).
BDNR_PER_DAY = 0.5


@njit
def dynamic_stem_leaf(annsum_npp):
    """CLM4.0 dynamic new stem : new leaf allocation of woody PFTs with stem_leaf = -1:
    2.7 / (1 + exp(-0.004 (annsum_npp - 300))) - 0.4 (annsum_npp in gC m-2 yr-1)."""
    return 2.7 / (1.0 + math.exp(-0.004 * (annsum_npp - 300.0))) - 0.4


@njit
def allometry(ivt, annsum_npp, pft):
    """(C_allom, N_allom, a1, a2, a3, a4) of PFT ``ivt`` (CLM4.0 CNAllocation); N_allom in gN gC-1."""
    f1 = pft.froot_leaf[ivt]
    f2 = pft.croot_stem[ivt]
    f3 = pft.stem_leaf[ivt]
    if f3 < 0.0:
        f3 = dynamic_stem_leaf(annsum_npp)
    f4 = pft.flivewd[ivt]
    g1 = pft.grperc[ivt]
    cnl = pft.leafcn[ivt]
    cnfr = pft.frootcn[ivt]
    if pft.woody[ivt] == 1.0:
        cnlw = pft.livewdcn[ivt]
        cndw = pft.deadwdcn[ivt]
        c_allom = (1.0 + g1) * (1.0 + f1 + f3 * (1.0 + f2))
        n_allom = 1.0 / cnl + f1 / cnfr + f3 * f4 * (1.0 + f2) / cnlw + f3 * (1.0 - f4) * (1.0 + f2) / cndw
    else:
        f2 = 0.0
        f3 = 0.0
        f4 = 0.0
        c_allom = 1.0 + g1 + f1 + f1 * g1
        n_allom = 1.0 / cnl + f1 / cnfr
    return c_allom, n_allom, f1, f2, f3, f4


@njit
def maintenance_respiration(patch_pft, patch_col, t2m, t_soi, rootfr, pft, cons, ps, pf):
    """Maintenance respiration (gC m-2 s-1) of leaf, fine root, live stem and live coarse root
    (CLM4.0 CNMResp): N br Q10^((T - 293.15)/10).

    ``t2m[p, m]`` 2-m air temperature (K); ``t_soi[c, lev, m]`` soil temperature (K) and
    ``rootfr[p, lev]`` root fraction (sums to 1 over the levels given); ``pft``, ``cons`` the PFT and
    constant records; ``ps`` packed patch state (reads the N pools). Fills pf[F_LEAF_MR],
    pf[F_FROOT_MR], pf[F_LIVESTEM_MR], pf[F_LIVECROOT_MR], pf[F_MR].

    Q10^x is exp(x ln Q10) by ``vmath.vexp`` (within 1 ulp of the C library) and every loop runs over
    the members, so that it vectorises; the root-weighted soil factor of each member is summed over the
    levels in order, as before."""
    br = cons.mr_br
    q10 = cons.mr_q10
    tref = TFRZ + cons.mr_tref
    nlev = rootfr.shape[1]
    nmem = ps.shape[2]
    lnq = math.log(q10) / 10.0
    # Q10 factor of every soil layer, once per column (shared by the column's patches)
    tcs = np.empty((t_soi.shape[0], nlev, t_soi.shape[2]))
    for c in range(t_soi.shape[0]):
        for j in range(nlev):
            for m in range(t_soi.shape[2]):
                tcs[c, j, m] = vexp(lnq * (t_soi[c, j, m] - tref))
    tcsoi = np.empty(nmem)
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        c = patch_col[p]
        if ivt == 0:
            for m in range(nmem):
                pf[F_LEAF_MR, p, m] = 0.0
                pf[F_FROOT_MR, p, m] = 0.0
                pf[F_LIVESTEM_MR, p, m] = 0.0
                pf[F_LIVECROOT_MR, p, m] = 0.0
                pf[F_MR, p, m] = 0.0
            continue
        woody = pft.woody[ivt] == 1.0
        for m in range(nmem):
            tcsoi[m] = 0.0
        for j in range(nlev):
            r = rootfr[p, j]
            for m in range(nmem):
                tcsoi[m] += r * tcs[c, j, m]
        for m in range(nmem):
            tc = vexp(lnq * (t2m[p, m] - tref))
            leaf = max(ps[LEAFN, p, m], 0.0) * br * tc
            froot = max(ps[FROOTN, p, m], 0.0) * br * tcsoi[m]
            lstem = max(ps[LIVESTEMN, p, m], 0.0) * br * tc if woody else 0.0
            lcroot = max(ps[LIVECROOTN, p, m], 0.0) * br * tcsoi[m] if woody else 0.0
            pf[F_LEAF_MR, p, m] = leaf
            pf[F_FROOT_MR, p, m] = froot
            pf[F_LIVESTEM_MR, p, m] = lstem
            pf[F_LIVECROOT_MR, p, m] = lcroot
            pf[F_MR, p, m] = leaf + froot + lstem + lcroot


@njit
def allocation_demand(patch_pft, patch_col, patch_wt, gpp_pot, pft, dt, ps, pf, cf):
    """Potential allocation and plant N demand (CLM4.0 CNAllocation, first part).

    ``gpp_pot[p, m]`` potential GPP (gC m-2 s-1, from photosynthesis without N limitation; negative
    values are taken as 0, as CLM's psn_to_cpool is never negative, and ``pf[F_GPP_POT]`` records the
    value used, so the budget sees it); ``pf``
    must hold this step's MR (``maintenance_respiration``). Per patch: the part of MR paid from GPP
    and from xsmrpool, the xsmrpool repayment, availc, C/N allometry, the deployment of
    retranslocated N and the remaining demand on soil mineral N; per column (weighted by
    ``patch_wt``): ``cf[G_COL_PLANT_NDEMAND]``. Accumulates ``tempsum_potential_gpp`` (gC m-2).
    Changes no pool. dt (s)."""
    ncol = cf.shape[1]
    nmem = cf.shape[2]
    for c in range(ncol):
        for m in range(nmem):
            cf[G_COL_PLANT_NDEMAND, c, m] = 0.0
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        c = patch_col[p]
        for m in range(ps.shape[2]):
            gpp = max(gpp_pot[p, m], 0.0) if ivt > 0 else 0.0
            pf[F_GPP_POT, p, m] = gpp
            if ivt == 0:
                pf[F_AVAILC, p, m] = 0.0
                pf[F_XSMR, p, m] = 0.0
                pf[F_XSMRPOOL_RECOVER, p, m] = 0.0
                pf[F_C_ALLOMETRY, p, m] = 0.0
                pf[F_N_ALLOMETRY, p, m] = 0.0
                pf[F_PLANT_NDEMAND, p, m] = 0.0
                pf[F_RETRANSN_TO_NPOOL, p, m] = 0.0
                continue
            ps[TEMPSUM_POTENTIAL_GPP, p, m] += gpp * dt
            mr = pf[F_MR, p, m]
            availc = gpp
            if availc >= mr:
                xsmr = 0.0
                availc -= mr
            else:
                xsmr = mr - availc  # paid from xsmrpool (CLM4 "leaf_xsmr" etc.)
                availc = 0.0
            recover = 0.0
            if ps[XSMRPOOL, p, m] < 0.0:
                recover = -ps[XSMRPOOL, p, m] / (DAYSCRECOVER * SECSPDAY)
                if recover >= availc:
                    recover = availc
                availc -= recover
            c_allom, n_allom, f1, f2, f3, f4 = allometry(ivt, ps[ANNSUM_NPP, p, m], pft)
            ndemand = availc * n_allom / c_allom
            # retranslocated N deployment follows the seasonal cycle of potential GPP (CLM4.0)
            if ps[ANNSUM_POTENTIAL_GPP, p, m] > 0.0:
                avail_retransn = (ps[ANNMAX_RETRANSN, p, m] / 2.0) * (gpp * dt / ps[ANNSUM_POTENTIAL_GPP, p, m]) / dt
            else:
                avail_retransn = 0.0
            avail_retransn = min(avail_retransn, max(ps[RETRANSN, p, m], 0.0) / dt)
            retrans = min(ndemand, avail_retransn)
            pf[F_AVAILC, p, m] = availc
            pf[F_XSMR, p, m] = xsmr
            pf[F_XSMRPOOL_RECOVER, p, m] = recover
            pf[F_C_ALLOMETRY, p, m] = c_allom
            pf[F_N_ALLOMETRY, p, m] = n_allom
            pf[F_RETRANSN_TO_NPOOL, p, m] = retrans
            pf[F_PLANT_NDEMAND, p, m] = ndemand - retrans
            cf[G_COL_PLANT_NDEMAND, c, m] += patch_wt[p] * (ndemand - retrans)


@njit
def nitrogen_competition(dt, supplement_n, cs, cf):
    """Competition of plant uptake and microbial immobilisation for soil mineral N (CLM4.0
    CNAllocation). Reads ``cs[SMINN]`` (gN m-2), ``cf[G_COL_PLANT_NDEMAND]`` and
    ``cf[G_POTENTIAL_IMMOB]`` (gN m-2 s-1); fills ``cf[G_FPI]``, ``cf[G_FPG]``, ``cf[G_ACTUAL_IMMOB]``,
    ``cf[G_SMINN_TO_PLANT]``, the excess-N denitrification ``cf[G_DENIT_EXCESS]`` (0.5 per day of
    the surplus, limited to the surplus) and ``cf[G_SUPPLEMENT_TO_SMINN]``. dt (s).

    ``supplement_n`` (spin-up): where mineral N cannot meet both demands, the shortfall
    sum_ndemand - sminn/dt is added to sminn (``supplement_to_sminn``, an external N input of the
    budget) and both proceed at their potential rates (fpi = fpg = 1): CLM4.0 CNAllocation's
    carbon-only branch (``Carbon_only``/``suplnitro = 'ALL'``), and Biome-BGC's spin-up allocation
    (Thornton and Rosenbloom 2005), which add exactly enough mineral N to satisfy plant and microbial
    demand. Without it the vegetation of a short spin-up starves: ecosystem N then has to accumulate
    from deposition and fixation (~1 gN m-2 yr-1) over thousands of years."""
    bdnr = BDNR_PER_DAY * dt / SECSPDAY
    for c in range(cs.shape[1]):
        for m in range(cs.shape[2]):
            sminn = max(cs[SMINN, c, m], 0.0)
            pdem = cf[G_COL_PLANT_NDEMAND, c, m]
            pimm = cf[G_POTENTIAL_IMMOB, c, m]
            total = pdem + pimm
            supplement = 0.0
            if total * dt < sminn:
                fpi = 1.0
                immob = pimm
                to_plant = pdem
                surplus = sminn / dt - total
                excess = min(bdnr, 1.0) * surplus
            elif supplement_n:
                fpi = 1.0
                immob = pimm
                to_plant = pdem
                supplement = total - sminn / dt
                excess = 0.0
            else:
                if total > 0.0:
                    immob = (sminn / dt) * (pimm / total)
                else:
                    immob = 0.0
                fpi = immob / pimm if pimm > 0.0 else 0.0
                to_plant = sminn / dt - immob
                excess = 0.0
            fpg = to_plant / pdem if pdem > 0.0 else 1.0
            if fpg > 1.0:
                fpg = 1.0
            cf[G_FPI, c, m] = fpi
            cf[G_FPG, c, m] = fpg
            cf[G_ACTUAL_IMMOB, c, m] = immob
            cf[G_SMINN_TO_PLANT, c, m] = to_plant
            cf[G_DENIT_EXCESS, c, m] = excess
            cf[G_SUPPLEMENT_TO_SMINN, c, m] = supplement


@njit
def allocation_fluxes(patch_pft, patch_col, patch_wt, pft, dt, ps, pf, cf):
    """Actual allocation after N limitation, applied to the patch pools (CLM4.0 CNAllocation second
    part, CNGResp, CNStateUpdate1 for these fluxes).

    Uses ``cf[G_FPG]`` of the patch's column. Sets the realised GPP ``pf[F_GPP]`` = gpp_pot -
    excess_cflux, MR paid now/from xsmrpool, growth respiration, AR, plant uptake; moves C through
    cpool to the displayed and storage pools (fcur split) and N through npool; updates xsmrpool and
    retransn. Overwrites ``cf[G_SMINN_TO_PLANT]`` with the sum of the patches' uptake (so that the
    column's sminn loss equals the plants' gain exactly). Pools that would fall below 0 by round-off are
    clamped with the added mass in ``pf[F_CLAMP_C]``/``pf[F_CLAMP_N]`` (accumulated). dt (s)."""
    for c in range(cf.shape[1]):
        for m in range(cf.shape[2]):
            cf[G_SMINN_TO_PLANT, c, m] = 0.0
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        c = patch_col[p]
        fcur = pft.fcur[ivt]
        g1 = pft.grperc[ivt]
        g2 = pft.grpnow[ivt]
        woody = pft.woody[ivt] == 1.0
        dynamic_stem = woody and pft.stem_leaf[ivt] < 0.0
        for m in range(ps.shape[2]):
            mr = pf[F_MR, p, m]
            if ivt == 0:
                pf[F_GPP, p, m] = 0.0
                continue
            gpp_pot = pf[F_GPP_POT, p, m]
            availc = pf[F_AVAILC, p, m]
            xsmr = pf[F_XSMR, p, m]
            recover = pf[F_XSMRPOOL_RECOVER, p, m]
            c_allom = pf[F_C_ALLOMETRY, p, m]
            n_allom = pf[F_N_ALLOMETRY, p, m]
            fpg = cf[G_FPG, c, m]
            sminn_to_npool = pf[F_PLANT_NDEMAND, p, m] * fpg
            retrans = pf[F_RETRANSN_TO_NPOOL, p, m]
            nalloc = sminn_to_npool + retrans
            calloc = nalloc * c_allom / n_allom
            if calloc > availc:  # round-off guard: never allocate more than available
                calloc = availc
            excess = availc - calloc
            gpp = gpp_pot - excess
            pf[F_GPP, p, m] = gpp
            pf[F_DOWNREG, p, m] = excess / gpp_pot if gpp_pot > 0.0 else 0.0
            pf[F_EXCESS_CFLUX, p, m] = excess
            pf[F_PLANT_CALLOC, p, m] = calloc
            pf[F_PLANT_NALLOC, p, m] = nalloc
            pf[F_SMINN_TO_NPOOL, p, m] = sminn_to_npool
            cf[G_SMINN_TO_PLANT, c, m] += patch_wt[p] * sminn_to_npool

            # (annsum_npp is only read by the dynamic stem_leaf of woody PFTs)
            annsum_npp = ps[ANNSUM_NPP, p, m] if dynamic_stem else 0.0
            _, _, f1, f2, f3, f4 = allometry(ivt, annsum_npp, pft)
            nlc = calloc / c_allom
            # a non-woody PFT's stem and coarse-root growth is exactly +-0 (f2 = f3 = f4 = 0, nlc finite):
            # its 16 stem and coarse-root pools are not touched (adding the zeros could only turn a -0.0
            # pool into +0.0). The kernel is memory-bound: this is 16 of its ~50 rows for those patches.
            woody_growth = woody or not math.isfinite(nlc)
            # tissue C allocation (displayed share fcur, storage 1 - fcur)
            alloc0 = nlc
            alloc1 = nlc * f1
            alloc2 = nlc * f3 * f4
            alloc3 = nlc * f3 * (1.0 - f4)
            alloc4 = nlc * f2 * f3 * f4
            alloc5 = nlc * f2 * f3 * (1.0 - f4)
            tot_new = alloc0 + alloc1 + alloc2 + alloc3 + alloc4 + alloc5
            gr_now = g1 * tot_new * fcur + g1 * g2 * tot_new * (1.0 - fcur)
            to_gresp_storage = g1 * (1.0 - g2) * tot_new * (1.0 - fcur)
            # cpool: + realised GPP - MR paid now - debt repayment - allocation (incl. growth resp)
            curmr = mr - xsmr
            cpool_new = ps[CPOOL, p, m] + dt * (gpp - curmr - recover - tot_new - gr_now - to_gresp_storage)
            if cpool_new < 0.0:
                pf[F_CLAMP_C, p, m] += -cpool_new / dt
                cpool_new = 0.0
            ps[CPOOL, p, m] = cpool_new
            ps[XSMRPOOL, p, m] += dt * (recover - xsmr)
            ps[GRESP_STORAGE, p, m] += dt * to_gresp_storage
            ps[LEAFC, p, m] += dt * alloc0 * fcur
            ps[LEAFC_STORAGE, p, m] += dt * alloc0 * (1.0 - fcur)
            ps[FROOTC, p, m] += dt * alloc1 * fcur
            ps[FROOTC_STORAGE, p, m] += dt * alloc1 * (1.0 - fcur)
            if woody_growth:
                ps[LIVESTEMC, p, m] += dt * alloc2 * fcur
                ps[LIVESTEMC_STORAGE, p, m] += dt * alloc2 * (1.0 - fcur)
                ps[DEADSTEMC, p, m] += dt * alloc3 * fcur
                ps[DEADSTEMC_STORAGE, p, m] += dt * alloc3 * (1.0 - fcur)
                ps[LIVECROOTC, p, m] += dt * alloc4 * fcur
                ps[LIVECROOTC_STORAGE, p, m] += dt * alloc4 * (1.0 - fcur)
                ps[DEADCROOTC, p, m] += dt * alloc5 * fcur
                ps[DEADCROOTC_STORAGE, p, m] += dt * alloc5 * (1.0 - fcur)
            # N: through npool at the tissue C:N ratios
            n0 = alloc0 / pft.leafcn[ivt]
            n1 = alloc1 / pft.frootcn[ivt]
            n2 = alloc2 / pft.livewdcn[ivt] if alloc2 > 0.0 else 0.0
            n3 = alloc3 / pft.deadwdcn[ivt] if alloc3 > 0.0 else 0.0
            n4 = alloc4 / pft.livewdcn[ivt] if alloc4 > 0.0 else 0.0
            n5 = alloc5 / pft.deadwdcn[ivt] if alloc5 > 0.0 else 0.0
            npool_new = ps[NPOOL, p, m] + dt * (nalloc - (n0 + n1 + n2 + n3 + n4 + n5))
            if npool_new < 0.0:
                pf[F_CLAMP_N, p, m] += -npool_new / dt
                npool_new = 0.0
            ps[NPOOL, p, m] = npool_new
            retransn_new = ps[RETRANSN, p, m] - dt * retrans
            if retransn_new < 0.0:
                pf[F_CLAMP_N, p, m] += -retransn_new / dt
                retransn_new = 0.0
            ps[RETRANSN, p, m] = retransn_new
            ps[LEAFC + NC0, p, m] += dt * n0 * fcur
            ps[LEAFC_STORAGE + NC0, p, m] += dt * n0 * (1.0 - fcur)
            ps[FROOTC + NC0, p, m] += dt * n1 * fcur
            ps[FROOTC_STORAGE + NC0, p, m] += dt * n1 * (1.0 - fcur)
            if woody_growth:
                ps[LIVESTEMC + NC0, p, m] += dt * n2 * fcur
                ps[LIVESTEMC_STORAGE + NC0, p, m] += dt * n2 * (1.0 - fcur)
                ps[DEADSTEMC + NC0, p, m] += dt * n3 * fcur
                ps[DEADSTEMC_STORAGE + NC0, p, m] += dt * n3 * (1.0 - fcur)
                ps[LIVECROOTC + NC0, p, m] += dt * n4 * fcur
                ps[LIVECROOTC_STORAGE + NC0, p, m] += dt * n4 * (1.0 - fcur)
                ps[DEADCROOTC + NC0, p, m] += dt * n5 * fcur
                ps[DEADCROOTC_STORAGE + NC0, p, m] += dt * n5 * (1.0 - fcur)
            pf[F_GR, p, m] += gr_now
            pf[F_AR, p, m] += mr + gr_now


@njit
def annual_update(patch_pft, t2m, dt, ps, pf):
    """End-of-step bookkeeping (CLM4.0 CNAnnualUpdate and the NPP summary): NPP = GPP - AR
    (gC m-2 s-1, ``pf[F_NPP]``); running sums of NPP (gC m-2), of 2-m temperature (``t2m[p, m]``, K)
    and the running maximum of retransn; every 365 days the running values become the annual ones
    (annsum_npp, annsum_potential_gpp, annmax_retransn, annavg_t2m) and restart. dt (s)."""
    year = DAYSPYR * SECSPDAY
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        for m in range(ps.shape[2]):
            npp = pf[F_GPP, p, m] - pf[F_AR, p, m]
            pf[F_NPP, p, m] = npp
            if ivt == 0:
                continue
            ps[TEMPSUM_NPP, p, m] += npp * dt
            ps[TEMPAVG_T2M, p, m] += t2m[p, m] * (dt / year)
            ps[TEMPMAX_RETRANSN, p, m] = max(ps[TEMPMAX_RETRANSN, p, m], ps[RETRANSN, p, m])
            ps[ANNSUM_COUNTER, p, m] += dt
            if ps[ANNSUM_COUNTER, p, m] >= year - 0.5 * dt:
                ps[ANNSUM_NPP, p, m] = ps[TEMPSUM_NPP, p, m]
                ps[TEMPSUM_NPP, p, m] = 0.0
                ps[ANNSUM_POTENTIAL_GPP, p, m] = ps[TEMPSUM_POTENTIAL_GPP, p, m]
                ps[TEMPSUM_POTENTIAL_GPP, p, m] = 0.0
                ps[ANNMAX_RETRANSN, p, m] = ps[TEMPMAX_RETRANSN, p, m]
                ps[TEMPMAX_RETRANSN, p, m] = 0.0
                ps[ANNAVG_T2M, p, m] = ps[TEMPAVG_T2M, p, m]
                ps[TEMPAVG_T2M, p, m] = 0.0
                ps[ANNSUM_COUNTER, p, m] = 0.0


__all__ = [
    "allocation_demand", "allocation_fluxes", "allometry", "annual_update", "dynamic_stem_leaf",
    "maintenance_respiration", "nitrogen_competition",
]
