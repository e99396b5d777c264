"""Tests of the CLM4CN carbon-nitrogen kernels (kernels/physics/cn_*.py).

The step sequence used here (``cn_step``) is the order the engine driver calls the kernels in, CLM4.0
``CNEcosystemDyn`` order: maintenance respiration -> allocation demand -> decomposition scalars and
potential -> N competition -> allocation -> decomposition -> phenology/litterfall/mortality -> external
N -> canopy structure -> annual accumulators, then the budget check.

Forcing is synthetic but physical: a sinusoidal annual cycle of air and soil temperature, day length from
latitude and solar declination, a diurnal GPP proportional to sunlight, warmth and canopy light capture
(1 - exp(-0.5 LAI)), a dry season in soil water potential.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from engine.pftcon import constants_record, pft_record
from kernels.physics import cn_allocation as AL
from kernels.physics import cn_canopy as CA
from kernels.physics import cn_decomposition as DE
from kernels.physics import cn_phenology as PH
from kernels.physics import cn_state as S

PFT = pft_record()
CONS = constants_record()
NLEV = 10
YEAR = 365.0 * 86400.0
#: Budget tolerance per step (issue 4 item 9: C and N <= 1e-9 g/m2 per step, float64).
TOL_BUDGET = 1e-9


def _clm4_dz():
    """CLM4 soil layer thicknesses (m) of the 10 hydrologically active layers (tech note eq. 6.5-6.7)."""
    i = np.arange(1, 16)
    z = 0.025 * (np.exp(0.5 * (i - 0.5)) - 1.0)
    zi = np.concatenate([[0.0], 0.5 * (z[:-1] + z[1:]), [z[-1] + 0.5 * (z[-1] - z[-2])]])
    return np.diff(zi)[:NLEV]


DZ_CLM4 = _clm4_dz()


class Column:
    """A block of columns (one patch each unless given) with its CN state and a forcing-driven step."""

    def __init__(self, pfts, nmember=1, lat_deg=None, patch_col=None, patch_wt=None, ncol=None,
                 leafc0=100.0, sminn0=5.0, soil4c0=500.0, ndep_gn_per_yr=1.0, ad_factor=None, dt=3600.0,
                 supplement_n=False, deadwood_factor=1.0, cwd_factor=1.0):
        self.pfts = np.asarray(pfts, dtype=np.int64)
        npatch = self.pfts.size
        self.ncol = npatch if ncol is None else ncol
        self.patch_col = np.arange(npatch) if patch_col is None else np.asarray(patch_col, dtype=np.int64)
        self.patch_wt = np.ones(npatch) if patch_wt is None else np.asarray(patch_wt, dtype=np.float64)
        self.nm = nmember
        self.dt = dt
        self.ps, self.cs = S.cold_start(self.pfts, self.ncol, nmember, PFT, leafc0=leafc0, sminn0=sminn0,
                                        soil4c0=soil4c0)
        self.pf = S.allocate(S.PATCH_FLUXES, npatch, nmember)
        self.cf = S.allocate(S.COLUMN_FLUXES, self.ncol, nmember)
        self.rootfr = np.tile(DZ_CLM4 * np.exp(-2.0 * np.cumsum(DZ_CLM4)), (npatch, 1))
        self.rootfr /= self.rootfr.sum(axis=1, keepdims=True)
        self.dz = np.tile(DZ_CLM4, (self.ncol, 1))
        self.sucsat = np.full((self.ncol, NLEV), 200.0)  # mm, a loam (Clapp-Hornberger range 100-700)
        self.ndep = np.full(self.ncol, ndep_gn_per_yr / YEAR)
        self.forc_hgt = np.full(self.ncol, 30.0)
        self.snowdp = np.zeros((self.ncol, nmember))
        self.drain = np.full((self.ncol, nmember), 2.0e-6)  # mm/s (~63 mm/yr)
        self.liq = np.full((self.ncol, nmember), 400.0)  # mm in the soil column
        self.ad_factor = DE.AD_FACTORS_OFF if ad_factor is None else np.asarray(ad_factor, dtype=np.float64)
        self.supplement_n = supplement_n
        self.deadwood_factor = float(deadwood_factor)
        self.cwd_factor = np.full(self.ncol, float(cwd_factor))
        self.totc = np.empty((self.ncol, nmember))
        self.totn = np.empty((self.ncol, nmember))
        self.rc = np.empty((self.ncol, nmember))
        self.rn = np.empty((self.ncol, nmember))
        lat = np.zeros(self.ncol) if lat_deg is None else np.asarray(lat_deg, dtype=np.float64)
        self.lat = np.deg2rad(lat)

    def daylength(self, t):
        """Day length (s) at time t (s since 1 Jan) from latitude and solar declination (Cooper 1969)."""
        doy = (t / 86400.0) % 365.0
        dec = np.deg2rad(23.44) * np.sin(2.0 * np.pi * (doy - 80.0) / 365.0)
        x = np.clip(-np.tan(self.lat) * np.tan(dec), -1.0, 1.0)
        return 2.0 * np.arccos(x) / (2.0 * np.pi) * 86400.0

    def step(self, gpp, t2m, t_soi, soilpsi, dayl, prev_dayl):
        ps, cs, pf, cf, dt = self.ps, self.cs, self.pf, self.cf, self.dt
        pc, pw, pfts = self.patch_col, self.patch_wt, self.pfts
        pf[:] = 0.0
        cf[:] = 0.0
        S.cn_totals(pc, pw, ps, cs, self.totc, self.totn)
        AL.maintenance_respiration(pfts, pc, t2m, t_soi, self.rootfr, PFT, CONS, ps, pf)
        AL.allocation_demand(pfts, pc, pw, gpp, PFT, dt, ps, pf, cf)
        DE.decomp_scalars(t_soi, soilpsi, self.sucsat, self.dz, cf)
        DE.decomp_potential(self.ad_factor, dt, cs, cf)
        AL.nitrogen_competition(dt, self.supplement_n, cs, cf)
        AL.allocation_fluxes(pfts, pc, pw, PFT, dt, ps, pf, cf)
        DE.decomposition(dt, self.cwd_factor, cs, cf)
        PH.phenology(pfts, pc, pw, t_soi, soilpsi, dayl, prev_dayl, PFT, dt, self.deadwood_factor, ps, cs, pf)
        DE.nitrogen_inputs_losses(pc, pw, ps, self.ndep, self.drain, self.liq, dt, cs, cf)
        CA.veg_struct_update(pfts, pc, self.snowdp, self.forc_hgt, PFT, CONS, dt, self.deadwood_factor, ps)
        AL.annual_update(pfts, t2m, dt, ps, pf)
        S.cn_budget_residuals(pc, pw, self.totc, self.totn, ps, cs, pf, cf, dt, self.rc, self.rn)
        return self.rc, self.rn


def _forcing(t, tmean, tamp, gmax, dry_amp, lai):
    """Synthetic forcing at time t (s): air/soil temperature (K) per column, GPP (gC/m2/s) per patch,
    soil water potential (MPa) per column."""
    doy = (t / 86400.0) % 365.0
    tair = tmean - tamp * np.cos(2.0 * np.pi * (doy - 15.0) / 365.0)  # coldest mid-January
    sun = max(0.0, np.sin(2.0 * np.pi * ((t / 86400.0) % 1.0) - 0.5 * np.pi))  # 0 at night
    warm = np.clip((tair - 273.15) / 15.0, 0.0, 1.0)
    gpp = gmax * sun * warm[:, None] * (1.0 - np.exp(-0.5 * lai))
    dry = np.clip(np.sin(2.0 * np.pi * (doy - 140.0) / 365.0), 0.0, None) ** 2
    psi = -0.05 - dry_amp * dry
    return tair, gpp, psi


# ----------------------------------------------------------------------------------------------------
# cn_state


def test_state_tables_are_consistent():
    names = [v.name for v in S.PATCH_VARS]
    for required in ("leafc", "leafc_storage", "leafc_xfer", "frootc", "livestemc", "deadstemc",
                     "livecrootc", "deadcrootc_xfer", "gresp_storage", "gresp_xfer", "cpool", "xsmrpool",
                     "leafn", "deadcrootn_xfer", "retransn", "npool"):
        assert required in names
    col = [v.name for v in S.COLUMN_VARS]
    assert col == ["litr1c", "litr2c", "litr3c", "cwdc", "soil1c", "soil2c", "soil3c", "soil4c",
                   "litr1n", "litr2n", "litr3n", "cwdn", "soil1n", "soil2n", "soil3n", "soil4n", "sminn"]
    assert len(S.PATCH_C_POOLS) == 22 and len(S.PATCH_N_POOLS) == 20
    assert len(S.COLUMN_C_POOLS) == 8 and len(S.COLUMN_N_POOLS) == 9
    for table, level in ((S.PATCH_VARS, "patch"), (S.COLUMN_VARS, "column"), (S.PATCH_FLUXES, "patch"),
                         (S.COLUMN_FLUXES, "column")):
        assert all(v.level == level and v.units and v.long_name and v.hist for v in table)
    assert [v.name for v in S.PATCH_VARS if not v.nonneg and v.kind in "CN"] == ["xsmrpool"]
    assert S.PATCH_VARS[S.LEAFC].name == "leafc" and S.PATCH_VARS[S.LEAFN].name == "leafn"
    assert S.PATCH_VARS[S.TLAI].name == "tlai" and S.COLUMN_VARS[S.SMINN].name == "sminn"


def test_cold_start_view_and_check_state():
    pfts = np.array([0, 4, 7])
    ps, cs = S.cold_start(pfts, 2, 3, PFT, leafc0=2.0, sminn0=1.5, soil4c0=100.0)
    assert ps.shape == (len(S.PATCH_VARS), 3, 3) and cs.shape == (len(S.COLUMN_VARS), 2, 3)
    assert np.all(S.view(ps, S.PATCH_VARS, "leafc")[1] == 2.0)  # evergreen: displayed
    assert np.all(S.view(ps, S.PATCH_VARS, "leafc_storage")[2] == 2.0)  # deciduous: storage
    assert np.all(S.view(ps, S.PATCH_VARS, "leafn")[1] == 2.0 / PFT.leafcn[4])
    assert np.all(S.view(ps, S.PATCH_VARS, "leafc")[0] == 0.0)
    assert np.all(S.view(cs, S.COLUMN_VARS, "soil4n") == 10.0)  # C:N 10
    with pytest.raises(KeyError, match="nope"):
        S.view(ps, S.PATCH_VARS, "nope")
    S.check_state(ps, S.PATCH_VARS)
    ps[S.FROOTN, 2, 1] = -1e-3
    with pytest.raises(ValueError, match=r"'frootn'.*patch 2, member 1"):
        S.check_state(ps, S.PATCH_VARS, "after phenology")
    ps[S.FROOTN, 2, 1] = 0.0
    ps[S.XSMRPOOL, 1, 0] = -5.0  # a maintenance-respiration debt is allowed
    S.check_state(ps, S.PATCH_VARS)


def test_budget_kernel_detects_a_leak():
    col = Column([4], leafc0=50.0)
    ps, cs, pf, cf = col.ps, col.cs, col.pf, col.cf
    S.cn_totals(col.patch_col, col.patch_wt, ps, cs, col.totc, col.totn)
    ps[S.LEAFC] += 1e-6  # 1e-6 gC/m2 appears from nowhere
    S.cn_budget_residuals(col.patch_col, col.patch_wt, col.totc, col.totn, ps, cs, pf, cf, 1800.0, col.rc, col.rn)
    assert col.rc[0, 0] == pytest.approx(1e-6, rel=1e-6)
    assert col.rn[0, 0] == 0.0
    msg = S.budget_failure_message(col.rc, col.rn, TOL_BUDGET, TOL_BUDGET, step=7)
    assert "carbon" in msg and "step 7" in msg and "column 0" in msg and "member 0" in msg
    assert S.budget_failure_message(col.rc * 0, col.rn, TOL_BUDGET, TOL_BUDGET, step=7) is None


# ----------------------------------------------------------------------------------------------------
# cn_canopy


def test_lai_leafc_round_trip_every_pft():
    lai = np.tile(np.linspace(0.0, 12.0, 481), (16, 1))  # (patch = one per PFT, "member" = LAI value)
    pfts = np.arange(1, 17)
    leafc = np.empty_like(lai)
    back = np.empty_like(lai)
    CA.lai_to_leafc(pfts, lai, PFT, leafc)
    CA.leafc_to_lai(pfts, leafc, PFT, back)
    # exact inverse up to float64 round-off of exp/log (~1e-15 relative of LAI <= 12)
    np.testing.assert_allclose(back, lai, rtol=0, atol=1e-12)
    again = np.empty_like(lai)
    CA.lai_to_leafc(pfts, back, PFT, again)
    np.testing.assert_allclose(again, leafc, rtol=1e-12, atol=1e-12)
    assert np.all(np.diff(leafc, axis=1) > 0.0)  # monotonic


def test_lai_formulas_and_sla_at_canopy_bottom():
    # dsladlai = 0: LAI = slatop * leafc exactly (grasses)
    assert CA.lai_from_leafc(40.0, 0.03, 0.0) == pytest.approx(1.2, rel=1e-15)
    assert CA.leafc_from_lai(1.2, 0.03, 0.0) == pytest.approx(40.0, rel=1e-15)
    # Thornton & Zimmermann: LAI = slatop (exp(C d) - 1)/d
    assert CA.lai_from_leafc(200.0, 0.012, 0.0015) == pytest.approx(0.012 * (np.exp(0.3) - 1) / 0.0015, rel=1e-14)
    assert CA.lai_from_leafc(-1.0, 0.012, 0.0015) == 0.0
    for ivt in range(1, 17):
        sla0, dsla = PFT.slatop[ivt], PFT.dsladlai[ivt]
        for lai in (0.5, 3.0, 8.0):
            c0 = CA.leafc_from_lai(lai, sla0, dsla)
            h = 1e-4 * max(c0, 1.0)
            deriv = (CA.lai_from_leafc(c0 + h, sla0, dsla) - CA.lai_from_leafc(c0 - h, sla0, dsla)) / (2 * h)
            # central difference: truncation ~ (h dsla)^2/6 relative, round-off ~1e-16 LAI/h
            assert deriv == pytest.approx(CA.sla_at_depth(lai, sla0, dsla), rel=1e-8)


def test_set_leaf_from_lai_sets_leafc_leafn_tlai():
    pfts = np.array([4, 13])
    ps, _ = S.cold_start(pfts, 2, 2, PFT)
    lai = np.array([[3.0, 5.0], [1.0, 0.0]])
    CA.set_leaf_from_lai(pfts, lai, PFT, ps)
    np.testing.assert_allclose(ps[S.TLAI], lai, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ps[S.LEAFN], ps[S.LEAFC] / PFT.leafcn[pfts][:, None], rtol=1e-15)
    assert ps[S.LEAFC, 1, 0] == pytest.approx(1.0 / 0.03, rel=1e-14)


def test_veg_struct_heights_sai_and_snow_burial():
    pfts = np.array([4, 9, 13, 0])
    ps, _ = S.cold_start(pfts, 4, 1, PFT)
    ps[S.LEAFC] = 100.0
    ps[S.DEADSTEMC] = 5000.0
    snow = np.zeros((4, 1))
    CA.veg_struct_update(pfts, np.arange(4), snow, np.full(4, 1000.0), PFT, CONS, 1800.0, 1.0, ps)
    stock = CONS.stocking / 1e4
    h_tree = (3 * 5000.0 * 200.0 ** 2 / (np.pi * stock * CONS.dwood)) ** (1 / 3)
    h_shrub = (3 * 5000.0 * 10.0 ** 2 / (np.pi * stock * CONS.dwood)) ** (1 / 3)
    assert ps[S.HTOP, 0, 0] == pytest.approx(h_tree, rel=1e-13)
    assert ps[S.HTOP, 1, 0] == pytest.approx(h_shrub, rel=1e-13)
    assert ps[S.HBOT, 0, 0] == 3.0
    assert ps[S.HTOP, 2, 0] == pytest.approx(max(0.25, 0.25 * 3.0), rel=1e-14)  # grass LAI 3
    assert np.all(ps[S.TSAI, :3] == CONS.tsai_min)  # no leaf loss yet: the minimum
    assert np.all(ps[[S.TLAI, S.TSAI, S.HTOP], 3] == 0.0)  # bare soil
    assert ps[S.ELAI, 0, 0] == ps[S.TLAI, 0, 0]
    # forcing height caps the tree: htop <= forc_hgt/(displar+z0mr) - 3
    CA.veg_struct_update(pfts, np.arange(4), snow, np.full(4, 10.0), PFT, CONS, 1800.0, 1.0, ps)
    assert ps[S.HTOP, 0, 0] == pytest.approx(10.0 / (PFT.displar[4] + PFT.z0mr[4]) - 3.0, rel=1e-14)
    # leaf loss feeds SAI (Zeng 2002): tsai = a tsai_old + (tlai_old - tlai)
    tlai_old, tsai_old = ps[S.TLAI, 2, 0], ps[S.TSAI, 2, 0]
    ps[S.LEAFC, 2] = 50.0
    snow[2] = 0.1  # half the 0.2 m grass burial depth
    CA.veg_struct_update(pfts, np.arange(4), snow, np.full(4, 1000.0), PFT, CONS, 1800.0, 1.0, ps)
    alpha = 1 - 0.5 * 1800.0 / 2592000.0
    assert ps[S.TSAI, 2, 0] == pytest.approx(alpha * tsai_old + tlai_old - 1.5, rel=1e-13)
    assert ps[S.ELAI, 2, 0] == pytest.approx(0.5 * 1.5, rel=1e-13)
    snow[2] = 0.3
    CA.veg_struct_update(pfts, np.arange(4), snow, np.full(4, 1000.0), PFT, CONS, 1800.0, 1.0, ps)
    assert ps[S.ELAI, 2, 0] == 0.0 and ps[S.ESAI, 2, 0] == 0.0  # grass buried
    # AD spin-up: the height is that of dead stem C x the dead-wood factor (CTSM)
    ps[S.DEADSTEMC] = 500.0
    CA.veg_struct_update(pfts, np.arange(4), snow, np.full(4, 1000.0), PFT, CONS, 1800.0, 10.0, ps)
    assert ps[S.HTOP, 0, 0] == pytest.approx(h_tree, rel=1e-13)


# ----------------------------------------------------------------------------------------------------
# cn_allocation


def test_maintenance_respiration_q10_and_base_rate():
    col = Column([4, 13], nmember=2)
    col.ps[S.LEAFN] = 2.0
    col.ps[S.FROOTN] = 1.0
    col.ps[S.LIVESTEMN] = 0.5
    col.ps[S.LIVECROOTN] = 0.25
    t2m = np.array([[293.15, 303.15], [293.15, 303.15]])
    t_soi = np.full((2, NLEV, 2), 293.15)
    AL.maintenance_respiration(col.pfts, col.patch_col, t2m, t_soi, col.rootfr, PFT, CONS, col.ps, col.pf)
    br = CONS.mr_br
    assert col.pf[S.F_LEAF_MR, 0, 0] == pytest.approx(2.0 * br, rel=1e-14)  # at 20 C: N * br
    assert col.pf[S.F_LEAF_MR, 0, 1] == pytest.approx(2.0 * br * 1.5, rel=1e-14)  # +10 K: x Q10
    assert col.pf[S.F_FROOT_MR, 0, 1] == pytest.approx(1.0 * br, rel=1e-14)  # roots: soil temperature
    assert col.pf[S.F_LIVESTEM_MR, 0, 0] == pytest.approx(0.5 * br, rel=1e-14)
    assert col.pf[S.F_LIVESTEM_MR, 1, 0] == 0.0  # grass: no live wood
    assert col.pf[S.F_MR, 0, 0] == pytest.approx((2.0 + 1.0 + 0.5 + 0.25) * br, rel=1e-14)


def test_dynamic_stem_allocation():
    assert AL.dynamic_stem_leaf(300.0) == pytest.approx(2.7 / 2 - 0.4, rel=1e-15)
    ca, na, f1, f2, f3, f4 = AL.allometry(4, 300.0, PFT)
    assert f3 == pytest.approx(0.95) and f1 == 1.0 and f2 == 0.3 and f4 == 0.1
    assert ca == pytest.approx(1.3 * (1 + 1 + 0.95 * 1.3), rel=1e-14)
    ca, na, *_ = AL.allometry(13, 0.0, PFT)
    assert ca == pytest.approx(1 + 0.3 + 2 + 0.6) and na == pytest.approx(1 / 25 + 2 / 42)


def _one_allocation_step(sminn, gpp=5e-4, pfts=(7,), fcur=None, dt=1800.0, supplement_n=False):
    col = Column(list(pfts), sminn0=sminn, soil4c0=0.0, dt=dt, supplement_n=supplement_n)
    t2m = np.full((len(pfts), 1), 293.15)
    t_soi = np.full((len(pfts), NLEV, 1), 293.15)
    psi = np.full((len(pfts), NLEV, 1), -0.01)
    col.ps[S.FROOTN] = 0.5
    col.pf[:] = 0.0
    col.cf[:] = 0.0
    g = np.full((len(pfts), 1), gpp)
    AL.maintenance_respiration(col.pfts, col.patch_col, t2m, t_soi, col.rootfr, PFT, CONS, col.ps, col.pf)
    AL.allocation_demand(col.pfts, col.patch_col, col.patch_wt, g, PFT, dt, col.ps, col.pf, col.cf)
    DE.decomp_scalars(t_soi, psi, col.sucsat, col.dz, col.cf)
    DE.decomp_potential(col.ad_factor, dt, col.cs, col.cf)
    AL.nitrogen_competition(dt, col.supplement_n, col.cs, col.cf)
    before = col.ps.copy()
    AL.allocation_fluxes(col.pfts, col.patch_col, col.patch_wt, PFT, dt, col.ps, col.pf, col.cf)
    return col, before


def test_allocation_partition_and_closure_with_ample_n():
    col, before = _one_allocation_step(sminn=10.0, pfts=(7,))  # deciduous broadleaf: fcur = 0
    pf, ps = col.pf, col.ps
    dt = col.dt
    assert col.cf[S.G_FPG, 0, 0] == 1.0 and pf[S.F_EXCESS_CFLUX, 0, 0] == 0.0
    d = (ps - before)[:, 0, 0] / dt
    # all new growth of a deciduous PFT (fcur 0) goes to storage, in the allometric ratios
    assert d[S.LEAFC] == 0.0 and d[S.LEAFC_STORAGE] > 0.0
    f3 = AL.dynamic_stem_leaf(0.0)
    assert d[S.FROOTC_STORAGE] == pytest.approx(d[S.LEAFC_STORAGE] * 1.0, rel=1e-13)
    assert d[S.LIVESTEMC_STORAGE] == pytest.approx(d[S.LEAFC_STORAGE] * f3 * 0.1, rel=1e-13)
    assert d[S.DEADCROOTC_STORAGE] == pytest.approx(d[S.LEAFC_STORAGE] * 0.3 * f3 * 0.9, rel=1e-13)
    assert d[S.LEAFN_STORAGE] == pytest.approx(d[S.LEAFC_STORAGE] / 25.0, rel=1e-13)
    assert d[S.DEADSTEMN_STORAGE] == pytest.approx(d[S.DEADSTEMC_STORAGE] / 500.0, rel=1e-13)
    new = sum(d[i] for i in range(S.LEAFC, S.DEADCROOTC_XFER + 1))
    # GPP = MR + growth respiration (0.3 of new growth) + new growth (no N limitation, gpp > mr)
    assert pf[S.F_GPP, 0, 0] == pytest.approx(5e-4, rel=1e-15)
    assert pf[S.F_GR, 0, 0] == pytest.approx(0.3 * new, rel=1e-12)
    assert pf[S.F_MR, 0, 0] + pf[S.F_GR, 0, 0] + new == pytest.approx(5e-4, rel=1e-12)
    newn = sum(d[i] for i in range(S.LEAFN, S.DEADCROOTN_XFER + 1))
    assert newn == pytest.approx(pf[S.F_SMINN_TO_NPOOL, 0, 0], rel=1e-12)
    assert col.cf[S.G_SMINN_TO_PLANT, 0, 0] == pf[S.F_SMINN_TO_NPOOL, 0, 0]


def test_nitrogen_limitation_reduces_allocation():
    ample, _ = _one_allocation_step(sminn=10.0, pfts=(4,))
    scarce, _ = _one_allocation_step(sminn=1e-5, pfts=(4,))
    none, _ = _one_allocation_step(sminn=0.0, pfts=(4,))
    fpg = scarce.cf[S.G_FPG, 0, 0]
    assert ample.cf[S.G_FPG, 0, 0] == 1.0 and 0.0 < fpg < 1.0
    assert none.cf[S.G_FPG, 0, 0] == 0.0
    ca = ample.pf[S.F_PLANT_CALLOC, 0, 0]
    assert scarce.pf[S.F_PLANT_CALLOC, 0, 0] == pytest.approx(fpg * ca, rel=1e-12)
    assert none.pf[S.F_PLANT_CALLOC, 0, 0] == 0.0
    # the unsupported carbon is removed from GPP (CLM4 down-regulation), never stored
    assert none.pf[S.F_GPP, 0, 0] == pytest.approx(none.pf[S.F_MR, 0, 0], rel=1e-12)
    assert none.pf[S.F_DOWNREG, 0, 0] > 0.9
    assert scarce.cf[S.G_SMINN_TO_PLANT, 0, 0] * scarce.dt == pytest.approx(1e-5, rel=1e-9)


def test_supplemental_nitrogen_removes_the_limitation_and_is_an_input():
    """Spin-up supplement (CLM4.0 supplement_to_sminn): where sminn cannot meet plant demand plus
    potential immobilisation, exactly the shortfall is added, both proceed at the potential rate
    (the allocation of the N-rich case), and the N budget closes with the supplement as an input;
    with enough sminn nothing is added."""
    ample, _ = _one_allocation_step(sminn=10.0, pfts=(4,))
    for sminn in (0.0, 1e-5):
        sup, _ = _one_allocation_step(sminn=sminn, pfts=(4,), supplement_n=True)
        cf, dt = sup.cf, sup.dt
        total = cf[S.G_COL_PLANT_NDEMAND, 0, 0] + cf[S.G_POTENTIAL_IMMOB, 0, 0]
        assert cf[S.G_FPG, 0, 0] == 1.0 and cf[S.G_FPI, 0, 0] == 1.0
        assert cf[S.G_SUPPLEMENT_TO_SMINN, 0, 0] == pytest.approx(total - sminn / dt, rel=1e-12)
        assert cf[S.G_SUPPLEMENT_TO_SMINN, 0, 0] > 0.0
        assert sup.pf[S.F_PLANT_CALLOC, 0, 0] == pytest.approx(ample.pf[S.F_PLANT_CALLOC, 0, 0], rel=1e-12)
        assert sup.pf[S.F_EXCESS_CFLUX, 0, 0] == 0.0
    rich, _ = _one_allocation_step(sminn=10.0, pfts=(4,), supplement_n=True)
    assert rich.cf[S.G_SUPPLEMENT_TO_SMINN, 0, 0] == 0.0
    # a season on a column without mineral N: full growth, the budget closed with the supplement
    kw = dict(nmember=1, leafc0=100.0, soil4c0=0.0, dt=6 * 3600.0, sminn0=0.0, ndep_gn_per_yr=0.0)
    cols = {"off": Column([13], **kw), "on": Column([13], supplement_n=True, **kw)}
    gpp = np.full((1, 1), 1e-4)
    t2m = np.full((1, 1), 293.15)
    t_soi = np.full((1, NLEV, 1), 293.15)
    psi = np.full((1, NLEV, 1), -0.05)
    dl = np.full(1, 43200.0)
    added = 0.0
    grown = {"off": 0.0, "on": 0.0}
    for _ in range(4 * 60):
        for name, c in cols.items():
            rc, rn = c.step(gpp, t2m, t_soi, psi, dl, dl)
            assert abs(rc).max() <= TOL_BUDGET and abs(rn).max() <= TOL_BUDGET
            grown[name] += c.pf[S.F_PLANT_CALLOC, 0, 0] * c.dt
        added += cols["on"].cf[S.G_SUPPLEMENT_TO_SMINN, 0, 0] * cols["on"].dt
        assert cols["on"].cf[S.G_FPG, 0, 0] == 1.0 and cols["on"].cs[S.SMINN, 0, 0] >= 0.0
    assert grown["on"] > 5.0 * grown["off"] and added > 0.0
    assert cols["off"].cf[S.G_SUPPLEMENT_TO_SMINN, 0, 0] == 0.0


def test_maintenance_deficit_uses_xsmrpool_debt():
    col, before = _one_allocation_step(sminn=10.0, gpp=0.0, pfts=(4,))
    mr = col.pf[S.F_MR, 0, 0]
    assert mr > 0.0
    assert col.pf[S.F_XSMR, 0, 0] == pytest.approx(mr, rel=1e-15)
    assert col.ps[S.XSMRPOOL, 0, 0] == pytest.approx(-mr * col.dt, rel=1e-14)
    assert col.pf[S.F_AR, 0, 0] == pytest.approx(mr, rel=1e-15)


# ----------------------------------------------------------------------------------------------------
# cn_phenology


def _phenology_only(col, t_soil=290.0, psi=-0.05, dayl=40000.0, prev_dayl=40000.0):
    nc = col.ncol
    t_soi = np.full((nc, NLEV, col.nm), t_soil)
    sp = np.full((nc, NLEV, col.nm), psi)
    col.pf[:] = 0.0
    PH.phenology(col.pfts, col.patch_col, col.patch_wt, t_soi, sp, np.full(nc, dayl), np.full(nc, prev_dayl),
                 PFT, col.dt, col.deadwood_factor, col.ps, col.cs, col.pf)


def test_offset_last_step_drops_all_leaves_and_retranslocates_n():
    col = Column([7], leafc0=0.0, sminn0=0.0, soil4c0=0.0, dt=1800.0)
    col.patch_wt[:] = 0.5
    ps = col.ps
    ps[S.DORMANT_FLAG] = 0.0
    ps[S.LEAFC] = 100.0
    ps[S.LEAFN] = 4.0  # C:N 25 = leafcn
    ps[S.OFFSET_FLAG] = 1.0
    ps[S.OFFSET_COUNTER] = 2 * col.dt  # decremented to dt: the last offset step
    _phenology_only(col)
    assert ps[S.LEAFC, 0, 0] == 0.0 and ps[S.LEAFN, 0, 0] == 0.0
    # litter leaves at lflitcn = 50: 2 gN to litter, the other 2 gN retranslocated
    # (then 2 %/yr gap mortality of this step sends a sliver of retransn to litter)
    assert ps[S.RETRANSN, 0, 0] == pytest.approx(2.0 * (1.0 - 0.02 * col.dt / YEAR), rel=1e-14)
    lit_c = col.cs[[S.LITR1C, S.LITR2C, S.LITR3C], 0, 0]
    lit_n = col.cs[[S.LITR1N, S.LITR2N, S.LITR3N], 0, 0]
    np.testing.assert_allclose(lit_c, 0.5 * 100.0 * np.array([0.25, 0.5, 0.25]), rtol=1e-14)  # x patch_wt
    mort_n = 2.0 * 0.02 * col.dt / YEAR  # the retransn sliver goes to labile litter
    np.testing.assert_allclose(lit_n, 0.5 * (2.0 * np.array([0.25, 0.5, 0.25]) + [mort_n, 0, 0]), rtol=1e-13)


def test_dead_wood_mortality_accelerated_in_ad_spinup():
    """AD spin-up multiplies the gap mortality of the displayed dead stem and dead coarse root (C and
    N) by the dead-wood factor (CTSM spinup_factor_deadwood = 10); every other pool's mortality, and
    the mass balance patch -> CWD, are unchanged; ``ad_exit_deadwood`` multiplies the pools back."""
    assert PH.AD_DEADWOOD_FACTOR == 10.0
    out = {}
    for f in (1.0, PH.AD_DEADWOOD_FACTOR):
        col = Column([4], leafc0=200.0, sminn0=0.0, soil4c0=0.0, dt=1800.0, deadwood_factor=f)
        ps = col.ps
        for i, c in ((S.DEADSTEMC, 3000.0), (S.DEADCROOTC, 900.0)):  # (no live wood: no turnover into it)
            ps[i] = c
            ps[i + S.NC0] = c / 50.0
        before = ps.copy()
        _phenology_only(col)
        out[f] = (before - ps, col.cs[S.CWDC, 0, 0], col.cs[S.CWDN, 0, 0])
    (d1, cwd1, cwdn1), (d10, cwd10, cwdn10) = out[1.0], out[10.0]
    m = 0.02 * 1800.0 / YEAR
    for i in (S.DEADSTEMC, S.DEADCROOTC, S.DEADSTEMN, S.DEADCROOTN):
        assert d10[i, 0, 0] == pytest.approx(10.0 * d1[i, 0, 0], rel=1e-12)
    assert d10[S.DEADSTEMC, 0, 0] == pytest.approx(10.0 * m * 3000.0, rel=1e-12)
    # the other pools lose the same
    for i in (S.LEAFC, S.FROOTC, S.LEAFN, S.RETRANSN):
        assert d10[i, 0, 0] == d1[i, 0, 0]
    extra = 9.0 * m * (3000.0 + 900.0)  # the extra dead wood mortality, all into CWD
    assert cwd10 - cwd1 == pytest.approx(extra, rel=1e-9)
    assert cwdn10 - cwdn1 == pytest.approx(extra / 50.0, rel=1e-9)
    # the exit conversion, per column by patch weight
    ps = np.zeros((S.NPV, 3, 2))
    ps[S.DEADSTEMC] = [[10.0, 20.0], [30.0, 40.0], [0.0, 1.0]]
    ps[S.DEADCROOTC] = 3.0
    ps[S.DEADSTEMN] = 0.2
    ps[S.LEAFC] = 7.0
    add_c = np.zeros((2, 2))
    add_n = np.zeros((2, 2))
    PH.ad_exit_deadwood(10.0, np.array([0, 0, 1]), np.array([0.25, 0.75, 1.0]), ps, add_c, add_n)
    np.testing.assert_array_equal(ps[S.DEADSTEMC], [[100.0, 200.0], [300.0, 400.0], [0.0, 10.0]])
    np.testing.assert_array_equal(ps[S.DEADCROOTC], 30.0)
    assert np.all(ps[S.LEAFC] == 7.0)
    np.testing.assert_allclose(add_c, [[9 * (0.25 * 13 + 0.75 * 33), 9 * (0.25 * 23 + 0.75 * 43)], [27.0, 36.0]],
                               rtol=1e-14)
    np.testing.assert_allclose(add_n, 9 * 0.2, rtol=1e-14)


def test_cwd_ad_factor_follows_ctsm_latitude_term():
    """CWD's AD factor (CTSM): max(1, tau_cwd/2) x (1 + 50/(1 + exp(-0.15 (|lat| - 60))))."""
    tau = 1.0 / (-np.log(1.0 - 0.001) * 365.0)  # CLM4.0 k_frag 0.001 d-1: 2.74 yr
    assert tau == pytest.approx(2.738, abs=1e-3)
    f = DE.cwd_ad_factor(np.array([0.0, -38.0, 38.0, 60.0, 62.0, 85.0]))
    np.testing.assert_allclose(f, tau / 2 * (1 + 50 / (1 + np.exp(-0.15 * (np.array([0, 38, 38, 60, 62, 85])
                                                                             - 60.0)))), rtol=1e-14)
    assert f[0] == pytest.approx(1.377, abs=1e-3) and f[1] == f[2] and f[3] == pytest.approx(tau / 2 * 26.0)
    assert np.all(np.diff(f[2:]) > 0.0)
    # the fragmentation rate scales with it, and ad_exit multiplies CWD C and N back
    cs, cf = _columns_at_reference(2, 1, {S.CWDC: 100.0, S.CWDN: 1.0})
    cf[S.G_FPI] = 1.0
    DE.decomposition(3600.0, np.array([1.0, 5.0]), cs, cf)
    assert cf[S.G_CWDC_LOSS, 1, 0] == pytest.approx(5.0 * cf[S.G_CWDC_LOSS, 0, 0], rel=1e-12)
    add_c = np.zeros((2, 1))
    add_n = np.zeros((2, 1))
    cwd = cs[S.CWDC].copy()
    DE.ad_exit(DE.AD_FACTORS_OFF, np.array([1.0, 5.0]), cs, add_c, add_n)
    np.testing.assert_array_equal(cs[S.CWDC], cwd * np.array([[1.0], [5.0]]))
    assert add_c[0, 0] == 0.0 and add_c[1, 0] == pytest.approx(4.0 * cwd[1, 0], rel=1e-15)


def test_evergreen_background_litterfall_rate():
    col = Column([1], leafc0=300.0, sminn0=0.0, soil4c0=0.0, dt=1800.0)  # temperate needleleaf: 3 yr
    _phenology_only(col)
    rate = 1.0 / (3.0 * 365.0 * 86400.0)
    assert col.pf[S.F_LEAFC_TO_LITTER, 0, 0] == pytest.approx(300.0 * rate, rel=1e-14)
    # leaf N at C:N 35 leaves as litter at C:N 70: half retranslocated
    assert col.pf[S.F_LEAFN_TO_RETRANSN, 0, 0] == pytest.approx(300.0 * rate / 70.0, rel=1e-12)


def test_onset_displays_half_of_storage_over_thirty_days():
    col = Column([7], leafc0=100.0, sminn0=0.0, soil4c0=0.0, dt=3600.0)
    col.ps[S.ANNAVG_T2M] = 283.15  # crit GDD = exp(4.8 + 0.13 * 10) = 446 degC day
    col.ps[S.ONSET_GDDFLAG] = 1.0
    col.ps[S.ONSET_GDD] = PH.crit_onset_gdd(283.15) - 0.1
    _phenology_only(col, t_soil=283.15, dayl=40000.0, prev_dayl=39990.0)  # 10 degC x 1/24 day > 0.1
    assert col.ps[S.ONSET_FLAG, 0, 0] == 1.0 and col.ps[S.DORMANT_FLAG, 0, 0] == 0.0
    assert col.ps[S.LEAFC_XFER, 0, 0] + col.ps[S.LEAFC, 0, 0] == pytest.approx(50.0, rel=1e-4)
    for _ in range(30 * 24 - 1):
        _phenology_only(col, t_soil=283.15, dayl=40000.0, prev_dayl=39990.0)
    assert col.ps[S.LEAFC_XFER, 0, 0] == 0.0  # all displayed in the last onset step
    _phenology_only(col, t_soil=283.15, dayl=40000.0, prev_dayl=39990.0)
    assert col.ps[S.ONSET_FLAG, 0, 0] == 0.0  # 30 days after the trigger the onset period ends
    # 50 gC displayed, less 30 days of the 2 %/yr gap mortality (0.16 %)
    assert col.ps[S.LEAFC, 0, 0] == pytest.approx(50.0, rel=3e-3)
    assert col.ps[S.LEAFC_STORAGE, 0, 0] == pytest.approx(50.0, rel=3e-3)


def test_stress_deciduous_long_growing_season_background_turnover():
    # a C4 grass in a warm, always-wet climate never triggers offset: after 365 active days CLM4's
    # long-growing-season factor switches on background litterfall and storage -> display transfer
    col = Column([14], leafc0=100.0, sminn0=2.0, soil4c0=2000.0, ndep_gn_per_yr=5.0, dt=86400.0)
    t2m = np.full((1, 1), 300.0)
    t_soi = np.full((1, NLEV, 1), 300.0)
    psi = np.full((1, NLEV, 1), -0.05)
    dl = np.full(1, 43200.0)
    worst = 0.0
    litter_at = {}
    for day in range(2 * 365):
        gpp = np.full((1, 1), 2e-4 * (1 - np.exp(-0.5 * col.ps[S.TLAI, 0, 0])))
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, dl)
        worst = max(worst, abs(rc).max(), abs(rn).max())
        if day in (200, 500, 729):
            litter_at[day] = (col.pf[S.F_LEAFC_TO_LITTER, 0, 0], col.ps[S.LGSF, 0, 0], col.ps[S.BGTR, 0, 0])
    assert worst <= TOL_BUDGET
    assert col.ps[S.DORMANT_FLAG, 0, 0] == 0.0 and col.ps[S.OFFSET_FLAG, 0, 0] == 0.0
    assert litter_at[200] == (0.0, 0.0, 0.0)  # first year: no background turnover
    lit, lgsf, bgtr = litter_at[729]
    assert 0.9 < lgsf <= 1.0 and bgtr == pytest.approx(lgsf / YEAR, rel=1e-12)
    assert lit == pytest.approx(lgsf / YEAR * col.ps[S.LEAFC, 0, 0], rel=0.05)  # bglfr * leafc (pre-step)
    assert 0.0 < litter_at[500][1] < lgsf


def test_members_with_identical_inputs_stay_identical():
    col = Column([4, 7, 13, 0], nmember=3, lat_deg=[0, 45, 30, 10], dt=3600.0)
    gpp = np.full((4, 3), 2e-4)
    t2m = np.full((4, 3), 290.0)
    t_soi = np.full((4, NLEV, 3), 288.0)
    psi = np.full((4, NLEV, 3), -0.2)
    for n in range(200):
        dl = col.daylength(n * 3600.0 + 100 * 86400.0)
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, dl - 1.0)
    for m in (1, 2):
        assert np.array_equal(col.ps[:, :, m], col.ps[:, :, 0]) and np.array_equal(col.cs[:, :, m], col.cs[:, :, 0])
    assert np.abs(rc).max() <= TOL_BUDGET and np.abs(rn).max() <= TOL_BUDGET


# ----------------------------------------------------------------------------------------------------
# cn_decomposition


def test_decomposition_scalars_limits():
    cf = S.allocate(S.COLUMN_FLUXES, 3, 1)
    t = np.full((3, NLEV, 1), 298.15)
    t[1] = 308.15
    sucsat = np.full((3, NLEV), 200.0)
    psi = np.full((3, NLEV, 1), -1.0)
    psi[0] = -200.0 * 9.8e-6  # saturation
    psi[2] = -10.0  # the dry limit
    DE.decomp_scalars(t, psi, sucsat, np.tile(DZ_CLM4, (3, 1)), cf)
    assert cf[S.G_T_SCALAR, 0, 0] == pytest.approx(1.0, rel=1e-15)
    assert cf[S.G_T_SCALAR, 1, 0] == pytest.approx(1.5, rel=1e-15)
    assert cf[S.G_W_SCALAR, 0, 0] == pytest.approx(1.0, rel=1e-14)
    assert cf[S.G_W_SCALAR, 2, 0] == 0.0
    assert 0.0 < cf[S.G_W_SCALAR, 1, 0] < 1.0


def _columns_at_reference(ncol, nm, pools):
    """Column state with ``pools`` (index -> value) and fluxes with temperature and water scalars 1
    (decomposition at the reference rates)."""
    cs = S.allocate(S.COLUMN_VARS, ncol, nm)
    for i, v in pools.items():
        cs[i] = v
    cf = S.allocate(S.COLUMN_FLUXES, ncol, nm)
    cf[S.G_T_SCALAR] = 1.0
    cf[S.G_W_SCALAR] = 1.0
    return cs, cf


def test_decomposition_rates_ad_factor_and_exit():
    dt = 86400.0
    assert DE.step_fraction(0.7, dt) == pytest.approx(0.7, rel=1e-14)  # daily step = Biome-BGC value
    cs, cf = _columns_at_reference(1, 2, {S.SOIL3C: 1000.0, S.SOIL3N: 100.0})
    DE.decomp_potential(DE.AD_FACTORS_OFF, dt, cs, cf)
    normal = cf[S.G_PC0 + 5, 0, 0]  # soil3 -> soil4
    assert normal == pytest.approx(1000.0 * 0.0014 / dt, rel=1e-12)
    np.testing.assert_array_equal(DE.AD_FACTORS_CLM40, [20.0] * 4)  # CLM4.0 CNDecompMod spinup_scalar
    DE.decomp_potential(DE.AD_FACTORS_CLM40, dt, cs, cf)
    assert cf[S.G_PC0 + 5, 0, 0] == pytest.approx(20.0 * normal, rel=1e-12)
    # soil3 -> soil4 releases N: (1 - 0.55) * loss / 10 needed, loss / 10 released
    assert cf[S.G_PMNF0 + 5, 0, 0] == pytest.approx(-0.55 * 20 * normal / 10.0, rel=1e-12)
    add_c = np.zeros((1, 2))
    add_n = np.zeros((1, 2))
    DE.ad_exit(DE.AD_FACTORS_CLM40, np.ones(1), cs, add_c, add_n)
    assert cs[S.SOIL3C, 0, 0] == 20000.0 and add_c[0, 0] == 19000.0 and add_n[0, 0] == 1900.0


def test_nitrogen_fixation_and_leaching():
    assert DE.nfix_rate(0.0) == 0.0
    assert DE.nfix_rate(1e6) * YEAR == pytest.approx(1.8, rel=1e-12)  # Cleveland 1999 saturation
    col = Column([13], sminn0=2.0, soil4c0=0.0, ndep_gn_per_yr=0.0)
    col.cf[:] = 0.0
    DE.nitrogen_inputs_losses(col.patch_col, col.patch_wt, col.ps, col.ndep, col.drain, col.liq, col.dt,
                              col.cs, col.cf)
    expect = 0.1 * 2.0 / 400.0 * 2.0e-6  # sf * sminn / water * drainage
    assert col.cf[S.G_LEACHED, 0, 0] == pytest.approx(expect, rel=1e-12)
    assert col.cs[S.SMINN, 0, 0] == pytest.approx(2.0 - expect * col.dt, rel=1e-12)


# ----------------------------------------------------------------------------------------------------
# two-year runs of the four phenology types


TYPES = {  # pft, latitude, mean T (K), annual amplitude (K), peak GPP (gC/m2/s), dry-season depth (MPa)
    "evergreen_tropical_broadleaf": (4, 2.0, 299.0, 1.0, 5.0e-4, 0.3),
    "seasonal_deciduous_temperate_broadleaf": (7, 45.0, 284.0, 12.0, 1.2e-3, 0.3),
    "stress_deciduous_grass": (13, 35.0, 290.0, 8.0, 1.0e-3, 4.0),
    "boreal_needleleaf_deciduous": (3, 62.0, 271.0, 18.0, 1.0e-3, 0.3),
}


@pytest.fixture(scope="module")
def two_year_run():
    names = list(TYPES)
    pfts = [TYPES[k][0] for k in names]
    col = Column(pfts, nmember=2, lat_deg=[TYPES[k][1] for k in names], leafc0=150.0, sminn0=5.0,
                 soil4c0=500.0, ndep_gn_per_yr=1.5, dt=3600.0)
    col.ps[S.ANNAVG_T2M] = np.array([TYPES[k][2] for k in names])[:, None]
    # the evergreen starts near its equilibrium on a mature tropical soil (8 kgC/m2, Jobbagy & Jackson
    # 2000 report ~8-10 kgC/m2 to 1 m in tropical evergreen forest) so that its N supply balances
    ev = names.index("evergreen_tropical_broadleaf")
    col.ps[S.LEAFC, ev] = 330.0
    col.ps[S.LEAFN, ev] = 330.0 / PFT.leafcn[4]
    col.ps[S.FROOTC, ev] = 300.0
    col.ps[S.FROOTN, ev] = 300.0 / PFT.frootcn[4]
    col.cs[S.SOIL4C, ev] = 8000.0
    col.cs[S.SOIL4N, ev] = 800.0
    tmean = np.array([TYPES[k][2] for k in names])
    tamp = np.array([TYPES[k][3] for k in names])
    gmax = np.array([TYPES[k][4] for k in names])[:, None] * np.array([1.0, 0.8])[None, :]  # 2 members
    dry = np.array([TYPES[k][5] for k in names])
    nsteps = int(2 * YEAR / col.dt)
    nday = nsteps * int(col.dt) // 86400
    rec = {k: np.zeros((nday, 4, 2)) for k in ("lai", "onset", "offset", "leafc", "gdd")}
    rec["dayl"] = np.zeros((nday, 4))
    rec["tsoil"] = np.zeros((nday, 4))
    max_rc = max_rn = 0.0
    clamp = 0.0
    min_pool = np.inf
    t_soi = np.empty((4, NLEV, 2))
    psi = np.empty((4, NLEV, 2))
    t2m = np.empty((4, 2))
    prev = col.daylength(-col.dt)
    t0 = time.perf_counter()
    for n in range(nsteps):
        t = n * col.dt
        tair, gpp, ps3 = _forcing(t, tmean, tamp, gmax, dry, col.ps[S.TLAI])
        t2m[:] = tair[:, None]
        t_soi[:] = tair[:, None, None]
        psi[:] = -0.05
        psi[:, 2, :] = ps3[:, None]
        dl = col.daylength(t)
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, prev)
        max_rc = max(max_rc, float(np.abs(rc).max()))
        max_rn = max(max_rn, float(np.abs(rn).max()))
        clamp = max(clamp, float(np.abs(col.pf[[S.F_CLAMP_C, S.F_CLAMP_N]]).max()),
                    float(np.abs(col.cf[[S.G_CLAMP_C, S.G_CLAMP_N]]).max()))
        pools = col.ps[np.r_[S.PATCH_C_POOLS[S.PATCH_C_POOLS != S.XSMRPOOL], S.PATCH_N_POOLS]]
        min_pool = min(min_pool, float(pools.min()), float(col.cs.min()))
        prev = dl
        if (n + 1) % 24 == 0:
            d = n // 24
            rec["lai"][d] = col.ps[S.TLAI]
            rec["leafc"][d] = col.ps[S.LEAFC]
            rec["onset"][d] = col.ps[S.ONSET_FLAG]
            rec["offset"][d] = col.ps[S.OFFSET_FLAG]
            rec["dayl"][d] = dl
            rec["tsoil"][d] = tair
    rec.update(max_rc=max_rc, max_rn=max_rn, clamp=clamp, min_pool=min_pool, seconds=time.perf_counter() - t0,
               col=col, names=names)
    return rec


def test_two_year_budgets_closed_and_pools_nonnegative(two_year_run):
    r = two_year_run
    print(f"\n2-year hourly run, 4 columns x 2 members: {r['seconds']:.1f} s; max |C residual| "
          f"{r['max_rc']:.2e} gC/m2, max |N residual| {r['max_rn']:.2e} gN/m2, max clamp {r['clamp']:.1e}")
    assert r["max_rc"] <= TOL_BUDGET and r["max_rn"] <= TOL_BUDGET
    assert r["min_pool"] >= 0.0
    # clamps only ever absorb round-off (1e-12 g/m2/s x 3600 s is far below the budget tolerance)
    assert r["clamp"] <= 1e-12
    S.check_state(r["col"].ps, S.PATCH_VARS, "after 2 years")
    S.check_state(r["col"].cs, S.COLUMN_VARS, "after 2 years")


def test_seasonal_deciduous_onset_after_gdd_and_offset_by_daylength(two_year_run):
    r = two_year_run
    i = r["names"].index("seasonal_deciduous_temperate_broadleaf")
    lai = r["lai"][:, i, 0]
    y2 = slice(365, 730)
    days = np.arange(730)
    # winter of year 2 (January-February): no leaves; July: a canopy
    assert lai[365:425].max() < 0.05
    assert lai[365 + 181:365 + 212].min() > 0.5
    onset_day = 365 + np.argmax(r["onset"][y2, i, 0] > 0)
    offset_day = 365 + np.argmax(r["offset"][y2, i, 0] > 0)
    assert 365 + 60 < onset_day < 365 + 180  # spring
    # GDD over soil layer 3 (forcing temperature) since the winter solstice, at the model's threshold
    col = r["col"]
    crit = PH.crit_onset_gdd(col.ps[S.ANNAVG_T2M, i, 0])
    t3 = r["tsoil"][:, i]
    dayl = r["dayl"][:, i]
    start = 365 - 10 + np.argmax(np.diff(dayl[355:400]) > 0)  # first lengthening day after the solstice
    gdd = np.cumsum(np.clip(t3[start:] - 273.15, 0.0, None))
    expected_onset = start + np.argmax(gdd > crit)
    # daily sampling of an hourly model: onset within 1 day of the day the GDD sum passes the threshold
    assert abs(onset_day - expected_onset) <= 1
    assert lai[onset_day - 1] < 0.05 < lai[onset_day + 20]
    # offset on the first day after the summer solstice with day length < 39300 s (10.9 h)
    after = days[(days > 365 + 172) & (dayl < PH.CRIT_DAYL)]
    assert abs(offset_day - after[0]) <= 1
    assert lai[offset_day + 16:offset_day + 30].max() < 1e-6  # all leaves fell within 15 days
    assert lai[offset_day - 1] > 0.5


def test_evergreen_near_steady_and_other_habits(two_year_run):
    r = two_year_run
    ev = r["lai"][365:, r["names"].index("evergreen_tropical_broadleaf"), 0]
    # no seasonal leaf loss and a slow drift only: within 10 % of its mean over the whole second year
    assert ev.min() > 3.0 and (ev.max() - ev.min()) / ev.mean() < 0.1
    assert np.abs(np.diff(ev)).max() < 0.01 * ev.mean()  # no day changes LAI by more than 1 %
    grass = r["lai"][:, r["names"].index("stress_deciduous_grass"), 0]
    # dry season (psi < -2 MPa around day 230) makes the grass drop its leaves, wet soil brings them back
    assert grass[365 + 120:365 + 180].max() > 0.3
    assert grass[365 + 230:365 + 260].min() < 0.05
    assert grass[365 + 300:].max() > 0.3
    boreal = r["lai"][:, r["names"].index("boreal_needleleaf_deciduous"), 0]
    assert boreal[365:365 + 90].max() < 0.05 and boreal[365 + 190:365 + 220].min() > 0.2
    # member 1 has 80 % of member 0's GPP: less leaf carbon in every leaf-on season
    lc = r["leafc"][365:]
    assert np.all(lc[180:200, :, 1] < lc[180:200, :, 0])


def test_more_gpp_more_leaf_carbon():
    col = Column([4, 4], nmember=2, leafc0=100.0, sminn0=20.0, dt=6 * 3600.0)
    gpp = np.array([[2e-4, 3e-4], [1e-4, 4e-4]])
    t2m = np.full((2, 2), 298.15)
    t_soi = np.full((2, NLEV, 2), 298.15)
    psi = np.full((2, NLEV, 2), -0.05)
    dl = np.full(2, 43200.0)
    worst = 0.0
    for _ in range(4 * 120):
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, dl)
        worst = max(worst, np.abs(rc).max(), np.abs(rn).max())
    assert worst <= TOL_BUDGET
    order = np.argsort(gpp.ravel())
    leafc = col.ps[S.LEAFC].ravel()[order]
    assert np.all(np.diff(leafc) > 0.0)


def test_n_limitation_over_a_season():
    kw = dict(nmember=1, leafc0=100.0, soil4c0=0.0, dt=6 * 3600.0)
    # CLM4 denitrifies half of any surplus mineral N per day, so a stock of sminn does not last: the
    # N-rich column gets a large deposition flux instead, the poor one nothing at all
    rich = Column([13], sminn0=2.0, ndep_gn_per_yr=30.0, **kw)
    poor = Column([13], sminn0=0.0, ndep_gn_per_yr=0.0, **kw)
    gpp = np.full((1, 1), 1e-4)
    t2m = np.full((1, 1), 293.15)
    t_soi = np.full((1, NLEV, 1), 293.15)
    psi = np.full((1, NLEV, 1), -0.05)
    dl = np.full(1, 43200.0)
    grown = {"rich": 0.0, "poor": 0.0}
    for _ in range(4 * 60):
        for name, c in (("rich", rich), ("poor", poor)):
            rc, rn = c.step(gpp, t2m, t_soi, psi, dl, dl)
            assert abs(rc).max() <= TOL_BUDGET and abs(rn).max() <= TOL_BUDGET
            grown[name] += c.pf[S.F_PLANT_CALLOC, 0, 0] * c.dt
    assert poor.cs[S.SMINN, 0, 0] < 1e-3
    assert poor.cf[S.G_FPG, 0, 0] < 0.01 and rich.cf[S.G_FPG, 0, 0] > 10 * poor.cf[S.G_FPG, 0, 0]
    assert grown["poor"] < 0.2 * grown["rich"]  # new growth (gC/m2 over 60 days)
    assert poor.ps[S.LEAFC, 0, 0] + poor.ps[S.LEAFC_STORAGE, 0, 0] < rich.ps[S.LEAFC, 0, 0] + rich.ps[S.LEAFC_STORAGE, 0, 0]
    assert poor.pf[S.F_DOWNREG, 0, 0] > 0.3


# ----------------------------------------------------------------------------------------------------
# accelerated decomposition spin-up


def _spinup(ad_factor, years, tmean=298.0, tamp=3.0, psi_mpa=-0.01, ndep=30.0, pft=13, deadwood_factor=1.0,
            cwd_factor=1.0, col=None, first_year=0):
    """Daily-step run of a C3 grass column from bare soil in a warm, moist climate with N-saturating
    deposition (with CLM4's N limitation, N accumulation would otherwise set a centuries-long time
    scale; saturation isolates the decomposition time scale that AD accelerates); returns the total
    ecosystem C (gC/m2) at each year end, the worst budget residual and the column."""
    if col is None:
        col = Column([pft], leafc0=20.0, sminn0=2.0, soil4c0=0.0, ndep_gn_per_yr=ndep, ad_factor=ad_factor,
                     dt=86400.0, deadwood_factor=deadwood_factor, cwd_factor=cwd_factor)
        col.ps[S.ANNAVG_T2M] = tmean
    t2m = np.empty((1, 1))
    t_soi = np.empty((1, NLEV, 1))
    psi = np.full((1, NLEV, 1), psi_mpa)
    prev = col.daylength(first_year * YEAR - 86400.0)
    out = []
    worst = 0.0
    for n in range(first_year * 365, (first_year + years) * 365):
        t = n * 86400.0
        doy = n % 365
        tair = tmean - tamp * np.cos(2 * np.pi * (doy - 15) / 365)
        t2m[:] = tair
        t_soi[:] = tair
        warm = np.clip((tair - 273.15) / 15.0, 0.0, 1.0)
        gpp = np.full((1, 1), 2.5e-4 * warm * (1 - np.exp(-0.5 * col.ps[S.TLAI, 0, 0])))
        dl = col.daylength(t)
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, prev)
        worst = max(worst, abs(rc).max(), abs(rn).max())
        prev = dl
        if doy == 364:
            S.cn_totals(col.patch_col, col.patch_wt, col.ps, col.cs, col.totc, col.totn)
            out.append(col.totc[0, 0])
    return np.array(out), worst, col


def test_ad_spinup_reaches_steady_soil_carbon_faster():
    years = 35
    t0 = time.perf_counter()
    normal, w1, _ = _spinup(DE.AD_FACTORS_OFF, years)
    ad, w2, col_ad = _spinup(DE.AD_FACTORS_CLM40, years)
    secs = time.perf_counter() - t0
    assert w1 <= TOL_BUDGET and w2 <= TOL_BUDGET
    drift_n = np.abs(np.diff(normal))
    drift_ad = np.abs(np.diff(ad))
    thr = 1.0  # gC/m2/yr: CLM's usual spin-up criterion for total ecosystem C drift
    first_ad = int(np.argmax(drift_ad < thr)) + 1 if np.any(drift_ad < thr) else None
    print(f"\nAD spin-up ({secs:.1f} s for 2 x {years} daily-step years): drift at years 10/20/35 "
          f"normal {drift_n[9]:.2f}/{drift_n[19]:.2f}/{drift_n[-1]:.2f}, AD {drift_ad[9]:.2f}/"
          f"{drift_ad[19]:.2f}/{drift_ad[-1]:.2f} gC/m2/yr; AD below {thr} after {first_ad} years")
    assert first_ad is not None and first_ad <= 30
    assert np.all(drift_n[:first_ad + 5] >= thr)  # normal mode still drifting over the same years
    # leaving AD mode restores the normal-rate soil pools: SOM4 scaled by the factor (20)
    soil4 = col_ad.cs[S.SOIL4C, 0, 0]
    add_c = np.zeros((1, 1))
    add_n = np.zeros((1, 1))
    DE.ad_exit(DE.AD_FACTORS_CLM40, np.ones(1), col_ad.cs, add_c, add_n)
    assert col_ad.cs[S.SOIL4C, 0, 0] == pytest.approx(20 * soil4, rel=1e-15)


def test_ad_spinup_brings_a_forest_with_dead_wood_to_steady_state():
    """A tropical broadleaf evergreen forest column (the same warm, N-saturated daily-step setting):
    its dead stem and coarse root turn over at 2 %/yr (CLM4 gap mortality), so in normal mode the
    ecosystem C still grows by > 1 %/yr after 33 years. 30 years of AD spin-up (laida's SOM factors
    ``DE.AD_FACTORS``, CLM4.5's (1, 1, 5, 70); dead-wood mortality x10, CWD fragmentation x cwd_ad_factor) and the exit conversion leave it within
    0.05 %/yr of steady state over the next 3 normal years, with every budget closed."""
    years_ad, years_after = 30, 3
    normal, w1, coln = _spinup(DE.AD_FACTORS_OFF, years_ad + years_after, pft=4)
    ad, w2, col = _spinup(DE.AD_FACTORS, years_ad, pft=4, deadwood_factor=PH.AD_DEADWOOD_FACTOR,
                          cwd_factor=float(DE.cwd_ad_factor(0.0)))
    add_c = np.zeros((1, 1))
    add_n = np.zeros((1, 1))
    DE.ad_exit(DE.AD_FACTORS, col.cwd_factor, col.cs, add_c, add_n)
    PH.ad_exit_deadwood(PH.AD_DEADWOOD_FACTOR, col.patch_col, col.patch_wt, col.ps, add_c, add_n)
    col.ad_factor, col.deadwood_factor, col.cwd_factor[:] = DE.AD_FACTORS_OFF, 1.0, 1.0
    after, w3, _ = _spinup(None, years_after, col=col, first_year=years_ad)
    assert max(w1, w2, w3) <= TOL_BUDGET
    rel_normal = np.diff(normal)[-1] / normal[-1]
    rel_after = np.abs(np.diff(after)) / after[1:]
    print(f"\nforest spin-up: normal mode after {years_ad + years_after} yr drifts {100 * rel_normal:.2f} %/yr "
          f"({normal[-1]:.0f} gC/m2); AD {years_ad} yr + exit: {after[-1]:.0f} gC/m2, drift "
          f"{100 * rel_after.max():.3f} %/yr; dead stem {col.ps[S.DEADSTEMC, 0, 0]:.0f} vs "
          f"{coln.ps[S.DEADSTEMC, 0, 0]:.0f} gC/m2 in normal mode")
    assert rel_normal > 0.01
    assert np.all(rel_after < 5e-4)
    assert col.ps[S.DEADSTEMC, 0, 0] > 1.5 * coln.ps[S.DEADSTEMC, 0, 0]  # the normal run is far from it


# ----------------------------------------------------------------------------------------------------
# throughput


def test_throughput_500_patches_40_members():
    npatch, nm = 500, 40
    ncol = 125
    rng = np.random.default_rng(7)
    pfts = rng.integers(0, 17, npatch)  # includes bare soil
    patch_col = np.repeat(np.arange(ncol), 4)
    col = Column(pfts, nmember=nm, lat_deg=np.linspace(-50, 70, ncol), patch_col=patch_col,
                 patch_wt=np.full(npatch, 0.25), ncol=ncol, dt=1800.0)
    gpp = rng.uniform(0.0, 5e-4, (npatch, nm))
    t2m = np.full((npatch, nm), 290.0)
    t_soi = np.full((ncol, NLEV, nm), 288.0)
    psi = np.full((ncol, NLEV, nm), -0.3)
    dl = col.daylength(180 * 86400.0)
    col.step(gpp, t2m, t_soi, psi, dl, dl)  # warm-up (JIT from cache)
    nstep = 20
    t0 = time.perf_counter()
    for _ in range(nstep):
        rc, rn = col.step(gpp, t2m, t_soi, psi, dl, dl)
    secs = time.perf_counter() - t0
    us = secs / (nstep * npatch * nm) * 1e6
    print(f"\nfull CN step incl. budget check, 500 patches x 40 members: {us:.3f} us per patch-member-step")
    assert np.abs(rc).max() <= TOL_BUDGET and np.abs(rn).max() <= TOL_BUDGET
    assert us < 20.0  # generous bound on a shared 2-core machine; the figure is reported above
