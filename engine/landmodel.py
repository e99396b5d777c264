"""The land model driver: one routine per model step that runs every physics kernel, in CLM4's order,
on one rank's block of land cells (one soil column per cell shared by its PFT patches, CLM4's
vegetated land unit) x ensemble members, and checks the energy, water, carbon and nitrogen budgets
of every column and member at every step (issue 4 items 1-9, 11).

Step sequence (:meth:`LandModel.step`; CLM4.0 ``driver``: SurfaceAlbedo at the previous step's end,
then Biogeophysics1, CanopyFluxes, Hydrology1, SoilTemperature, Hydrology2, CNEcosystemDyn):

1. solar geometry: mean cos(zenith) over the step at the declination of the forcing record
   (``kernels.forcing.orbit``/``mean_cosz``, the geometry the forcing's shortwave was distributed with);
2. ground albedo from soil colour and top-layer water, BATS snow albedo, snow-cover weighting
   (``surface_albedo``);
3. two-stream canopy radiation with the exposed LAI/SAI and the absorbed solar fluxes, sunlit/shaded
   leaves and their mean specific leaf areas (``canopy_radiation``), the day-length factor of Vcmax
   (``photosynthesis.dayl_factor``, the day length over that of the cell's summer solstice);
4. interception, canopy storage, throughfall (``canopy_hydrology``);
5. soil-water stress BTRAN and root uptake shares (``soil_properties.soil_water_stress``);
6. ground surface state q_g, beta, latent heat, roughness (``canopy_fluxes.ground_surface_state``),
   ground and canopy emissivity (``longwave``);
7. turbulent fluxes, T_v iteration with photosynthesis, FSH, the LE parts, TSA, RH2M, FIRA
   (``canopy_fluxes.canopy_fluxes``) per patch, at the ground temperature of the step's start;
8. snow water: sublimation/frost (ground evaporation goes to the snow pack when there is snow), snowfall,
   rain, compaction, outflow, snow cover (``snow.snow_water``) and the BATS snow age;
9. soil/snow heat (Crank-Nicolson, ``soil_temperature``) with the column ground heat flux G = sum_p
   w_p G_p and dG/dT = -sum_p w_p (cgrnd_p + 4 eps_g sigma T_g^3); the realised change dT of the top
   node updates the patch fluxes as CLM4.0 ``Biogeophysics2`` does: FIRA += 4 eps_g sigma T_g^3 dT,
   ground evaporation += cgrndl dT (with its latent heat into FGEV and EFLX_LH_TOT), FSH += (cgrnd -
   htvp cgrndl) dT, FGR = G + dG/dT dT (``soil_fluxes``); the evaporation change is taken from the top soil layer in
   step 10 (the snow pack's sublimation of step 8 keeps its T_g^n value);
10. soil water: infiltration, surface runoff, Richards equation, root uptake by rootr, evaporation,
    drainage (``soil_hydrology.soil_water``);
11. CN, in ``cn_state``'s order, with GPP from the photosynthesis of step 7 as potential GPP;
    LAI/SAI/heights from leaf C (``cn_canopy.veg_struct_update``);
12. budget checks (below) and the history fields.

Budgets, per column and member, every step (``check_budgets=True``; sums in ``balance_check``), failures raise
:class:`BudgetError` naming the global land-cell index, the member, the step and the residual:

- energy (W/m2, tolerance 1e-6): sum_p w_p (FSA - FIRA - FSH - EFLX_LH_TOT) - (H' - H)/dt + A, with H
  the column heat content of soil and snow (``soil_temperature.column_heat_content``: sensible heat
  relative to ice at T_f plus the latent heat of the liquid water) and A the enthalpy carried in or
  out by water moving across the column boundary as the snow and soil-water kernels report it
  (precipitation, runoff, evaporation, CLM4 neglects these terms);
- water (mm, tolerance 1e-9): (RAIN + SNOW - ET - QRUNOFF) dt - change of canopy water (patch weighted),
  snow (ice + liquid) and soil liquid + ice;
- carbon and nitrogen (g/m2, tolerance 1e-9): ``cn_state.cn_budget_residuals`` (from the totals,
  ``cn_budget_residuals_of_totals``); an analysis (:meth:`LandModel.set_lai` or :meth:`LandModel.set_leaf`)
  records the C and N it adds as an explicit term, checked at the next step.

State: :class:`engine.physics_state.PhysicsState` (declared table + packed CN state); this module writes
it only inside :meth:`step`, :meth:`set_lai`, :meth:`set_leaf`, :meth:`exit_spinup` and the cold start.
No MPI: a rank runs its own block.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from engine import pftcon
from engine.physics_state import PhysicsState
from kernels import forcing as kf
from kernels.physics import cn_allocation as AL
from kernels.physics import cn_canopy as CA
from kernels.physics import cn_decomposition as DE
from kernels.physics import cn_phenology as PH
from kernels.physics import cn_state as S
from kernels.physics.balance_check import budget_residuals, column_water_storage, soil_water_columns, within_tolerance
from kernels.forcing import mean_cosz_columns, step_forcing_ok
from kernels.physics.canopy_fluxes import canopy_fluxes, ground_surface_state
from kernels.physics.canopy_hydrology import canopy_hydrology
from kernels.physics.canopy_radiation import canopy_two_stream, solar_fluxes, sunlit_shaded_sla
from kernels.physics.photosynthesis import dayl_factors
from kernels.physics.constants import (
    CO2_PPMV_2002, DAYSPYR, DENH2O, DENICE, FORC_HGT, SB, SECSPDAY, TFRZ,
)
from kernels.physics.longwave import canopy_emissivity, ground_emissivity
from kernels.physics.snow import snow_water
from kernels.physics.soil_hydrology import soil_water
from kernels.physics.soil_layers import NLEVSOI, band_weights, soil_levels, to_depth_bands
from kernels.physics.soil_fluxes import soil_fluxes_update
from kernels.physics.soil_properties import column_rootr, patch_root_fractions, soil_params, soil_water_stress
from kernels.physics.soil_temperature import column_heat_content, ground_temperature, soil_snow_temperature
from kernels.physics.subgrid_average import patch_to_column
from kernels.physics.surface_albedo import (
    SOIL_ALBDRY, SOIL_ALBSAT, check_soil_color, ground_albedo, snow_age_bats, snow_albedo_bats, soil_albedo,
)

#: Budget tolerances of issue 4 item 9 (float64).
ENERGY_TOL = 1e-6  # W/m2 per step
WATER_TOL = 1e-9  # mm per step
CN_TOL = 1e-9  # g/m2 per step
#: Cold-start volumetric soil water (m3/m3), CLM4.0 ``iniTimeVar`` (0.3, limited to the porosity).
COLD_H2OSOI_VOL = 0.3
#: Maximum saturated fraction f_max (1): the surface dataset carries no FMAX; 0.3 is a typical CLM4
#: value of mineral-soil grid cells (Niu et al. 2005) and is used everywhere (documented choice).
WTFACT_DEFAULT = 0.3
#: Record spacing of the forcing (s): the declination of the solar geometry is that of the record
#: interval's centre, as the forcing's coszen distribution of shortwave uses.
FORCING_RECORD_SECONDS = 21600.0

#: Plausible ranges of the step forcing (``kernels.forcing.STEP_FIELDS`` index, lower, upper bound);
#: fields 5-9 (the shortwave components) must be >= 0.
FORCING_BOUNDS = ((0, 150.0, 350.0), (1, 0.0, 0.1), (2, 3.0e4, 1.2e5), (3, 0.0, 100.0), (4, 0.0, 1000.0),
                  (10, 0.0, 1.0), (11, 0.0, 1.0))
_FORCING_LO = np.full(len(kf.STEP_FIELDS), -np.inf)
_FORCING_HI = np.full(len(kf.STEP_FIELDS), np.inf)
for _k, _lo, _hi in FORCING_BOUNDS:
    _FORCING_LO[_k], _FORCING_HI[_k] = _lo, _hi

#: History fields: name -> (units, long name, level): level "patch" (aggregated to the cell by PFT
#: weight), "column", "levgrnd", "levsoi" or "band" (the study's four depth bands).
HISTORY_FIELDS = {
    "TLAI": ("m2/m2", "total projected leaf area index", "patch"),
    "TSAI": ("m2/m2", "total projected stem area index", "patch"),
    "ELAI": ("m2/m2", "exposed one-sided leaf area index", "patch"),
    "LEAFC": ("gC/m2", "leaf C", "patch"),
    "LEAFN": ("gN/m2", "leaf N", "patch"),
    "GPP": ("gC/m2/s", "gross primary production", "patch"),
    "NPP": ("gC/m2/s", "net primary production", "patch"),
    "FSA": ("W/m2", "absorbed solar radiation", "patch"),
    "FSR": ("W/m2", "reflected solar radiation", "patch"),
    "SABG": ("W/m2", "solar radiation absorbed by the ground", "patch"),
    "SABV": ("W/m2", "solar radiation absorbed by the vegetation", "patch"),
    "FIRA": ("W/m2", "net infrared (longwave) radiation", "patch"),
    "FSH": ("W/m2", "sensible heat", "patch"),
    "EFLX_LH_TOT": ("W/m2", "total latent heat flux [+ to atm]", "patch"),
    "FCTR": ("W/m2", "canopy transpiration", "patch"),
    "FCEV": ("W/m2", "canopy evaporation", "patch"),
    "FGEV": ("W/m2", "ground evaporation", "patch"),
    "QVEGT": ("mm/s", "canopy transpiration", "patch"),
    "FGR": ("W/m2", "heat flux into soil/snow including snow melt", "patch"),
    "TSA": ("K", "2m air temperature", "patch"),
    "RH2M": ("%", "2m relative humidity", "patch"),
    "TV": ("K", "vegetation temperature", "patch"),
    "BTRAN": ("1", "transpiration beta factor", "patch"),
    "H2OCAN": ("mm", "intercepted water", "patch"),
    "TG": ("K", "ground temperature", "column"),
    "H2OSNO": ("mm", "snow depth (liquid water)", "column"),
    "SNOWDP": ("m", "snow height", "column"),
    "QRUNOFF": ("mm/s", "total liquid runoff (surface + drainage)", "column"),
    "QOVER": ("mm/s", "surface runoff", "column"),
    "QDRAI": ("mm/s", "sub-surface drainage", "column"),
    "TSOI": ("K", "soil temperature", "levgrnd"),
    "H2OSOI": ("mm3/mm3", "volumetric soil water", "levsoi"),
    "TSOI_BANDS": ("K", "soil temperature in the study's depth bands 0-7, 7-28, 28-100, 100-255 cm", "band"),
    "H2OSOI_BANDS": ("mm3/mm3", "volumetric soil water in the study's depth bands", "band"),
}


class BudgetError(RuntimeError):
    """An energy, water, carbon or nitrogen budget did not close within its tolerance."""


@dataclass
class StepDiagnostics:
    """Residuals of the last step, (ncol, nmember) each: energy (W/m2), water (mm), C, N (g/m2);
    energy and water are NaN when the model runs with ``check_budgets=False``."""

    energy: np.ndarray
    water: np.ndarray
    carbon: np.ndarray
    nitrogen: np.ndarray


#: Pools :meth:`LandModel.project_cn_trend` extrapolates: the tissue, storage, transfer and growth
#: respiration storage pools of a patch (not cpool, xsmrpool, retransn, npool), and the litter, CWD and
#: SOM pools of a column (not sminn).
_FAST_PATCH_POOLS = (S.CPOOL, S.XSMRPOOL, S.PATCH_INDEX["retransn"], S.PATCH_INDEX["npool"])
PROJECTED_PATCH_POOLS = np.array([i for i in np.concatenate([S.PATCH_C_POOLS, S.PATCH_N_POOLS])
                                  if i not in _FAST_PATCH_POOLS], dtype=np.int64)
PROJECTED_COLUMN_POOLS = np.array([i for i in np.concatenate([S.COLUMN_C_POOLS, S.COLUMN_N_POOLS])
                                   if i != S.SMINN], dtype=np.int64)


@dataclass
class CnSnapshot:
    """The projected pools (:data:`PROJECTED_PATCH_POOLS` of every patch, :data:`PROJECTED_COLUMN_POOLS`
    of every column, by member) and total ecosystem C and N (ncol, nmember) at one instant."""

    patch: np.ndarray
    column: np.ndarray
    totc: np.ndarray
    totn: np.ndarray


def _daylength(lat_rad: np.ndarray, decl: float) -> np.ndarray:
    """Day length (s) at latitudes ``lat_rad`` for solar declination ``decl`` (rad), CLM4.0
    ``daylength``: 2 arccos(-tan(lat) tan(decl)) / omega, the argument clipped to [-1, 1]."""
    x = np.clip(-np.tan(lat_rad) * np.tan(decl), -1.0, 1.0)
    return 2.0 * np.arccos(x) / (2.0 * math.pi) * SECSPDAY


@functools.lru_cache(maxsize=1)
def _solstice_declinations() -> tuple[float, float]:
    """Largest and smallest solar declination (rad) of :func:`kernels.forcing.orbit` over the year
    (hourly), the declinations of the northern and southern summer solstice."""
    d = np.array([kf.orbit(h * 3600.0)[0] for h in range(int(kf.SECONDS_PER_YEAR // 3600))])
    return float(d.max()), float(d.min())


def max_daylength(lat_rad: np.ndarray) -> np.ndarray:
    """Day length (s) of the summer solstice at latitudes ``lat_rad`` (CLM4.0 ``max_dayl``, the
    denominator of the Vcmax day-length factor)."""
    dmax, dmin = _solstice_declinations()
    lat_rad = np.asarray(lat_rad, dtype=np.float64)
    return np.where(lat_rad >= 0.0, _daylength(lat_rad, dmax), _daylength(lat_rad, dmin))


class LandModel:
    """CLM4CN-class land model for a block of land cells x ``n_members`` members.

    Parameters
    ----------
    surface : engine.surface.Surface of the grid. cells : global land indices (positions in the
      surface's land order) of this block, ascending; default all cells.
    n_members : ensemble size. dt : model step (s).
    start : cold-start soil temperature: ``"era5"`` (annual mean ERA5 2-m temperature of each cell,
      ``engine.climatology``) or a number (K) for every cell.
    pft : PFT parameter arrays (``engine.pftcon.pft_arrays()`` layout); default CLM4.0's table.
    spinup_ad : accelerated-decomposition spin-up when True: SOM turnover times ``ad_som_factors``,
      dead stem and dead coarse root mortality x10 (CTSM ``spinup_factor_deadwood``) and CWD
      fragmentation x ``cn_decomposition.cwd_ad_factor(lat)`` (CTSM); :meth:`exit_spinup` converts.
    ad_som_factors : multipliers of the soil1..soil4 turnover in AD spin-up; default
      ``cn_decomposition.AD_FACTORS``, CLM4.5's (1, 1, 5, 70) (CLM4.0's uniform x20 makes the AD stage
      leak N, see the ``cn_decomposition`` docstring).
    supplemental_n : add the mineral N that plant demand and immobilisation lack
      (``cn_allocation.nitrogen_competition``, CLM4.0 ``supplement_to_sminn``), an N input of the budget;
      default: on during AD spin-up (so the pools of a short spin-up fill with N as well as C), off
      otherwise. A plain attribute, read every step (``engine.climate`` and ``engine.experiment`` turn it
      off part-way through the AD stage); :meth:`exit_spinup` turns it off.
    check_budgets : check the four budgets every step (raise :class:`BudgetError`).
    co2_ppmv : atmospheric CO2 (umol/mol). ndep : N deposition (gN m-2 yr-1), one value or one per cell.
    leafc0, sminn0, soil4c0 : CN cold start (gC/m2 leaf C of vegetated patches, gN/m2 mineral N,
      gC/m2 of SOM4), ``cn_state.cold_start``. CLM4.0 starts from 1 gC/m2; the default here is 10 gC/m2
      (LAI ~0.1) because ``cn_canopy`` zeroes an exposed LAI below 0.05, which would leave a cold-started
      canopy without photosynthesis.
    """

    def __init__(self, surface, n_members: int, dt: float = 1800.0, *, start="era5", pft=None,
                 spinup_ad: bool = False, ad_som_factors=None, supplemental_n: bool | None = None,
                 check_budgets: bool = True,
                 cells=None, co2_ppmv: float = CO2_PPMV_2002,
                 ndep=0.5, leafc0: float = 10.0, sminn0: float = 1.0, soil4c0: float = 0.0,
                 wtfact: float = WTFACT_DEFAULT):
        n_members = int(n_members)
        if n_members < 1:
            raise ValueError(f"LandModel: n_members must be >= 1, got {n_members}")
        dt = float(dt)
        if not dt > 0.0 or SECSPDAY % dt != 0.0:
            raise ValueError(f"LandModel: dt must be > 0 s and divide one day, got {dt}")
        cells = np.arange(surface.n_land, dtype=np.int64) if cells is None else np.asarray(cells, dtype=np.int64)
        if cells.ndim != 1 or cells.size == 0 or np.any(np.diff(cells) <= 0) or cells[0] < 0 or cells[-1] >= surface.n_land:
            raise ValueError(f"LandModel: cells must be ascending land indices in [0, {surface.n_land}), got {cells[:8]}...")
        self.cells = cells
        self.nm = n_members
        self.dt = dt
        self.check_budgets = bool(check_budgets)
        self.co2_ppmv = float(co2_ppmv)
        self.pft = pftcon.pft_record(pft)
        self.cons = pftcon.constants_record()
        fac = DE.AD_FACTORS if ad_som_factors is None else np.asarray(ad_som_factors, dtype=np.float64)
        if fac.shape != (4,) or not np.all(fac >= 1.0):
            raise ValueError(f"LandModel: ad_som_factors must be 4 multipliers >= 1 (soil1..soil4), got {fac}")
        self.ad_factor = np.array(fac, dtype=np.float64) if spinup_ad else DE.AD_FACTORS_OFF.copy()
        self.supplemental_n = bool(spinup_ad) if supplemental_n is None else bool(supplemental_n)
        ncol = cells.size
        self.ncol = ncol
        self.lat = np.ascontiguousarray(surface.lat[cells], dtype=np.float64)
        self.lon = np.ascontiguousarray(surface.lon[cells], dtype=np.float64)
        self.lat_r = np.deg2rad(self.lat)
        self.lon_r = np.deg2rad(self.lon)
        # AD spin-up of the dead wood (CTSM spinup_factor_deadwood) and of CWD (CTSM, latitude-scaled)
        self.ad_deadwood_factor = PH.AD_DEADWOOD_FACTOR if spinup_ad else 1.0
        self.ad_cwd_factor = DE.cwd_ad_factor(self.lat) if spinup_ad else np.ones(ncol)
        self.max_dayl = max_daylength(self.lat_r)
        # patches of the block, in the surface's order (by cell then PFT); column = position in cells
        col_of_cell = np.full(surface.n_land, -1, dtype=np.int64)
        col_of_cell[cells] = np.arange(ncol)
        sel = np.flatnonzero(col_of_cell[surface.patch_cell] >= 0)
        if sel.size == 0 or np.any(np.bincount(col_of_cell[surface.patch_cell[sel]], minlength=ncol) == 0):
            raise ValueError("LandModel: every land cell of the block needs at least one patch in the surface data")
        self.patch_index = sel  # global patch positions of this block
        self.patch_col = np.ascontiguousarray(col_of_cell[surface.patch_cell[sel]], dtype=np.int64)
        self.patch_pft = np.ascontiguousarray(surface.patch_pft[sel], dtype=np.int64)
        self.patch_wt = np.ascontiguousarray(surface.patch_weight[sel], dtype=np.float64)
        self.npatch = sel.size
        # patch -> column aggregation in patch order: pass k adds the k-th patch of each column
        rank_in_col = np.zeros(self.npatch, dtype=np.int64)
        for p in range(1, self.npatch):
            rank_in_col[p] = rank_in_col[p - 1] + 1 if self.patch_col[p] == self.patch_col[p - 1] else 0
        self._agg = [(self.patch_col[rank_in_col == k], np.flatnonzero(rank_in_col == k))
                     for k in range(int(rank_in_col.max()) + 1)]
        self._wsum = self.to_column(np.ones((self.npatch, 1)))  # (ncol, 1) sum of the patch weights
        # soil
        isoicol = np.asarray(surface.soil_color[cells], dtype=np.int64)
        check_soil_color(isoicol)
        self.isoicol = np.ascontiguousarray(isoicol)
        self.z, self.dz, self.zi = soil_levels()
        self.dz2 = np.ascontiguousarray(np.tile(self.dz, (ncol, 1)))
        self.sp = soil_params(surface.pct_sand[cells], surface.pct_clay[cells])
        self.sucsat_pos = np.ascontiguousarray(-self.sp.sucsat)  # mm, > 0 (canopy_fluxes, CN convention)
        with np.errstate(divide="ignore", invalid="ignore"):
            watfc = self.sp.watsat * (0.1 / (self.sp.hksat * 86400.0)) ** (1.0 / (2.0 * self.sp.bsw + 3.0))
        self.watfc = np.ascontiguousarray(np.where(self.sp.hksat > 0.0, watfc, 0.0))
        self._sucsat_pos_soi = self.sucsat_pos[:, :NLEVSOI].copy()  # contiguous, for decomp_scalars
        self._dz2_soi = self.dz2[:, :NLEVSOI].copy()
        self.wtfact = np.full(ncol, float(wtfact))
        self.rootfr = np.ascontiguousarray(patch_root_fractions(self.patch_pft, self.pft.roota_par,
                                                                self.pft.rootb_par))
        self.forc_hgt = np.full(ncol, FORC_HGT)
        nd = np.broadcast_to(np.asarray(ndep, dtype=np.float64), (surface.n_land,)) if np.ndim(ndep) else \
            np.full(surface.n_land, float(ndep))
        self.ndep = np.ascontiguousarray(nd[cells] / (DAYSPYR * SECSPDAY))
        self.w_tsoi_band = band_weights("node")
        self.w_h2osoi_band = band_weights("layer", nlev=NLEVSOI)
        self.nstep = 0
        self._analysis_c = np.zeros((ncol, n_members))
        self._analysis_n = np.zeros((ncol, n_members))
        self._totc_end = None
        self._totn_end = None
        self.state = PhysicsState(ncol, self.npatch, n_members)
        self._cold_start(start, leafc0, sminn0, soil4c0)
        self._alloc_work()

    # ------------------------------------------------------------------------------------------
    def _cold_start(self, start, leafc0, sminn0, soil4c0):
        st, nm = self.state, self.nm
        if isinstance(start, str):
            if start != "era5":
                raise ValueError(f"LandModel: start must be 'era5' or a soil temperature in K, got {start!r}")
            from engine.climatology import point_climatology

            clim = point_climatology(self.lat, self.lon)
            tsoil = np.asarray(clim.t2m, dtype=np.float64).mean(axis=1)
        else:
            tsoil = np.full(self.ncol, float(start))
        if not np.all(np.isfinite(tsoil)) or np.any(tsoil < 180.0) or np.any(tsoil > 340.0):
            raise ValueError(f"LandModel: cold-start soil temperature outside 180-340 K: {tsoil}")
        st.t_soisno[...] = tsoil[:, None, None]
        vol = np.minimum(COLD_H2OSOI_VOL, self.sp.watsat[:, :NLEVSOI])  # (c, 10)
        frozen = tsoil[:, None] <= TFRZ
        liq = np.where(frozen, 0.0, vol * self.dz[:NLEVSOI] * DENH2O)
        ice = np.where(frozen, vol * self.dz[:NLEVSOI] * DENICE, 0.0)
        st.h2osoi_liq[:, :NLEVSOI, :] = liq[:, :, None]
        st.h2osoi_ice[:, :NLEVSOI, :] = ice[:, :, None]
        st.t_snow[...] = tsoil[:, None]
        st.t_veg[...] = tsoil[self.patch_col][:, None]
        ps, cs = S.cold_start(self.patch_pft, self.ncol, nm, self.pft, leafc0=leafc0, sminn0=sminn0,
                              soil4c0=soil4c0)
        st.ps[...] = ps
        st.cs[...] = cs
        CA.veg_struct_update(self.patch_pft, self.patch_col, st.snow_depth, self.forc_hgt, self.pft, self.cons,
                             self.dt, self.ad_deadwood_factor, st.ps)

    def _alloc_work(self):
        nc, npch, nm = self.ncol, self.npatch, self.nm
        z2 = lambda: np.zeros((nc, nm))  # noqa: E731
        zp = lambda: np.zeros((npch, nm))  # noqa: E731
        self.w = w = {}
        for name in ("coszen", "fdayl"):
            w[name] = np.zeros(nc)
        for name in ("vol_top", "frac_sno", "qg", "dqgdt", "soilalpha", "soilbeta", "htvp", "z0mg", "emg",
                     "t_grnd", "sfc_liq", "sfc_ice", "rain_g", "snow_g", "evap_g", "qsub", "top_soil", "sub_excess",
                     "adv_snow", "res_snow", "gnet", "dgnet", "fgr_real", "snomelt", "res_heat", "qtran_col",
                     "surf", "infl", "drain", "zwt", "fsat", "adv_soil", "res_soil", "h_before", "h_after",
                     "totc", "totn", "totc_new", "totn_new", "rc", "rn", "h2osno_old", "liq_tot", "lw4", "e_resid", "w_resid",
                     "h2osno", "dtg", "ice_tot", "w_before", "w_after", "tg_new", "evap_soil", "drain_pos"):
            w[name] = z2()
        for name in ("albsod", "albsoi", "albsnd", "albsni", "albgrd", "albgri", "solad", "solai"):
            w[name] = np.zeros((nc, 2, nm))
        for name in ("albd", "albi", "fabd", "fabi", "ftdd", "ftid", "ftii", "omega"):
            w[name] = np.zeros((npch, 2, nm))
        for name in ("fsun", "sabv", "sabg", "fsa", "fsr", "laisun", "laisha", "parsun", "parsha", "slasun", "slasha",
                     "h2ocan_i", "intr", "thr_rain", "thr_snow", "drip", "pg_rain", "pg_snow", "fwet", "fdry", "btran", "emv",
                     "t_veg", "h2ocan", "fsh", "fsh_v", "fsh_g", "lh", "fctr", "fcev", "fgev", "qtran", "qevap_can",
                     "qevap_soi", "fgr", "fira", "lwnet_veg", "lwnet_grnd", "tsa", "q2m", "rh2m", "rssun", "rssha",
                     "psnsun", "psnsha", "fpsn", "gpp", "cgrnd", "ustar", "err_veg", "niter", "cgrndl", "evap_corr"):
            w[name] = zp()
        w["rootr"] = np.zeros((npch, NLEVSOI, nm))
        w["t_soi"] = np.zeros((nc, NLEVSOI, nm))  # contiguous copy of the soil levels of t_soisno (CN)
        w["rootr_col"] = np.zeros((nc, NLEVSOI, nm))
        w["h2osoi_vol"] = np.zeros((nc, NLEVSOI, nm))
        w["soilpsi"] = np.zeros((nc, DE.NLEV_DECOMP, nm))  # the layers decomposition and phenology read
        self._totc_buf = np.zeros((nc, nm))  # C and N totals at the end of the last step
        self._totn_buf = np.zeros((nc, nm))
        self.pf = S.allocate(S.PATCH_FLUXES, npch, nm)
        self.cf = S.allocate(S.COLUMN_FLUXES, nc, nm)
        self._last = None

    # ------------------------------------------------------------------------------------------
    def to_column(self, x: np.ndarray) -> np.ndarray:
        """Patch values ``x[p, ...]`` aggregated to the columns by PFT weight: sum_p w_p x_p, summed
        in patch order (deterministic, the same for any block containing the column)."""
        out = np.zeros((self.ncol, *x.shape[1:]))
        if x.ndim == 2 and x.dtype == np.float64:
            patch_to_column(self.patch_col, self.patch_wt, x, out)  # the same sums, compiled
            return out
        wt = self.patch_wt.reshape((-1,) + (1,) * (x.ndim - 1))
        for cols, idx in self._agg:
            out[cols] += wt[idx] * x[idx]
        return out

    def _water_storage(self, out: np.ndarray | None = None) -> np.ndarray:
        """Column water (mm): canopy (patch weighted) + snow ice and liquid + soil liquid and ice;
        leaves the soil liquid sum in ``w["liq_tot"]``."""
        st, w = self.state, self.w
        out = np.empty((self.ncol, self.nm)) if out is None else out
        soil_water_columns(st.h2osoi_liq, st.h2osoi_ice, NLEVSOI, w["liq_tot"], w["ice_tot"])
        column_water_storage(self.patch_col, self.patch_wt, st.h2ocan, st.snow_ice, st.snow_liq, w["liq_tot"],
                             w["ice_tot"], out)
        return out

    def _heat_content(self, out):
        st = self.state
        column_heat_content(self.dz, self.sp.watsat, self.sp.csol, st.t_soisno, st.h2osoi_liq, st.h2osoi_ice,
                            st.t_snow, st.snow_liq, st.snow_ice, st.snow_depth, out)

    # ------------------------------------------------------------------------------------------
    def set_lai(self, lai) -> None:
        """Set LAI ``lai[p, m]`` (m2/m2, this block's patches) from an analysis: leaf C by the inverse
        SLA integral (``cn_canopy.set_leaf_from_lai``), leaf N = leaf C / leafcn, exposed LAI/SAI and
        heights refreshed (``veg_struct_update`` with a zero step). The C and N added or removed are
        recorded per column as the analysis term of the next step's budget check."""
        lai = np.ascontiguousarray(lai, dtype=np.float64)
        if lai.shape != (self.npatch, self.nm):
            raise ValueError(f"set_lai: lai must have shape (patch, member) = {(self.npatch, self.nm)}, got {lai.shape}")
        if not np.all(np.isfinite(lai)):
            raise ValueError("set_lai: lai holds non-finite values")
        ps = self.state.ps
        c0, n0 = ps[S.LEAFC].copy(), ps[S.LEAFN].copy()
        CA.set_leaf_from_lai(self.patch_pft, lai, self.pft, ps)
        self._analysis_c += self.to_column(ps[S.LEAFC] - c0)
        self._analysis_n += self.to_column(ps[S.LEAFN] - n0)
        CA.veg_struct_update(self.patch_pft, self.patch_col, self.state.snow_depth, self.forc_hgt, self.pft,
                             self.cons, 0.0, self.ad_deadwood_factor, ps)

    def set_leaf(self, leafc, leafn) -> None:
        """Set leaf C ``leafc[p, m]`` (gC/m2) and leaf N ``leafn[p, m]`` (gN/m2) of this block's patches
        from an analysis that updates them by regression (``filter.update = "regression"``, as DART's
        CLM interface updates LEAFC and LEAFN): both as given (no fixed C:N imposed), then TLAI
        recomputed from the new leaf C by the SLA integral (``cn_canopy.leafc_to_lai``, as CLM4.0's
        CNVegStructUpdate does at every step) and exposed LAI/SAI and heights refreshed
        (``veg_struct_update`` with a zero step; TSAI is unchanged because TLAI already matches leaf
        C). The C and N added or removed are recorded per column as the analysis term of the next
        step's budget check. Values must be finite and >= 0 (the filter's lower bounds)."""
        leafc = np.ascontiguousarray(leafc, dtype=np.float64)
        leafn = np.ascontiguousarray(leafn, dtype=np.float64)
        for name, a in (("leafc", leafc), ("leafn", leafn)):
            if a.shape != (self.npatch, self.nm):
                raise ValueError(f"set_leaf: {name} must have shape (patch, member) = {(self.npatch, self.nm)}, "
                                 f"got {a.shape}")
            bad = ~np.isfinite(a) | (a < 0.0)
            if np.any(bad):
                p, m = np.argwhere(bad)[0]
                raise ValueError(f"set_leaf: {name} = {float(a[p, m])!r} at patch {int(self.patch_index[p])} (land cell "
                                 f"{int(self.cells[self.patch_col[p]])}), member {int(m)}: must be finite and >= 0")
        ps = self.state.ps
        c0, n0 = ps[S.LEAFC].copy(), ps[S.LEAFN].copy()
        ps[S.LEAFC][...] = leafc
        ps[S.LEAFN][...] = leafn
        self._analysis_c += self.to_column(ps[S.LEAFC] - c0)
        self._analysis_n += self.to_column(ps[S.LEAFN] - n0)
        lai = np.empty((self.npatch, self.nm))
        CA.leafc_to_lai(self.patch_pft, leafc, self.pft, lai)
        ps[S.TLAI][...] = lai
        CA.veg_struct_update(self.patch_pft, self.patch_col, self.state.snow_depth, self.forc_hgt, self.pft,
                             self.cons, 0.0, self.ad_deadwood_factor, ps)

    def exit_spinup(self) -> tuple[np.ndarray, np.ndarray]:
        """Leave accelerated-decomposition spin-up: soil organic matter pools times the CLM4.0 AD
        factors and CWD times its CTSM factor (``cn_decomposition.ad_exit``), dead stem and dead coarse
        root times the dead-wood factor (``cn_phenology.ad_exit_deadwood``); normal rates from the next
        step, no supplemental N. The C and N this adds are recorded like an analysis increment, so the
        budget check continues across the switch; returned per column and member (gC/m2, gN/m2)."""
        if np.all(self.ad_factor == 1.0):
            raise RuntimeError("exit_spinup: the model is not in accelerated-decomposition spin-up (spinup_ad=False)")
        added_c = np.zeros((self.ncol, self.nm))
        added_n = np.zeros((self.ncol, self.nm))
        DE.ad_exit(self.ad_factor, self.ad_cwd_factor, self.state.cs, added_c, added_n)
        PH.ad_exit_deadwood(self.ad_deadwood_factor, self.patch_col, self.patch_wt, self.state.ps, added_c, added_n)
        self._analysis_c += added_c
        self._analysis_n += added_n
        self.ad_factor = DE.AD_FACTORS_OFF.copy()
        self.ad_cwd_factor = np.ones(self.ncol)
        self.ad_deadwood_factor = 1.0
        self.supplemental_n = False
        return added_c, added_n

    def cn_snapshot(self) -> CnSnapshot:
        """A copy of the pools :meth:`project_cn_trend` extrapolates and the total ecosystem C and N
        per column and member, to be taken at the same point of a repeated forcing cycle."""
        ps, cs = self.state.ps, self.state.cs
        totc = np.empty((self.ncol, self.nm))
        totn = np.empty((self.ncol, self.nm))
        S.cn_totals(self.patch_col, self.patch_wt, ps, cs, totc, totn)
        return CnSnapshot(ps[PROJECTED_PATCH_POOLS].copy(), cs[PROJECTED_COLUMN_POOLS].copy(), totc, totn)

    def project_cn_trend(self, s0: CnSnapshot, s1: CnSnapshot, s2: CnSnapshot, cap: float = 5.0):
        """Extrapolate the C and N pools along their slow trend towards its steady state (Aitken's
        delta-squared on total ecosystem N; the gradient projection of Fang et al. 2015, GMD 8:781, for
        CLM4CN). For snapshots s0, s1, s2 taken k years apart at the same point of the forcing cycle,
        s2 being the current state: where the total-N increments d1 = N1 - N0 and d2 = N2 - N1 have
        one sign and shrink (0 < r = d2/d1 < 1, an exponential approach N_inf - N(t) ~ r^(t/k)),
        every projected pool x moves by min(r/(1-r), cap) (x2 - x1), the rest of the geometric
        series, and is kept >= 0; elsewhere nothing changes. The pools are the tissue, storage and
        transfer pools of C and N and the litter, CWD and SOM pools (not sminn, cpool, xsmrpool,
        npool, retransn, which turn over in days). The C and N added are booked like an analysis
        increment, so the budget check continues; returns (added C, added N, multiplier) per column
        and member (gC/m2, gN/m2, 1).

        What it is for: in CLM4CN an N-limited ecosystem gains N only as fast as deposition and
        fixation exceed denitrification and leaching (~0.5 gN/m2/yr on ~100 gN/m2 of AD-mode capital:
        a time scale of ~20 years even in AD mode), and its carbon follows the N. Projected every
        10 years of AD spin-up (``engine.climate``), it closes most of the gap the N capital would
        take decades more to close."""
        cur = self.cn_snapshot()
        if not (np.array_equal(cur.patch, s2.patch) and np.array_equal(cur.column, s2.column)):
            raise ValueError("project_cn_trend: s2 must be a snapshot of the current state")
        if not cap >= 0.0:
            raise ValueError(f"project_cn_trend: cap must be >= 0, got {cap}")
        d1 = s1.totn - s0.totn
        d2 = s2.totn - s1.totn
        ok = (d1 * d2 > 0.0) & (np.abs(d2) < np.abs(d1))
        r = np.where(ok, d2 / np.where(ok, d1, 1.0), 0.0)
        mult = np.where(ok, np.minimum(r / np.where(ok, 1.0 - r, 1.0), cap), 0.0)
        ps, cs = self.state.ps, self.state.cs
        ps[PROJECTED_PATCH_POOLS] = np.maximum(s2.patch + mult[self.patch_col][None] * (s2.patch - s1.patch), 0.0)
        cs[PROJECTED_COLUMN_POOLS] = np.maximum(s2.column + mult[None] * (s2.column - s1.column), 0.0)
        after = self.cn_snapshot()
        added_c = after.totc - cur.totc
        added_n = after.totn - cur.totn
        self._analysis_c += added_c
        self._analysis_n += added_n
        return added_c, added_n, mult

    # ------------------------------------------------------------------------------------------
    def _fail(self, kind: str, resid: np.ndarray, tol: float, unit: str):
        if within_tolerance(resid, tol):
            return
        bad = ~(np.abs(resid) <= tol)
        if np.any(bad):
            c, m = np.argwhere(bad)[0]
            raise BudgetError(
                f"{kind} budget not closed at step {self.nstep}: land cell {int(self.cells[c])} "
                f"(lat {self.lat[c]:.2f}, lon {self.lon[c]:.2f}), member {int(m)}, residual {resid[c, m]:.3e} {unit} "
                f"(tolerance {tol:.0e})")

    def _forcing_error(self, f: np.ndarray):
        """Raise ValueError naming the first non-finite, out-of-range or negative forcing value of ``f``
        (called when ``kernels.forcing.step_forcing_ok`` found one)."""
        if not np.all(np.isfinite(f)):
            k, c, m = np.argwhere(~np.isfinite(f))[0]
            raise ValueError(f"step: forcing {kf.STEP_FIELDS[k]} is not finite at land cell {int(self.cells[c])}, member {m}")
        for k, lo, hi in FORCING_BOUNDS:
            bad = (f[k] < lo) | (f[k] > hi)
            if np.any(bad):
                c, m = np.argwhere(bad)[0]
                raise ValueError(f"step: forcing {kf.STEP_FIELDS[k]} = {f[k, c, m]!r} ({kf.STEP_UNITS[k]}) outside "
                                 f"[{lo}, {hi}] at land cell {int(self.cells[c])}, member {m}")
        if np.any(f[5:10] < 0.0):
            k, c, m = np.argwhere(f[5:10] < 0.0)[0]
            raise ValueError(f"step: forcing {kf.STEP_FIELDS[k + 5]} is negative at land cell {int(self.cells[c])}, member {m}")
        raise AssertionError("step_forcing_ok and the checks above disagree")  # pragma: no cover

    def step(self, forcing_step: np.ndarray, time: float) -> StepDiagnostics:
        """Advance one model step of length dt starting at ``time`` (s since 1 January 00 UTC, noleap
        calendar; any multiple of the year is allowed) with ``forcing_step[12, cell, member]``
        (``kernels.forcing.STEP_FIELDS`` order and units) for this block's cells."""
        f = np.ascontiguousarray(forcing_step, dtype=np.float64)
        if f.shape != (len(kf.STEP_FIELDS), self.ncol, self.nm):
            raise ValueError(f"step: forcing must have shape {(len(kf.STEP_FIELDS), self.ncol, self.nm)}, got {f.shape}")
        if not step_forcing_ok(f, _FORCING_LO, _FORCING_HI, 5, 10):
            self._forcing_error(f)
        st, w, pft, cons, dt = self.state, self.w, self.pft, self.cons, self.dt
        pc, pp, pw = self.patch_col, self.patch_pft, self.patch_wt
        sp = self.sp
        ps, cs = st.ps, st.cs
        forc_t, forc_q, forc_p, forc_u, forc_lw = f[0], f[1], f[2], f[3], f[4]
        rain, snow = f[10], f[11]
        w["solad"][:, 0], w["solad"][:, 1] = f[6], f[8]
        w["solai"][:, 0], w["solai"][:, 1] = f[7], f[9]

        # ---- budgets: storages at the start
        check = self.check_budgets
        if check:
            self._heat_content(w["h_before"])
            self._water_storage(w["w_before"])
        S.cn_totals(pc, pw, ps, cs, w["totc"], w["totn"])
        if check and self._totc_end is not None:
            # C and N between the end of the last step and now changed only by the analysis term
            rc = (w["totc"] - self._totc_end) - self._analysis_c
            rn = (w["totn"] - self._totn_end) - self._analysis_n
            self._fail("carbon (analysis increment)", rc, CN_TOL, "gC/m2")
            self._fail("nitrogen (analysis increment)", rn, CN_TOL, "gN/m2")
        self._analysis_c[...] = 0.0
        self._analysis_n[...] = 0.0

        # ---- 1. solar geometry
        t_year = float(time) % kf.SECONDS_PER_YEAR
        t_rec = math.floor(t_year / FORCING_RECORD_SECONDS) * FORCING_RECORD_SECONDS
        decl, _e0 = kf.orbit(t_rec + 0.5 * FORCING_RECORD_SECONDS)
        coszen = w["coszen"]
        mean_cosz_columns(self.lat_r, self.lon_r, t_year, t_year + dt, decl, coszen)
        dayl_factors(_daylength(self.lat_r, decl), self.max_dayl, w["fdayl"])
        # ---- 2. ground albedo
        h2osno = np.add(st.snow_ice, st.snow_liq, out=w["h2osno"])
        w["vol_top"][...] = st.h2osoi_liq[:, 0] / (self.dz[0] * DENH2O) + st.h2osoi_ice[:, 0] / (self.dz[0] * DENICE)
        soil_albedo(self.isoicol, w["vol_top"], SOIL_ALBSAT, SOIL_ALBDRY, w["albsod"], w["albsoi"])
        snow_albedo_bats(coszen, st.snow_age, w["albsnd"], w["albsni"])
        ground_albedo(w["albsod"], w["albsoi"], w["albsnd"], w["albsni"], st.frac_sno, w["albgrd"], w["albgri"])
        # ---- 3. canopy radiation
        elai, esai = ps[S.ELAI], ps[S.ESAI]
        canopy_two_stream(coszen, elai, esai, st.t_veg, st.fwet, pc, pp, pft, w["albgrd"], w["albgri"],
                          w["albd"], w["albi"], w["fabd"], w["fabi"], w["ftdd"], w["ftid"], w["ftii"], w["omega"],
                          w["fsun"])
        solar_fluxes(coszen, w["solad"], w["solai"], elai, esai, pc, w["albgrd"], w["albgri"], w["albd"], w["albi"],
                     w["fabd"], w["fabi"], w["ftdd"], w["ftid"], w["ftii"], w["omega"], w["fsun"],
                     w["sabv"], w["sabg"], w["fsa"], w["fsr"], w["laisun"], w["laisha"], w["parsun"], w["parsha"])
        sunlit_shaded_sla(coszen, elai, pc, pp, pft, w["slasun"], w["slasha"])
        # ---- 4. canopy hydrology
        canopy_hydrology(pc, rain, snow, elai, esai, st.h2ocan, dt, w["h2ocan_i"], w["intr"], w["thr_rain"],
                         w["thr_snow"], w["drip"], w["pg_rain"], w["pg_snow"], w["fwet"], w["fdry"])
        # ---- 5. soil water stress
        soil_water_stress(pc, pp, self.rootfr, pft.smpso, pft.smpsc, self.dz, sp.watsat, sp.sucsat, sp.bsw,
                          st.h2osoi_liq, st.h2osoi_ice, st.t_soisno, w["rootr"], w["btran"])
        # ---- 6. ground surface state
        ground_temperature(st.t_soisno, st.t_snow, st.snow_depth, w["t_grnd"])
        layer = st.snow_depth >= 0.01
        w["sfc_liq"][...] = np.where(layer, st.snow_liq, st.h2osoi_liq[:, 0])
        w["sfc_ice"][...] = np.where(layer, st.snow_ice, st.h2osoi_ice[:, 0])
        ground_surface_state(w["t_grnd"], forc_p, forc_q, st.h2osoi_liq, st.h2osoi_ice, self.dz2, sp.watsat,
                             self.sucsat_pos, sp.bsw, self.watfc, st.frac_sno, w["sfc_liq"], w["sfc_ice"], w["qg"],
                             w["dqgdt"], w["soilalpha"], w["soilbeta"], w["htvp"], w["z0mg"])
        ground_emissivity(st.frac_sno, w["emg"])
        canopy_emissivity(elai, esai, w["emv"])
        # ---- 7. canopy fluxes
        canopy_fluxes(pc, pp, forc_t, forc_q, forc_p, forc_u, forc_lw, w["t_grnd"], w["qg"], w["dqgdt"],
                      w["soilbeta"], w["htvp"], w["z0mg"], w["emg"], st.snow_depth, elai, esai, ps[S.HTOP],
                      w["sabv"], w["sabg"], w["emv"], w["laisun"], w["laisha"], w["parsun"], w["parsha"],
                      w["slasun"], w["slasha"], w["fdayl"], w["btran"],
                      w["h2ocan_i"], w["fwet"], w["fdry"], st.t_veg, FORC_HGT, self.co2_ppmv, dt, pft, cons,
                      w["t_veg"], w["h2ocan"], w["fsh"], w["fsh_v"], w["fsh_g"], w["lh"], w["fctr"], w["fcev"],
                      w["fgev"], w["qtran"], w["qevap_can"], w["qevap_soi"], w["fgr"], w["fira"], w["lwnet_veg"],
                      w["lwnet_grnd"], w["tsa"], w["q2m"], w["rh2m"], w["rssun"], w["rssha"], w["psnsun"],
                      w["psnsha"], w["fpsn"], w["gpp"], w["cgrnd"], w["ustar"], w["err_veg"], w["niter"],
                      w["cgrndl"])
        st.t_veg[...] = w["t_veg"]
        st.h2ocan[...] = w["h2ocan"]
        st.fwet[...] = w["fwet"]
        # ---- 8. snow water (ground evaporation from the snow pack when there is snow)
        patch_to_column(pc, pw, w["pg_rain"], w["rain_g"])
        patch_to_column(pc, pw, w["pg_snow"], w["snow_g"])
        patch_to_column(pc, pw, w["qevap_soi"], w["evap_g"])
        w["qsub"][...] = np.where(h2osno > 0.0, w["evap_g"], 0.0)
        w["h2osno_old"][...] = h2osno
        snow_water(dt, w["snow_g"], w["rain_g"], w["qsub"], forc_t, st.t_soisno, st.snow_ice, st.snow_liq,
                   st.t_snow, st.snow_depth, st.snow_ice, st.snow_liq, st.t_snow, st.snow_depth, w["top_soil"],
                   w["sub_excess"], st.frac_sno, w["adv_snow"], w["res_snow"])
        # ---- 9. soil and snow heat
        w["lw4"][...] = 4.0 * w["emg"] * SB * w["t_grnd"] ** 3
        patch_to_column(pc, pw, w["fgr"], w["gnet"])
        w["dgnet"][...] = -self.to_column(w["cgrnd"]) - w["lw4"] * self._wsum
        soil_snow_temperature(dt, self.z, self.zi, self.dz, sp.watsat, sp.sucsat, sp.bsw, sp.tkmg, sp.tkdry,
                              sp.csol, w["gnet"], w["dgnet"], 0.0, st.t_soisno, st.h2osoi_liq, st.h2osoi_ice,
                              st.t_snow, st.snow_liq, st.snow_ice, st.snow_depth, st.t_soisno, st.h2osoi_liq,
                              st.h2osoi_ice, st.t_snow, st.snow_liq, st.snow_ice, st.snow_depth, w["fgr_real"],
                              w["snomelt"], w["res_heat"])
        # realised top-node change dtg (K; dgnet < 0) and the patch fluxes updated by it
        dtg = w["dtg"]
        soil_fluxes_update(pc, w["fgr_real"], w["gnet"], w["dgnet"], w["lw4"], w["htvp"], w["cgrnd"], w["cgrndl"],
                           dtg, w["evap_corr"], w["fira"], w["qevap_soi"], w["fgev"], w["lh"], w["fsh_g"], w["fsh"],
                           w["fgr"])
        patch_to_column(pc, pw, w["qevap_soi"], w["evap_g"])
        snow_age_bats(dt, np.add(w["t_grnd"], dtg, out=w["tg_new"]), np.add(st.snow_ice, st.snow_liq, out=h2osno),
                      w["h2osno_old"], st.snow_age, st.snow_age)
        # ---- 10. soil water
        column_rootr(pc, pw, w["qtran"], w["rootr"], w["qtran_col"], w["rootr_col"])
        # ground evaporation less what the snow pack supplied (qsub - sub_excess), mm/s
        evap_soil = np.subtract(w["evap_g"], np.subtract(w["qsub"], w["sub_excess"], out=w["evap_soil"]),
                                out=w["evap_soil"])
        soil_water(dt, self.z, self.dz, sp.watsat, sp.sucsat, sp.bsw, sp.hksat, self.wtfact, True, w["top_soil"],
                   evap_soil, w["qtran_col"], w["rootr_col"], st.t_soisno, st.h2osoi_liq, st.h2osoi_ice,
                   st.h2osoi_liq, w["h2osoi_vol"], w["surf"], w["infl"], w["drain"], w["zwt"], w["fsat"],
                   w["adv_soil"], w["res_soil"])
        # ---- 11. CN (cn_state's order)
        self._cn_step(time, w["tsa"])
        self.nstep += 1

        # ---- 12. budgets
        if check:
            self._heat_content(w["h_after"])
            self._water_storage(w["w_after"])
            budget_residuals(dt, pc, pw, w["fsa"], w["fira"], w["fsh"], w["lh"], w["qevap_can"], w["qtran"],
                             w["h_before"], w["h_after"], w["adv_snow"], w["adv_soil"], w["evap_g"], rain, snow,
                             w["surf"], w["drain"], w["w_before"], w["w_after"], w["e_resid"], w["w_resid"])
            self._fail("energy", w["e_resid"], ENERGY_TOL, "W/m2")
            self._fail("water", w["w_resid"], WATER_TOL, "mm")
            self._fail("carbon", w["rc"], CN_TOL, "gC/m2")
            self._fail("nitrogen", w["rn"], CN_TOL, "gN/m2")
        else:
            w["e_resid"][...] = np.nan  # not computed: the diagnostics say so
            w["w_resid"][...] = np.nan
        # the totals _cn_step took of the final C and N state (no later kernel changes ps or cs)
        self._totc_buf[...] = w["totc_new"]
        self._totn_buf[...] = w["totn_new"]
        self._totc_end, self._totn_end = self._totc_buf, self._totn_buf
        return StepDiagnostics(w["e_resid"].copy(), w["w_resid"].copy(), w["rc"].copy(), w["rn"].copy())

    def _cn_step(self, time, t2m):
        st, w, pft, cons, dt = self.state, self.w, self.pft, self.cons, self.dt
        pc, pp, pw = self.patch_col, self.patch_pft, self.patch_wt
        ps, cs, pf, cf = st.ps, st.cs, self.pf, self.cf
        nl = NLEVSOI
        # soil water potential (MPa) of the liquid water, CLM4.0 CNDecomp/CNPhenology: psi_sat s^-B, >= -15
        DE.soil_water_potential(st.h2osoi_liq, self.dz, self.sp.watsat, self.sp.sucsat, self.sp.bsw, w["soilpsi"])
        t_year = float(time) % kf.SECONDS_PER_YEAR
        decl, _ = kf.orbit(t_year + 0.5 * dt)
        decl_prev, _ = kf.orbit((t_year - 0.5 * dt) % kf.SECONDS_PER_YEAR)
        dayl = _daylength(self.lat_r, decl)
        prev_dayl = _daylength(self.lat_r, decl_prev)
        t_soi = w["t_soi"]
        t_soi[...] = st.t_soisno[:, :nl]
        pf[...] = 0.0
        cf[...] = 0.0
        # w["totc"], w["totn"]: the totals step() took at its start; nothing before this wrote ps or cs
        AL.maintenance_respiration(pp, pc, t2m, t_soi, self.rootfr, pft, cons, ps, pf)
        AL.allocation_demand(pp, pc, pw, w["gpp"], pft, dt, ps, pf, cf)
        DE.decomp_scalars(t_soi, w["soilpsi"], self._sucsat_pos_soi, self._dz2_soi, cf)
        DE.decomp_potential(self.ad_factor, dt, cs, cf)
        AL.nitrogen_competition(dt, self.supplemental_n, cs, cf)
        AL.allocation_fluxes(pp, pc, pw, pft, dt, ps, pf, cf)
        DE.decomposition(dt, self.ad_cwd_factor, cs, cf)
        PH.phenology(pp, pc, pw, t_soi, w["soilpsi"], dayl, prev_dayl, pft, dt, self.ad_deadwood_factor, ps, cs, pf)
        soil_water_columns(st.h2osoi_liq, st.h2osoi_ice, nl, w["liq_tot"], w["ice_tot"])
        DE.nitrogen_inputs_losses(pc, pw, ps, self.ndep, np.maximum(w["drain"], 0.0, out=w["drain_pos"]), w["liq_tot"],
                                  dt, cs, cf)
        CA.veg_struct_update(pp, pc, st.snow_depth, self.forc_hgt, pft, cons, dt, self.ad_deadwood_factor, ps)
        AL.annual_update(pp, t2m, dt, ps, pf)
        # the step's final C and N totals, summed once: the budget residuals here and the start of the
        # next step's analysis-increment check (step() keeps them); same bits as cn_budget_residuals
        S.cn_totals(pc, pw, ps, cs, w["totc_new"], w["totn_new"])
        S.cn_budget_residuals_of_totals(pc, pw, w["totc"], w["totn"], w["totc_new"], w["totn_new"], pf, cf, dt,
                                        w["rc"], w["rn"])

    # ------------------------------------------------------------------------------------------
    def patch_outputs(self) -> dict:
        """History fields of the last step per patch (name -> (patch, member) array), CLM names."""
        w, ps, pf = self.w, self.state.ps, self.pf
        return {
            "TLAI": ps[S.TLAI], "TSAI": ps[S.TSAI], "ELAI": ps[S.ELAI], "LEAFC": ps[S.LEAFC], "LEAFN": ps[S.LEAFN],
            "GPP": pf[S.F_GPP], "NPP": pf[S.F_NPP], "FSA": w["fsa"], "FSR": w["fsr"], "SABG": w["sabg"],
            "SABV": w["sabv"], "FIRA": w["fira"], "FSH": w["fsh"], "EFLX_LH_TOT": w["lh"], "FCTR": w["fctr"],
            "FCEV": w["fcev"], "FGEV": w["fgev"], "QVEGT": w["qtran"], "FGR": w["fgr"], "TSA": w["tsa"],
            "RH2M": w["rh2m"], "TV": self.state.t_veg, "BTRAN": w["btran"], "H2OCAN": self.state.h2ocan,
        }

    def outputs(self) -> dict:
        """History fields of the last step per grid cell of the block (name -> array (cell, [level,]
        member)), patch fields aggregated by PFT weight; units and long names in HISTORY_FIELDS."""
        st, w = self.state, self.w
        out = {k: self.to_column(v) for k, v in self.patch_outputs().items()}
        tg = np.empty((self.ncol, self.nm))
        ground_temperature(st.t_soisno, st.t_snow, st.snow_depth, tg)
        out["TG"] = tg
        out["H2OSNO"] = st.snow_ice + st.snow_liq
        out["SNOWDP"] = st.snow_depth.copy()
        out["QOVER"] = w["surf"].copy()
        out["QDRAI"] = w["drain"].copy()
        out["QRUNOFF"] = w["surf"] + w["drain"]
        out["TSOI"] = st.t_soisno.copy()
        out["H2OSOI"] = w["h2osoi_vol"].copy()
        tb = np.empty((self.ncol, 4, self.nm))
        to_depth_bands(np.ascontiguousarray(st.t_soisno), self.w_tsoi_band, tb)
        out["TSOI_BANDS"] = tb
        hb = np.empty((self.ncol, 4, self.nm))
        to_depth_bands(w["h2osoi_vol"], self.w_h2osoi_band, hb)
        out["H2OSOI_BANDS"] = hb
        return out

    def restart_variables(self) -> dict:
        """Arrays to checkpoint (name -> array, views of the state), ``PhysicsState.restart_variables``."""
        return self.state.restart_variables()

    def set_from_restart(self, values: dict) -> None:
        """Set the state from a checkpoint dict (as :meth:`restart_variables`); the C/N continuity check
        restarts with the next step."""
        self.state.set_from_restart(values)
        self._totc_end = None
        self._totn_end = None


__all__ = ["BudgetError", "CnSnapshot", "ENERGY_TOL", "PROJECTED_COLUMN_POOLS", "PROJECTED_PATCH_POOLS", "HISTORY_FIELDS", "LandModel", "StepDiagnostics", "WATER_TOL", "CN_TOL"]
