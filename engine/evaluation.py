"""Evaluation of the CTL and CN experiments against a reference: the study's metrics, regions and tables.

State read and written
----------------------
Reads laida history files (CF netCDF4 written by :class:`engine.history.HistoryWriter`) with
:func:`load_history`, the history segments of a chained run (one per ``laida run``/``resume``,
``<run_dir>/<exp>/<exp>.h0.c<first cycle>.nc``) joined along time with :func:`load_history_series`
(:func:`run_report` for a whole run directory), or plain NumPy arrays shaped ``(time, [band,] lat,
lon)``. Writes nothing (except the text file :func:`run_report` is asked for) and holds no state; every function is pure NumPy on one process (run it on rank 0 after the experiment,
no MPI). The reference is GLASS/GEOV1/GLDAS in the study (Ling et al. 2024, IEEE JSTARS,
doi:10.1109/JSTARS.2024.3388006) and the nature ("truth") run in laida's twin experiment.

Metrics (SCIENCE.md "Metrics"; n grid-cell/time samples, model m, reference o)
----------------------------------------------------------------------------------
* ``Bias  = mean(m - o)``
* ``rBias = sum(m - o) / sum(o)`` (a fraction; the study prints a fraction or a %)
* ``RMSD  = sqrt(mean((m - o)**2))``
* ``r``    = Pearson correlation of m and o over the samples.

By default these are the study's plain means over samples (every valid cell-time counts once). With
sample weights ``w`` (e.g. cell areas) every sum becomes a weighted sum: ``Bias = sum(w d)/sum(w)``,
``rBias = sum(w d)/sum(w o)``, ``RMSD = sqrt(sum(w d**2)/sum(w))``, ``r`` from weighted means,
covariance and variances; with ``w = 1`` they reduce exactly to the plain definitions.

Missing samples: a sample is dropped when the model or the reference value is NaN, +-inf or
``|x| >= 1e35`` (:data:`MISSING_ABOVE`: CLM's fill value ``spval = 1e36``, as float32 or float64),
or when its weight is 0. Every table reports the number ``n`` of samples that were used. CTL and CN
are always scored on the same samples (those valid in CTL, CN and the reference).

Regions (Table II of the study) and the overlap rule
----------------------------------------------------
:data:`REGIONS` holds the global domain and the study's eight boxes (deg E / deg N, W and S
negative, exactly as SCIENCE.md gives them). Two ways to put cells in a box:

* :func:`region_mask` (centre rule): a cell belongs to the box when its centre lies in the closed
  box ``[lat_min, lat_max] x [lon_min, lon_max]`` (1e-9 deg tolerance), longitudes compared modulo
  360, so centres given in -180..180, 0..360 or a regional frame ``[lon_min, lon_min + 360)`` all
  work. On the coarse f45 grid (4 x 5 deg) several of the study's boxes (2.8 to 7.5 deg tall)
  contain 0 to 2 centres (region 5, Western Europe 46.88N-49.69N, contains none).
* :func:`region_weights` (overlap rule, used for ALL regional statistics here): the weight of a cell
  is the fraction of its area on the sphere that lies inside the box. For a regular lat/lon cell
  ``[phi_s, phi_n] x [lam_w, lam_e]`` and a box ``[PHI_S, PHI_N] x [LAM_W, LAM_E]`` the
  intersection is again a lat/lon rectangle, and the area of a rectangle is
  ``R**2 * dlam * (sin(phi_n) - sin(phi_s))``, so the fraction is exactly
  ``overlap_lon / (lam_e - lam_w) * (sin(min(phi_n, PHI_N)) - sin(max(phi_s, PHI_S))) /
  (sin(phi_n) - sin(phi_s))`` (longitude overlap taken modulo 360). The weights times the cell areas
  sum to the box's area. A sample's weight in a regional statistic is its cell's overlap fraction
  (times the cell area when area weighting is asked for): on a fine grid this is the centre rule up
  to the box's edge cells; on a coarse grid every box gets its share of the cells it overlaps.

Variables (Table III of the study) and their conventions
---------------------------------------------------------
:data:`VARIABLES` maps the study's names to CLM history fields: NLW = ``FIRA``, T2m = ``TSA``,
HS = ``FSH``, LE = ``EFLX_LH_TOT``, ST = ``TSOI`` and SM = ``H2OSOI`` (per soil band of the study's
0-7, 7-28, 28-100, 100-255 cm, and pooled over the four bands).

* NLW: compared in CLM's convention, ``FIRA`` = net longwave radiation UPWARD positive (W/m2), for
  model and reference alike (the twin experiment's truth is also ``FIRA``). GLDAS' ``Lwnet`` is net
  longwave DOWNWARD positive: a GLDAS reference must be negated (``FIRA = -Lwnet``) before the
  comparison. rBias and RMSD do not depend on which sign convention is used, as long as model and
  reference share it (both numerator and denominator of rBias change sign); Bias changes sign.
* T2m and ST: the history holds kelvin. rBias on kelvin would be ~0.001 for a 0.3 K bias and
  means nothing; the study's T2m rBias (-0.09 globally, -0.17 in central Africa) can only be on
  degC, so rBias of T2m and ST is computed on degC (273.15 subtracted from model and reference);
  RMSD is the same in K and degC. Where the reference's mean is near 0 degC rBias grows without
  bound (as it does in the study's definition); it is NaN when ``sum(o)`` is exactly 0.
* HS, LE (W/m2) and SM (m3/m3 = mm3/mm3) are compared as stored.

The study's published values (Table II LAI differences, Table III rBias and RMSD) are kept as data
(:attr:`Region.study_cn_obs`, :data:`STUDY_TABLE3`) and printed beside ours by :func:`format_table`
for reference only; nothing here is computed from them. The study's Table III does not say how ST and
SM were combined over its four layers; its values are printed beside our pooled (all bands) rows.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from kernels.physics.soil_layers import STUDY_BANDS_M

__all__ = [
    "EvaluationError",
    "MISSING_ABOVE",
    "Region",
    "REGIONS",
    "REGION_BY_KEY",
    "STUDY_GLOBAL_LAI",
    "Variable",
    "VARIABLES",
    "STUDY_TABLE3",
    "region_mask",
    "region_weights",
    "region_area_fraction",
    "lat_edges_from_centres",
    "lon_edges_from_centres",
    "valid_samples",
    "n_valid",
    "bias",
    "rbias",
    "rmsd",
    "pearson_r",
    "Scores",
    "compare",
    "improved",
    "improved_fraction",
    "latitudinal_profile",
    "LatitudinalCorrelation",
    "latitudinal_correlation",
    "month_mask",
    "LaiRow",
    "lai_table",
    "VarRow",
    "variables_table",
    "format_table",
    "load_history",
    "RUN_EXPERIMENTS",
    "history_segments",
    "obs_diag_segments",
    "load_obs_diag",
    "load_history_series",
    "evaluation_report",
    "run_report",
]

#: A value at or above this magnitude is missing: CLM's ``spval`` = 1e36 (history ``_FillValue``).
MISSING_ABOVE = 1.0e35
_DEG_EPS = 1.0e-9  # deg: tolerance of the centre rule (a centre on a box edge is inside)
_ZERO_C = 273.15  # K at 0 degC


class EvaluationError(ValueError):
    """Inputs the evaluation cannot use; the message names the file, variable or argument."""


# ----------------------------------------------------------------------------------------------
# The study's regions (Table II) and published values
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Region:
    """One box of the study's Table II. Longitudes deg E (W negative), latitudes deg N (S negative).

    ``study_cn_obs`` / ``study_ctl_obs``: the study's published annual mean LAI differences CN-OBS and
    CTL-OBS (m2/m2), printed for reference only.
    """

    key: str  # "Global", "R1" ... "R8"
    number: int  # 0 for Global
    name: str
    lon_min: float
    lon_max: float
    lat_min: float
    lat_max: float
    cover: str  # dominant land cover named by the study
    study_cn_obs: float
    study_ctl_obs: float

    @property
    def lon_text(self) -> str:
        return f"{_deg_text(self.lon_min, 'E', 'W')}-{_deg_text(self.lon_max, 'E', 'W')}"

    @property
    def lat_text(self) -> str:
        return f"{_deg_text(self.lat_min, 'N', 'S')}-{_deg_text(self.lat_max, 'N', 'S')}"


def _deg_text(v: float, pos: str, neg: str) -> str:
    return f"{abs(v):g}{neg if v < 0 else pos}"


#: The study's Table II: global domain and regions 1-8 (SCIENCE.md).
REGIONS: tuple[Region, ...] = (
    Region("Global", 0, "Global", -180.0, 180.0, -90.0, 90.0, "all", -0.07, 0.90),
    Region("R1", 1, "Central Africa", 15.0, 28.75, -1.88, 4.69, "evergreen broadleaf", -1.98, 7.52),
    Region("R2", 2, "Eastern Amazonia", -57.5, -50.0, -5.63, -2.81, "evergreen broadleaf", -2.56, 4.13),
    Region("R3", 3, "Southern Eurasia", 97.5, 106.25, 14.06, 21.56, "evergreen broadleaf, cropland", -0.48, 6.79),
    Region("R4", 4, "Northeastern China", 127.5, 132.5, 39.38, 45.0, "deciduous broadleaf, mixed", -3.17, 2.67),
    Region("R5", 5, "Western Europe", 17.5, 27.5, 46.88, 49.69, "mixed forest, cropland", -1.48, 2.27),
    Region("R6", 6, "Central Eurasia", 62.5, 67.5, 31.88, 37.5, "cropland, open shrub", 2.42, 0.06),
    Region("R7", 7, "SW North America", -113.75, -106.25, 30.0, 35.63, "grassland, open shrub", 2.68, 0.52),
    Region("R8", 8, "Western Australia", 120.0, 125.0, -28.13, -23.44, "open shrub", 1.94, 0.26),
)
REGION_BY_KEY = {r.key: r for r in REGIONS}

#: The study's global LAI figures (SCIENCE.md): mean differences (m2/m2), as % of obs, annual RMSD.
STUDY_GLOBAL_LAI = {"CTL-OBS": 0.90, "CN-OBS": -0.07, "CTL-OBS %": 54.1, "CN-OBS %": 3.9,
                    "RMSD CTL": 1.85, "RMSD CN": 1.61}


@dataclass(frozen=True)
class Variable:
    """A Table III variable: the study's name, the CLM history field compared, units of RMSD, and the
    offset subtracted from model and reference before rBias (273.15 for kelvin -> degC)."""

    key: str
    field: str
    long_name: str
    units: str
    rbias_offset: float = 0.0
    band: bool = False


#: Table III's variables in the study's order (see the module docstring for the conventions).
VARIABLES: tuple[Variable, ...] = (
    Variable("NLW", "FIRA", "net longwave radiation, upward positive (CLM FIRA)", "W/m2"),
    Variable("T2m", "TSA", "2-m air temperature (rBias on degC)", "degC", _ZERO_C),
    Variable("HS", "FSH", "sensible heat flux", "W/m2"),
    Variable("LE", "EFLX_LH_TOT", "latent heat flux", "W/m2"),
    Variable("ST", "TSOI", "soil temperature (rBias on degC)", "degC", _ZERO_C, band=True),
    Variable("SM", "H2OSOI", "volumetric soil moisture", "m3/m3", 0.0, band=True),
)
_VARIABLE_BY_KEY = {v.key: v for v in VARIABLES}

_T3 = {  # the study's Table III: (var, stat, exp) -> (Global, R1, ..., R8)
    ("NLW", "rBias", "CTL"): (-0.06, -0.41, -0.37, -0.35, 0.35, -0.04, -0.22, 0.22, 0.08),
    ("NLW", "rBias", "CN"): (-0.04, -0.34, -0.27, -0.29, 0.39, 0.10, -0.23, 0.20, 0.08),
    ("NLW", "RMSD", "CTL"): (6.58, 28.24, 22.27, 28.99, 32.21, 14.67, 34.67, 43.91, 31.91),
    ("NLW", "RMSD", "CN"): (5.79, 24.76, 16.22, 25.07, 33.61, 16.48, 36.42, 40.57, 31.03),
    ("T2m", "rBias", "CTL"): (-0.09, -0.17, -0.09, -0.10, 0.17, -0.13, -0.09, 0.19, -0.03),
    ("T2m", "rBias", "CN"): (-0.07, -0.14, -0.05, -0.07, 0.16, -0.06, -0.10, 0.19, -0.03),
    ("T2m", "RMSD", "CTL"): (2.54, 4.96, 2.68, 3.02, 5.75, 5.68, 3.70, 7.12, 3.69),
    ("T2m", "RMSD", "CN"): (2.38, 4.25, 1.52, 2.28, 5.76, 4.40, 4.07, 7.07, 3.69),
    ("HS", "rBias", "CTL"): (-0.50, -0.84, -0.79, -0.64, 0.68, -0.78, -0.68, 0.08, -0.14),
    ("HS", "rBias", "CN"): (-0.48, -0.79, -0.74, -0.57, 0.79, -0.57, -0.70, 0.06, -0.17),
    ("HS", "RMSD", "CTL"): (30.11, 41.57, 56.16, 61.66, 66.48, 34.50, 87.91, 44.28, 50.88),
    ("HS", "RMSD", "CN"): (28.90, 39.25, 52.45, 56.17, 66.62, 28.44, 90.59, 42.85, 54.84),
    ("LE", "rBias", "CTL"): (-0.24, -0.85, -0.76, -0.50, 0.27, -0.39, -0.27, 0.72, 0.45),
    ("LE", "rBias", "CN"): (-0.24, -0.81, -0.74, -0.53, 0.06, -0.39, -0.27, 0.82, 0.60),
    ("LE", "RMSD", "CTL"): (13.85, 105.79, 102.27, 52.78, 42.71, 62.91, 15.98, 45.66, 35.57),
    ("LE", "RMSD", "CN"): (13.96, 101.25, 99.14, 53.86, 27.50, 60.30, 16.03, 49.84, 41.62),
    ("ST", "rBias", "CTL"): (0.04, -0.11, -0.03, -0.09, 0.15, 0.00, -0.12, 0.24, -0.06),
    ("ST", "rBias", "CN"): (0.05, -0.08, 0.01, -0.06, 0.19, 0.02, -0.13, 0.23, -0.06),
    ("ST", "RMSD", "CTL"): (1.89, 3.27, 1.19, 2.77, 4.21, 3.39, 4.48, 9.07, 4.27),
    ("ST", "RMSD", "CN"): (1.95, 2.48, 0.67, 2.06, 4.90, 3.45, 4.54, 8.78, 4.27),
    ("SM", "rBias", "CTL"): (-0.18, 0.14, -0.07, 0.03, -0.01, 0.06, -0.02, -0.06, -0.08),
    ("SM", "rBias", "CN"): (-0.16, 0.15, -0.07, 0.06, 0.05, 0.11, -0.05, -0.09, -0.14),
    ("SM", "RMSD", "CTL"): (0.05, 0.06, 0.05, 0.04, 0.04, 0.04, 0.03, 0.03, 0.03),
    ("SM", "RMSD", "CN"): (0.05, 0.06, 0.05, 0.05, 0.03, 0.06, 0.03, 0.03, 0.04),
}
#: The study's Table III: (var, stat, exp) -> {region key: value}; rBias as a fraction, RMSD in the
#: variable's units (W/m2, degC, m3/m3).
STUDY_TABLE3: dict[tuple[str, str, str], dict[str, float]] = {
    k: dict(zip((r.key for r in REGIONS), v)) for k, v in _T3.items()
}
del _T3


# ----------------------------------------------------------------------------------------------
# Cells in regions: centre rule and spherical overlap weights
# ----------------------------------------------------------------------------------------------


def _region(region) -> Region:
    if isinstance(region, Region):
        return region
    if isinstance(region, str) and region in REGION_BY_KEY:
        return REGION_BY_KEY[region]
    if isinstance(region, (int, np.integer)) and not isinstance(region, bool) and 0 <= region < len(REGIONS):
        return REGIONS[int(region)]
    raise EvaluationError(f"region must be a Region, one of {list(REGION_BY_KEY)} or a number 0-8, got {region!r}")


def _box(region: Region) -> tuple[float, float, float, float]:
    r = region
    if not (-90.0 <= r.lat_min <= r.lat_max <= 90.0):
        raise EvaluationError(f"region {r.key}: latitudes must satisfy -90 <= lat_min <= lat_max <= 90, "
                              f"got {r.lat_min}, {r.lat_max}")
    if not (r.lon_min <= r.lon_max <= r.lon_min + 360.0):
        raise EvaluationError(f"region {r.key}: longitudes must satisfy lon_min <= lon_max <= lon_min + 360, "
                              f"got {r.lon_min}, {r.lon_max}")
    return r.lat_min, r.lat_max, r.lon_min, r.lon_max


def region_mask(lat, lon, region, *, points: bool = False) -> np.ndarray:
    """Cells whose CENTRE lies in the closed box of ``region`` (a :class:`Region`, key or number).

    ``lat``, ``lon``: cell-centre coordinates in deg. With 1-D ``lat`` (nlat) and ``lon`` (nlon) and
    ``points=False`` they are the grid's axes and the mask has shape (nlat, nlon); with
    ``points=True`` (or arrays of other ranks) they are paired element-wise (broadcast), e.g. a
    grid's ``land_lat``, ``land_lon``. Longitudes in any convention (-180..180, 0..360, a box frame):
    compared modulo 360. Edges count as inside (1e-9 deg tolerance).
    """
    lat_min, lat_max, lon_min, lon_max = _box(_region(region))
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise EvaluationError("region_mask: lat and lon must be finite")
    if lat.ndim == 1 and lon.ndim == 1 and not points:
        lat, lon = lat[:, None], lon[None, :]
    in_lat = (lat >= lat_min - _DEG_EPS) & (lat <= lat_max + _DEG_EPS)
    width = lon_max - lon_min
    if width >= 360.0 - _DEG_EPS:
        in_lon = np.ones_like(lon, dtype=bool)
    else:
        offset = np.mod(lon - lon_min, 360.0)  # deg east of lon_min, [0, 360)
        in_lon = (offset <= width + _DEG_EPS) | (offset >= 360.0 - _DEG_EPS)
    return np.asarray(in_lat & in_lon)


def lat_edges_from_centres(lat) -> np.ndarray:
    """(nlat + 1,) latitude edges (deg) halfway between centres, the outer ones extended by half a
    spacing and clipped at +-90 (the CESM finite-volume convention of :mod:`engine.grid`)."""
    lat = np.asarray(lat, dtype=np.float64)
    if lat.ndim != 1 or lat.size < 2 or not np.all(np.diff(lat) > 0):
        raise EvaluationError(f"latitudes must be a strictly increasing 1-D array of >= 2 centres, got {lat!r}")
    e = np.r_[lat[0] - 0.5 * (lat[1] - lat[0]), 0.5 * (lat[1:] + lat[:-1]), lat[-1] + 0.5 * (lat[-1] - lat[-2])]
    return np.clip(e, -90.0, 90.0)


def lon_edges_from_centres(lon) -> np.ndarray:
    """(nlon + 1,) longitude edges (deg) halfway between centres, the outer ones half a spacing out."""
    lon = np.asarray(lon, dtype=np.float64)
    if lon.ndim != 1 or lon.size < 1 or not np.all(np.diff(lon) > 0):
        raise EvaluationError(f"longitudes must be a strictly increasing 1-D array, got {lon!r}")
    if lon.size == 1:
        raise EvaluationError("one longitude centre: give lon_edges explicitly")
    return np.r_[lon[0] - 0.5 * (lon[1] - lon[0]), 0.5 * (lon[1:] + lon[:-1]), lon[-1] + 0.5 * (lon[-1] - lon[-2])]


def _check_edges(edges, name, lo=-np.inf, hi=np.inf) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.isfinite(e).all() or not np.all(np.diff(e) > 0):
        raise EvaluationError(f"{name} must be a strictly increasing finite 1-D array of >= 2 edges")
    if e[0] < lo - _DEG_EPS or e[-1] > hi + _DEG_EPS:
        raise EvaluationError(f"{name} must lie within [{lo}, {hi}] deg, got [{e[0]}, {e[-1]}]")
    return e


def region_weights(lat_edges, lon_edges, region) -> np.ndarray:
    """(nlat, nlon) fraction of each cell's spherical area inside the box of ``region`` (0..1).

    Cells are the regular lat/lon rectangles between consecutive ``lat_edges`` (deg, -90..90) and
    ``lon_edges`` (deg, any frame, each cell < 360 deg wide). Exact on the sphere (module docstring):
    ``fraction = lon_overlap / cell_dlon * (sin(min(n, N)) - sin(max(s, S))) / (sin(n) - sin(s))``,
    the longitude overlap summed over the box's copies shifted by whole turns.
    """
    lat_min, lat_max, lon_min, lon_max = _box(_region(region))
    le = _check_edges(lat_edges, "lat_edges", -90.0, 90.0)
    oe = _check_edges(lon_edges, "lon_edges")
    if np.any(np.diff(oe) > 360.0):
        raise EvaluationError("lon_edges: a cell is wider than 360 deg")
    # latitude: fraction of sin(lat) span
    s, n = np.deg2rad(le[:-1]), np.deg2rad(le[1:])
    S, N = np.deg2rad(lat_min), np.deg2rad(lat_max)
    lat_part = np.maximum(np.sin(np.minimum(n, N)) - np.sin(np.maximum(s, S)), 0.0) / (np.sin(n) - np.sin(s))
    # longitude: overlap of [w, e] with the box and its copies shifted by whole turns
    w, e = oe[:-1], oe[1:]
    overlap = np.zeros_like(w)
    k0 = np.floor((w.min() - lon_max) / 360.0)
    k1 = np.ceil((e.max() - lon_min) / 360.0)
    for k in np.arange(k0, k1 + 1.0):
        a, b = lon_min + 360.0 * k, lon_max + 360.0 * k
        overlap += np.maximum(np.minimum(e, b) - np.maximum(w, a), 0.0)
    lon_part = np.minimum(overlap / (e - w), 1.0)
    return np.clip(lat_part[:, None] * lon_part[None, :], 0.0, 1.0)


def region_area_fraction(region) -> float:
    """Area of the box of ``region`` as a fraction of the sphere: dlon/360 * (sin N - sin S)/2."""
    lat_min, lat_max, lon_min, lon_max = _box(_region(region))
    return (lon_max - lon_min) / 360.0 * (np.sin(np.deg2rad(lat_max)) - np.sin(np.deg2rad(lat_min))) / 2.0


def _cell_area_weights(lat_edges, lon_edges) -> np.ndarray:
    """(nlat, nlon) relative spherical cell areas: dlon_rad * (sin(lat_n) - sin(lat_s))."""
    le = np.deg2rad(np.asarray(lat_edges, dtype=np.float64))
    oe = np.deg2rad(np.asarray(lon_edges, dtype=np.float64))
    return np.diff(np.sin(le))[:, None] * np.diff(oe)[None, :]


# ----------------------------------------------------------------------------------------------
# Metrics over samples
# ----------------------------------------------------------------------------------------------


def _present(a: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.isfinite(a) & (np.abs(a) < MISSING_ABOVE)


def _as_float(x, name) -> np.ndarray:
    a = np.ma.filled(np.ma.asarray(x, dtype=np.float64), np.nan) if np.ma.isMaskedArray(x) else x
    try:
        a = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise EvaluationError(f"{name} must be numeric: {exc}") from None
    return a


def valid_samples(model, obs, weights=None):
    """The samples both ``model`` and ``obs`` hold (and with weight > 0), flattened.

    Arrays are broadcast against each other (and ``weights``). Missing: NaN, +-inf, |x| >= 1e35.
    Returns ``(m, o, w)`` 1-D float64 arrays; ``w`` is None when no weights were given. Weights must
    be finite and >= 0.
    """
    m, o = _as_float(model, "model"), _as_float(obs, "obs")
    arrays = [m, o]
    if weights is not None:
        w = _as_float(weights, "weights")
        if not np.isfinite(w).all() or np.any(w < 0):
            raise EvaluationError("weights must be finite and >= 0")
        arrays.append(w)
    try:
        arrays = np.broadcast_arrays(*arrays)
    except ValueError:
        extra = "" if weights is None else f" and weights {np.shape(weights)}"
        raise EvaluationError(f"model {m.shape}, obs {o.shape}{extra} do not broadcast") from None
    ok = _present(arrays[0]) & _present(arrays[1])
    if weights is not None:
        ok &= arrays[2] > 0
    return arrays[0][ok], arrays[1][ok], (arrays[2][ok] if weights is not None else None)


def _mean(x: np.ndarray, w: np.ndarray | None) -> float:
    if x.size == 0:
        return np.nan
    if w is None:
        return float(np.sum(x) / x.size)
    return float(np.sum(w * x) / np.sum(w))


def n_valid(model, obs, weights=None) -> int:
    """Number of samples the metrics use (both present, weight > 0)."""
    return int(valid_samples(model, obs, weights)[0].size)


def bias(model, obs, weights=None) -> float:
    """Bias = mean(model - obs) (weighted: sum(w d)/sum(w)); NaN without samples. Units of the data."""
    m, o, w = valid_samples(model, obs, weights)
    return _mean(m - o, w)


def rbias(model, obs, weights=None) -> float:
    """rBias = sum(model - obs) / sum(obs) (weighted: sum(w d)/sum(w o)), a fraction; NaN without
    samples or when sum(obs) is 0. Negative when the model is below the reference (for obs > 0)."""
    m, o, w = valid_samples(model, obs, weights)
    if m.size == 0:
        return np.nan
    num = np.sum(m - o) if w is None else np.sum(w * (m - o))
    den = np.sum(o) if w is None else np.sum(w * o)
    return float(num / den) if den != 0 else np.nan


def rmsd(model, obs, weights=None) -> float:
    """RMSD = sqrt(mean((model - obs)**2)) (weighted mean with weights); NaN without samples."""
    m, o, w = valid_samples(model, obs, weights)
    d = m - o
    return float(np.sqrt(_mean(d * d, w)))


def _pearson(m, o, w) -> float:
    if m.size < 2:
        return np.nan
    dm, do = m - _mean(m, w), o - _mean(o, w)
    cov, vm, vo = _mean(dm * do, w), _mean(dm * dm, w), _mean(do * do, w)
    if vm <= 0 or vo <= 0:
        return np.nan
    return float(np.clip(cov / np.sqrt(vm * vo), -1.0, 1.0))


def pearson_r(model, obs, weights=None) -> float:
    """Pearson correlation of model and obs over the valid samples (weighted moments with weights);
    NaN with fewer than 2 samples or a constant series."""
    return _pearson(*valid_samples(model, obs, weights))


@dataclass(frozen=True)
class Scores:
    """All metrics of one comparison: n samples, Bias, rBias (fraction), RMSD, Pearson r."""

    n: int
    bias: float
    rbias: float
    rmsd: float
    r: float


def compare(model, obs, weights=None, *, rbias_offset: float = 0.0) -> Scores:
    """All metrics of ``model`` against ``obs`` on their common valid samples. ``rbias_offset`` is
    subtracted from both before rBias only (273.15 to take rBias of kelvin data on degC)."""
    m, o, w = valid_samples(model, obs, weights)
    d = m - o
    if m.size:
        mo, oo = m - rbias_offset, o - rbias_offset
        den = np.sum(oo) if w is None else np.sum(w * oo)
        num = np.sum(mo - oo) if w is None else np.sum(w * (mo - oo))
        rb = float(num / den) if den != 0 else np.nan
    else:
        rb = np.nan
    return Scores(n=int(m.size), bias=_mean(d, w), rbias=rb, rmsd=float(np.sqrt(_mean(d * d, w))),
                  r=_pearson(m, o, w))


def _select_time(a: np.ndarray, time, name: str) -> np.ndarray:
    if time is None:
        return a
    if a.ndim < 3:
        raise EvaluationError(f"{name}: a time selection needs arrays shaped (time, ..., lat, lon), got {a.shape}")
    if isinstance(time, (int, np.integer)) and not isinstance(time, bool):
        time = [int(time)]
    try:
        out = a[time]
    except IndexError as exc:
        raise EvaluationError(f"{name}: time selection {time!r} does not fit {a.shape[0]} time records: "
                              f"{exc}") from None
    if out.ndim != a.ndim:
        raise EvaluationError(f"{name}: time selection must be an index, slice, index list or boolean mask")
    return out


def improved(ctl, cn, ref, *, time_axis: int | None = None) -> np.ndarray:
    """The study's "improved" cells: ``|CN - ref| < |CTL - ref|`` (bool; False where a value is missing).

    With ``time_axis``, each cell's series is judged by its RMSD over that axis on the times valid in
    all three (RMSD_CN < RMSD_CTL; for one time this is the same test); the axis is removed.
    """
    c0, c1, r = (_as_float(x, n) for x, n in ((ctl, "ctl"), (cn, "cn"), (ref, "ref")))
    if not (c0.shape == c1.shape == r.shape):
        raise EvaluationError(f"improved: ctl {c0.shape}, cn {c1.shape} and ref {r.shape} must have one shape")
    ok = _present(c0) & _present(c1) & _present(r)
    d0 = np.where(ok, np.abs(c0 - r), 0.0)
    d1 = np.where(ok, np.abs(c1 - r), 0.0)
    if time_axis is None:
        return ok & (d1 < d0)
    any_ok = ok.any(axis=time_axis)
    return any_ok & (np.sum(d1 * d1, axis=time_axis) < np.sum(d0 * d0, axis=time_axis))


def improved_fraction(ctl, cn, ref, weights=None, *, time_axis: int | None = None) -> float:
    """Fraction (weighted by ``weights``, broadcast to the judged cells) of the cells with a valid
    comparison that :func:`improved` marks; NaN when there is none."""
    c0, c1, r = (_as_float(x, n) for x, n in ((ctl, "ctl"), (cn, "cn"), (ref, "ref")))
    imp = improved(c0, c1, r, time_axis=time_axis)
    ok = _present(c0) & _present(c1) & _present(r)
    if time_axis is not None:
        ok = ok.any(axis=time_axis)
    w = np.ones(ok.shape) if weights is None else np.broadcast_to(_as_float(weights, "weights"), ok.shape)
    den = np.sum(w[ok])
    return float(np.sum(w[ok & imp]) / den) if den > 0 else np.nan


# ----------------------------------------------------------------------------------------------
# Latitudinal averages of CN - CTL differences (the study's correlation with the LAI difference)
# ----------------------------------------------------------------------------------------------


def latitudinal_profile(cn, ctl, *, time=None) -> np.ndarray:
    """(nlat,) per latitude row, the plain mean of ``cn - ctl`` over the selected times and the row's
    cells where both are present (land cells in history files); NaN for a row without any.

    ``cn``, ``ctl``: (time, lat, lon) or (lat, lon) arrays of one variable (select a band first);
    ``time``: None (all), an index, a slice, an index list or a boolean mask over the time axis.
    """
    a, b = _as_float(cn, "cn"), _as_float(ctl, "ctl")
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise EvaluationError(f"latitudinal_profile: cn {a.shape} and ctl {b.shape} must both be (time, lat, lon) "
                              "or (lat, lon)")
    if a.ndim == 3:
        a, b = _select_time(a, time, "cn"), _select_time(b, time, "ctl")
        a, b = np.moveaxis(a, 0, -1), np.moveaxis(b, 0, -1)  # (lat, lon, time)
    elif time is not None:
        raise EvaluationError("latitudinal_profile: a time selection needs (time, lat, lon) arrays")
    ok = _present(a) & _present(b)
    d = np.where(ok, a - b, 0.0).reshape(a.shape[0], -1)
    cnt = ok.reshape(a.shape[0], -1).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, d.sum(axis=1) / np.maximum(cnt, 1), np.nan)


@dataclass(frozen=True)
class LatitudinalCorrelation:
    """Pearson r between two latitudinal CN - CTL profiles, the profiles (nlat,) and the number of
    latitude rows where both exist."""

    r: float
    profile_a: np.ndarray
    profile_b: np.ndarray
    n_rows: int


def latitudinal_correlation(cn_a, ctl_a, cn_b, ctl_b, *, time=None) -> LatitudinalCorrelation:
    """The study's latitudinal correlation: r between the per-row means of CN - CTL of variable a
    (LAI) and of variable b (e.g. T2m, NLW, leaf C), rows weighted equally, over the rows where both
    profiles exist. ``time`` selects the records averaged (e.g. :func:`month_mask` for July)."""
    pa = latitudinal_profile(cn_a, ctl_a, time=time)
    pb = latitudinal_profile(cn_b, ctl_b, time=time)
    if pa.shape != pb.shape:
        raise EvaluationError(f"latitudinal_correlation: the two variables have {pa.size} and {pb.size} latitude rows")
    m, o, _ = valid_samples(pa, pb)
    return LatitudinalCorrelation(r=_pearson(m, o, None), profile_a=pa, profile_b=pb, n_rows=int(m.size))


def month_mask(time, units: str, calendar: str, month: int) -> np.ndarray:
    """Boolean mask of the time records (numbers in ``units``, ``calendar``) falling in ``month`` (1-12).

    History records are stamped at the middle of their averaging period (engine.history), so a daily
    or monthly mean is assigned to its own month.
    """
    import cftime

    if isinstance(month, bool) or not isinstance(month, (int, np.integer)) or not 1 <= month <= 12:
        raise EvaluationError(f"month must be an integer 1-12, got {month!r}")
    t = np.atleast_1d(np.asarray(time, dtype=np.float64))
    try:
        dates = cftime.num2date(t, units, calendar)
    except Exception as exc:  # noqa: BLE001 - cftime raises several types
        raise EvaluationError(f"time units {units!r} / calendar {calendar!r} not usable: {exc}") from None
    return np.array([d.month == month for d in np.atleast_1d(dates)], dtype=bool)


# ----------------------------------------------------------------------------------------------
# Tables II and III
# ----------------------------------------------------------------------------------------------


def _grid_weights(lat, lon, weights, lat_edges, lon_edges, shape) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges and the (nlat, nlon) per-cell weight factor (ones, cell areas or the given array)."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.ndim != 1 or lon.ndim != 1:
        raise EvaluationError("lat and lon must be the grid's 1-D axes (cell centres, deg)")
    if tuple(shape[-2:]) != (lat.size, lon.size):
        raise EvaluationError(f"arrays end in {tuple(shape[-2:])}, but lat/lon have {(lat.size, lon.size)} cells")
    le = lat_edges_from_centres(lat) if lat_edges is None else _check_edges(lat_edges, "lat_edges", -90, 90)
    oe = lon_edges_from_centres(lon) if lon_edges is None else _check_edges(lon_edges, "lon_edges")
    if le.size != lat.size + 1 or oe.size != lon.size + 1:
        raise EvaluationError(f"lat_edges ({le.size}) / lon_edges ({oe.size}) must have nlat + 1 / nlon + 1 entries")
    if weights is None:
        cw = np.ones((lat.size, lon.size))
    elif isinstance(weights, str):
        if weights != "area":
            raise EvaluationError("weights must be None (plain means, the study's), 'area' or an array, "
                                  f"got {weights!r}")
        cw = _cell_area_weights(le, oe)
    else:
        cw = _as_float(weights, "weights")
        if cw.shape != (lat.size, lon.size) or not np.isfinite(cw).all() or np.any(cw < 0):
            raise EvaluationError(f"weights must be a finite, non-negative (nlat, nlon) = {(lat.size, lon.size)} "
                                  f"array, got shape {cw.shape}")
    return le, oe, cw


def _check_same(arrays: dict, where: str) -> tuple:
    shapes = {k: np.shape(a) for k, a in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise EvaluationError(f"{where}: arrays must have one shape, got {shapes}")
    shape = next(iter(shapes.values()))
    if len(shape) < 2:
        raise EvaluationError(f"{where}: arrays must end in (lat, lon), got {shape}")
    return shape


@dataclass(frozen=True)
class LaiRow:
    """One row of the LAI table (like the study's Table II) for one region.

    Differences and RMSD in m2/m2; ``*_rbias`` fractions; ``improved``: weighted fraction of the
    region's cells whose RMSD over time is lower in CN than CTL; ``n``: samples (cell x time) used;
    ``cells``: sum of the overlap weights of the cells with data (effective number of cells).
    """

    region: Region
    n: int
    cells: float
    cn_bias: float
    ctl_bias: float
    cn_rmsd: float
    ctl_rmsd: float
    cn_rbias: float
    ctl_rbias: float
    improved: float


def lai_table(ctl, cn, obs, lat, lon, weights=None, *, regions: Sequence = REGIONS, lat_edges=None,
              lon_edges=None, time=None) -> list[LaiRow]:
    """The study's Table II from LAI arrays ``(time, lat, lon)`` or ``(lat, lon)`` (m2/m2).

    Per region: mean CN-OBS and CTL-OBS difference, their RMSD and rBias, the improved fraction, n.
    Samples are weighted by the cells' overlap fractions with the region (:func:`region_weights`),
    times ``weights``: None (the study's plain means over samples), ``'area'`` (spherical cell area)
    or an (nlat, nlon) array (e.g. area x landfrac). ``lat``/``lon``: cell centres (deg);
    ``lat_edges``/``lon_edges``: cell edges (default: halfway between centres, as engine.grid).
    CTL and CN are scored on the samples valid in all three arrays. ``time``: records to use.
    """
    arrays = {"ctl": _as_float(ctl, "ctl"), "cn": _as_float(cn, "cn"), "obs": _as_float(obs, "obs")}
    shape = _check_same(arrays, "lai_table")
    le, oe, cw = _grid_weights(lat, lon, weights, lat_edges, lon_edges, shape)
    c0, c1, o = (_select_time(arrays[k], time, k) for k in ("ctl", "cn", "obs"))
    rows = []
    for reg in (_region(r) for r in regions):
        rw = region_weights(le, oe, reg)
        sel = rw > 0
        w_cell = (rw * cw)[sel]  # (ncell,)
        x0, x1, xo = c0[..., sel], c1[..., sel], o[..., sel]  # (..., ncell)
        ok = _present(x0) & _present(x1) & _present(xo) & (w_cell > 0)
        x0, x1, xo = (np.where(ok, x, np.nan) for x in (x0, x1, xo))
        s0, s1 = compare(x0, xo, w_cell), compare(x1, xo, w_cell)
        cell_ok = ok.any(axis=tuple(range(ok.ndim - 1)))  # cells with at least one sample
        if not cell_ok.any():
            imp = np.nan
        elif x0.ndim >= 2:
            imp = improved_fraction(x0.reshape(-1, x0.shape[-1]), x1.reshape(-1, x1.shape[-1]),
                                    xo.reshape(-1, xo.shape[-1]), w_cell, time_axis=0)
        else:
            imp = improved_fraction(x0, x1, xo, w_cell)
        rows.append(LaiRow(region=reg, n=s0.n, cells=float(np.sum(rw[sel][cell_ok])),
                           cn_bias=s1.bias, ctl_bias=s0.bias, cn_rmsd=s1.rmsd, ctl_rmsd=s0.rmsd,
                           cn_rbias=s1.rbias, ctl_rbias=s0.rbias, improved=imp))
    return rows


@dataclass(frozen=True)
class VarRow:
    """One row of the variables table (like the study's Table III): one variable (and soil band),
    one statistic ('rBias' fraction or 'RMSD' in ``units``), one experiment ('CTL' or 'CN'), with a
    value and a sample count per region key, and the study's values where it published them."""

    var: str
    field: str
    band: str  # "" for surface variables, "0-7 cm" ..., or "0-255 cm" (all bands pooled)
    stat: str
    exp: str
    units: str
    values: dict
    n: dict
    study: dict | None


def _band_labels() -> list[str]:
    return [f"{100 * a:g}-{100 * b:g} cm" for a, b in STUDY_BANDS_M]


def variables_table(ctl: dict, cn: dict, ref: dict, lat, lon, weights=None, *, variables: Iterable[str] | None = None,
                    regions: Sequence = REGIONS, lat_edges=None, lon_edges=None, time=None,
                    per_band: bool = True) -> list[VarRow]:
    """The study's Table III: rBias and RMSD of CTL and CN against ``ref`` per region.

    ``ctl``, ``cn``, ``ref``: dicts CLM field name -> array ``(time, lat, lon)`` (band fields
    ``(time, band, lat, lon)`` with the study's 4 bands), e.g. from :func:`load_history`. ``variables``:
    study names from :data:`VARIABLES` (default all six: NLW, T2m, HS, LE, ST, SM). Band variables
    give one set of rows per band (``per_band``) and one with the four bands pooled as samples,
    which carries the study's values. Weights and edges as in :func:`lai_table`. Row order: variable,
    band, stat (rBias, RMSD), experiment (CTL, CN), as the study prints them.
    """
    keys = [v.key for v in VARIABLES] if variables is None else list(variables)
    unknown = [k for k in keys if k not in _VARIABLE_BY_KEY]
    if unknown:
        raise EvaluationError(f"variables_table: unknown variables {unknown}; known: {list(_VARIABLE_BY_KEY)}")
    regs = [_region(r) for r in regions]
    rows: list[VarRow] = []
    grid = None
    for key in keys:
        var = _VARIABLE_BY_KEY[key]
        arrs = {}
        for label, d in (("ctl", ctl), ("cn", cn), ("ref", ref)):
            if not isinstance(d, dict) or var.field not in d:
                raise EvaluationError(f"variables_table: {label} has no field {var.field!r} (the study's {key}); "
                                      f"it has {sorted(d) if isinstance(d, dict) else type(d).__name__}")
            name = f"{label}[{var.field}]"
            arrs[label] = _select_time(_as_float(d[var.field], name), time, name)
        shape = _check_same(arrs, f"variables_table {var.field}")
        if var.band and (len(shape) != 4 or shape[1] != len(STUDY_BANDS_M)):
            raise EvaluationError(f"variables_table: {var.field} must be (time, band={len(STUDY_BANDS_M)}, lat, lon), "
                                  f"got {shape}")
        if not var.band and len(shape) not in (2, 3):
            raise EvaluationError(f"variables_table: {var.field} must be (time, lat, lon) or (lat, lon), got {shape}")
        le, oe, cw = _grid_weights(lat, lon, weights, lat_edges, lon_edges, shape)
        if grid is None:
            grid = [(reg, region_weights(le, oe, reg) * cw) for reg in regs]
        subsets = [("", slice(None))] if not var.band else (
            ([(lab, (slice(None), b)) for b, lab in enumerate(_band_labels())] if per_band else [])
            + [(f"{100 * STUDY_BANDS_M[0, 0]:g}-{100 * STUDY_BANDS_M[-1, 1]:g} cm", slice(None))])
        for band_label, idx in subsets:
            pooled = not var.band or band_label not in _band_labels()
            scores = {"CTL": {}, "CN": {}}
            for reg, w in grid:
                sel = w > 0
                x0, x1, xo = (arrs[k][idx][..., sel] for k in ("ctl", "cn", "ref"))
                ok = _present(x0) & _present(x1) & _present(xo)
                x0, x1, xo = (np.where(ok, x, np.nan) for x in (x0, x1, xo))
                scores["CTL"][reg.key] = compare(x0, xo, w[sel], rbias_offset=var.rbias_offset)
                scores["CN"][reg.key] = compare(x1, xo, w[sel], rbias_offset=var.rbias_offset)
            for stat in ("rBias", "RMSD"):
                for exp in ("CTL", "CN"):
                    sc = scores[exp]
                    study = STUDY_TABLE3.get((key, stat, exp)) if pooled else None
                    rows.append(VarRow(var=key, field=var.field, band=band_label, stat=stat, exp=exp,
                                       units="1" if stat == "rBias" else var.units,
                                       values={k: (s.rbias if stat == "rBias" else s.rmsd) for k, s in sc.items()},
                                       n={k: s.n for k, s in sc.items()}, study=study))
    return rows


def _num(v, fmt: str) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    text = format(v, fmt)
    return text[1:] if text.startswith("-") and float(text) == 0.0 else text  # no "-0.000"


def format_table(rows, *, ref_label: str = "OBS", title: str | None = None, study: bool = True) -> str:
    """Aligned text of rows from :func:`lai_table` (laid out like the study's Table II) or
    :func:`variables_table` (like Table III). ``ref_label`` names the reference ("OBS", "truth");
    with ``study`` the study's published values are printed alongside for reference."""
    rows = list(rows)
    if not rows:
        raise EvaluationError("format_table: no rows")
    if all(isinstance(r, LaiRow) for r in rows):
        text = _format_lai(rows, ref_label, study)
    elif all(isinstance(r, VarRow) for r in rows):
        text = _format_vars(rows, ref_label, study)
    else:
        raise EvaluationError("format_table: rows must all come from lai_table or all from variables_table")
    return (f"{title}\n{text}" if title else text)


def _pct(v, fmt: str) -> str:
    return "-" if v is None or not np.isfinite(v) else format(100.0 * v, fmt) + "%"


def _format_lai(rows: list[LaiRow], ref: str, study: bool) -> str:
    head = ["#", "region", "lon", "lat", "n", "cells", f"CN-{ref}", f"CTL-{ref}", "RMSD CN", "RMSD CTL",
            "rBias CN", "rBias CTL", "improved"]
    if study:
        head += ["study CN-OBS", "study CTL-OBS"]
    head += ["dominant cover"]
    body = []
    for r in rows:
        g = r.region
        line = [str(g.number) if g.number else "-", g.name, g.lon_text, g.lat_text, str(r.n), _num(r.cells, ".2f"),
                _num(r.cn_bias, ".2f"), _num(r.ctl_bias, ".2f"), _num(r.cn_rmsd, ".2f"), _num(r.ctl_rmsd, ".2f"),
                _pct(r.cn_rbias, ".1f"), _pct(r.ctl_rbias, ".1f"), _pct(r.improved, ".0f")]
        if study:
            line += [_num(g.study_cn_obs, ".2f"), _num(g.study_ctl_obs, ".2f")]
        line += [g.cover]
        body.append(line)
    left = {1, 2, 3, len(head) - 1}
    text = _align(head, body, left)
    text += (f"\nn: samples (cell x time) used; cells: sum of the cells' overlap fractions with the box; "
             f"rBias = sum(model - {ref})/sum({ref}); improved: share of cells with RMSD(CN) < RMSD(CTL)")
    if study:
        s = STUDY_GLOBAL_LAI
        text += (f"\nstudy (Ling et al. 2024, vs satellite LAI): global CTL-OBS {s['CTL-OBS']:.2f} "
                 f"({s['CTL-OBS %']:.1f}% of obs), CN-OBS {s['CN-OBS']:.2f} ({s['CN-OBS %']:.1f}%), "
                 f"annual mean RMSD CTL {s['RMSD CTL']:.2f}, CN {s['RMSD CN']:.2f}")
    return text


def _format_vars(rows: list[VarRow], ref: str, study: bool) -> str:
    keys = list(rows[0].values)
    head = ["var", "layer", "stat", "exp"] + keys + ["units"]
    body = []
    for r in rows:
        fmt = ".3f" if (r.stat == "rBias" or r.var == "SM") else ".2f"
        body.append([r.var, r.band, r.stat, r.exp] + [_num(r.values[k], fmt) for k in keys] + [r.units])
        if study and r.study is not None:
            body.append(["", "", "", "study"] + [_num(r.study.get(k), fmt) for k in keys] + [""])
    n_line = rows[0].n
    foot = (f"reference: {ref}; rBias = sum(model - ref)/sum(ref) (T2m, ST on degC), RMSD in units; "
            f"samples (cell x time) of {rows[0].var}: " + ", ".join(f"{k} {n_line[k]}" for k in keys))
    legend = "regions: " + "; ".join(f"{k} {REGION_BY_KEY[k].name}" for k in keys if REGION_BY_KEY[k].number)
    return _align(head, body, {0, 1, 2, 3, len(head) - 1}) + "\n" + foot + "\n" + legend


def _align(head: list[str], body: list[list[str]], left: set) -> str:
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) for i in range(len(head))]

    def fmt(cells):
        out = (c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
        return "  ".join(out).rstrip()

    rule = "-" * len(fmt(head))
    return "\n".join([fmt(head), rule, *(fmt(b) for b in body)])


# ----------------------------------------------------------------------------------------------
# Reading laida history files
# ----------------------------------------------------------------------------------------------


def load_history(path, fields) -> dict:
    """Read ``fields`` (CLM names, e.g. ``TLAI``, ``TSOI``, ``TLAI_SPREAD``) of a laida history file.

    Returns a dict: each field as float64 ``(time, [band,] lat, lon)`` with the fill value and any
    ``|x| >= 1e35`` or non-finite value as NaN; ``lat``, ``lon`` (deg, centres), ``lat_edges``,
    ``lon_edges`` (from ``lat_bnds``/``lon_bnds``, else halfway between centres), ``time`` (numbers in
    ``time_units``), ``time_units``, ``calendar``, and when present ``time_bnds``, ``n_samples`` (model
    steps in each time mean), ``area`` (km2), ``landfrac``, ``landmask``, ``band`` and ``band_bnds`` (m).
    ``units``: field -> units string.
    """
    import netCDF4

    path = Path(os.fspath(path))
    names = [fields] if isinstance(fields, str) else list(fields)
    if not names or not all(isinstance(n, str) for n in names):
        raise EvaluationError(f"load_history({path}): fields must be field names, got {fields!r}")
    if not path.is_file():
        raise EvaluationError(f"load_history: no such history file: {path}")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise EvaluationError(f"load_history: cannot open {path} as netCDF: {exc}") from None
    try:
        ds.set_auto_mask(True)
        missing = [n for n in ("lat", "lon", "time", *names) if n not in ds.variables]
        if missing:
            fields_there = sorted(k for k, v in ds.variables.items() if v.dimensions[-2:] == ("lat", "lon")
                                  and v.dimensions[:1] == ("time",))
            raise EvaluationError(f"load_history: {path} has no variable(s) {missing}; its gridded fields are "
                                  f"{fields_there}")
        out: dict = {"path": str(path), "units": {}}
        for c in ("lat", "lon", "time"):
            a = _read(ds, c, path)
            if a.ndim != 1 or not np.isfinite(a).all():
                raise EvaluationError(f"load_history: {path}: coordinate {c!r} must be 1-D and finite")
            out[c] = a
        out["time_units"] = str(getattr(ds["time"], "units", ""))
        out["calendar"] = str(getattr(ds["time"], "calendar", "standard"))
        nlat, nlon = out["lat"].size, out["lon"].size
        for c, n, derive in (("lat", nlat, lat_edges_from_centres), ("lon", nlon, lon_edges_from_centres)):
            b = f"{c}_bnds"
            if b in ds.variables:
                bn = _read(ds, b, path)
                if bn.shape != (n, 2) or not np.allclose(bn[1:, 0], bn[:-1, 1], rtol=0, atol=1e-9):
                    raise EvaluationError(f"load_history: {path}: {b} must be ({n}, 2) contiguous bounds, "
                                          f"got {bn.shape}")
                out[f"{c}_edges"] = np.r_[bn[:, 0], bn[-1, 1]]
            else:
                out[f"{c}_edges"] = derive(out[c])
        for extra in ("time_bnds", "n_samples", "area", "landfrac", "landmask", "band", "band_bnds"):
            if extra in ds.variables:
                out[extra] = _read(ds, extra, path)
        nt = out["time"].size
        for n in names:
            v = ds[n]
            dims = v.dimensions
            if dims not in (("time", "lat", "lon"), ("time", "band", "lat", "lon")):
                raise EvaluationError(f"load_history: {path}: variable {n!r} has dimensions {dims}; expected "
                                      "(time, lat, lon) or (time, band, lat, lon)")
            a = _read(ds, n, path)
            if a.shape[0] != nt or a.shape[-2:] != (nlat, nlon):
                raise EvaluationError(f"load_history: {path}: variable {n!r} has shape {a.shape}")
            a[~_present(a)] = np.nan
            out[n] = a
            out["units"][n] = str(getattr(v, "units", ""))
        return out
    finally:
        ds.close()


def _read(ds, name: str, path: Path) -> np.ndarray:
    try:
        a = ds[name][...]
    except (OSError, RuntimeError, IndexError) as exc:  # truncated or damaged file
        raise EvaluationError(f"load_history: {path}: cannot read variable {name!r}: {exc}") from None
    return np.ma.filled(np.ma.asarray(a).astype(np.float64), np.nan)


# ----------------------------------------------------------------------------------------------
# A run in segments: the history files of a chained run joined along time
# ----------------------------------------------------------------------------------------------

#: The three runs of a laida run directory (engine.experiment.EXPERIMENTS), reference first.
RUN_EXPERIMENTS = ("nature", "ctl", "cn")
_DAYS_PER_UNIT = {"days": 1.0, "day": 1.0, "hours": 1 / 24, "hour": 1 / 24, "minutes": 1 / 1440, "minute": 1 / 1440,
                  "seconds": 1 / 86400, "second": 1 / 86400}
_JOIN_EPS_DAYS = 1.0e-6  # day (0.0864 s): bounds closer than this are the same time (engine.history's tolerance)


def history_segments(run_dir, experiment: str) -> list[Path]:
    """The history segments ``<run_dir>/<experiment>/<experiment>.h0.c<first cycle>.nc`` of a run, in
    cycle order.

    A run publishes one segment per checkpoint interval, named by its first cycle
    (engine.experiment), so a run of several checkpoints, or a chain of jobs, leaves several. A segment still being written, or left
    by a job that failed, is a hidden ``.<name>.<random>.tmp`` file and is not listed. Raises
    :class:`EvaluationError` when the experiment's directory or every segment is missing.
    """
    return _segments(run_dir, experiment, f"{experiment}.h0", "history")


def _segments(run_dir, experiment: str, stem: str, what: str) -> list[Path]:
    d = Path(os.fspath(run_dir)) / experiment
    if not d.is_dir():
        raise EvaluationError(f"{run_dir}: no {experiment}/ directory: not a laida run directory, or its "
                              f"{experiment} run never started")
    pattern = re.compile(rf"{re.escape(stem)}\.c(\d+)\.nc")
    found = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_file())
    if not found:
        raise EvaluationError(f"{d}: no {what} file {stem}.c<cycle>.nc (no run segment has finished "
                              "yet; an unfinished one is a hidden .tmp file)")
    return [p for _, p in found]


def obs_diag_segments(run_dir, experiment: str = "cn") -> list[Path]:
    """The observation-space diagnostics ``<run_dir>/<experiment>/<experiment>.obs_diag.c<first cycle>.nc``
    of a run, in cycle order: one per checkpoint interval, as :func:`history_segments`."""
    return _segments(run_dir, experiment, f"{experiment}.obs_diag", "observation diagnostics")


def load_obs_diag(run_dir, experiment: str = "cn") -> dict:
    """Every variable of the observation diagnostics of a run, joined over its segments.

    Variables along the ``obs`` dimension (one row per observation: value, error variance, prior and
    posterior mean and spread, QC, ``obs_cycle``, ``obs_number``...) and along the ``cycle`` dimension
    (``cycle``, ``cycle_time``, ``n_obs_in_cycle``, the analysis budget terms) are concatenated in
    cycle order; missing values are NaN (floats) or the file's fill value (integers). The segments of
    a run cover disjoint cycles; a cycle found in two of them is an error naming both files.
    """
    import netCDF4

    out: dict[str, list] = {}
    seen: dict[int, Path] = {}
    for path in obs_diag_segments(run_dir, experiment):
        try:
            with netCDF4.Dataset(path) as ds:
                for c in np.asarray(ds["cycle"][:]).tolist():
                    if c in seen:
                        raise EvaluationError(f"load_obs_diag: cycle {c} is in both {seen[c]} and {path}")
                    seen[c] = path
                for name, var in ds.variables.items():
                    if var.dimensions[:1] not in (("obs",), ("cycle",)):
                        continue
                    a = var[...]
                    a = np.ma.filled(a, np.nan) if a.dtype.kind == "f" else np.ma.filled(a)
                    out.setdefault(name, []).append(a)
        except (OSError, RuntimeError, IndexError) as exc:
            raise EvaluationError(f"load_obs_diag: {path}: cannot read: {exc}") from None
    return {k: np.concatenate(v) for k, v in out.items()}


def _days_per_unit(units: str, path) -> float:
    unit, sep, _ = units.partition(" since ")
    if not sep or unit.strip().lower() not in _DAYS_PER_UNIT:
        raise EvaluationError(f"{path}: time units must be '<days|hours|minutes|seconds> since <date>', got {units!r}")
    return _DAYS_PER_UNIT[unit.strip().lower()]


def _segment_times(path: Path) -> dict:
    """Time axis of one history segment: ``time``, ``time_bnds``, ``n_samples``, units, calendar and
    the model step (s) from the ``config_toml`` attribute (None when the file does not say)."""
    import netCDF4

    if not path.is_file():
        raise EvaluationError(f"no such history file: {path}")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise EvaluationError(f"cannot open {path} as netCDF: {exc}") from None
    try:
        missing = [n for n in ("time", "time_bnds", "n_samples") if n not in ds.variables]
        if missing:
            raise EvaluationError(f"{path}: no variable(s) {missing}: not a laida history file, so its records "
                                  "cannot be joined to other segments")
        out = {"path": path, "time": _read(ds, "time", path), "bnds": _read(ds, "time_bnds", path),
               "n": _read(ds, "n_samples", path), "units": str(getattr(ds["time"], "units", "")),
               "calendar": str(getattr(ds["time"], "calendar", "standard")), "dt": None,
               "frequency": str(getattr(ds, "frequency", ""))}
        toml_text = str(getattr(ds, "config_toml", "") or "")
    finally:
        ds.close()
    nt = out["time"].size
    b = out["bnds"]
    if b.shape != (nt, 2) or out["n"].shape != (nt,) or not (np.isfinite(b).all() and np.isfinite(out["n"]).all()):
        raise EvaluationError(f"{path}: time_bnds {b.shape} and n_samples {out['n'].shape} must be finite and "
                              f"match time ({nt},)")
    out["per_day"] = 1.0 / _days_per_unit(out["units"], path)
    eps = _JOIN_EPS_DAYS * out["per_day"]
    if nt and (np.any(b[:, 1] < b[:, 0] - eps) or np.any(b[1:, 0] < b[:-1, 1] - eps)):
        raise EvaluationError(f"{path}: time_bnds are not ordered, non-overlapping periods")
    if toml_text.strip():
        import tomllib

        try:
            step = tomllib.loads(toml_text).get("time", {}).get("step_seconds")
        except tomllib.TOMLDecodeError as exc:
            raise EvaluationError(f"{path}: its config_toml attribute is not TOML: {exc}") from None
        if isinstance(step, int) and not isinstance(step, bool) and step > 0:
            out["dt"] = step
    return out


def _steps(m: dict, t0: float, t1: float) -> int:
    """Model steps of ``m``'s step length between times t0 and t1 (file units)."""
    return int(round((t1 - t0) / m["per_day"] * 86400.0 / m["dt"]))


def _join_plan(metas: list[dict]) -> tuple[list, list]:
    """Output records of segments in time order: ``plan[r]`` = [(segment, record, n_samples), ...] and
    ``bounds[r]`` = [t0, t1]. A period split by a segment boundary (the first segment's last record
    cut at its end, the next segment's first record of the same period) becomes one record."""
    plan: list[list[tuple[int, int, float]]] = []
    bounds: list[list[float]] = []
    for i, m in enumerate(metas):
        b, n, eps = m["bnds"], m["n"], _JOIN_EPS_DAYS * m["per_day"]
        first = 0
        if i > 0:
            prev = metas[i - 1]
            a = bounds[-1]
            where = f"{prev['path'].name} (last period {a[0]:g}-{a[1]:g}) and {m['path'].name} (first period " \
                    f"{b[0, 0]:g}-{b[0, 1]:g}, {m['units']})"
            check_n = m["dt"] is not None and m["dt"] == prev["dt"]
            if abs(b[0, 0] - a[1]) <= eps:  # the next segment starts a new period where the last one ended
                if check_n and int(n[0]) != _steps(m, b[0, 0], b[0, 1]):
                    raise EvaluationError(f"history segments do not join: {where}: the first period holds "
                                          f"{int(n[0])} model steps of {m['dt']} s, the period has "
                                          f"{_steps(m, b[0, 0], b[0, 1])} (a gap inside it)")
            elif abs(b[0, 0] - a[0]) <= eps and b[0, 1] > a[1] + eps:  # one period split by the segment boundary
                if check_n and int(n[0]) != _steps(m, a[1], b[0, 1]):
                    raise EvaluationError(f"history segments do not join: {where}: the period split between them "
                                          f"needs {_steps(m, a[1], b[0, 1])} model steps after {a[1]:g} in the "
                                          f"second, it holds {int(n[0])} (a gap or an overlap inside the period)")
                plan[-1].append((i, 0, float(n[0])))
                bounds[-1] = [float(b[0, 0]), float(b[0, 1])]
                first = 1
            elif b[0, 0] > a[1] + eps:
                raise EvaluationError(
                    f"history segments do not join: gap from {a[1]:g} to {b[0, 0]:g} ({m['units']}) between "
                    f"{where}. A job that failed discards the history of its unfinished segment; the "
                    "cycles it ran have no history unless they are run again from a checkpoint before them")
            else:
                raise EvaluationError(f"history segments overlap: {where}: the same model time was run twice "
                                      "(remove the segment that was superseded)")
        for k in range(first, b.shape[0]):
            plan.append([(i, k, float(n[k]))])
            bounds.append([float(b[k, 0]), float(b[k, 1])])
    return plan, bounds


def load_history_series(paths, fields) -> dict:
    """Read ``fields`` of the history segments ``paths`` of ONE experiment and join them along time.

    The segments (e.g. :func:`history_segments` of a chained run; any order) are put in time order
    by their first period and must join without a gap or an overlap: each segment's first period
    starts where the previous one's last period ended, or (a history period cut by a segment
    boundary: the first segment writes the part up to its end, the next one the rest with the
    period's start as lower bound) continues that period; when the files carry the model step
    (``config_toml``) the number of steps in the joining period is checked too. A split period is
    joined into one record, the time mean weighted by the steps of each part (exact for ensemble
    means; a ``*_SPREAD`` field of a split period cannot be joined and raises). All segments must
    share lat, lon, landmask, time units and calendar.

    Returns the dict of :func:`load_history` over the whole series (fields ``(time, [band,] lat,
    lon)``, ``time`` the middles of ``time_bnds``, ``n_samples`` summed over joined parts) plus
    ``paths`` (the segments in time order) and ``segments`` (per segment: path, first output
    record, number of records); ``path`` is a short description for messages.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(os.fspath(p)) for p in paths]
    if not paths:
        raise EvaluationError("load_history_series: no history files given")
    names = [fields] if isinstance(fields, str) else list(fields)
    metas = [_segment_times(p) for p in paths]
    for m in metas:
        if m["time"].size == 0:
            raise EvaluationError(f"{m['path']}: the history segment holds no time records")
        if (m["units"], m["calendar"]) != (metas[0]["units"], metas[0]["calendar"]):
            raise EvaluationError(f"{m['path']} has time units {m['units']!r} ({m['calendar']}), "
                                  f"{metas[0]['path']} {metas[0]['units']!r} ({metas[0]['calendar']}): not one run")
        if m["frequency"] != metas[0]["frequency"]:
            raise EvaluationError(f"{m['path']} holds {m['frequency'] or '(unstated)'} means, {metas[0]['path']} "
                                  f"{metas[0]['frequency'] or '(unstated)'} means: segments of one run share "
                                  "history.frequency")
    metas.sort(key=lambda m: (m["bnds"][0, 0], m["bnds"][0, 1]))
    plan, bounds = _join_plan(metas)
    split = [r for r, parts in enumerate(plan) if len(parts) > 1]
    spread = [n for n in names if n.endswith("_SPREAD")]
    if split and spread:
        b = bounds[split[0]]
        raise EvaluationError(f"load_history_series: {spread} cannot be read from this series: the period "
                              f"{b[0]:g}-{b[1]:g} is split between two segments and a spread of time means cannot "
                              "be joined from its parts (ensemble means can)")
    into: dict[int, list[tuple[int, int, float, float]]] = {i: [] for i in range(len(metas))}
    for r, parts in enumerate(plan):
        total = sum(n for _, _, n in parts)
        for i, k, n in parts:
            into[i].append((r, k, n / total if len(parts) > 1 else 1.0, len(parts)))
    out: dict = {}
    segments = []
    for i, m in enumerate(metas):
        h = load_history(m["path"], names)
        if i == 0:
            out = {key: h[key] for key in h if key not in names and key not in ("time", "time_bnds", "n_samples")}
            for n in names:
                out[n] = np.zeros((len(plan),) + h[n].shape[1:])
        else:
            for c in ("lat", "lon", "landmask"):
                if (c in h) != (c in out) or (c in h and (h[c].shape != out[c].shape
                                                          or not np.allclose(h[c], out[c], rtol=0, atol=1e-6))):
                    raise EvaluationError(f"{m['path']} and {metas[0]['path']} differ in {c!r}: not one run")
        for n in names:
            if h[n].shape[1:] != out[n].shape[1:]:
                raise EvaluationError(f"{m['path']}: {n} has shape {h[n].shape}, {metas[0]['path']} {out[n].shape}")
            for r, k, w, nparts in into[i]:
                if nparts == 1:
                    out[n][r] = h[n][k]
                else:
                    out[n][r] += w * h[n][k]
        rows = [r for r, _, _, _ in into[i]]
        segments.append((str(m["path"]), min(rows), len({r for r in rows})))
    tb = np.asarray(bounds, dtype=np.float64)
    out["time_bnds"] = tb
    out["time"] = 0.5 * (tb[:, 0] + tb[:, 1])
    out["n_samples"] = np.asarray([sum(n for _, _, n in parts) for parts in plan])
    out["paths"] = [str(m["path"]) for m in metas]
    out["segments"] = segments
    first, last = metas[0]["path"], metas[-1]["path"]
    out["path"] = str(first) if len(metas) == 1 else f"{first.parent}/{{{first.name} .. {last.name}}} " \
                                                     f"({len(metas)} segments)"
    return out


def _load_any(source, fields) -> dict:
    """One history file (path) with :func:`load_history`, or several segments (a sequence of paths)
    with :func:`load_history_series`."""
    if isinstance(source, (str, os.PathLike)):
        return load_history(source, fields)
    return load_history_series(source, fields)


def _coverage(d: dict) -> str:
    t = d["time"]
    b = d.get("time_bnds")
    span = f"{b[0, 0]:g} to {b[-1, 1]:g}" if b is not None and b.size else f"{t[0]:g} to {t[-1]:g}"
    return f"{t.size} records, {span} {d['time_units']}"


def evaluation_report(ctl_path, cn_path, ref_path, *, ref_label: str = "truth", weights=None, time=None,
                      variables: Iterable[str] | None = None, lai_field: str = "TLAI", per_band: bool = False) -> str:
    """Both tables as text, from the history of CTL, CN and the reference (e.g. the nature run).

    Each of ``ctl_path``, ``cn_path``, ``ref_path`` is one history file, or a sequence of the
    history segments of a chained run (joined along time by :func:`load_history_series`).
    LAI is ``lai_field`` of each file; the variables table uses the study's six variables (or
    ``variables``). The three histories must share their grid (lat, lon) and time records.
    """
    keys = [v.key for v in VARIABLES] if variables is None else list(variables)
    for k in keys:
        if k not in _VARIABLE_BY_KEY:
            raise EvaluationError(f"evaluation_report: unknown variable {k!r}; known: {list(_VARIABLE_BY_KEY)}")
    fields = [lai_field] + [_VARIABLE_BY_KEY[k].field for k in keys]
    h = {lab: _load_any(p, fields) for lab, p in (("CTL", ctl_path), ("CN", cn_path), (ref_label, ref_path))}
    base = h["CTL"]
    for lab, d in h.items():
        for c in ("lat", "lon", "time"):
            if d[c].shape != base[c].shape or not np.allclose(d[c], base[c], rtol=0, atol=1e-6):
                detail = f" ({lab}: {_coverage(d)}; CTL: {_coverage(base)})" if c == "time" else ""
                raise EvaluationError(f"evaluation_report: {d['path']} and {base['path']} differ in {c!r}{detail}")
    ref = h[ref_label]
    kw = dict(lat_edges=base["lat_edges"], lon_edges=base["lon_edges"], time=time)
    lai = lai_table(base[lai_field], h["CN"][lai_field], ref[lai_field], base["lat"], base["lon"], weights, **kw)
    parts = [format_table(lai, ref_label=ref_label,
                          title=f"LAI ({lai_field}, m2/m2): CTL and CN against {ref_label} "
                                "(like the study's Table II)")]
    if keys:
        vt = variables_table(h["CTL"], h["CN"], ref, base["lat"], base["lon"], weights, variables=keys,
                             per_band=per_band, **kw)
        parts.append(format_table(vt, ref_label=ref_label,
                                  title=f"Land variables: rBias and RMSD of CTL and CN against {ref_label} "
                                        "(like the study's Table III)"))
    return "\n\n".join(parts)


def _date_text(t: float, units: str, calendar: str) -> str:
    import cftime

    try:
        d = cftime.num2date(t, units, calendar)
    except Exception:  # noqa: BLE001 - cftime raises several types; the number is still meaningful
        return f"{t:g} {units}"
    return d.strftime("%Y-%m-%d %H:%M") if (d.hour, d.minute) != (0, 0) else d.strftime("%Y-%m-%d")


def run_report(run_dir, *, out=None, weights=None, variables: Iterable[str] | None = None,
               per_band: bool = False) -> str:
    """The evaluation tables of a laida run directory: CTL and CN against the nature run ("truth").

    Reads ALL history segments of ``nature/``, ``ctl/`` and ``cn/`` (:func:`history_segments`),
    joins each experiment's segments along time (:func:`load_history_series`: a gap or an overlap
    is an error) and prints the tables of :func:`evaluation_report` (the study's Tables II and
    III) under a header that names the run, its segments and the period covered (a run still in
    progress is reported up to its last finished segment, and says so). ``run_dir/config.toml``
    (written by every run) supplies the run's name and period when present. With ``out`` the text
    is also written to that file (published atomically). Returns the text.
    """
    run_dir = Path(os.fspath(run_dir))
    if not run_dir.is_dir():
        raise EvaluationError(f"{run_dir}: no such run directory")
    segs, problems = {}, []
    for name in RUN_EXPERIMENTS:
        try:
            segs[name] = history_segments(run_dir, name)
        except EvaluationError as exc:
            problems.append(str(exc))
    if problems:
        raise EvaluationError("run_report: the run directory lacks experiments: " + "; ".join(problems))
    fields = ["TLAI"]
    series = {name: load_history_series(segs[name], fields) for name in RUN_EXPERIMENTS}
    ctl = series["ctl"]
    units, cal = ctl["time_units"], ctl["calendar"]
    tb = ctl["time_bnds"]
    head = [f"laida report: {run_dir.resolve()}"]
    cfg = _run_config(run_dir)
    covered_days = (tb[-1, 1] - tb[0, 0]) * _days_per_unit(units, segs["ctl"][0])
    if cfg is not None:
        g = cfg["grid"]
        box = "" if (g["lat_min"], g["lat_max"], g["lon_min"], g["lon_max"]) == (-90.0, 90.0, 0.0, 360.0) else \
            f", box {g['lat_min']:g}..{g['lat_max']:g} N, {g['lon_min']:g}..{g['lon_max']:g} E"
        cycle_days = int(cfg["experiment"]["cycle_days"])
        head.append(f"run {cfg['run']['name']}: grid {g['name']}{box}, {cfg['ensemble']['members']} members, "
                    f"{cycle_days}-day cycles from {cfg['time']['start']} to {cfg['time']['stop']}")
    for name in RUN_EXPERIMENTS:
        s = series[name]
        tags = ", ".join(Path(p).name for p in s["paths"])
        head.append(f"{name}: {len(s['paths'])} history segment(s): {tags}")
    cover = (f"history: {tb.shape[0]} records from {_date_text(tb[0, 0], units, cal)} to "
             f"{_date_text(tb[-1, 1], units, cal)} ({covered_days:g} days")
    if cfg is not None:
        import datetime as _dt

        start = _dt.datetime.fromisoformat(str(cfg["time"]["start"]))
        stop = _dt.datetime.fromisoformat(str(cfg["time"]["stop"]))
        n_cycles = int((stop - start).total_seconds() // (cycle_days * 86400))
        done = int(round(covered_days / cycle_days)) if cycle_days else 0
        cover += f", {done} of the run's {n_cycles} cycles"
        if done < n_cycles:
            cover += "; the run is not finished"
    head.append(cover + ")")
    for name in ("nature", "cn"):
        s = series[name]
        if s["time"].shape != ctl["time"].shape or not np.allclose(s["time"], ctl["time"], rtol=0, atol=1e-6):
            raise EvaluationError(f"run_report: the history of {name} ({_coverage(s)}) and of ctl ({_coverage(ctl)}) "
                                  "cover different times: a segment of one experiment is missing or was not "
                                  "finished")
    tables = evaluation_report(segs["ctl"], segs["cn"], segs["nature"], ref_label="truth", weights=weights,
                               variables=variables, per_band=per_band)
    text = "\n".join(head) + "\n\n" + tables + "\n"
    if out is not None:
        from engine.fileio import atomic_path

        try:
            with atomic_path(out) as tmp:
                Path(tmp).write_text(text)
        except OSError as exc:
            raise EvaluationError(f"cannot write {out}: {exc.strerror or exc}") from None
    return text


def _run_config(run_dir: Path) -> dict | None:
    """The run's resolved configuration (``config.toml``) as plain TOML tables, or None if absent."""
    path = run_dir / "config.toml"
    if not path.is_file():
        return None
    import tomllib

    try:
        cfg = tomllib.loads(path.read_text())
        for key in ("run.name", "grid.name", "grid.lat_min", "grid.lat_max", "grid.lon_min", "grid.lon_max",
                    "ensemble.members", "experiment.cycle_days", "time.start", "time.stop"):
            section, _, name = key.partition(".")
            cfg[section][name]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise EvaluationError(f"{path}: not a resolved laida configuration ({type(exc).__name__}: {exc})") from None
    return cfg
