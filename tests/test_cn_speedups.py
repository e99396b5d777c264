"""Tests of the member-vectorised CN kernels (kernels/physics/cn_phenology.py phenology,
cn_allocation.py maintenance_respiration, cn_state.py cn_budget_residuals_of_totals).

The vectorised kernels work one patch at a time in loops over all members, with the phenology flag
logic in select form. A member's result must not depend on the other members (bit-identical for any
member count, as the 1/2/4-rank equivalence needs), and must follow the CLM4 formulas.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.pftcon import constants_record, pft_record
from kernels.physics import cn_allocation as AL
from kernels.physics import cn_phenology as PH
from kernels.physics import cn_state as S

PFT = pft_record()
CONS = constants_record()
NLEV = 10


def _random_phenology_state(rng, pfts, nmem, dt):
    """Packed patch/column states with every phenology regime mixed across members: dormant with
    GDD/FDD/SWI sums near their thresholds, onset and offset periods (including their last steps),
    active with long growing seasons and near the offset triggers."""
    ps, cs = S.cold_start(pfts, 1, nmem, PFT, leafc0=50.0, sminn0=1.0, soil4c0=100.0)
    npch = len(pfts)
    for i in range(S.NPATCH_N_END):
        ps[i] = rng.uniform(0.0, 20.0, (npch, nmem))
    ps[S.XSMRPOOL] = rng.uniform(-1.0, 1.0, (npch, nmem))
    ps[S.LEAFC] = np.where(rng.random((npch, nmem)) < 0.1, -1e-14, ps[S.LEAFC])  # a pool to clamp
    flags = rng.integers(0, 3, (npch, nmem))  # 0 dormant, 1 onset, 2 offset; else active
    flags[:, ::7] = 3
    ps[S.DORMANT_FLAG] = (flags == 0)
    ps[S.ONSET_FLAG] = (flags == 1)
    ps[S.OFFSET_FLAG] = (flags == 2)
    counters = rng.choice([dt, 1.4 * dt, 2.0 * dt, 10 * 86400.0], (npch, nmem))
    ps[S.ONSET_COUNTER] = np.where(flags == 1, counters, 0.0)
    ps[S.OFFSET_COUNTER] = np.where(flags == 2, counters, 0.0)
    ps[S.ONSET_GDDFLAG] = rng.integers(0, 2, (npch, nmem))
    ps[S.ANNAVG_T2M] = rng.uniform(275.0, 290.0, (npch, nmem))
    ps[S.ONSET_GDD] = np.exp(4.8 + 0.13 * (ps[S.ANNAVG_T2M] - 273.15)) + rng.uniform(-0.3, 0.1, (npch, nmem))
    ps[S.ONSET_FDD] = rng.uniform(14.9, 15.1, (npch, nmem))
    ps[S.ONSET_SWI] = rng.uniform(14.9, 15.1, (npch, nmem))
    ps[S.OFFSET_FDD] = rng.uniform(0.0, 15.1, (npch, nmem))
    ps[S.OFFSET_SWI] = rng.uniform(0.0, 15.1, (npch, nmem))
    ps[S.DAYS_ACTIVE] = rng.uniform(0.0, 800.0, (npch, nmem))
    ps[S.PREV_LEAFC_TO_LITTER] = rng.uniform(0.0, 1e-5, (npch, nmem))
    ps[S.PREV_FROOTC_TO_LITTER] = rng.uniform(0.0, 1e-5, (npch, nmem))
    return ps, cs


@pytest.mark.parametrize("dayl,prev_dayl", [(40000.0, 39990.0), (39000.0, 39010.0), (20000.0, 20010.0)])
def test_phenology_members_independent_of_member_count(dayl, prev_dayl):
    # evergreen, seasonal deciduous (tree, shrub), stress deciduous (tree, grass), bare soil
    pfts = np.array([0, 1, 4, 7, 11, 6, 13, 14])
    nmem, dt = 19, 1800.0
    rng = np.random.default_rng(3)
    ps, cs = _random_phenology_state(rng, pfts, nmem, dt)
    t_soi = rng.uniform(270.0, 280.0, (1, NLEV, nmem))
    psi = rng.choice([-3.0, -2.0, -1.0], (1, NLEV, nmem))
    pcol = np.zeros(len(pfts), dtype=np.int64)
    wt = np.full(len(pfts), 1.0 / len(pfts))
    dl, pdl = np.full(1, dayl), np.full(1, prev_dayl)
    ps_all, cs_all, pf_all = ps.copy(), cs.copy(), S.allocate(S.PATCH_FLUXES, len(pfts), nmem)
    PH.phenology(pfts, pcol, wt, t_soi, psi, dl, pdl, PFT, dt, 1.0, ps_all, cs_all, pf_all)
    for m in range(nmem):
        ps1 = np.ascontiguousarray(ps[:, :, m:m + 1])
        cs1 = np.ascontiguousarray(cs[:, :, m:m + 1])
        pf1 = S.allocate(S.PATCH_FLUXES, len(pfts), 1)
        PH.phenology(pfts, pcol, wt, np.ascontiguousarray(t_soi[:, :, m:m + 1]),
                     np.ascontiguousarray(psi[:, :, m:m + 1]), dl, pdl, PFT, dt, 1.0, ps1, cs1, pf1)
        np.testing.assert_array_equal(ps1[:, :, 0], ps_all[:, :, m])
        np.testing.assert_array_equal(cs1[:, :, 0], cs_all[:, :, m])
        np.testing.assert_array_equal(pf1[:, :, 0], pf_all[:, :, m])
    # the random states really mix the regimes: triggers fired and periods ended in this step
    assert np.any(ps_all[S.ONSET_FLAG] != ps[S.ONSET_FLAG]) or np.any(ps_all[S.OFFSET_FLAG] != ps[S.OFFSET_FLAG])
    # mass is conserved: the patch pools lost what the column litter gained, up to the clamps
    dpatch_c = ((ps_all[:S.NPATCH_C] - ps[:S.NPATCH_C]).sum(axis=0) * wt[:, None]).sum(axis=0)
    dcol_c = (cs_all[:S.NCOL_C] - cs[:S.NCOL_C]).sum(axis=0)[0]
    resp = (wt[:, None] * (pf_all[S.F_AR] - pf_all[S.F_CLAMP_C])).sum(axis=0) * dt
    np.testing.assert_allclose(dpatch_c + dcol_c + resp, 0.0, atol=1e-9)  # g/m2, the budget tolerance


def test_maintenance_respiration_matches_formula():
    rng = np.random.default_rng(5)
    pfts = np.array([0, 1, 7, 13])
    nmem, nlev = 11, 5
    ps, _ = S.cold_start(pfts, 2, nmem, PFT)
    for i in (S.LEAFN, S.FROOTN, S.LIVESTEMN, S.LIVECROOTN):
        ps[i] = rng.uniform(-0.1, 3.0, (len(pfts), nmem))
    pcol = np.array([0, 1, 1, 0])
    t2m = rng.uniform(250.0, 310.0, (len(pfts), nmem))
    t_soi = rng.uniform(260.0, 305.0, (2, nlev, nmem))
    rootfr = rng.dirichlet(np.ones(nlev), len(pfts))
    pf = S.allocate(S.PATCH_FLUXES, len(pfts), nmem)
    AL.maintenance_respiration(pfts, pcol, t2m, t_soi, rootfr, PFT, CONS, ps, pf)
    q = lambda t: CONS.mr_q10 ** ((t - 273.15 - CONS.mr_tref) / 10.0)  # noqa: E731
    tsoil = np.einsum("pj,pjm->pm", rootfr, q(t_soi[pcol]))
    woody = (PFT.woody[pfts] == 1.0)[:, None]
    live = pfts[:, None] > 0
    br = CONS.mr_br
    expect_leaf = np.where(live, np.maximum(ps[S.LEAFN], 0) * br * q(t2m), 0.0)
    expect_froot = np.where(live, np.maximum(ps[S.FROOTN], 0) * br * tsoil, 0.0)
    expect_stem = np.where(live & woody, np.maximum(ps[S.LIVESTEMN], 0) * br * q(t2m), 0.0)
    expect_croot = np.where(live & woody, np.maximum(ps[S.LIVECROOTN], 0) * br * tsoil, 0.0)
    rtol = 1e-13  # exp by vmath.vexp and x**y by exp(y ln x): a few ulp
    np.testing.assert_allclose(pf[S.F_LEAF_MR], expect_leaf, rtol=rtol, atol=0)
    np.testing.assert_allclose(pf[S.F_FROOT_MR], expect_froot, rtol=rtol, atol=0)
    np.testing.assert_allclose(pf[S.F_LIVESTEM_MR], expect_stem, rtol=rtol, atol=0)
    np.testing.assert_allclose(pf[S.F_LIVECROOT_MR], expect_croot, rtol=rtol, atol=0)
    np.testing.assert_array_equal(pf[S.F_MR], pf[S.F_LEAF_MR] + pf[S.F_FROOT_MR] + pf[S.F_LIVESTEM_MR]
                                  + pf[S.F_LIVECROOT_MR])


def test_budget_residuals_of_totals_equal_the_full_kernel():
    rng = np.random.default_rng(7)
    pfts = np.array([0, 1, 13])
    nmem = 6
    ps, cs = S.cold_start(pfts, 2, nmem, PFT, leafc0=10.0, sminn0=1.0, soil4c0=50.0)
    ps += rng.uniform(0.0, 1.0, ps.shape)
    pcol, wt = np.array([0, 1, 1]), np.array([1.0, 0.4, 0.6])
    pf = rng.uniform(0.0, 1e-6, (S.NPF, 3, nmem))
    cf = rng.uniform(0.0, 1e-6, (S.NCF, 2, nmem))
    told_c, told_n = rng.uniform(0, 100, (2, nmem)), rng.uniform(0, 10, (2, nmem))
    r1 = np.empty((2, nmem)), np.empty((2, nmem))
    S.cn_budget_residuals(pcol, wt, told_c, told_n, ps, cs, pf, cf, 1800.0, *r1)
    tc, tn = np.empty((2, nmem)), np.empty((2, nmem))
    S.cn_totals(pcol, wt, ps, cs, tc, tn)
    r2 = np.empty((2, nmem)), np.empty((2, nmem))
    S.cn_budget_residuals_of_totals(pcol, wt, told_c, told_n, tc, tn, pf, cf, 1800.0, *r2)
    np.testing.assert_array_equal(r1[0], r2[0])
    np.testing.assert_array_equal(r1[1], r2[1])
