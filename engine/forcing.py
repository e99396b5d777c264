"""Ensemble meteorological forcing for the land model: the seven fields of CLM's data atmosphere
(TBOT, QBOT, PSRF, WIND, FSDS, FLDS, PRECTmms) for N members, from a stochastic weather generator
anchored on the real ERA5 monthly climatology, or read from CLM datm-style netCDF files; and their
interpolation from 6-hourly records to the model step the way datm does it.

State: a :class:`ForcingGenerator` holds the AR(1) weather and perturbation state of its cells (read
and written by every ``records`` call; see "Time continuity"). :class:`DatmReader` holds open
stencils only. Nothing here communicates (except :func:`forcing_maps`, the collective behind
``laida forcing``): each rank builds its own generator/reader for its own cells, and the result for
a cell is the same whichever rank computes it. :func:`write_forcing_maps` and
:func:`plot_forcing_maps` write the annual-mean maps (netCDF, PNG); nothing else writes files.

Layout: records are ``(record, field, cell, member)`` (member last, DESIGN.md); a model step is a
``(field, cell, member)`` block (kernels.forcing.STEP_FIELDS). Units: K, kg/kg, Pa, m/s, W/m2, mm/s.

The generator (numbers and their sources)
-----------------------------------------
Member-independent weather for a cell at 6-hourly record times t_k = k * 6 h (noleap calendar,
t = 0 at 1 January 00 UTC of the run's first year):

* Temperature: T = T_clim(t) + sigma_T zT + DTR/2 cos(2 pi (h_local - 15)/24). T_clim is piecewise
  linear between mid-month nodes solved so that its mean over each month's records equals the ERA5
  monthly mean exactly (discrete Killworth 1996, JPO 26:136). The diurnal cosine sums to 0 over a
  day's four records, so it leaves daily and monthly means unchanged. DTR = (6 + 9 exp(-P/2.5 mm/d))
  K times a daylight factor min(1, max(0.15, <cos z>_day / 0.3)): 15 K in deserts, ~6.5 K in the
  wet tropics, smaller in polar night (laida's empirical rule, consistent with the ~10 K global land
  mean DTR of Vose et al. 2005, GRL 32:L23822). sigma_T = 1 + 3 sin^2(lat) K (labelled empirical:
  small synoptic variability in the tropics, ~4 K at high latitudes).
* Synoptic weather: zT, zP, zW are AR(1) processes with unit variance and e-folding times of 3, 0.5
  and 1.5 days, defined on a 10 deg x 10 deg lattice of "weather nodes" (each node its own stream)
  and blended bilinearly to the cell with weights normalised to unit variance, so neighbouring
  cells share weather (spatial coherence over ~1000 km) while every cell is still computed alone.
* Precipitation: wet when zP exceeds a threshold q with P(wet) = f = 0.5 (1 - exp(-P_month/4 mm/d))
  (bounded to [0.001, 0.5]); amount P = P_month (zP - q)+ / E[(zP - q)+], so E[P] = P_month exactly
  and rain comes in persistent spells. (Intermittency model: a censored latent Gaussian, as in
  Bardossy & Plate 1992, WRR 28:1247.)
* Cloud fraction: 1/(1 + exp(-1.7 (zP - q + 1))): 0.85 when rain starts, ~0.1 in dry spells of arid
  climates (laida's rule, tied to the precipitation process so clouds and rain agree).
* Humidity: vapour pressure e = RH esat(T_daily) with RH = RH0 + (0.98 - RH0) cloud^2 and
  RH0 = 0.30 + 0.50 (1 - exp(-P_month/3 mm/d)) (30 % in deserts, ~75 % in the wet tropics), held over
  the diurnal cycle (so RH peaks at night) and capped at saturation; esat of Bolton (1980) eq. 10;
  QBOT = 0.622 e / (p - 0.378 e) as in datm.
* PSRF: hypsometric equation from the cell's elevation (ETOPO5) and climatological temperature.
* FSDS: S0 E0 <cos z> (top of atmosphere over the record interval: Spencer 1971 declination and
  eccentricity, analytic interval mean of cos z; S0 = 1361 W/m2, Kopp & Lean 2011) times the
  clear-sky transmission 0.75 + 2e-5 z (FAO-56, Allen et al. 1998 eq. 37) times the cloud factor
  1 - 0.75 c^3.4 (Kasten & Czeplak 1980, Solar Energy 24:177). Never above the top of atmosphere.
* FLDS: Prata (1996, QJRMS 122:1127) clear-sky emissivity with the Crawford & Duchon (1999, JAM
  38:474) cloud correction, its cloud factor being 1 - all-sky/clear-sky shortwave (the same
  Kasten-Czeplak factor as FSDS). Gives ~420 W/m2 in the Amazon and ~340 W/m2 in the Sahara
  (annual means); like every screen-level formula it is low under polar winter inversions.
* WIND: Weibull with shape 2 (Rayleigh) and mean 3.5 m/s (near-surface land mean wind ~3.3 m/s,
  McVicar et al. 2012, J. Hydrol. 416:182; datm's forcing height is 30 m), from zW by the quantile
  transform, with a +-20 % diurnal modulation peaking at 14 h local time.

Ensemble perturbations (member m of N; defaults in :data:`DEFAULT_PERTURBATIONS`), the standard
forcing perturbations of NASA's land data assimilation systems (Reichle et al. 2007, JGR 112:D09108;
GEOS-5 LDAS / SMAP L4 namelist GEOSldas_App/LandAtmDAS_nml/LDASsa_SPECIAL_inputs_ensprop.nml):
  * PRECTmms x lognormal factor with mean 1 and standard deviation 0.5;
  * FSDS x lognormal factor with mean 1 and standard deviation 0.3 (then capped at clear sky);
  * FLDS + normal, standard deviation 20 W/m2 (GEOSldas; Reichle et al. 2007 used 50 W/m2);
  * TBOT + normal, standard deviation 1 K (GEOSldas has a tair slot; 1 K is the order of the
    2-m temperature spread of atmospheric reanalysis ensembles), QBOT follows at fixed vapour
    pressure (capped at saturation) and FLDS is recomputed with the perturbed temperature;
  * AR(1) in time with a 1-day correlation time (GEOSldas tcorr = 86400 s), cross-correlations
    P-SW -0.8, P-LW +0.5, SW-LW -0.5 (Reichle et al. 2007; GEOSldas), T-SW +0.4, T-LW +0.4
    (the values noted beside those entries in GEOSldas' LDASsa_DEFAULT_inputs_ensprop.nml), P-T 0;
    standard-normal deviates truncated at 3 (P, SW) and 2.5 (LW, T) as GEOSldas' std_normal_max. Spatially uncorrelated between grid cells (GEOSldas
    default xcorr = 0; its 0.5 deg SMAP setting is below the 1 deg model grid).
The study's own ensemble came from the 80-member DART/CAM4 reanalysis (Raeder et al. 2012, J.
Climate 25:6304); files of that kind are read with :class:`DatmReader`.

Randomness and decomposition independence
-----------------------------------------
All random numbers come from counter-based streams (kernels.forcing: splitmix64 hash + Box-Muller)
keyed by (seed, member, key, record, draw): key = the global cell id for perturbations, the lattice
node for the shared weather (member slot :data:`BASE_MEMBER`). A cell's forcing never depends on the
other cells of the call, the rank, or the rank count.

Time continuity
---------------
The AR(1) processes start in equilibrium at record 0 (a_0 = eps_0) and follow a_k = phi a_{k-1} +
sqrt(1 - phi^2) eps_k. The generator keeps the state after its last record (and that record): a call
for records k0.. that continues the previous call (k0 = last + 1, or k0 = last) just carries on; any
other k0 is reached by recomputing the states from record 0 (fast-forward, no forcing computed),
which gives bit-identical results. So records 0-39 in one call, in two calls, or from a new
generator asked for records 20-39 directly are identical (tested). ``state()``/``set_state()``
let a restart store the state instead of fast-forwarding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from statistics import NormalDist

import numpy as np

from engine.climatology import PointClimatology, RegularGrid, point_climatology
from engine.fileio import atomic_path
from kernels import forcing as kf
from kernels.forcing import RECORD_FIELDS, RECORD_UNITS, STEP_FIELDS, STEP_UNITS

__all__ = [
    "RECORD_FIELDS", "RECORD_UNITS", "STEP_FIELDS", "STEP_UNITS", "BASE_MEMBER", "DEFAULT_PERTURBATIONS",
    "DEFAULT_WEATHER", "PerturbationSpec", "WeatherSpec", "ForcingRecords", "ForcingGenerator",
    "DatmReader", "records_to_steps", "iter_model_steps", "toa_at_steps", "weather_node_stencil",
    "MAP_VARIABLES", "ForcingMaps", "annual_means", "climatology_annual_means", "grid_half_width",
    "forcing_maps", "land_means", "land_mean_standard_error", "write_forcing_maps", "plot_forcing_maps",
]

#: Member id of the member-independent weather streams (members are 0 .. N-1 < 2**32).
BASE_MEMBER = 1 << 32
#: Offset of weather-lattice node keys (global cell ids are < 2**40).
NODE_KEY_BASE = 1 << 40
#: Spacing of the weather lattice (deg).
WEATHER_NODE_SPACING = 10.0
DEFAULT_RECORD_SECONDS = 21600.0  # 6-hourly, as the study's forcing


@dataclass(frozen=True)
class PerturbationSpec:
    """Member perturbations (see the module docstring for sources). ``enabled=False``: all members equal."""

    enabled: bool = True
    precip_sd: float = 0.5  # s.d. of the mean-1 lognormal multiplier of PRECTmms (fraction)
    sw_sd: float = 0.3  # s.d. of the mean-1 lognormal multiplier of FSDS (fraction)
    lw_sd: float = 20.0  # W/m2, additive FLDS
    t_sd: float = 1.0  # K, additive TBOT
    tcorr: float = 86400.0  # s, AR(1) e-folding time
    max_p: float = 3.0  # truncation of the standard-normal deviates
    max_sw: float = 3.0
    max_lw: float = 2.5
    max_t: float = 2.5
    lw_min_emissivity: float = 0.5  # floor of perturbed FLDS as a fraction of sigma T^4
    # cross-correlation of (P, SW, LW, T)
    correlation: tuple = ((1.0, -0.8, 0.5, 0.0),
                          (-0.8, 1.0, -0.5, 0.4),
                          (0.5, -0.5, 1.0, 0.4),
                          (0.0, 0.4, 0.4, 1.0))

    def lognormal(self, sd):
        """(mu, sigma) of log X for X lognormal with mean 1 and standard deviation ``sd``."""
        s2 = math.log1p(sd * sd)
        return -0.5 * s2, math.sqrt(s2)

    def cholesky(self) -> np.ndarray:
        c = np.asarray(self.correlation, dtype=np.float64)
        if c.shape != (4, 4) or not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0):
            raise ValueError(f"perturbation correlation must be a symmetric 4x4 matrix with unit diagonal, got {c}")
        try:
            return np.linalg.cholesky(c)
        except np.linalg.LinAlgError as exc:
            raise ValueError(f"perturbation correlation is not positive definite: {c}") from exc

    def params(self, dt_rec: float) -> kf.PerturbParams:
        phi = math.exp(-dt_rec / self.tcorr)
        mu_p, sg_p = self.lognormal(self.precip_sd)
        mu_sw, sg_sw = self.lognormal(self.sw_sd)
        return kf.PerturbParams(phi, math.sqrt(1.0 - phi * phi), mu_p, sg_p, mu_sw, sg_sw,
                                float(self.lw_sd), float(self.t_sd), float(self.max_p), float(self.max_sw),
                                float(self.max_lw), float(self.max_t), float(self.lw_min_emissivity))


@dataclass(frozen=True)
class WeatherSpec:
    """Member-independent weather parameters (sources in the module docstring)."""

    tau_t: float = 3.0 * 86400.0  # s, synoptic temperature anomaly e-folding time
    tau_p: float = 0.5 * 86400.0  # s, precipitation/cloud latent process
    tau_w: float = 1.5 * 86400.0  # s, wind
    wind_mean: float = 3.5  # m/s
    wind_diurnal: float = 0.2  # relative amplitude
    clear_a: float = 0.75  # FAO-56 eq. 37 clear-sky transmission at sea level
    clear_b: float = 2e-5  # per m of elevation
    cloud_k: float = 0.75  # Kasten & Czeplak (1980)
    cloud_c: float = 3.4
    cloud_slope: float = 1.7
    cloud_shift: float = 1.0
    rh_cloud_max: float = 0.98

    def params(self, dt_rec: float) -> kf.WeatherParams:
        pt, pp_, pw = (math.exp(-dt_rec / tau) for tau in (self.tau_t, self.tau_p, self.tau_w))
        scale = self.wind_mean / math.gamma(1.5)  # Weibull k=2: mean = scale * Gamma(1 + 1/2)
        return kf.WeatherParams(float(dt_rec), pt, math.sqrt(1 - pt * pt), pp_, math.sqrt(1 - pp_ * pp_),
                                pw, math.sqrt(1 - pw * pw), scale, self.wind_diurnal, self.clear_a,
                                self.clear_b, self.cloud_k, self.cloud_c, self.cloud_slope,
                                self.cloud_shift, self.rh_cloud_max)


DEFAULT_PERTURBATIONS = PerturbationSpec()
DEFAULT_WEATHER = WeatherSpec()


@dataclass(frozen=True)
class ForcingRecords:
    """Forcing records ``k0 .. k0 + n - 1``, ``dt`` seconds apart.

    values[r, f, c, m]: field f (RECORD_FIELDS, units RECORD_UNITS) of cell c and member m at
    record k0 + r. t0: time of record k0 in seconds since 1 January 00 UTC (noleap), which fixes the
    solar geometry of the coszen interpolation.
    """

    k0: int
    dt: float
    t0: float
    values: np.ndarray

    def field(self, name: str) -> np.ndarray:
        """(record, cell, member) view of one field."""
        try:
            return self.values[:, RECORD_FIELDS.index(name)]
        except ValueError:
            raise KeyError(f"unknown forcing field {name!r}; fields are {RECORD_FIELDS}") from None


# ----------------------------------------------------------------------------------------------
# Per-cell inputs of the generator
# ----------------------------------------------------------------------------------------------
def weather_node_stencil(lat_deg, lon_deg, spacing=WEATHER_NODE_SPACING):
    """Keys (n, 4) int64 and weights (n, 4) of the weather-lattice nodes around each point.

    Bilinear weights, rescaled so that the sum of their squares is 1 (a blend of independent
    unit-variance node processes then has unit variance).
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    lon = np.asarray(lon_deg, dtype=np.float64) % 360.0
    ny = int(round(180.0 / spacing))
    nx = int(round(360.0 / spacing))
    y = (lat + 90.0) / spacing
    iy = np.clip(np.floor(y).astype(np.int64), 0, ny - 1)
    wy = np.clip(y - iy, 0.0, 1.0)
    x = lon / spacing
    ix = np.floor(x).astype(np.int64) % nx
    wx = x - np.floor(x)
    ix1 = (ix + 1) % nx
    keys = np.stack([iy * nx + ix, iy * nx + ix1, (iy + 1) * nx + ix, (iy + 1) * nx + ix1], axis=1)
    w = np.stack([(1 - wy) * (1 - wx), (1 - wy) * wx, wy * (1 - wx), wy * wx], axis=1)
    w /= np.sqrt((w * w).sum(axis=1, keepdims=True))
    return (keys + NODE_KEY_BASE).astype(np.int64), w


_NORMAL = NormalDist()
_inv_cdf = np.frompyfunc(_NORMAL.inv_cdf, 1, 1)


def _cell_inputs(lat_deg, lon_deg, t2m, precip, dt_rec):
    """Per-cell, per-month generator inputs from the monthly climatology (see module docstring)."""
    w_inv = np.linalg.inv(kf.monthly_interp_matrix(dt_rec))
    # nodes = W^-1 means, summed term by term in a fixed order (elementwise, so a cell's nodes do not
    # depend on how many cells are solved together, unlike a BLAS/LAPACK multi-RHS solve)
    t_nodes = np.zeros_like(t2m)
    for j in range(12):
        t_nodes += t2m[:, j:j + 1] * w_inv[None, :, j]
    p_day = precip * 86400.0
    f_wet = np.clip(0.5 * (1.0 - np.exp(-p_day / 4.0)), 1e-3, 0.5)
    q = np.asarray(_inv_cdf(1.0 - f_wet), dtype=np.float64).reshape(f_wet.shape)
    pdf = np.exp(-0.5 * q * q) / math.sqrt(2.0 * math.pi)
    tail = 0.5 * np.vectorize(math.erfc, otypes=[np.float64])(q / math.sqrt(2.0))
    p_norm = pdf - q * tail  # E[(z - q)+] for z ~ N(0, 1)
    rh_base = 0.30 + 0.50 * (1.0 - np.exp(-p_day / 3.0))
    # daylight factor of the diurnal range: daily mean cos z on the 15th of each month
    lat_r, lon_r = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    day_cosz = np.empty((lat_deg.size, 12))
    for m in range(12):
        t_mid = (kf.MONTH_START_DAY[m] + 14) * kf.SECONDS_PER_DAY
        decl, _ = kf.orbit(t_mid + 43200.0)
        for c in range(lat_deg.size):
            day_cosz[c, m] = kf.mean_cosz(lat_r[c], lon_r[c], t_mid, t_mid + 86400.0, decl)
    dtr = (6.0 + 9.0 * np.exp(-p_day / 2.5)) * np.clip(day_cosz / 0.3, 0.15, 1.0)
    sigma_t = 1.0 + 3.0 * np.sin(lat_r) ** 2
    return dict(t_nodes=t_nodes, p_rate=np.ascontiguousarray(precip, dtype=np.float64),
                p_thresh=np.ascontiguousarray(q), p_norm=np.ascontiguousarray(p_norm),
                rh_base=np.ascontiguousarray(rh_base), dtr=np.ascontiguousarray(dtr), sigma_t=sigma_t)


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------
class ForcingGenerator:
    """Ensemble forcing records for a set of land cells, anchored on the ERA5 monthly climatology.

    Parameters
    ----------
    lat, lon : (ncell,) degrees. cell_id : (ncell,) int64 global cell ids (stream keys; >= 0).
    elev : (ncell,) m, optional; default ETOPO5 sampled like the climatology.
    n_members : ensemble size (members 0..N-1), or ``members`` : explicit member ids (>= 0).
    seed : non-negative int. perturbations : PerturbationSpec (``perturb=False`` switches them off).
    climatology : PointClimatology for these cells (default: read ERA5/ETOPO5 with ``method`` and
      ``half_width``, see engine.climatology).
    dt_record : record spacing in s (default 21600; must divide 86400).
    """

    def __init__(self, lat, lon, cell_id, *, elev=None, n_members=40, members=None, seed=0,
                 perturb=True, perturbations: PerturbationSpec = DEFAULT_PERTURBATIONS,
                 weather: WeatherSpec = DEFAULT_WEATHER, climatology: PointClimatology | None = None,
                 method="bilinear", half_width=None, dt_record=DEFAULT_RECORD_SECONDS):
        self.lat = np.ascontiguousarray(lat, dtype=np.float64).reshape(-1)
        self.lon = np.ascontiguousarray(lon, dtype=np.float64).reshape(-1)
        self.cell_id = np.ascontiguousarray(cell_id, dtype=np.int64).reshape(-1)
        n = self.lat.size
        if self.lon.size != n or self.cell_id.size != n:
            raise ValueError(f"lat, lon and cell_id must have equal length, got {self.lat.size}, "
                             f"{self.lon.size}, {self.cell_id.size}")
        if n and (self.cell_id.min() < 0 or self.cell_id.max() >= NODE_KEY_BASE):
            raise ValueError(f"cell_id must lie in [0, 2**40), got {self.cell_id.min()}..{self.cell_id.max()}")
        if np.any(np.abs(self.lat) > 90):
            raise ValueError("lat must lie in [-90, 90] degrees")
        if members is None:
            members = np.arange(int(n_members), dtype=np.int64)
        self.members = np.ascontiguousarray(members, dtype=np.int64).reshape(-1)
        if self.members.size < 1 or self.members.min() < 0 or self.members.max() >= BASE_MEMBER:
            raise ValueError(f"member ids must be in [0, 2**32), got {self.members}")
        if int(seed) < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed = int(seed)
        dt_record = float(dt_record)
        if dt_record <= 0 or 86400.0 % dt_record != 0:
            raise ValueError(f"dt_record must divide 86400 s, got {dt_record}")
        self.dt_record = dt_record
        self.perturbations = perturbations if perturb else replace(perturbations, enabled=False)
        self.weather = weather
        if climatology is None:
            climatology = point_climatology(self.lat, self.lon, method=method, half_width=half_width)
        if climatology.t2m.shape != (n, 12) or climatology.precip.shape != (n, 12):
            raise ValueError(f"climatology must hold (ncell, 12) = ({n}, 12) monthly values, got "
                             f"{climatology.t2m.shape} and {climatology.precip.shape}")
        self.climatology = climatology
        self.elev = np.ascontiguousarray(climatology.elev if elev is None else elev, dtype=np.float64).reshape(-1)
        if self.elev.size != n:
            raise ValueError(f"elev must have {n} values, got {self.elev.size}")
        self._in = _cell_inputs(self.lat, self.lon, np.asarray(climatology.t2m, np.float64),
                                np.asarray(climatology.precip, np.float64), dt_record)
        self._node_keys, self._node_w = weather_node_stencil(self.lat, self.lon)
        self._lat_r = np.deg2rad(self.lat)
        self._lon_r = np.deg2rad(self.lon)
        self._wp = weather.params(dt_record)
        self._pp = self.perturbations.params(dt_record)
        self._chol = self.perturbations.cholesky()
        self._reset()

    # -- state -----------------------------------------------------------------------------------
    def _reset(self):
        n, m = self.lat.size, self.members.size
        self._base_state = np.zeros((n, 4, 3))
        self._member_state = np.zeros((n, m, 4))
        self._k_next = 0  # the states are valid for record k_next - 1
        self._last = None  # (k, values of record k) of the last record produced

    def state(self) -> dict:
        """The AR(1) state (copies) after the last generated record, for restart files."""
        return {"k_next": self._k_next, "base_state": self._base_state.copy(),
                "member_state": self._member_state.copy()}

    def set_state(self, state: dict) -> None:
        base = np.asarray(state["base_state"], dtype=np.float64)
        mem = np.asarray(state["member_state"], dtype=np.float64)
        if base.shape != self._base_state.shape or mem.shape != self._member_state.shape:
            raise ValueError(f"forcing state shapes {base.shape}, {mem.shape} do not match this generator "
                             f"({self._base_state.shape}, {self._member_state.shape})")
        self._base_state = base.copy()
        self._member_state = mem.copy()
        self._k_next = int(state["k_next"])
        self._last = None

    @property
    def perturb(self) -> bool:
        return bool(self.perturbations.enabled)

    def _advance_to(self, k):
        if k < self._k_next:
            self._reset()
        if k > self._k_next:
            kf.advance_state(self._k_next, k, self.seed, self.members, BASE_MEMBER, self.perturb,
                             self.cell_id, self._node_keys, self._wp, self._pp,
                             self._base_state, self._member_state)
            self._k_next = k

    # -- records ---------------------------------------------------------------------------------
    def records(self, k0: int, nrec: int) -> ForcingRecords:
        """Records k0 .. k0+nrec-1 (record k at k * dt_record seconds after 1 Jan 00 UTC of year 1)."""
        k0, nrec = int(k0), int(nrec)
        if k0 < 0 or nrec < 1:
            raise ValueError(f"records: need k0 >= 0 and nrec >= 1, got k0={k0}, nrec={nrec}")
        out = np.empty((nrec, len(RECORD_FIELDS), self.lat.size, self.members.size))
        start = k0
        if self._last is not None and self._last[0] == k0 and self._k_next == k0 + 1:
            out[0] = self._last[1]
            start = k0 + 1
        self._advance_to(start)
        if k0 + nrec > start:
            i = self._in
            kf.generate_records(start, k0 + nrec - start, self.seed, self.members, BASE_MEMBER, self.perturb,
                                self.cell_id, self._lat_r, self._lon_r, self.elev, i["sigma_t"], i["t_nodes"],
                                i["p_rate"], i["p_thresh"], i["p_norm"], i["rh_base"], i["dtr"],
                                self._node_keys, self._node_w, self._wp, self._pp, self._chol,
                                self._base_state, self._member_state, out[start - k0:])
            self._k_next = k0 + nrec
        self._last = (k0 + nrec - 1, out[-1].copy())
        t0 = (k0 * self.dt_record) % kf.SECONDS_PER_YEAR
        return ForcingRecords(k0, self.dt_record, t0, out)

    def deviates(self, k0: int, nrec: int) -> np.ndarray:
        """The correlated, truncated standard-normal perturbation deviates (P, SW, LW, T) of records
        k0.., shape (record, cell, member, 4), from the same streams (diagnostics; recomputed from
        record 0, does not touch the generator's state)."""
        state = np.zeros((self.lat.size, self.members.size, 4))
        scratch = np.empty((k0, self.lat.size, self.members.size, 4)) if k0 else None
        if k0:
            kf.perturbation_deviates(0, k0, self.seed, self.members, self.cell_id, self._pp, self._chol,
                                     state, scratch)
        out = np.empty((nrec, self.lat.size, self.members.size, 4))
        kf.perturbation_deviates(k0, nrec, self.seed, self.members, self.cell_id, self._pp, self._chol,
                                 state, out)
        return out


# ----------------------------------------------------------------------------------------------
# Records -> model steps
# ----------------------------------------------------------------------------------------------
def _nsub(dt_rec, dt_step):
    nsub = dt_rec / dt_step
    if dt_step <= 0 or abs(nsub - round(nsub)) > 1e-9:
        raise ValueError(f"the model step {dt_step} s must divide the forcing interval {dt_rec} s")
    return int(round(nsub))


def records_to_steps(records: ForcingRecords, lat, lon, dt_step=1800.0) -> np.ndarray:
    """Model-step forcing (step, STEP_FIELDS, cell, member) for the (nrec - 1) record intervals.

    Step s starts at record time t0 + s dt_step; see kernels.forcing.records_to_steps for the
    datm-style interpolation (linear / coszen / constant precipitation with the rain-snow ramp).
    lat, lon in degrees, one per cell.
    """
    rec = np.ascontiguousarray(records.values)
    if rec.shape[0] < 2:
        raise ValueError("records_to_steps needs at least 2 records (the bracketing record of the last interval)")
    lat = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon, dtype=np.float64))
    if lat.shape != (rec.shape[2],) or lon.shape != lat.shape:
        raise ValueError(f"lat/lon must have one value per cell ({rec.shape[2]}), got {lat.shape}, {lon.shape}")
    nsub = _nsub(records.dt, float(dt_step))
    out = np.empty(((rec.shape[0] - 1) * nsub, len(STEP_FIELDS), rec.shape[2], rec.shape[3]))
    kf.records_to_steps(rec, float(records.t0), float(records.dt), nsub, lat, lon, out)
    return out


def toa_at_steps(records: ForcingRecords, lat, lon, dt_step=1800.0) -> np.ndarray:
    """Top-of-atmosphere shortwave (W/m2) of each model step (step, cell), same geometry as records_to_steps."""
    nsub = _nsub(records.dt, float(dt_step))
    nint = records.values.shape[0] - 1
    lat = np.deg2rad(np.asarray(lat, dtype=np.float64))
    lon = np.deg2rad(np.asarray(lon, dtype=np.float64))
    out = np.empty((nint * nsub, lat.size))
    kf.toa_at_steps(float(records.t0), float(records.dt), nsub, nint, lat, lon, out)
    return out


def iter_model_steps(source, lat, lon, first_step: int, nsteps: int, dt_step=1800.0, block: int = 4):
    """Yield (step index, (STEP_FIELDS, cell, member) array) for model steps first_step ..

    ``source`` is a ForcingGenerator or DatmReader (anything with ``dt_record`` and
    ``records(k0, n)``); step j starts j * dt_step after the source's record 0. Records are fetched
    ``block`` intervals at a time, so memory stays at (block + 1) records.
    """
    nsub = _nsub(source.dt_record, float(dt_step))
    if first_step < 0 or nsteps < 0:
        raise ValueError(f"first_step and nsteps must be >= 0, got {first_step}, {nsteps}")
    end = first_step + nsteps
    a = first_step // nsub
    while a * nsub < end:
        nb = min(block, -(-(end - a * nsub) // nsub))
        steps = records_to_steps(source.records(a, nb + 1), lat, lon, dt_step)
        for i in range(steps.shape[0]):
            j = a * nsub + i
            if first_step <= j < end:
                yield j, steps[i]
        a += nb


# ----------------------------------------------------------------------------------------------
# Reader of CLM datm-style netCDF forcing
# ----------------------------------------------------------------------------------------------
_UNITS = {
    "TBOT": {"k", "kelvin"},
    "QBOT": {"kg/kg", "kgkg-1", "1"},
    "PSRF": {"pa"},
    "WIND": {"m/s", "ms-1"},
    "FSDS": {"w/m2", "wm-2"},
    "FLDS": {"w/m2", "wm-2"},
    "PRECTmms": {"mm/s", "mmh2o/sec", "mmh2o/s", "kg/m2/s", "kgm-2s-1", "mms-1"},
}
_MEMBER_DIMS = ("member", "ens", "ensemble", "realization")
_TIME_FACTORS = {"seconds": 1.0, "second": 1.0, "minutes": 60.0, "minute": 60.0, "hours": 3600.0,
                 "hour": 3600.0, "days": 86400.0, "day": 86400.0}


def _norm_units(u: str) -> str:
    return u.lower().replace(" ", "").replace("**", "").replace("^", "")


def _coord_axes(ds, path):
    """1-D latitude and longitude axes and their dimension names (lat/lon, or LATIXY/LONGXY 2-D)."""
    for la, lo in (("lat", "lon"), ("latitude", "longitude"), ("LATIXY", "LONGXY")):
        if la in ds.variables and lo in ds.variables:
            vla, vlo = ds[la], ds[lo]
            if vla.ndim == 1 and vlo.ndim == 1:
                return np.asarray(vla[:], np.float64), np.asarray(vlo[:], np.float64), vla.dimensions[0], vlo.dimensions[0]
            if vla.ndim == 2 and vlo.ndim == 2 and vla.dimensions == vlo.dimensions:
                a, b = np.asarray(vla[:], np.float64), np.asarray(vlo[:], np.float64)
                if not (np.allclose(a, a[:, :1]) and np.allclose(b, b[:1, :])):
                    raise ValueError(f"{path}: {la}/{lo} do not describe a regular lat/lon grid (grid mismatch)")
                return a[:, 0], b[0, :], vla.dimensions[0], vla.dimensions[1]
    raise KeyError(f"{path}: no latitude/longitude coordinates (expected lat/lon, latitude/longitude or "
                   "LATIXY/LONGXY)")


def _time_axis(ds, path):
    """Seconds since the first record, the record spacing, and the first record's time of year."""
    import netCDF4

    if "time" not in ds.variables:
        raise KeyError(f"{path}: variable 'time' missing (CF time coordinate required)")
    tv = ds["time"]
    units = tv.getncattr("units") if "units" in tv.ncattrs() else None
    if units is None or " since " not in units:
        raise ValueError(f"{path}: variable 'time' needs CF units '<unit> since <date>', got {units!r}")
    step_unit = units.split(" since ")[0].strip().lower()
    if step_unit not in _TIME_FACTORS:
        raise ValueError(f"{path}: variable 'time' has unsupported unit {step_unit!r} in {units!r}")
    calendar = tv.getncattr("calendar") if "calendar" in tv.ncattrs() else "standard"
    t = np.asarray(tv[:], dtype=np.float64)
    if t.size < 2:
        raise ValueError(f"{path}: variable 'time' needs at least 2 records, got {t.size}")
    secs = (t - t[0]) * _TIME_FACTORS[step_unit]
    d = np.diff(secs)
    dt = float(d[0])
    if dt <= 0 or dt > 21600.0 + 1e-6 or abs(86400.0 / dt - round(86400.0 / dt)) > 1e-9:
        raise ValueError(f"{path}: variable 'time' has spacing {dt} s; datm forcing must be 6-hourly or "
                         "finer with a spacing that divides one day")
    bad = np.flatnonzero(np.abs(d - dt) > 1e-3)
    if bad.size:
        i = int(bad[0])
        dates = netCDF4.num2date(t[[i, i + 1]], units, calendar)
        raise ValueError(f"{path}: variable 'time' has a gap or irregular step between record {i} ({dates[0]}) "
                         f"and record {i + 1} ({dates[1]}): {d[i]} s instead of {dt} s")
    first = netCDF4.num2date(t[0], units, calendar)
    t_year = ((first.timetuple().tm_yday - 1) * 86400.0 + first.hour * 3600.0 + first.minute * 60.0
              + first.second)
    return secs, dt, t_year, f"{units} ({calendar})"


class DatmReader:
    """Forcing records from CLM datm-style netCDF files, bilinearly interpolated to points.

    ``paths``: one file holding a member dimension (named one of member/ens/ensemble/realization),
    or a list of files, one per member (or a single file without a member dimension: 1 member).
    Each file: variables TBOT, QBOT, PSRF, WIND, FSDS, FLDS, PRECTmms with units attributes
    (checked), dimensions (time, [member,] lat, lon) in any order, a CF ``time`` (6-hourly or finer,
    no gaps) and a regular lat/lon grid (1-D lat/lon or CLM's 2-D LATIXY/LONGXY). State variables are
    taken as instantaneous at the time stamps, FSDS and PRECTmms as means over the following interval.
    Record k is the file's k-th time. Only the rows (latitude band) the points need are read, and only
    the requested records. Errors name the file and variable.
    """

    def __init__(self, paths, lat, lon):
        import netCDF4

        if isinstance(paths, (str, Path)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("DatmReader needs at least one file")
        self.lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        self.lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        self.fields = RECORD_FIELDS
        self._files = []  # per file: dict(path, member_dim, nmem, dims per var)
        grid0 = time0 = None
        for p in self.paths:
            if not p.is_file():
                raise FileNotFoundError(f"datm forcing file {p} not found")
            with netCDF4.Dataset(p) as ds:
                la, lo, ydim, xdim = _coord_axes(ds, p)
                grid = RegularGrid(la, lo, where=str(p))
                secs, dt, t_year, tdesc = _time_axis(ds, p)
                if grid0 is None:
                    grid0, time0 = grid, (secs, dt, t_year, p)
                else:
                    if not grid.same_as(grid0):
                        raise ValueError(f"grid mismatch: {p} has a {grid.nlat}x{grid.nlon} grid different from "
                                         f"{time0[3]} ({grid0.nlat}x{grid0.nlon})")
                    if secs.size != time0[0].size or dt != time0[1] or abs(t_year - time0[2]) > 1e-6:
                        raise ValueError(f"time mismatch: {p} has {secs.size} records every {dt} s from "
                                         f"t_year {t_year}, {time0[3]} has {time0[0].size} every {time0[1]} s "
                                         f"from {time0[2]}")
                info = {"path": p, "dims": {}, "member_dim": None, "nmem": 1}
                tdim = ds["time"].dimensions[0]
                for name in self.fields:
                    if name not in ds.variables:
                        raise KeyError(f"{p}: forcing variable {name!r} missing (datm needs {', '.join(self.fields)})")
                    v = ds[name]
                    units = v.getncattr("units") if "units" in v.ncattrs() else None
                    if units is None or _norm_units(units) not in _UNITS[name]:
                        raise ValueError(f"{p}: variable {name!r} has units {units!r}; expected one of "
                                         f"{sorted(_UNITS[name])} ({RECORD_UNITS[RECORD_FIELDS.index(name)]})")
                    dims = v.dimensions
                    extra = [d for d in dims if d not in (tdim, ydim, xdim)]
                    if tdim not in dims or ydim not in dims or xdim not in dims or len(extra) > 1 or (
                            extra and extra[0] not in _MEMBER_DIMS):
                        raise ValueError(f"{p}: variable {name!r} has dimensions {dims}; expected ({tdim}, "
                                         f"[member,] {ydim}, {xdim}) (grid mismatch)")
                    if extra:
                        if info["member_dim"] not in (None, extra[0]):
                            raise ValueError(f"{p}: variables use different member dimensions")
                        info["member_dim"] = extra[0]
                        info["nmem"] = len(ds.dimensions[extra[0]])
                    elif info["member_dim"] is not None:
                        raise ValueError(f"{p}: variable {name!r} lacks the member dimension {info['member_dim']!r}")
                    info["dims"][name] = (dims.index(tdim), dims.index(ydim), dims.index(xdim),
                                          dims.index(extra[0]) if extra else None)
                self._files.append(info)
        self.grid = grid0
        self._secs, self.dt_record, self._t_year = time0[0], time0[1], time0[2]
        self.n_records = self._secs.size
        self.n_members = sum(f["nmem"] for f in self._files)
        self._rows, self._cols, self._w = grid0.bilinear(self.lat, self.lon)
        self._r0 = int(self._rows.min()) if self.lat.size else 0
        self._r1 = int(self._rows.max()) + 1 if self.lat.size else 0

    def records(self, k0: int, nrec: int) -> ForcingRecords:
        """Records k0 .. k0+nrec-1 of the files, at the points: values (record, field, cell, member)."""
        import netCDF4

        k0, nrec = int(k0), int(nrec)
        if k0 < 0 or nrec < 1 or k0 + nrec > self.n_records:
            raise ValueError(f"{self.paths[0]}: records {k0}..{k0 + nrec - 1} requested, the files hold "
                             f"0..{self.n_records - 1}")
        out = np.empty((nrec, len(RECORD_FIELDS), self.lat.size, self.n_members))
        if self.lat.size == 0:  # a rank without cells reads nothing
            return ForcingRecords(k0, self.dt_record, (self._t_year + k0 * self.dt_record) % kf.SECONDS_PER_YEAR, out)
        rr = self._rows - self._r0
        m0 = 0
        for info in self._files:
            with netCDF4.Dataset(info["path"]) as ds:
                for name in self.fields:
                    v = ds[name]
                    v.set_auto_mask(True)
                    it, iy, ix, im = info["dims"][name]
                    idx = [slice(None)] * v.ndim
                    idx[it] = slice(k0, k0 + nrec)
                    idx[iy] = slice(self._r0, self._r1)
                    a = v[tuple(idx)]
                    if np.ma.count_masked(a) or not np.all(np.isfinite(np.ma.getdata(a))):
                        raise ValueError(f"{info['path']}: variable {name!r} has missing or non-finite values in "
                                         f"records {k0}..{k0 + nrec - 1}, rows {self._r0}..{self._r1 - 1}")
                    a = np.asarray(a, dtype=np.float64)
                    order = [it] + ([im] if im is not None else []) + [iy, ix]
                    a = np.transpose(a, order)  # (time, [member,] row, col)
                    if im is None:
                        a = a[:, None]
                    val = np.zeros((nrec, a.shape[1], self.lat.size))
                    for p_ in range(2):
                        for q_ in range(2):
                            val += a[:, :, rr[:, p_], self._cols[:, q_]] * self._w[:, p_, q_]
                    out[:, RECORD_FIELDS.index(name), :, m0:m0 + a.shape[1]] = np.transpose(val, (0, 2, 1))
            m0 += info["nmem"]
        t0 = (self._t_year + k0 * self.dt_record) % kf.SECONDS_PER_YEAR
        return ForcingRecords(k0, self.dt_record, t0, out)



# ----------------------------------------------------------------------------------------------
# Annual-mean maps of the generated ensemble forcing (``laida forcing``)
# ----------------------------------------------------------------------------------------------
#: Seconds of the 365-day (noleap) year the precipitation maps are expressed per.
_SECONDS_PER_YEAR = kf.SECONDS_PER_YEAR
#: Variables of the maps: (name, record field, scale, offset, netCDF units, label units, long name,
#: CF standard name). map value = scale * (mean of the record field) + offset. The ensemble spread
#: ``<name>_spread`` exists for every name whose offset is 0 (TBOT_degC's spread is TBOT_spread).
MAP_VARIABLES = (
    ("TBOT", "TBOT", 1.0, 0.0, "K", "K", "air temperature at the forcing height", "air_temperature"),
    ("TBOT_degC", "TBOT", 1.0, -kf.TFRZ, "degC", "degC", "air temperature at the forcing height",
     "air_temperature"),
    ("PRECT", "PRECTmms", _SECONDS_PER_YEAR, 0.0, "mm year-1", "mm/yr",
     "total precipitation (per 365-day year)", ""),
    ("FSDS", "FSDS", 1.0, 0.0, "W m-2", "W/m2", "incident (downwelling) shortwave radiation",
     "surface_downwelling_shortwave_flux_in_air"),
    ("FLDS", "FLDS", 1.0, 0.0, "W m-2", "W/m2", "incident (downwelling) longwave radiation",
     "surface_downwelling_longwave_flux_in_air"),
    ("QBOT", "QBOT", 1.0, 0.0, "kg kg-1", "kg/kg", "specific humidity at the forcing height", "specific_humidity"),
    ("WIND", "WIND", 1.0, 0.0, "m s-1", "m/s", "wind speed at the forcing height", "wind_speed"),
    ("PSRF", "PSRF", 1.0, 0.0, "Pa", "Pa", "surface air pressure", "surface_air_pressure"),
)
_MAP_INFO = {v[0]: v for v in MAP_VARIABLES}
#: ERA5 annual means at the cells written beside the generated ones (name, map variable they match).
CLIMATOLOGY_VARIABLES = (("TBOT_clim", "TBOT"), ("PRECT_clim", "PRECT"))
#: Record memory per block of annual_means (bytes): the block length is chosen to stay under it.
ANNUAL_BLOCK_BYTES = 64 * 2**20
#: Batches of the year (18.25 days each for 6-hourly records, far longer than the generator's 0.5-3 d
#: correlation times) for the batch-means standard error of the annual-mean precipitation.
MAP_BATCHES = 20


def annual_means(source, nrec: int, *, k0: int = 0, block: int | None = None, batches: int = 0) -> dict:
    """Time and ensemble means of records ``k0 .. k0 + nrec - 1`` of ``source``, streamed in blocks.

    ``source``: a ForcingGenerator or DatmReader (anything with ``records(k0, n)``). Records are
    fetched ``block`` at a time (default: as many as fit in ANNUAL_BLOCK_BYTES, at least 1), so
    memory stays at one block plus (field, cell, member) accumulators. Returns, per field f of
    RECORD_FIELDS (units RECORD_UNITS), ``out[f]``: (cell,) mean over the records and the members,
    and, with at least 2 members, ``out[f + "_spread"]``: (cell,) mean over the records of the
    ensemble standard deviation (ddof = 1) across members at each record, i.e. the typical size of
    the member perturbations. With ``batches`` = B > 0, also ``out[f + "_batches"]``: (B, cell)
    ensemble means over B consecutive batches of the records (record i of the span in batch
    i * B // nrec), for batch-means estimates of the sampling error of the annual mean. All sums are
    element-wise in a fixed order (record by record, then member by member), so the result for a
    cell does not depend on the block length, on the other cells of the call or on the rank
    computing it (bit for bit).
    """
    k0, nrec = int(k0), int(nrec)
    if k0 < 0 or nrec < 1:
        raise ValueError(f"annual_means: need k0 >= 0 and nrec >= 1, got k0={k0}, nrec={nrec}")
    if block is not None and int(block) < 1:
        raise ValueError(f"annual_means: block must be >= 1 record, got {block}")
    batches = int(batches)
    if not 0 <= batches <= nrec:
        raise ValueError(f"annual_means: batches must lie in [0, nrec = {nrec}], got {batches}")
    first = source.records(k0, 1).values  # its shape sets the accumulators and the default block
    _, nfield, ncell, nmem = first.shape
    if block is None:
        per_record = max(1, nfield * ncell * nmem * first.itemsize)
        block = int(min(max(1, ANNUAL_BLOCK_BYTES // per_record), nrec))
    block = int(block)
    acc = np.zeros((nfield, ncell, nmem))  # sum over records, per member
    spread = np.zeros((nfield, ncell)) if nmem >= 2 else None
    bsum = np.zeros((batches, nfield, ncell))  # per batch: sum over its records of the ensemble mean
    bcount = np.zeros(batches)

    def add(vals, i0):
        for r in range(vals.shape[0]):
            acc[...] += vals[r]
        if spread is None and not batches:
            return
        mean = vals[..., 0].copy()
        for m in range(1, nmem):
            mean += vals[..., m]
        mean /= nmem
        for r in range(mean.shape[0] if batches else 0):
            b = (i0 + r) * batches // nrec
            bsum[b] += mean[r]
            bcount[b] += 1.0
        if spread is not None:
            ss = np.zeros_like(mean)
            for m in range(nmem):
                d = vals[..., m] - mean
                ss += d * d
            sd = np.sqrt(ss / (nmem - 1))
            for r in range(sd.shape[0]):
                spread[...] += sd[r]

    add(first, 0)
    k = k0 + 1
    while k < k0 + nrec:
        nb = min(block, k0 + nrec - k)
        add(source.records(k, nb).values, k - k0)
        k += nb
    total = acc[..., 0].copy()
    for m in range(1, nmem):
        total += acc[..., m]
    total /= float(nrec * nmem)
    out = {}
    for i, name in enumerate(RECORD_FIELDS):
        out[name] = total[i].copy()
        if spread is not None:
            out[name + "_spread"] = spread[i] / float(nrec)
        if batches:
            out[name + "_batches"] = bsum[:, i] / bcount[:, None]
    return out


def climatology_annual_means(clim: PointClimatology) -> dict:
    """Annual means of the source climatology at its cells, in map units: ``TBOT_clim`` (K) and
    ``PRECT_clim`` (mm per 365-day year): the noleap month-length-weighted means of the ERA5
    monthly t2m and precipitation, the values the generator's annual means are anchored on (its
    6-hourly records are uniform in time and each month's record mean reproduces the month's mean)."""
    w = kf.MONTH_DAYS.astype(np.float64) / float(kf.DAYS_PER_YEAR)
    t = np.asarray(clim.t2m, dtype=np.float64)
    p = np.asarray(clim.precip, dtype=np.float64)
    t_ann = np.zeros(t.shape[0])
    p_ann = np.zeros(p.shape[0])
    for m in range(12):  # fixed order, element-wise per cell
        t_ann += w[m] * t[:, m]
        p_ann += w[m] * p[:, m]
    return {"TBOT_clim": t_ann, "PRECT_clim": p_ann * _SECONDS_PER_YEAR}


def _map_values(means: dict) -> dict:
    """annual_means output (record units) -> map variables (MAP_VARIABLES units), with spreads."""
    out = {}
    for name, field, scale, offset, *_ in MAP_VARIABLES:
        out[name] = means[field] * scale + offset if offset else means[field] * scale
        if offset == 0.0 and field + "_spread" in means:
            out[name + "_spread"] = means[field + "_spread"] * scale
    return out


def grid_half_width(grid) -> tuple[float, float]:
    """Half the cell size (deg) of ``grid``'s parent global grid, for the climatology's ``"area"``
    sampling (the cell climate engine.surface uses too)."""
    from engine.grid import GRIDS

    nlat, nlon, _ = GRIDS[grid.name]
    return 90.0 / (nlat - 1), 180.0 / nlon


@dataclass(frozen=True, eq=False)
class ForcingMaps:
    """Annual-mean maps of the generated ensemble forcing on the land cells of ``grid``.

    values[name]: (n_land,) float64 in the global land order, names from MAP_VARIABLES (ensemble
    and time means), ``<name>_spread`` (time mean of the ensemble standard deviation) and
    CLIMATOLOGY_VARIABLES (ERA5 annual means at the same cells). settings: the generator's settings
    and the record span (netCDF attributes). provenance: the sources of the climatology.
    batch_anomalies["PRECT"]: (n_land, MAP_BATCHES) batch means of generated minus expected
    precipitation (mm/yr) for :func:`land_mean_standard_error`.
    """

    grid: object
    values: dict
    settings: dict
    provenance: str
    batch_anomalies: dict


def forcing_maps(grid, *, members: int = 4, seed: int = 0, year: int = 2002, start_year: int | None = None,
                 block: int | None = None, perturbations: PerturbationSpec = DEFAULT_PERTURBATIONS,
                 weather: WeatherSpec = DEFAULT_WEATHER, dt_record: float = DEFAULT_RECORD_SECONDS,
                 allgather: bool = False) -> ForcingMaps | None:
    """Collective: one year of the generated ensemble forcing on ``grid``'s land cells, as annual means.

    The land cells are split into contiguous blocks of equal cell count
    (``decompose(cell_weights(grid, "uniform"), comm.size())``); each rank builds a ForcingGenerator
    for its block (cell ids = ``grid.land_parent_index``, climatology sampled with method "area" over
    each cell, :func:`grid_half_width`) and streams the records of the year through
    :func:`annual_means`; the (cell, variable) results are gathered in the global land order to
    rank 0 (to every rank with ``allgather``). Record 0 of the generator is 1 January 00 UTC of
    ``start_year`` (default ``year``), so the year's records are ``k0 = (year - start_year) * R ..
    k0 + R - 1`` with R = 365 days / dt_record. The result does not depend on the rank count, bit
    for bit. Returns a ForcingMaps on rank 0 (every rank with ``allgather``), None elsewhere.
    """
    from engine import comm
    from engine.decomposition import cell_weights, decompose, local_block

    members, seed, year = int(members), int(seed), int(year)
    start_year = year if start_year is None else int(start_year)
    if members < 2:
        raise ValueError(f"forcing maps need at least 2 members for the ensemble spread, got {members}")
    if year < start_year:
        raise ValueError(f"year {year} lies before the run's first year {start_year}")
    nrec = int(round(_SECONDS_PER_YEAR / float(dt_record)))
    k0 = (year - start_year) * nrec
    decomp = decompose(cell_weights(grid, "uniform"), comm.size())
    s, n = local_block(decomp, comm.rank())
    half = grid_half_width(grid)
    gen = ForcingGenerator(grid.land_lat[s:s + n], grid.land_lon[s:s + n], grid.land_parent_index[s:s + n],
                           n_members=members, seed=seed, perturbations=perturbations, weather=weather,
                           method="area", half_width=half, dt_record=dt_record)
    local, anomaly = _local_maps(gen, nrec, k0, block)
    names = list(local)  # the same order on every rank
    full = comm.gather_array(np.stack([local[k] for k in names], axis=1), allgather=allgather)
    anomaly = comm.gather_array(anomaly, allgather=allgather)
    if full is None:
        return None
    values = {k: np.ascontiguousarray(full[:, i]) for i, k in enumerate(names)}
    settings = {
        "forcing_generator": "engine.forcing.ForcingGenerator (laida weather generator anchored on ERA5 "
                             "monthly means; see the engine/forcing.py module docstring)",
        "forcing_members": members, "forcing_seed": seed, "forcing_year": year, "forcing_start_year": start_year,
        "forcing_record_seconds": float(dt_record), "forcing_first_record": k0, "forcing_last_record": k0 + nrec - 1,
        "forcing_calendar": "noleap (record 0 = 1 January 00 UTC of forcing_start_year)",
        "forcing_climatology_sampling": f"area: cos(lat)-weighted mean of the source cells in each model cell "
                                        f"(half width {half[0]:.6g} x {half[1]:.6g} deg)",
        "forcing_perturbations": repr(perturbations), "forcing_weather": repr(weather),
        "forcing_spread": "time mean of the ensemble standard deviation (ddof=1) across members at each record",
        "forcing_ranks": comm.size(), "forcing_decomposition": "uniform cell weights, contiguous blocks",
    }
    return ForcingMaps(grid, values, settings, gen.climatology.sources, {"PRECT": anomaly})


def _local_maps(gen: ForcingGenerator, nrec: int, k0: int, block: int | None):
    """One rank's part of forcing_maps: map values of its cells and the (cell, MAP_BATCHES) batch
    means of generated minus expected precipitation (mm/yr). The expectation of every record is its
    month's climatological rate (E[P] = P_month), so a batch's expectation is the record-weighted
    mean of the monthly rates it spans (summed month by month, element-wise per cell)."""
    means = annual_means(gen, nrec, k0=k0, block=block, batches=MAP_BATCHES)
    local = _map_values(means)
    local.update(climatology_annual_means(gen.climatology))
    t = ((k0 + np.arange(nrec)) * gen.dt_record) % _SECONDS_PER_YEAR
    months = kf.DAY_TO_MONTH[(t // kf.SECONDS_PER_DAY).astype(np.int64)]
    share = np.zeros((MAP_BATCHES, 12))
    np.add.at(share, (np.arange(nrec) * MAP_BATCHES // nrec, months), 1.0)
    share /= share.sum(axis=1, keepdims=True)
    precip = np.asarray(gen.climatology.precip, dtype=np.float64)
    expected = np.zeros((MAP_BATCHES, precip.shape[0]))
    for m in range(12):
        expected += share[:, m:m + 1] * precip[None, :, m]
    anomaly = (means["PRECTmms_batches"] - expected) * _SECONDS_PER_YEAR
    return local, np.ascontiguousarray(anomaly.T)


def _land_weights(grid) -> np.ndarray:
    return np.asarray(grid.land_area, dtype=np.float64) * np.asarray(grid.land_landfrac, dtype=np.float64)


def land_means(maps: ForcingMaps) -> dict:
    """Area-weighted mean over the land cells of every map variable: weights = cell area x land
    fraction (km2 of land), summed in the global land order."""
    w = _land_weights(maps.grid)
    return {k: float(np.dot(w, v) / w.sum()) for k, v in maps.values.items()}


def land_mean_standard_error(maps: ForcingMaps, name: str = "PRECT") -> float:
    """Standard error of the land-mean annual ``name`` (mm/yr for PRECT) from one year of generated
    weather, by batch means: the land means A_b of the MAP_BATCHES batch anomalies (generated minus
    expected) are nearly independent, so s.e. = sd(A_b, ddof=1) / sqrt(MAP_BATCHES). It holds the
    correlation between cells that share weather; it tells how far one year may drift from ERA5."""
    if name not in maps.batch_anomalies:
        raise KeyError(f"no batch anomalies of {name!r}; available: {sorted(maps.batch_anomalies)}")
    w = _land_weights(maps.grid)
    a = maps.batch_anomalies[name]
    land = np.array([np.dot(w, a[:, b]) for b in range(a.shape[1])]) / w.sum()
    return float(land.std(ddof=1) / math.sqrt(land.size))


_FILL = 1.0e20  # CESM's fill value for missing (ocean) cells


def write_forcing_maps(maps: ForcingMaps, path) -> Path:
    """Write the maps as a CF-1.8 netCDF4 file on the (lat, lon) grid, fill over ocean and cells below
    the land threshold, atomically (temporary name in the same directory, then rename). One rank."""
    import datetime

    import netCDF4

    import engine
    from engine.climatology import ERA5_PROVENANCE, ETOPO5_PROVENANCE
    from engine.grid import LAND_COVER_SOURCE

    g = maps.grid
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nlat, nlon = g.shape
    lj, li = g.land_j, g.land_i
    members = maps.settings["forcing_members"]
    year = maps.settings["forcing_year"]
    with atomic_path(path) as tmp:
        with netCDF4.Dataset(str(tmp), "w", format="NETCDF4") as ds:
            ds.createDimension("lat", nlat)
            ds.createDimension("lon", nlon)
            ds.createDimension("nv", 2)

            def coord(name, dims, values, **attrs):
                v = ds.createVariable(name, "f8", dims)
                v.setncatts(attrs)
                v[...] = values
                return v

            coord("lat", ("lat",), g.lat, units="degrees_north", standard_name="latitude", long_name="latitude",
                  bounds="lat_bnds", axis="Y")
            coord("lon", ("lon",), g.lon, units="degrees_east", standard_name="longitude", long_name="longitude",
                  bounds="lon_bnds", axis="X")
            coord("lat_bnds", ("lat", "nv"), np.stack([g.lat_edges[:-1], g.lat_edges[1:]], axis=1))
            coord("lon_bnds", ("lon", "nv"), np.stack([g.lon_edges[:-1], g.lon_edges[1:]], axis=1))
            tunits = f"days since {year:04d}-01-01 00:00:00"
            coord("time", (), 0.5 * kf.DAYS_PER_YEAR, units=tunits, calendar="noleap", standard_name="time",
                  long_name="middle of the averaging year", bounds="time_bnds")
            coord("time_bnds", ("nv",), [0.0, float(kf.DAYS_PER_YEAR)])
            coord("landfrac", ("lat", "lon"), g.landfrac, units="1", long_name="land fraction (MODIS MCD12C1)",
                  standard_name="land_area_fraction")
            mask = np.zeros((nlat, nlon), dtype=np.int32)
            mask[lj, li] = 1
            v = ds.createVariable("landmask", "i4", ("lat", "lon"))
            v.setncatts({"units": "1", "long_name": "1 on the land cells the forcing was generated for",
                         "flag_values": np.array([0, 1], np.int32), "flag_meanings": "not_land_cell land_cell"})
            v[...] = mask
            for name, vals in maps.values.items():
                base = name[:-len("_spread")] if name.endswith("_spread") else name
                clim = dict(CLIMATOLOGY_VARIABLES).get(name)
                info = _MAP_INFO[clim or base]
                a = np.full((nlat, nlon), _FILL)
                a[lj, li] = vals
                v = ds.createVariable(name, "f8", ("lat", "lon"), zlib=True, complevel=4, fill_value=_FILL)
                v.units = info[4]
                v.coordinates = "time"
                v.cell_methods = "time: mean"
                if name.endswith("_spread"):
                    v.long_name = f"{info[6]}: ensemble spread"
                    v.comment = (f"time mean over the year of the standard deviation (ddof=1) across the {members} "
                                 "members at each 6-hourly record")
                elif clim:
                    v.long_name = f"{info[6]}: ERA5 2000-2025 climatological annual mean"
                    v.comment = ("noleap month-length-weighted mean of the ERA5 monthly means sampled over the "
                                 "cell (the values the generated forcing is anchored on)")
                else:
                    v.long_name = f"{info[6]}: annual and ensemble mean"
                    v.comment = f"mean over the year's 6-hourly records and the {members} members"
                    if info[7]:
                        v.standard_name = info[7]
                if info[0] == "PRECT":
                    v.units_comment = "per 365-day (noleap) year: mm/s x 31536000"
                v[...] = a
            ds.setncatts({
                "Conventions": "CF-1.8",
                "title": f"laida generated ensemble forcing: annual means {year}, grid {g.name} {g.shape}",
                "source": "laida " + engine.__version__ + " engine.forcing.forcing_maps",
                "laida_version": engine.__version__,
                "grid": g.name, "grid_box": str(tuple(float(b) for b in g.box)),
                "land_threshold": float(g.land_threshold), "n_land": int(g.n_land),
                "source_era5": ERA5_PROVENANCE, "source_etopo5": ETOPO5_PROVENANCE,
                "source_land_cover": LAND_COVER_SOURCE,
                "references": "Reichle et al. (2007) J. Geophys. Res. 112, D09108 (forcing perturbations); "
                              "Hersbach et al. (2020) Q. J. R. Meteorol. Soc. 146, 1999-2049 (ERA5)",
                "history": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} "
                           "created by laida engine.forcing.write_forcing_maps",
                **{k: (v if isinstance(v, (str, float, int)) else str(v)) for k, v in maps.settings.items()},
            })
    return path


#: Panels of the PNG: (map variable, factor for display, label units, colormap, log scale).
_PANELS = (
    ("TBOT_degC", 1.0, "degC", "RdYlBu_r", False),
    ("PRECT", 1.0, "mm/yr", "YlGnBu", True),
    ("FSDS", 1.0, "W/m2", "inferno", False),
    ("FLDS", 1.0, "W/m2", "magma", False),
    ("QBOT", 1000.0, "g/kg", "GnBu", False),
    ("WIND", 1.0, "m/s", "viridis", False),
)


def plot_forcing_maps(maps: ForcingMaps, png) -> Path:
    """Write a PNG with one lat/lon map per variable (TBOT, PRECT, FSDS, FLDS, QBOT, WIND: annual and
    ensemble means; colour limits at the 1st/99th percentiles of the land cells, precipitation on a
    log scale) with the land-mean value and mean ensemble spread in each title (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize

    g = maps.grid
    s = maps.settings
    means = land_means(maps)
    lon_edges = np.asarray(g.lon_edges, dtype=np.float64)
    roll = 0
    if g.is_global:  # centre the map on 0 deg: columns from 180 W to 180 E
        roll, lon_edges = g.nlon // 2, lon_edges - 180.0
    span_lon = lon_edges[-1] - lon_edges[0]
    span_lat = g.lat_edges[-1] - g.lat_edges[0]
    ncol = 2 if span_lon < 1.2 * span_lat else 3
    nrow = -(-len(_PANELS) // ncol)
    panel_w = 6.4 if ncol == 3 else 5.5
    panel_h = max(2.5, min(7.0, panel_w * span_lat / max(span_lon, 1e-6))) + 0.9
    fig, axes = plt.subplots(nrow, ncol, figsize=(panel_w * ncol, panel_h * nrow), squeeze=False)
    for ax, (name, factor, units, cmap, log) in zip(axes.ravel(), _PANELS):
        a = np.full(g.shape, np.nan)
        a[g.land_j, g.land_i] = maps.values[name] * factor
        a = np.roll(a, roll, axis=1)
        vals = maps.values[name] * factor
        lo, hi = np.percentile(vals, [1, 99]) if vals.size > 1 else (vals.min() - 1, vals.max() + 1)
        if log:
            lo = max(lo, 10.0)
            norm = LogNorm(vmin=lo, vmax=max(hi, 1.01 * lo), clip=True)
        else:
            norm = Normalize(vmin=lo, vmax=hi if hi > lo else lo + 1e-9, clip=False)
        cm = plt.get_cmap(cmap).with_extremes(bad="#dbe9f4")
        mesh = ax.pcolormesh(lon_edges, g.lat_edges, np.ma.masked_invalid(a), cmap=cm, norm=norm, shading="flat")
        fig.colorbar(mesh, ax=ax, shrink=0.85, pad=0.02, extend="both").set_label(units)
        base = "TBOT" if name == "TBOT_degC" else name
        sp = means.get(base + "_spread", float("nan")) * factor
        ax.set_title(f"{base} ({units}): land mean {means[name] * factor:.4g}, spread {sp:.3g}", fontsize=10)
        ax.set_aspect("equal")
        ax.set_xlim(lon_edges[0], lon_edges[-1])
        ax.set_ylim(g.lat_edges[0], g.lat_edges[-1])
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(_PANELS):]:
        ax.set_visible(False)
    fig.suptitle(f"laida forcing {g.name}: annual means of year {s['forcing_year']} ({g.n_land} land cells, "
                 f"ensemble mean of {s['forcing_members']} members, seed {s['forcing_seed']}); weather generator "
                 "anchored on ERA5 2000-2025 monthly means", fontsize=11)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return png
