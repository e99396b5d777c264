"""LAI observations: the observation operator (grid-cell LAI from patch LAI), synthetic GLASS-like
observations for the twin experiment, a reader for gridded LAI products, the area-weighted
regridder they share, and DART obs_seq import/export.

Reads: gridded LAI files (netCDF4/HDF5), DART ``obs_seq`` ASCII files, the MCD12C1 land-cover raster
(through ``engine.grid``, to know which 0.05 deg pixels a satellite would retrieve LAI for). Writes:
DART ``obs_seq`` files (to a temporary name, then renamed). Holds no model state; an
:class:`ObsBatch` is what the cycle hands to the filter (values, error variances, model cells, the CSR
operator H over patch LAI state elements).

Observation operator (item 4 of the experiment issue)
------------------------------------------------------
``y_cell = sum_p w_p * LAI_p`` over the patches of the cell (``Surface.patch_weight``, fractions of
the vegetated land unit that sum to 1 per cell; CLM4 tech note, Oleson et al. 2010, sect. 1.2.1).
Rows of H are CSR ``(indptr, indices, weights)`` over state elements (by default element = global
patch index); the filter's ``serial_assimilate(E, y, r, H, ...)`` takes exactly this. Observations of
cells without a vegetated patch (all patches bare soil, PFT 0: LAI is 0 in every member, nothing
to learn) are skipped and counted.

Synthetic GLASS-like observations (twin experiment)
----------------------------------------------------
Cadence: GLASS LAI is an 8-day product dated day-of-year 1, 9, 17, ..., 361 (46 per year;
Xiao et al. 2014, IEEE TGRS 52:209, doi:10.1109/TGRS.2013.2237780; :func:`glass_days`).
Pixels: the 0.05 deg MCD12C1 raster (3600 x 7200, the resolution of GLASS's CMG product). A pixel is
observable when its IGBP class belongs to CLM4's vegetated land unit (``engine.grid.IGBP_VEGETATED``
or barren, class 16: the classes that make up ``pct_pft``) and the model cell containing its centre
(``engine.grid._pixel_cells``) is a land cell. Its truth is the truth LAI of that cell's PFT mix,
``H x_truth`` (not a per-IGBP-class patch: the surface's PFTs come from IGBP classes *and* climate
rules, so a class does not map to one patch; keeping the cell mix makes H an exact operator for the
twin, the zero-error observation of a cell being exactly its truth).

Error model (laida's choice, documented here): pixel error sd = max(sd_min, sd_a + sd_b * LAI) with
defaults sd_a = 0.1, sd_b = 0.2, sd_min = 0.1 (m2/m2): 0.3 at LAI 1, 0.7 at LAI 3, 1.3 at LAI 6.
Uncertainty of LAI products grows with LAI (saturation of reflectance in dense canopies): against
reference maps at four sites, GEOV1 had RMSE 0.59 and MODIS 0.68-0.90 with considerable
uncertainty above LAI 3 ("Evaluation and Intercomparison of MODIS and GEOV1 Global Leaf Area
Index Products over Four Sites in North China", Sensors 15:6196, 2015, doi:10.3390/s150306196);
GLASS is ~0.5-1.0 below GEOV2/MODIS in evergreen broadleaf forests
(Li & Xiao 2020, Int. J. Remote Sens. 41:9140, doi:10.1080/01431161.2020.1797222). Xiao et al.
(2014) report an overall GLASS validation RMSE of about 0.78 against ground LAI (as commonly cited;
we could not re-read the paper here); sd_a + sd_b * 3 = 0.7 at a typical site LAI of 3 matches that
size. Pixels are observed as ``max(truth + sd * z, 0)``, z ~ N(0, 1) independent per pixel.
Gaps: an 8-day composite pixel is missing (cloud) with probability
``p_dry + (p_wet - p_dry) * exp(-(lat / lat_width)**2)``, defaults 0.10, 0.50, 15 deg: composites
are mostly complete outside the tropics and often missing in the wet tropics (MODIS LAI "contains
many missing pixels in tropical areas", Li & Xiao 2020). Aggregation: the regridder below with the
0.05 deg pixel grid as the source; cells with a valid-pixel fraction (overlap weight of valid over
observable pixels) below ``min_valid_fraction`` (default 0.3) are dropped. Error variance of the
aggregated observation: ``r = sum w_i**2 sd_i**2 / (sum w_i)**2 + sd_repr**2`` (for equal weights:
mean pixel variance / number of valid pixels) with the representativeness error
``sd_repr = repr_a + repr_b * ybar`` (defaults 0.05 and 0.1; ybar = aggregated pixel mean): pixel
errors of real products are correlated over a model cell (retrieval and land-cover errors), so the
pixel average alone would claim a far too small error. In the twin, the value carries that error
too: ``y = max(ybar + sd_repr * z_cell, 0)`` with z_cell keyed by (seed, parent-grid cell, time), so
``(y - truth) / sqrt(r)`` is standard normal. Pixel sd uses the truth (an OSSE that knows its error
statistics); sd_repr uses only the observation. Randomness: counter-based streams keyed by
(seed, pixel id or parent-grid cell, time = DART day of the composite), independent of the
decomposition, the cell subset and the grid box.

Real products (GLASS, MODIS MCD15, GEOV1-like): :func:`read_lai_product` reads a variable on a regular
lat/lon grid (any spacing, latitude increasing or decreasing, longitude in -180..180 or 0..360),
applies ``_FillValue``/``missing_value``, ``valid_range``/``valid_min``/``valid_max`` (to packed
values, CF conventions sect. 8.1) and ``scale_factor``/``add_offset``, optionally an uncertainty layer
(sd, same packing rules); :func:`product_observations` aggregates it with the same regridder. The
valid fraction is the overlap weight of valid pixels over the cell's land area (``landfrac`` times
the cell area). Pixel error: the product's uncertainty layer where valid, else the error model above
evaluated at the pixel value; plus the representativeness error.

Observation files of an analysis time (the experiment's ``product`` and ``obs_seq`` sources):
:func:`product_batch` and :func:`obs_seq_batch` find the file(s) of analysis time T from a path
pattern with format fields ``{year} {month} {day} {doy} {hour} {minute} {second} {cycle}``
(:func:`expand_pattern`; Gregorian day-of-year of T, or of the start of the composite containing T,
:func:`composite_start`, e.g. GLASS's 8-day composites dated day-of-year 1, 9, ..., 361) or a glob
whose files carry their own times (a product's CF time coordinate, :func:`product_times`; an
obs_seq's observation times). Observations dated outside the analysis window t0 < t <= t1
(:func:`analysis_window`, DART's convention) are not used; obs_seq observations of other types,
outside the grid's land cells or with incoming QC above 3 are dropped and counted. Both return
None with a description of what was expected when there is no file (the caller decides between
an error and skipping the analysis).

Regridder: exact overlaps of regular lat/lon cells on the sphere, area = R**2 * dlon * dsin(lat),
factorised into 1-D overlaps (:func:`overlap_1d`) applied by ``kernels.obsop``. Overlaps smaller than
1e-9 of a source cell's width are dropped (round-off at coinciding edges). Cells are those of the
parent global grid, so regional boxes see the same values.

DART obs_seq (``obs_sequence_mod.f90`` of DART, ASCII form): header ``obs_sequence``, the type table
``obs_kind_definitions`` (DART's Manhattan reader also accepts ``obs_type_definitions``),
``num_copies: n num_qc: m``, ``num_obs: k max_num_obs: k``, copy and QC names, ``first: f last: l``,
then per observation ``OBS key``, the copies, the QCs, ``prev next cov_group`` (time-ordered linked
list), ``obdef``, ``loc3d`` with lon, lat (radians), vertical value and which_vert (-1 = surface),
``kind`` and the type index, time as ``seconds days`` since 1601-01-01 (Gregorian), error variance.
LAI types of DART's ``obs_def_land_mod.f90``: ``MODIS_LEAF_AREA_INDEX``, ``LEAF_AREA_INDEX`` (quantity
QTY_LEAF_AREA_INDEX, no extra metadata). Exported obs_seq.final copies follow DART's names
(``prior ensemble mean``, ``posterior ensemble spread``, ``prior ensemble member 1``, ...), QCs
``Quality Control`` and ``DART quality control``, missing values -888888.0 (MISSING_R8), so
obs_diag and obs_seq_to_netcdf read them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine import grid as gridmod
from engine.fileio import atomic_path
from kernels import obsop

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------
#: GLASS LAI cadence: composites every 8 days starting on day-of-year 1 (46 per year).
GLASS_STEP_DAYS = 8
#: DART kind names for LAI (obs_def_land_mod.f90); laida's default for gridded products.
KIND_LAI = "LEAF_AREA_INDEX"
KIND_MODIS_LAI = "MODIS_LEAF_AREA_INDEX"
DART_KINDS = (KIND_LAI, KIND_MODIS_LAI, "GIMMS_LEAF_AREA_INDEX", "SP_LEAF_AREA_INDEX")
#: DART's MISSING_R8 (types_mod.f90) and its time origin (Gregorian calendar).
DART_MISSING = -888888.0
DART_EPOCH = np.datetime64("1601-01-01T00:00:00", "s")
DART_VERTISSURFACE = -1
#: Units accepted for LAI and its uncertainty (case-insensitive, spaces ignored).
LAI_UNITS = ("m2/m2", "m2m-2", "m^2/m^2", "m2.m-2", "m**2/m**2", "m^2m^-2", "1", "", "-", "none",
             "dimensionless", "unitless")
_OVERLAP_EPS = 1e-9  # overlaps below this fraction of a source cell's width are round-off
_RASTER_RES = 0.05
_RASTER_SHAPE = (3600, 7200)
_OBSERVABLE_IGBP = tuple(gridmod.IGBP_VEGETATED) + (16,)  # vegetated land unit classes + barren


class ObservationError(ValueError):
    """An observation input (file, variable, setting) is missing, malformed or inconsistent."""


# ----------------------------------------------------------------------------------------------
# Error and gap models
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LaiErrorModel:
    """GLASS-like LAI error model (m2/m2): pixel sd = max(sd_min, sd_a + sd_b * LAI); representativeness
    sd of a cell = repr_a + repr_b * LAI_cell. See the module docstring for sources."""

    sd_a: float = 0.1
    sd_b: float = 0.2
    sd_min: float = 0.1
    repr_a: float = 0.05
    repr_b: float = 0.1

    def __post_init__(self):
        for k in ("sd_a", "sd_b", "sd_min", "repr_a", "repr_b"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= 0):
                raise ObservationError(f"observation error model: {k} must be a finite number >= 0, got {v!r}")

    def pixel_sd(self, lai):
        return np.maximum(self.sd_min, self.sd_a + self.sd_b * np.asarray(lai, dtype=np.float64))

    def repr_sd(self, lai):
        return self.repr_a + self.repr_b * np.asarray(lai, dtype=np.float64)


@dataclass(frozen=True)
class CloudModel:
    """Probability that an 8-day composite pixel is missing: p_dry + (p_wet - p_dry) exp(-(lat/lat_width)^2)."""

    p_dry: float = 0.10
    p_wet: float = 0.50
    lat_width: float = 15.0  # deg

    def __post_init__(self):
        for k in ("p_dry", "p_wet"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and 0.0 <= v <= 1.0):
                raise ObservationError(f"cloud model: {k} must be within [0, 1], got {v!r}")
        if not (isinstance(self.lat_width, (int, float)) and self.lat_width > 0):
            raise ObservationError(f"cloud model: lat_width must be > 0 deg, got {self.lat_width!r}")

    def probability(self, lat):
        x = np.asarray(lat, dtype=np.float64) / self.lat_width
        return self.p_dry + (self.p_wet - self.p_dry) * np.exp(-x * x)


# ----------------------------------------------------------------------------------------------
# Observation operator
# ----------------------------------------------------------------------------------------------
def build_operator(patch_cell, patch_pft, patch_weight, obs_cell, state_index=None):
    """CSR operator of grid-cell LAI for observations of land cells ``obs_cell`` (global land order).

    patch_cell, patch_pft, patch_weight: the flat patch arrays of ``engine.surface.Surface`` (ordered
    by cell then PFT; weights: fractions of the vegetated land unit). state_index: (n_patch,) state
    element of each patch's LAI (default: the patch index). Returns ``(H, keep, n_skipped)``: H =
    (indptr, indices, weights) with one row per kept observation, keep (n_obs,) bool, n_skipped =
    observations of cells with no vegetated (non-bare-soil) patch, which get no row.
    """
    patch_cell = np.asarray(patch_cell, dtype=np.int64)
    patch_pft = np.asarray(patch_pft, dtype=np.int64)
    patch_weight = np.asarray(patch_weight, dtype=np.float64)
    obs_cell = np.asarray(obs_cell, dtype=np.int64).reshape(-1)
    n_patch = patch_cell.size
    if not (patch_pft.size == n_patch == patch_weight.size):
        raise ObservationError(
            f"operator: patch arrays differ in length ({n_patch}, {patch_pft.size}, {patch_weight.size})")
    if n_patch and np.any(np.diff(patch_cell) < 0):
        raise ObservationError("operator: patches must be ordered by cell (engine.surface order)")
    if state_index is None:
        state_index = np.arange(n_patch, dtype=np.int64)
    state_index = np.asarray(state_index, dtype=np.int64)
    if state_index.shape != (n_patch,):
        raise ObservationError(f"operator: state_index must have shape ({n_patch},), got {state_index.shape}")
    n_land = int(patch_cell[-1]) + 1 if n_patch else 0
    if obs_cell.size and (obs_cell.min() < 0 or obs_cell.max() >= n_land):
        raise ObservationError(
            f"operator: observation cells must be land cells 0..{n_land - 1}, got [{obs_cell.min()}, {obs_cell.max()}]")
    first = np.searchsorted(patch_cell, obs_cell, side="left")
    last = np.searchsorted(patch_cell, obs_cell, side="right")
    veg = np.zeros(n_patch + 1, dtype=np.int64)
    veg[1:] = np.cumsum(patch_pft > 0)
    keep = (veg[last] - veg[first]) > 0
    count = np.where(keep, last - first, 0)
    indptr = np.zeros(obs_cell.size + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    rows = np.repeat(np.arange(obs_cell.size), count)
    pos = first[rows] + (np.arange(indptr[-1]) - indptr[rows])
    kept_ptr = np.concatenate(([0], indptr[1:][keep])).astype(np.int64)
    H = (kept_ptr, state_index[pos].copy(), patch_weight[pos].copy())
    return H, keep, int(np.count_nonzero(~keep))


def operator_from_surface(surface, obs_cell, state_index=None):
    """:func:`build_operator` with the patch arrays of an ``engine.surface.Surface``."""
    return build_operator(surface.patch_cell, surface.patch_pft, surface.patch_weight, obs_cell, state_index)


def apply_operator(H, x):
    """y[obs, member] = H x for an ensemble x[element, member] (m2/m2); a 1-D x gives a 1-D y."""
    indptr, indices, weights = (np.ascontiguousarray(a) for a in H)
    x = np.asarray(x, dtype=np.float64)
    one = x.ndim == 1
    x2 = np.ascontiguousarray(x[:, None] if one else x)
    if indices.size and (indices.min() < 0 or indices.max() >= x2.shape[0]):
        raise ObservationError(f"operator: state elements out of range [0, {x2.shape[0]}) in H")
    out = np.empty((indptr.size - 1, x2.shape[1]))
    obsop.apply_operator(indptr.astype(np.int64), indices.astype(np.int64), weights.astype(np.float64), x2, out)
    return out[:, 0] if one else out


def cell_lai(patch_cell, patch_weight, lai, n_land):
    """(n_land,) grid-cell LAI sum_p w_p LAI_p of every land cell (truth of the twin experiment)."""
    out = np.zeros(n_land)
    np.add.at(out, np.asarray(patch_cell, dtype=np.int64), np.asarray(patch_weight) * np.asarray(lai, dtype=np.float64))
    return out


# ----------------------------------------------------------------------------------------------
# The observation batch
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ObsBatch:
    """Observations of grid-cell LAI handed to the filter (arrays of shape (n_obs,)).

    y: value, m2/m2; r: error variance, (m2/m2)**2; cell: land cell in the global land order;
    lat, lon: location, deg (lon in [0, 360)); time: datetime64[s] UTC; qc: incoming QC (0 = good,
    DART convention); kind: DART observation type name.
    """

    y: np.ndarray
    r: np.ndarray
    cell: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    time: np.ndarray
    qc: np.ndarray
    kind: str = KIND_LAI
    meta: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        n = np.asarray(self.y).shape[0] if np.ndim(self.y) else 0
        for k in ("y", "r", "cell", "lat", "lon", "time", "qc"):
            a = np.asarray(getattr(self, k))
            if a.shape != (n,):
                raise ObservationError(f"ObsBatch: {k} has shape {a.shape}, expected ({n},)")

    @property
    def n(self) -> int:
        return int(np.asarray(self.y).size)

    def select(self, mask_or_index) -> "ObsBatch":
        """A new batch with the observations selected by a boolean mask or an index array."""
        sel = np.asarray(mask_or_index)
        return replace(self, **{k: np.asarray(getattr(self, k))[sel] for k in
                                ("y", "r", "cell", "lat", "lon", "time", "qc")})

    def operator(self, surface_or_patches, state_index=None):
        """(H, keep, n_skipped) for these observations: see :func:`build_operator`. Accepts a Surface
        or a tuple (patch_cell, patch_pft, patch_weight)."""
        if isinstance(surface_or_patches, tuple):
            pc, pp, pw = surface_or_patches
        else:
            pc, pp, pw = surface_or_patches.patch_cell, surface_or_patches.patch_pft, surface_or_patches.patch_weight
        return build_operator(pc, pp, pw, self.cell, state_index)


def _batch_for_cells(grid, cells, y, r, time, kind, meta):
    n = cells.size
    t = np.full(n, np.datetime64(time, "s"))
    return ObsBatch(y=y, r=r, cell=cells.astype(np.int64), lat=np.asarray(grid.land_lat)[cells].copy(),
                    lon=np.mod(np.asarray(grid.land_lon)[cells], 360.0), time=t,
                    qc=np.zeros(n, dtype=np.int32), kind=kind, meta=meta)


# ----------------------------------------------------------------------------------------------
# The regridder: exact overlaps of regular lat/lon grids on the sphere
# ----------------------------------------------------------------------------------------------
def overlap_1d(src_edges, dst_edges, *, periodic: bool):
    """Overlaps of 1-D source intervals with destination intervals as CSR over destination intervals.

    src_edges (n_src + 1,) deg, monotonic (either direction); dst_edges (n_dst + 1,) deg, increasing.
    periodic=False (latitude): weights are sin(hi) - sin(lo) of the overlap [lo, hi]; periodic=True
    (longitude, period 360 deg): weights are the overlap in radians, source intervals wrapped into
    the destination frame [dst[0], dst[0] + 360). Returns (ptr (n_dst + 1,), src index, weight),
    sorted by destination then source. Overlaps under 1e-9 of the source width are dropped.
    """
    src = np.asarray(src_edges, dtype=np.float64)
    dst = np.asarray(dst_edges, dtype=np.float64)
    s = np.minimum(src[:-1], src[1:])
    n = np.maximum(src[:-1], src[1:])
    width = n - s
    ids = np.arange(s.size, dtype=np.int64)
    if periodic:
        s = dst[0] + np.mod(s - dst[0], 360.0)
        n = s + width
        s, n, ids = np.r_[s, s - 360.0], np.r_[n, n - 360.0], np.r_[ids, ids]
    k0 = np.maximum(np.searchsorted(dst, s, side="right") - 1, 0)
    k1 = np.minimum(np.searchsorted(dst, n, side="left") - 1, dst.size - 2)
    cnt = np.maximum(k1 - k0 + 1, 0)
    rep = np.repeat(np.arange(s.size), cnt)
    start = np.repeat(np.cumsum(cnt) - cnt, cnt)
    k = k0[rep] + (np.arange(rep.size) - start)
    lo = np.maximum(s[rep], dst[k])
    hi = np.minimum(n[rep], dst[k + 1])
    ok = (hi - lo) > _OVERLAP_EPS * width[ids[rep]]
    k, lo, hi, src_id = k[ok], lo[ok], hi[ok], ids[rep][ok]
    if periodic:
        w = np.deg2rad(hi - lo)
    else:
        w = np.sin(np.deg2rad(hi)) - np.sin(np.deg2rad(lo))
    order = np.lexsort((src_id, k))
    k, src_id, w = k[order], src_id[order], w[order]
    ptr = np.zeros(dst.size, dtype=np.int64)
    np.cumsum(np.bincount(k, minlength=dst.size - 1), out=ptr[1:])
    return ptr, src_id.astype(np.int64), w.astype(np.float64)


def _parent_cells(grid, cells):
    """Parent-grid rows/columns and edges of land cells ``cells`` of ``grid``."""
    plat, plon, plat_e, plon_e = gridmod.global_coordinates(grid.name)
    pidx = np.asarray(grid.land_parent_index)[cells]
    return pidx // plon.size, pidx % plon.size, plat_e, plon_e, pidx


def _cell_weight(plat_e, plon_e, pj, pi):
    """Cell area / R**2 (sr) of parent cells (pj, pi)."""
    ds = np.sin(np.deg2rad(plat_e[pj + 1])) - np.sin(np.deg2rad(plat_e[pj]))
    return ds * np.deg2rad(plon_e[pi + 1] - plon_e[pi])


def _check_cells(grid, cells):
    if cells is None:
        return np.arange(grid.n_land, dtype=np.int64)
    cells = np.asarray(cells)
    if cells.dtype.kind not in "iu" or cells.ndim != 1:
        raise ObservationError(f"cells must be a 1-D integer array of land cells, got {cells.dtype} {cells.shape}")
    if cells.size and (cells.min() < 0 or cells.max() >= grid.n_land):
        raise ObservationError(f"cells must be within [0, {grid.n_land}) (land cells of {grid!r})")
    return cells.astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Synthetic GLASS-like observations
# ----------------------------------------------------------------------------------------------
def glass_days() -> np.ndarray:
    """Day-of-year of the GLASS 8-day composites: 1, 9, ..., 361 (46 per year, leap years too)."""
    return np.arange(1, 366, GLASS_STEP_DAYS, dtype=np.int64)


def composite_time(year: int, doy: int) -> np.datetime64:
    """UTC datetime64[s] of day-of-year ``doy`` (1-based, 00:00) of ``year`` (Gregorian)."""
    if not (1 <= int(doy) <= 366):
        raise ObservationError(f"day of year must be within 1..366, got {doy!r}")
    return np.datetime64(f"{int(year):04d}-01-01T00:00:00", "s") + np.timedelta64(int(doy) - 1, "D")


def dart_day(time) -> int:
    """Whole days since 1601-01-01 (DART's Gregorian day number) of a datetime64."""
    return int((np.datetime64(time, "s") - DART_EPOCH) // np.timedelta64(86400, "s"))


@lru_cache(maxsize=1)
def _observable_raster() -> np.ndarray:
    classes = gridmod.read_igbp(gridmod.land_cover_file())
    table = np.zeros(256, dtype=np.uint8)
    table[list(_OBSERVABLE_IGBP)] = 1
    out = table[classes]
    out.setflags(write=False)
    return out


@lru_cache(maxsize=4)
def _raster_regridder(name: str):
    """Overlap CSRs of the 0.05 deg raster with global grid ``name`` and the centre assignment."""
    _, _, plat_e, plon_e = gridmod.global_coordinates(name)
    nrow, ncol = _RASTER_SHAPE
    lat_edges = 90.0 - _RASTER_RES * np.arange(nrow + 1)  # north to south, as the raster rows
    lon_edges = -180.0 + _RASTER_RES * np.arange(ncol + 1)
    lat_csr = overlap_1d(lat_edges, plat_e, periodic=False)
    lon_csr = overlap_1d(lon_edges, plon_e, periodic=True)
    row_j, col_i = gridmod._pixel_cells(name)
    pix_lat = 90.0 - _RASTER_RES * (np.arange(nrow) + 0.5)
    return lat_csr, lon_csr, row_j.astype(np.int64), col_i.astype(np.int64), pix_lat


def synthetic_observations(grid, truth_cell_lai, time, *, seed: int, cells=None,
                           error: LaiErrorModel = LaiErrorModel(), clouds: CloudModel = CloudModel(),
                           min_valid_fraction: float = 0.3, kind: str = KIND_LAI, observable=None):
    """Synthetic GLASS-like LAI observations of land cells ``cells`` (default all) of ``grid``.

    truth_cell_lai: (grid.n_land,) truth grid-cell LAI (m2/m2) of ALL land cells (pixels near a cell
    edge may take a neighbour's truth; use :func:`cell_lai` on the nature run's patch LAI). time:
    the composite's datetime64 (e.g. :func:`composite_time`). seed: int >= 0. observable: optional
    (3600, 7200) uint8 mask of retrievable pixels (default: from MCD12C1, see module docstring).
    Returns (ObsBatch of the kept cells, diagnostics dict of per-requested-cell arrays: cells,
    valid_fraction, n_valid, n_observable, kept, ybar (pixel mean), r_pixel, r_repr).
    The result for a cell does not depend on which other cells are requested.
    """
    truth = np.ascontiguousarray(truth_cell_lai, dtype=np.float64)
    if truth.shape != (grid.n_land,):
        raise ObservationError(f"synthetic obs: truth_cell_lai must have shape ({grid.n_land},), got {truth.shape}")
    if not np.all(np.isfinite(truth)) or truth.min() < 0:
        raise ObservationError("synthetic obs: truth_cell_lai must be finite and >= 0")
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ObservationError(f"synthetic obs: seed must be an integer >= 0, got {seed!r}")
    if not (0.0 <= float(min_valid_fraction) <= 1.0):
        raise ObservationError(f"synthetic obs: min_valid_fraction must be within [0, 1], got {min_valid_fraction!r}")
    cells = _check_cells(grid, cells)
    pj, pi, _, _, pidx = _parent_cells(grid, cells)
    (lat_ptr, lat_idx, lat_w), (lon_ptr, lon_idx, lon_w), row_j, col_i, pix_lat = _raster_regridder(grid.name)
    nlat_g, nlon_g = gridmod.GRIDS[grid.name][:2]
    land_pos = np.full(nlat_g * nlon_g, -1, dtype=np.int64)
    land_pos[np.asarray(grid.land_parent_index)] = np.arange(grid.n_land)
    obs_mask = _observable_raster() if observable is None else np.ascontiguousarray(observable, dtype=np.uint8)
    if obs_mask.shape != _RASTER_SHAPE:
        raise ObservationError(f"synthetic obs: observable mask must have shape {_RASTER_SHAPE}, got {obs_mask.shape}")
    tkey = dart_day(time)
    n = cells.size
    mean, var, wv, wo = (np.empty(n) for _ in range(4))
    nv, no = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    obsop.synthetic_cells(pj, pi, lat_ptr, lat_idx, lat_w, lon_ptr, lon_idx, lon_w, row_j, col_i, nlon_g,
                          land_pos, truth, obs_mask, pix_lat, int(seed), tkey, float(error.sd_a),
                          float(error.sd_b), float(error.sd_min), float(clouds.p_dry), float(clouds.p_wet),
                          float(clouds.lat_width), _RASTER_SHAPE[1], mean, var, wv, wo, nv, no)
    frac = np.divide(wv, wo, out=np.zeros(n), where=wo > 0)
    kept = (nv > 0) & (frac >= min_valid_fraction)
    z = np.empty(n)
    obsop.cell_normals(int(seed), obsop.TAG_REPRESENTATIVENESS, pidx.astype(np.int64), tkey, z)
    sd_r = error.repr_sd(np.where(np.isfinite(mean), mean, 0.0))
    y = np.maximum(mean + sd_r * z, 0.0)
    r = var + sd_r**2
    diag = dict(cells=cells, valid_fraction=frac, n_valid=nv, n_observable=no, kept=kept, ybar=mean,
                r_pixel=var, r_repr=sd_r**2)
    meta = dict(source="synthetic GLASS-like (laida twin experiment)", seed=int(seed),
                min_valid_fraction=float(min_valid_fraction), error=error, clouds=clouds,
                n_dropped_valid_fraction=int(np.count_nonzero(~kept)))
    return _batch_for_cells(grid, cells[kept], y[kept], r[kept], time, kind, meta), diag


# ----------------------------------------------------------------------------------------------
# Real products: reader and aggregation
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LaiProduct:
    """A gridded LAI field: values (nlat, nlon) m2/m2 (NaN where invalid), optional sd (same shape,
    NaN where unknown), cell edges (deg; lat in the file's order, either direction)."""

    path: str
    variable: str
    values: np.ndarray
    sd: np.ndarray | None
    lat_edges: np.ndarray
    lon_edges: np.ndarray
    n_valid: int


_LAT_NAMES = ("lat", "latitude", "Latitude", "LAT", "nav_lat", "y")
_LON_NAMES = ("lon", "longitude", "Longitude", "LON", "nav_lon", "x")


def _attr(var, name):
    return var.getncattr(name) if name in var.ncattrs() else None


def _coord(ds, var, names, given, what, path):
    if given:
        cands = [given]
    else:
        cands = [d for d in var.dimensions if d in names] + [n for n in names if n not in var.dimensions]
    for c in cands:
        if c in ds.variables:
            return c, np.asarray(ds.variables[c][...], dtype=np.float64)
    raise ObservationError(
        f"LAI product {path}: no {what} coordinate variable found for {var.name!r} "
        f"(looked for {cands}; variables: {sorted(ds.variables)}); set its name in the configuration")


def _edges(c, what, path, name):
    c = np.asarray(c, dtype=np.float64).reshape(-1)
    if c.size < 2 or c.ndim != 1:
        raise ObservationError(f"LAI product {path}: coordinate {name!r} must be 1-D with >= 2 values")
    if not np.all(np.isfinite(c)):
        raise ObservationError(f"LAI product {path}: coordinate {name!r} has non-finite values")
    d = np.diff(c)
    step = d.mean()
    if step == 0 or np.max(np.abs(d - step)) > 1e-6 * abs(step) + 1e-9:
        raise ObservationError(
            f"LAI product {path}: coordinate {name!r} is not a regular grid (steps {d.min():g}..{d.max():g} deg)")
    e = np.r_[c - 0.5 * step, c[-1] + 0.5 * step]
    if what == "latitude":
        if np.any(np.abs(c) > 90.0) or np.any(np.abs(e) > 90.0 + 1e-6 * abs(step)):
            raise ObservationError(
                f"LAI product {path}: latitude {name!r} out of range [-90, 90]: {c.min():g}..{c.max():g} "
                f"(cell edges {e.min():g}..{e.max():g})")
        e = np.clip(e, -90.0, 90.0)
    else:
        if c.min() < -360.0 or c.max() > 720.0:
            raise ObservationError(f"LAI product {path}: longitude {name!r} out of range: {c.min():g}..{c.max():g}")
        if abs(e[-1] - e[0]) > 360.0 + 1e-6 * abs(step):
            raise ObservationError(
                f"LAI product {path}: longitude {name!r} spans {abs(e[-1] - e[0]):g} deg > 360 (duplicated columns)")
    return e


def _check_units(var, path):
    u = _attr(var, "units")
    if u is None:
        return
    key = str(u).strip().lower().replace(" ", "")
    if key not in LAI_UNITS:
        raise ObservationError(
            f"LAI product {path}: variable {var.name!r} has units {u!r}; expected LAI units, one of "
            f"{[x for x in LAI_UNITS if x]}")


def _unpack(var, raw, path):
    """Mask fill/missing values and values outside the valid range (on packed values), then unpack."""
    raw = np.asarray(raw)
    bad = ~np.isfinite(raw) if raw.dtype.kind == "f" else np.zeros(raw.shape, dtype=bool)
    for name in ("_FillValue", "missing_value"):
        v = _attr(var, name)
        if v is not None:
            for fv in np.atleast_1d(v):
                bad |= raw == fv
    vr = _attr(var, "valid_range")
    vmin, vmax = _attr(var, "valid_min"), _attr(var, "valid_max")
    if vr is not None:
        vr = np.atleast_1d(vr)
        if vr.size != 2:
            raise ObservationError(f"LAI product {path}: {var.name!r} valid_range must have 2 values, got {vr}")
        vmin, vmax = vr
    if vmin is not None:
        bad |= raw < vmin
    if vmax is not None:
        bad |= raw > vmax
    scale = _attr(var, "scale_factor")
    offset = _attr(var, "add_offset")
    out = raw.astype(np.float64)
    if scale is not None:
        out = out * float(np.atleast_1d(scale)[0])
    if offset is not None:
        out = out + float(np.atleast_1d(offset)[0])
    out[bad] = np.nan
    return out


def _field(ds, name, path, lat_dim, lon_dim, time_index, what):
    if name not in ds.variables:
        raise ObservationError(
            f"LAI product {path}: {what} variable {name!r} not found (variables: {sorted(ds.variables)})")
    var = ds.variables[name]
    var.set_auto_maskandscale(False)
    dims = var.dimensions
    if lat_dim not in dims or lon_dim not in dims:
        raise ObservationError(
            f"LAI product {path}: variable {name!r} has dimensions {dims}; expected {lat_dim!r} and {lon_dim!r}")
    idx = []
    for d in dims:
        if d in (lat_dim, lon_dim):
            idx.append(slice(None))
        else:
            size = ds.dimensions[d].size if d in ds.dimensions else var.shape[dims.index(d)]
            if not (0 <= time_index < size):
                raise ObservationError(
                    f"LAI product {path}: variable {name!r}: index {time_index} out of range for dimension "
                    f"{d!r} of size {size}")
            idx.append(time_index)
    raw = var[tuple(idx)]
    kept = [d for d in dims if d in (lat_dim, lon_dim)]
    values = _unpack(var, raw, path)
    if kept[0] == lon_dim:
        values = values.T
    return var, np.ascontiguousarray(values)


def _given_edges(e, what, path):
    e = np.asarray(e, dtype=np.float64).reshape(-1)
    d = np.diff(e)
    if e.size < 2 or not np.all(np.isfinite(e)) or not (np.all(d > 0) or np.all(d < 0)):
        raise ObservationError(f"LAI product {path}: given {what} edges must be finite and strictly monotonic")
    if what == "latitude" and np.any(np.abs(e) > 90.0):
        raise ObservationError(f"LAI product {path}: given latitude edges out of range [-90, 90]")
    if what == "longitude" and abs(e[-1] - e[0]) > 360.0 + 1e-9:
        raise ObservationError(f"LAI product {path}: given longitude edges span more than 360 deg")
    return e


def read_lai_product(path, variable: str = "LAI", *, uncertainty: str | None = None, lat_name: str | None = None,
                     lon_name: str | None = None, time_index: int = 0, lat_edges=None, lon_edges=None) -> LaiProduct:
    """Read gridded LAI (netCDF4/HDF5) into a :class:`LaiProduct`; see the module docstring for the
    attributes honoured. ``uncertainty``: name of an sd layer (same grid), or None. Extra dimensions
    (time, band) are indexed with ``time_index``. Files without coordinate variables (plain HDF5
    rasters such as GEOV1's) need ``lat_edges`` and ``lon_edges`` (deg, monotonic, one more than
    the rows / columns, which are then the variable's last two dimensions). Raises ObservationError
    naming file and variable."""
    import netCDF4

    path = str(path)
    if not os.path.exists(path):
        raise ObservationError(f"LAI product {path}: file not found")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise ObservationError(f"LAI product {path}: cannot open as netCDF4/HDF5 ({exc})") from exc
    with ds:
        if variable not in ds.variables:
            raise ObservationError(
                f"LAI product {path}: variable {variable!r} not found (variables: {sorted(ds.variables)})")
        v = ds.variables[variable]
        if (lat_edges is None) != (lon_edges is None):
            raise ObservationError(f"LAI product {path}: give both lat_edges and lon_edges, or neither")
        if lat_edges is not None:
            if len(v.dimensions) < 2:
                raise ObservationError(f"LAI product {path}: variable {variable!r} is not 2-D")
            lat_dim, lon_dim = v.dimensions[-2], v.dimensions[-1]
            lat_e = _given_edges(lat_edges, "latitude", path)
            lon_e = _given_edges(lon_edges, "longitude", path)
            lat, lon = np.empty(lat_e.size - 1), np.empty(lon_e.size - 1)
        else:
            lat_n, lat = _coord(ds, v, _LAT_NAMES, lat_name, "latitude", path)
            lon_n, lon = _coord(ds, v, _LON_NAMES, lon_name, "longitude", path)
            lat_e = _edges(lat, "latitude", path, lat_n)
            lon_e = _edges(lon, "longitude", path, lon_n)
            lat_dim = ds.variables[lat_n].dimensions[0] if ds.variables[lat_n].dimensions else lat_n
            lon_dim = ds.variables[lon_n].dimensions[0] if ds.variables[lon_n].dimensions else lon_n
        var, values = _field(ds, variable, path, lat_dim, lon_dim, time_index, "LAI")
        _check_units(var, path)
        if values.shape != (lat.size, lon.size):
            raise ObservationError(f"LAI product {path}: {variable!r} has shape {values.shape}, coordinates "
                                   f"({lat.size}, {lon.size})")
        n_valid = int(np.count_nonzero(np.isfinite(values)))
        if n_valid == 0:
            raise ObservationError(
                f"LAI product {path}: variable {variable!r} holds no valid value "
                "(all fill, missing or out of valid range)")
        sd = None
        if uncertainty is not None:
            uvar, sd = _field(ds, uncertainty, path, lat_dim, lon_dim, time_index, "uncertainty")
            _check_units(uvar, path)
            sd[sd < 0] = np.nan
    return LaiProduct(path=path, variable=variable, values=values, sd=sd, lat_edges=lat_e, lon_edges=lon_e,
                      n_valid=n_valid)


def regrid_product(product: LaiProduct, grid, cells=None, *, error: LaiErrorModel = LaiErrorModel(),
                   parent_rows=None, parent_cols=None):
    """Overlap-weighted mean of a product over land cells ``cells`` of ``grid`` (or over arbitrary
    parent-grid cells ``parent_rows``, ``parent_cols``). Returns dict: mean, r_pixel, w_valid, w_total,
    w_cell (cell area / R**2), n_valid. r_pixel uses the product's sd where valid, else the error
    model at the pixel value."""
    _, _, plat_e, plon_e = gridmod.global_coordinates(grid.name)
    if parent_rows is None:
        cells = _check_cells(grid, cells)
        pj, pi, _, _, _ = _parent_cells(grid, cells)
    else:
        pj, pi = np.asarray(parent_rows, dtype=np.int64), np.asarray(parent_cols, dtype=np.int64)
    lat_csr = overlap_1d(product.lat_edges, plat_e, periodic=False)
    lon_csr = overlap_1d(product.lon_edges, plon_e, periodic=True)
    var = error.pixel_sd(np.nan_to_num(product.values)) ** 2
    if product.sd is not None:
        var = np.where(np.isfinite(product.sd), product.sd**2, var)
    var = np.ascontiguousarray(var)
    n = pj.size
    mean, rp, wv, wt = (np.empty(n) for _ in range(4))
    nv = np.empty(n, dtype=np.int64)
    obsop.regrid_cells(product.values, var, pj, pi, *lat_csr, *lon_csr, mean, rp, wv, wt, nv)
    return dict(mean=mean, r_pixel=rp, w_valid=wv, w_total=wt, w_cell=_cell_weight(plat_e, plon_e, pj, pi), n_valid=nv)


def product_observations(product: LaiProduct, grid, time, *, cells=None, error: LaiErrorModel = LaiErrorModel(),
                         min_valid_fraction: float = 0.3, kind: str = KIND_LAI):
    """Observations of land cells from a gridded product: (ObsBatch of kept cells, diagnostics).
    valid fraction = overlap weight of valid pixels / (landfrac * cell area); r = pixel part + sd_repr**2."""
    if not (0.0 <= float(min_valid_fraction) <= 1.0):
        raise ObservationError(f"product obs: min_valid_fraction must be within [0, 1], got {min_valid_fraction!r}")
    cells = _check_cells(grid, cells)
    g = regrid_product(product, grid, cells, error=error)
    land_w = np.asarray(grid.land_landfrac)[cells] * g["w_cell"]
    frac = np.minimum(np.divide(g["w_valid"], land_w, out=np.zeros(cells.size), where=land_w > 0), 1.0)
    kept = (g["n_valid"] > 0) & (frac >= min_valid_fraction)
    rr = error.repr_sd(np.where(np.isfinite(g["mean"]), g["mean"], 0.0)) ** 2
    r = g["r_pixel"] + rr
    diag = dict(cells=cells, valid_fraction=frac, kept=kept, **g, r_repr=rr)
    meta = dict(source=f"{product.path}:{product.variable}", min_valid_fraction=float(min_valid_fraction), error=error,
                n_dropped_valid_fraction=int(np.count_nonzero(~kept)))
    return _batch_for_cells(grid, cells[kept], g["mean"][kept], r[kept], time, kind, meta), diag


# ----------------------------------------------------------------------------------------------
# DART obs_seq
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ObsSeq:
    """Contents of a DART obs_seq file (n observations in file order).

    values (n, n_copies), qc (n, n_qc), lon/lat deg (lon in [0, 360)), vert, which_vert, kind (n,)
    type names, time datetime64[s], error_variance (n,)."""

    copy_names: list
    qc_names: list
    values: np.ndarray
    qc: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    vert: np.ndarray
    which_vert: np.ndarray
    kind: np.ndarray
    time: np.ndarray
    error_variance: np.ndarray

    @property
    def n(self) -> int:
        return self.values.shape[0]

    def copy(self, name: str) -> np.ndarray:
        """Values of the copy called ``name`` (DART metadata, compared without surrounding blanks)."""
        names = [c.strip() for c in self.copy_names]
        if name.strip() not in names:
            raise ObservationError(f"obs_seq: no copy {name!r}; copies are {names}")
        v = self.values[:, names.index(name.strip())].copy()
        v[v == DART_MISSING] = np.nan
        return v


def _fmt(x) -> str:
    x = float(x)
    if not np.isfinite(x):
        x = DART_MISSING
    s = repr(x)
    return s if ("." in s or "e" in s) else s + ".0"


def ensemble_copies(prior=None, posterior=None, *, members: bool = False) -> dict:
    """obs_seq.final copies from prior/posterior observation ensembles (n_obs, N): DART's names for
    the ensemble mean and spread (sd with N - 1) and, with members=True, every member."""
    out = {}
    for stage, ens in (("prior", prior), ("posterior", posterior)):
        if ens is None:
            continue
        ens = np.asarray(ens, dtype=np.float64)
        out[f"{stage} ensemble mean"] = ens.mean(axis=1)
        out[f"{stage} ensemble spread"] = ens.std(axis=1, ddof=1) if ens.shape[1] > 1 else np.zeros(ens.shape[0])
    order = [f"{s} ensemble {q}" for q in ("mean", "spread") for s in ("prior", "posterior")]
    out = {k: out[k] for k in order if k in out}
    if members:
        for stage, ens in (("prior", prior), ("posterior", posterior)):
            if ens is not None:
                for m in range(np.asarray(ens).shape[1]):
                    out[f"{stage} ensemble member {m + 1:5d}"] = np.asarray(ens, dtype=np.float64)[:, m]
    return out


def write_obs_seq(path, batch: ObsBatch, *, copies: dict | None = None, dart_qc=None) -> Path:
    """Write ``batch`` as a DART ASCII obs_seq file (obs_seq.out; with ``copies`` from
    :func:`ensemble_copies` and ``dart_qc`` an obs_seq.final). Observations are written in time
    order (stable), keys 1..n, linked list prev/next by that order. Written atomically."""
    n = batch.n
    copies = dict(copies or {})
    names = ["observation"] + list(copies)
    vals = np.empty((n, len(names)))
    vals[:, 0] = batch.y
    for k, name in enumerate(copies, start=1):
        a = np.asarray(copies[name], dtype=np.float64)
        if a.shape != (n,):
            raise ObservationError(f"obs_seq: copy {name!r} has shape {a.shape}, expected ({n},)")
        vals[:, k] = a
    qc_names = ["Quality Control"]
    qcs = [np.asarray(batch.qc, dtype=np.float64)]
    if dart_qc is not None:
        dq = np.asarray(dart_qc, dtype=np.float64)
        if dq.shape != (n,):
            raise ObservationError(f"obs_seq: dart_qc has shape {dq.shape}, expected ({n},)")
        qc_names.append("DART quality control")
        qcs.append(dq)
    qc = np.stack(qcs, axis=1)
    kinds = [batch.kind]
    order = np.argsort(np.asarray(batch.time, dtype="datetime64[s]"), kind="stable")
    t = np.asarray(batch.time, dtype="datetime64[s]")
    secs_total = (t - DART_EPOCH).astype(np.int64)
    if np.any(secs_total < 0):
        raise ObservationError("obs_seq: observation times before 1601-01-01 cannot be written")
    days, secs = secs_total // 86400, secs_total % 86400
    lon_r = np.deg2rad(np.mod(np.asarray(batch.lon, dtype=np.float64), 360.0))
    lat_r = np.deg2rad(np.asarray(batch.lat, dtype=np.float64))
    lines = [" obs_sequence", "obs_kind_definitions", f"{len(kinds):12d}"]
    lines += [f"{i + 1:12d} {k}" for i, k in enumerate(kinds)]
    lines.append(f"  num_copies: {len(names):12d}  num_qc: {len(qc_names):12d}")
    lines.append(f"  num_obs: {n:12d}  max_num_obs: {n:12d}")
    lines += names + qc_names
    lines.append(f"  first: {1 if n else -1:12d}  last: {n if n else -1:12d}")
    for key, o in enumerate(order, start=1):
        lines.append(f" OBS {key:12d}")
        lines += [_fmt(v) for v in vals[o]]
        lines += [_fmt(v) for v in qc[o]]
        lines.append(f"{key - 1 if key > 1 else -1:12d}{key + 1 if key < n else -1:12d}{-1:12d}")
        lines.append("obdef")
        lines.append("loc3d")
        lines.append(f"{_fmt(lon_r[o])} {_fmt(lat_r[o])} {_fmt(0.0)} {DART_VERTISSURFACE:4d}")
        lines.append("kind")
        lines.append(f"{1:12d}")
        lines.append(f"{int(secs[o]):8d} {int(days[o]):8d}")
        lines.append(_fmt(batch.r[o]))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


_NUM = re.compile(r"[dD]")


def _num(tok, path, what):
    try:
        return float(_NUM.sub("e", tok))
    except ValueError:
        raise ObservationError(f"obs_seq {path}: expected a number for {what}, got {tok!r}") from None


def _int(tok, path, what):
    try:
        return int(tok)
    except ValueError:
        raise ObservationError(f"obs_seq {path}: expected an integer for {what}, got {tok!r}") from None


def read_obs_seq(path) -> ObsSeq:
    """Read a DART ASCII obs_seq file (obs_seq.out or obs_seq.final) with loc3d locations and types
    without extra metadata (LAI and other COMMON_CODE types). Raises ObservationError naming the file
    and what is wrong."""
    path = str(path)
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        raise ObservationError(f"obs_seq {path}: cannot read ({exc})") from exc
    lines = text.splitlines()
    pos = 0

    def nextline(what):
        nonlocal pos
        while pos < len(lines) and not lines[pos].strip():
            pos += 1
        if pos >= len(lines):
            raise ObservationError(f"obs_seq {path}: file ends early, expected {what}")
        pos += 1
        return lines[pos - 1]

    if nextline("'obs_sequence'").strip() != "obs_sequence":
        raise ObservationError(f"obs_seq {path}: not an ASCII DART obs_seq file (first line is not 'obs_sequence')")
    toc = nextline("'obs_kind_definitions'").strip()
    if toc not in ("obs_kind_definitions", "obs_type_definitions"):
        raise ObservationError(f"obs_seq {path}: expected 'obs_kind_definitions', got {toc!r}")
    ntypes = _int(nextline("number of types").strip(), path, "number of types")
    table = {}
    for _ in range(ntypes):
        parts = nextline("type definition").split()
        if len(parts) < 2:
            raise ObservationError(f"obs_seq {path}: bad type definition line {lines[pos - 1]!r}")
        table[_int(parts[0], path, "type index")] = parts[1]
    hdr = nextline("num_copies/num_qc").split()
    if len(hdr) != 4 or hdr[0] != "num_copies:" or hdr[2] != "num_qc:":
        raise ObservationError(f"obs_seq {path}: expected 'num_copies: n num_qc: m', got {lines[pos - 1]!r}")
    ncop, nqc = _int(hdr[1], path, "num_copies"), _int(hdr[3], path, "num_qc")
    hdr = nextline("num_obs/max_num_obs").split()
    if len(hdr) != 4 or hdr[0] != "num_obs:" or hdr[2] != "max_num_obs:":
        raise ObservationError(f"obs_seq {path}: expected 'num_obs: n max_num_obs: m', got {lines[pos - 1]!r}")
    nobs = _int(hdr[1], path, "num_obs")
    copy_names = [nextline("copy metadata").strip() for _ in range(ncop)]
    qc_names = [nextline("qc metadata").strip() for _ in range(nqc)]
    hdr = nextline("first/last").split()
    if len(hdr) != 4 or hdr[0] != "first:" or hdr[2] != "last:":
        raise ObservationError(f"obs_seq {path}: expected 'first: f last: l', got {lines[pos - 1]!r}")
    toks = " ".join(lines[pos:]).split()
    t = 0

    def tok(what):
        nonlocal t
        if t >= len(toks):
            raise ObservationError(f"obs_seq {path}: file ends early in observation {i + 1}, expected {what}")
        t += 1
        return toks[t - 1]

    vals = np.empty((nobs, ncop))
    qc = np.empty((nobs, nqc))
    loc = np.empty((nobs, 4))
    kind = np.empty(nobs, dtype=object)
    secs = np.empty(nobs, dtype=np.int64)
    days = np.empty(nobs, dtype=np.int64)
    err = np.empty(nobs)
    for i in range(nobs):
        if tok("'OBS'") != "OBS":
            raise ObservationError(f"obs_seq {path}: expected 'OBS' at observation {i + 1}, got {toks[t - 1]!r}")
        _int(tok("key"), path, "OBS key")
        for c in range(ncop):
            vals[i, c] = _num(tok("copy value"), path, f"copy {c + 1} of observation {i + 1}")
        for c in range(nqc):
            qc[i, c] = _num(tok("qc value"), path, f"qc {c + 1} of observation {i + 1}")
        for what in ("prev", "next", "cov_group"):
            _int(tok(what), path, f"{what} of observation {i + 1}")
        if tok("'obdef'") != "obdef":
            raise ObservationError(f"obs_seq {path}: expected 'obdef' in observation {i + 1}, got {toks[t - 1]!r}")
        lt = tok("location type")
        if lt != "loc3d":
            raise ObservationError(f"obs_seq {path}: observation {i + 1} has location {lt!r}; only loc3d "
                                   "(threed_sphere) is supported")
        for c in range(3):
            loc[i, c] = _num(tok("location"), path, f"location of observation {i + 1}")
        loc[i, 3] = _int(tok("which_vert"), path, f"which_vert of observation {i + 1}")
        if tok("'kind'") != "kind":
            raise ObservationError(f"obs_seq {path}: expected 'kind' in observation {i + 1}, got {toks[t - 1]!r}")
        k = _int(tok("kind index"), path, f"kind of observation {i + 1}")
        if k not in table:
            raise ObservationError(f"obs_seq {path}: observation {i + 1} has kind {k} not in the type table {table}")
        kind[i] = table[k]
        secs[i] = _int(tok("seconds"), path, f"time (seconds) of observation {i + 1} "
                       "(types with extra metadata are not supported)")
        days[i] = _int(tok("days"), path, f"time (days) of observation {i + 1}")
        if not (0 <= secs[i] < 86400) or days[i] < 0:
            raise ObservationError(
                f"obs_seq {path}: observation {i + 1} has time {secs[i]} s, {days[i]} d out of range")
        err[i] = _num(tok("error variance"), path, f"error variance of observation {i + 1}")
    if t != len(toks):
        raise ObservationError(f"obs_seq {path}: {len(toks) - t} unexpected tokens after {nobs} observations "
                               f"(starting {toks[t]!r}); num_obs or the format is wrong")
    lon = np.rad2deg(loc[:, 0])
    lat = np.rad2deg(loc[:, 1])
    if np.any(np.abs(lat) > 90.0 + 1e-9) or np.any(lon < -1e-9) or np.any(lon > 360.0 + 1e-9):
        raise ObservationError(f"obs_seq {path}: locations out of range (lon [0, 2 pi], lat [-pi/2, pi/2] radians)")
    time = DART_EPOCH + (days * 86400 + secs).astype("timedelta64[s]")
    return ObsSeq(copy_names=copy_names, qc_names=qc_names, values=vals, qc=qc, lon=np.mod(lon, 360.0), lat=lat,
                  vert=loc[:, 2].copy(), which_vert=loc[:, 3].astype(np.int64), kind=kind.astype(str), time=time,
                  error_variance=err)


def obs_seq_to_batch(seq: ObsSeq, grid, *, kinds=DART_KINDS):
    """LAI observations of an ObsSeq as an ObsBatch on ``grid``: keeps types in ``kinds``, places each
    observation in the land cell containing it (parent-grid cell; cell edges belong to the east /
    north cell). Returns (batch, counts) with counts of dropped observations by reason. The batch
    keeps the file's location and time, and the first QC copy as incoming QC."""
    is_kind = np.isin(seq.kind, list(kinds))
    _, _, plat_e, plon_e = gridmod.global_coordinates(grid.name)
    nlon_g = plon_e.size - 1
    j = np.clip(np.searchsorted(plat_e, seq.lat, side="right") - 1, 0, plat_e.size - 2)
    i = np.mod(np.floor((np.mod(seq.lon - plon_e[0], 360.0)) / (360.0 / nlon_g)).astype(np.int64), nlon_g)
    land_pos = np.full((plat_e.size - 1) * nlon_g, -1, dtype=np.int64)
    land_pos[np.asarray(grid.land_parent_index)] = np.arange(grid.n_land)
    cell = land_pos[j * nlon_g + i]
    names = [c.strip() for c in seq.copy_names]
    y = seq.values[:, names.index("observation")] if "observation" in names else seq.values[:, 0]
    ok = is_kind & (cell >= 0)
    counts = dict(not_lai=int(np.count_nonzero(~is_kind)), not_land=int(np.count_nonzero(is_kind & (cell < 0))))
    qc = seq.qc[:, 0].astype(np.int32) if seq.qc.shape[1] else np.zeros(seq.n, dtype=np.int32)
    kset = sorted(set(seq.kind[ok])) or [KIND_LAI]
    batch = ObsBatch(y=y[ok].copy(), r=seq.error_variance[ok].copy(), cell=cell[ok], lat=seq.lat[ok].copy(),
                     lon=seq.lon[ok].copy(), time=seq.time[ok].copy(), qc=qc[ok], kind=kset[0],
                     meta=dict(source="DART obs_seq", kinds=kset))
    return batch, counts


# ----------------------------------------------------------------------------------------------
# Observation files of an analysis time (the experiment's "product" and "obs_seq" sources)
# ----------------------------------------------------------------------------------------------
#: Fields a path pattern may use (Python format syntax, e.g. ``{doy:03d}``).
PATTERN_FIELDS = ("year", "month", "day", "doy", "hour", "minute", "second", "cycle")
#: DART filter_nml ``input_qc_threshold`` default: incoming QC above it is not assimilated.
INPUT_QC_THRESHOLD = 3
_GLOB_CHARS = "*?["


def composite_start(time, composite_days: int) -> np.datetime64:
    """Start (00 UTC) of the composite period that contains ``time``: periods start on day-of-year
    1, 1 + N, 1 + 2N, ... of every (Gregorian) year, N = ``composite_days`` (GLASS, MODIS MCD15A2H: 8;
    the last period of a year ends on 31 December). N = 0 returns ``time`` unchanged."""
    t = np.datetime64(time, "s")
    n = int(composite_days)
    if n <= 0:
        return t
    year = int(str(t.astype("datetime64[Y]")))
    doy = int((t.astype("datetime64[D]") - np.datetime64(f"{year:04d}-01-01", "D")).astype(np.int64)) + 1
    return composite_time(year, 1 + ((doy - 1) // n) * n)


def pattern_fields(time, cycle: int = 0) -> dict:
    """The values of :data:`PATTERN_FIELDS` for ``time`` (Gregorian day-of-year) and ``cycle``."""
    t = np.datetime64(time, "s")
    s = str(t)  # YYYY-MM-DDTHH:MM:SS
    year, month, day = int(s[0:4]), int(s[5:7]), int(s[8:10])
    doy = int((t.astype("datetime64[D]") - np.datetime64(f"{year:04d}-01-01", "D")).astype(np.int64)) + 1
    return dict(year=year, month=month, day=day, doy=doy, hour=int(s[11:13]), minute=int(s[14:16]),
                second=int(s[17:19]), cycle=int(cycle))


def expand_pattern(pattern: str, time, cycle: int = 0) -> str:
    """``pattern`` with its format fields filled for ``time`` and ``cycle`` (see :data:`PATTERN_FIELDS`)."""
    try:
        return str(pattern).format(**pattern_fields(time, cycle))
    except (KeyError, IndexError, ValueError) as exc:
        raise ObservationError(f"observation file pattern {pattern!r}: cannot fill it ({exc!r}); its fields may be "
                               f"{', '.join('{' + f + '}' for f in PATTERN_FIELDS)} with integer formats such as "
                               "{doy:03d}") from None


def is_glob(path: str) -> bool:
    """True when ``path`` holds a glob wildcard (``*``, ``?``, ``[``)."""
    return any(c in str(path) for c in _GLOB_CHARS)


def analysis_window(time, half_hours: float):
    """(t0, t1) datetime64[s] of the window of analysis time ``time``: t0 < t <= t1 (DART's
    assimilation window, which starts one second after time - half)."""
    t = np.datetime64(time, "s")
    h = np.timedelta64(int(round(float(half_hours) * 3600.0)), "s")
    return t - h, t + h


def in_window(times, window) -> np.ndarray:
    t = np.asarray(times, dtype="datetime64[s]")
    return (t > window[0]) & (t <= window[1])


def concat_batches(batches, kind: str = KIND_LAI, meta=None) -> ObsBatch:
    """One ObsBatch of the observations of ``batches`` in order."""
    batches = list(batches)
    if not batches:
        z = np.empty(0)
        return ObsBatch(y=z, r=z.copy(), cell=np.empty(0, dtype=np.int64), lat=z.copy(), lon=z.copy(),
                        time=np.empty(0, dtype="datetime64[s]"), qc=np.empty(0, dtype=np.int32), kind=kind,
                        meta=dict(meta or {}))
    cat = {k: np.concatenate([np.asarray(getattr(b, k)) for b in batches]) for k in
           ("y", "r", "cell", "lat", "lon", "time", "qc")}
    return ObsBatch(**cat, kind=batches[0].kind, meta=dict(meta or batches[0].meta))


def product_times(path, time_name: str = "time"):
    """Times (datetime64[s], Gregorian) of the records of a gridded product from its CF time
    coordinate ``time_name`` (``units = "<unit> since <date>"``, ``calendar`` honoured), or None when
    the file has no such variable."""
    import cftime
    import netCDF4

    path = str(path)
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise ObservationError(f"LAI product {path}: cannot open as netCDF4/HDF5 ({exc})") from exc
    with ds:
        if time_name not in ds.variables:
            return None
        v = ds.variables[time_name]
        units = _attr(v, "units")
        if units is None or " since " not in str(units):
            raise ObservationError(f"LAI product {path}: time variable {time_name!r} needs CF units "
                                   f"'<unit> since <date>', got {units!r}")
        cal = str(_attr(v, "calendar") or "standard")
        vals = np.ma.filled(np.ma.asarray(v[...], dtype=np.float64), np.nan).reshape(-1)
    if not np.all(np.isfinite(vals)):
        raise ObservationError(f"LAI product {path}: time variable {time_name!r} holds missing values")
    try:
        dates = cftime.num2date(vals, str(units), calendar=cal)
    except (ValueError, TypeError) as exc:
        raise ObservationError(f"LAI product {path}: cannot read times of {time_name!r} ({exc})") from exc
    return np.array([f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}"
                     for d in np.atleast_1d(dates)], dtype="datetime64[s]")


_SEQ_RANGE: dict = {}  # (path, mtime_ns, size) -> (first, last) observation time of an obs_seq file


def _seq_key(path):
    st = os.stat(path)
    return (os.path.abspath(path), st.st_mtime_ns, st.st_size)


def _files_for(pattern, time, cycle):
    """(path or glob, files): the expanded pattern and the existing files it names (sorted)."""
    import glob as _glob

    path = expand_pattern(pattern, time, cycle)
    if is_glob(path):
        return path, sorted(p for p in _glob.glob(path) if os.path.isfile(p))
    return path, ([path] if os.path.isfile(path) else [])


def _box_edges(path, variable, box):
    """Cell edges of an evenly spaced raster without coordinate variables: box = (edge of the first
    row, edge of the last row, edge of the first column, edge of the last column) in degrees."""
    import netCDF4

    try:
        ds = netCDF4.Dataset(str(path), "r")
    except OSError as exc:
        raise ObservationError(f"LAI product {path}: cannot open as netCDF4/HDF5 ({exc})") from exc
    with ds:
        if variable not in ds.variables:
            raise ObservationError(
                f"LAI product {path}: variable {variable!r} not found (variables: {sorted(ds.variables)})")
        shape = ds.variables[variable].shape
    if len(shape) < 2:
        raise ObservationError(f"LAI product {path}: variable {variable!r} is not 2-D (shape {shape})")
    b = [float(x) for x in box]
    return np.linspace(b[0], b[1], shape[-2] + 1), np.linspace(b[2], b[3], shape[-1] + 1)


def product_batch(pattern, time, grid, *, cycle=0, composite_days=0, window_hours=12.0, variable="LAI",
                  uncertainty=None, lat_name=None, lon_name=None, time_name="time", grid_box=None,
                  error: LaiErrorModel = LaiErrorModel(), min_valid_fraction=0.3, kind=KIND_LAI):
    """Observations of analysis time ``time`` from gridded product files found by ``pattern``.

    A pattern without wildcards names one file (its date fields filled from the composite start of
    ``time`` when ``composite_days`` > 0, else from ``time``); its observations are dated by that
    composite start (or ``time``). If that file has a time coordinate ``time_name`` with several
    records, those within the analysis window are used. A glob: every matching file's records whose
    ``time_name`` lies within the window (t0 < t <= t1, :func:`analysis_window`) are used, dated by
    their own time. Each record goes through :func:`read_lai_product` and
    :func:`product_observations` over all land cells of ``grid``. ``grid_box`` (4 edges, deg: first
    row, last row, first column, last column) places rasters without coordinate variables (plain
    HDF5 such as GEOV1's) on an evenly spaced grid; rows and columns are the variable's last two
    dimensions.
    Returns (batch or None, info): None when no file / record exists (``info["missing"]`` says what
    was expected); info holds ``files`` (path, record) used and ``n_dropped_valid_fraction``.
    """
    stamp = composite_start(time, composite_days)
    window = analysis_window(time, window_hours)
    path, files = _files_for(pattern, stamp, cycle)
    records = []
    for f in files:
        times = product_times(f, time_name)
        if is_glob(path):
            if times is None:
                raise ObservationError(f"LAI product {f}: found by the glob {path!r} but has no time coordinate "
                                       f"{time_name!r} to date it (set observations.time_name, or name the file "
                                       "of each analysis time with a date pattern)")
            records += [(f, int(i), times[i]) for i in np.flatnonzero(in_window(times, window))]
        elif times is not None and times.size > 1:
            records += [(f, int(i), times[i]) for i in np.flatnonzero(in_window(times, window))]
        else:
            records.append((f, 0, stamp))
    info = dict(files=[(f, i) for f, i, _ in records], n_dropped_valid_fraction=0, window=window)
    if not records:
        if not files:
            info["missing"] = (f"no file matches {path!r}" if is_glob(path) else f"file {path} not found")
        else:
            info["missing"] = (f"no record of {', '.join(files)} lies within the analysis window "
                               f"({window[0]}, {window[1]}]")
        return None, info
    batches = []
    for f, i, t in records:
        edges = dict(zip(("lat_edges", "lon_edges"), _box_edges(f, variable, grid_box))) if grid_box else {}
        prod = read_lai_product(f, variable, uncertainty=uncertainty or None, lat_name=lat_name or None,
                                lon_name=lon_name or None, time_index=i, **edges)
        b, _ = product_observations(prod, grid, t, error=error, min_valid_fraction=min_valid_fraction, kind=kind)
        info["n_dropped_valid_fraction"] += int(b.meta["n_dropped_valid_fraction"])
        batches.append(b)
    meta = dict(source="LAI product " + ", ".join(f"{f}[{i}]" for f, i, _ in records), error=error)
    return concat_batches(batches, kind, meta), info


def obs_seq_batch(pattern, time, grid, *, cycle=0, composite_days=0, window_hours=12.0, kinds=DART_KINDS):
    """LAI observations of analysis time ``time`` from DART obs_seq files found by ``pattern`` (one
    file per analysis time, or a glob over files read as needed). Observations of other types,
    outside the grid's land cells, outside the analysis window (t0 < t <= t1) or with incoming QC
    above :data:`INPUT_QC_THRESHOLD` are dropped and counted. Returns (batch or None, info) like
    :func:`product_batch`; info counts ``n_read``, ``not_lai``, ``not_land``, ``outside_window``,
    ``bad_qc``."""
    stamp = composite_start(time, composite_days)
    window = analysis_window(time, window_hours)
    path, files = _files_for(pattern, stamp, cycle)
    info = dict(files=[], window=window, n_read=0, not_lai=0, not_land=0, outside_window=0, bad_qc=0)
    if not files:
        info["missing"] = f"no file matches {path!r}" if is_glob(path) else f"file {path} not found"
        return None, info
    batches = []
    for f in files:
        if is_glob(path):  # skip files known to hold nothing for this window
            key = _seq_key(f)
            rng = _SEQ_RANGE.get(key)
            if rng is not None and (rng[0] is None or rng[1] <= window[0] or rng[0] > window[1]):
                continue
        seq = read_obs_seq(f)
        if is_glob(path):
            _SEQ_RANGE[_seq_key(f)] = (seq.time.min(), seq.time.max()) if seq.n else (None, None)
        b, counts = obs_seq_to_batch(seq, grid, kinds=kinds)
        info["n_read"] += seq.n
        info["not_lai"] += counts["not_lai"]
        info["not_land"] += counts["not_land"]
        inside = in_window(b.time, window)
        info["outside_window"] += int(np.count_nonzero(~inside))
        good_qc = b.qc <= INPUT_QC_THRESHOLD
        info["bad_qc"] += int(np.count_nonzero(inside & ~good_qc))
        b = b.select(inside & good_qc)
        if b.n or not is_glob(path):
            info["files"].append((f, 0))
        batches.append(b)
    if is_glob(path) and not info["files"]:
        info["missing"] = f"no file matching {path!r} holds observations within ({window[0]}, {window[1]}]"
        return None, info
    kset = sorted({k for b in batches for k in b.meta.get("kinds", [])}) or [KIND_LAI]
    batch = concat_batches([b for b in batches if b.n] or batches[:0], kset[0],
                           dict(source="DART obs_seq " + ", ".join(f for f, _ in info["files"]), kinds=kset))
    return batch, info
