"""History and diagnostics output: CF-1.8 netCDF4 files with CLM field names.

State read and written
----------------------
Reads the ensemble values a driver hands over (dicts ``name -> local array`` with the member axis
last: ``x[cell, member]``, ``tsoi[cell, band, member]``, one block ``[start, start + count)`` of the
global land-cell axis of :mod:`engine.grid` per rank). Keeps only running time sums between
history periods; writes three kinds of file:

* :class:`HistoryWriter`: CLM "h0"-style time means (over the model steps of each averaging period:
  daily by default) of the fields of :data:`FIELDS`, as ensemble MEAN (variable ``TLAI``) and
  SPREAD (sample standard deviation over the N members, N - 1 denominator; ``TLAI_SPREAD``) on the
  lat/lon grid, dims ``(time, [band,] lat, lon)``.
* :class:`AnalysisStatsWriter`: prior and posterior ensemble mean and spread of chosen state
  variables at analysis times (``LEAFC_PRIOR_MEAN`` ...), instantaneous, same grid layout.
* :class:`ObsDiagnosticsWriter`: observation-space diagnostics per cycle (value, error variance,
  prior and posterior mean and spread, DART QC) as a CF discrete-sampling-geometry ``point``
  collection along a growing ``obs`` dimension, plus per-cycle global analysis budget terms.

CF layout of the gridded files
------------------------------
Coordinates ``lat(lat)``, ``lon(lon)`` (deg, with ``lat_bnds``/``lon_bnds`` from the grid's cell
edges), ``time(time)`` (``days since 2002-01-01 00:00:00``, calendar ``noleap`` by default, with
``time_bnds``), ``band(band)`` for soil fields (depth of the band's middle, m, positive down, with
``band_bnds``: the study's 0-7, 7-28, 28-100, 100-255 cm of :data:`kernels.physics.soil_layers.STUDY_BANDS_M`).
Cell measures ``area`` (km^2) and ``landfrac``; ``landmask`` marks the model's land cells. Field
values are float32, zlib-compressed, ``_FillValue`` = ``missing_value`` = 1e36 (CLM's
``spval``) on every cell that is not a model land cell and wherever a value is not finite. A time
mean is stamped at the middle of its period and ``time_bnds`` holds the period, e.g. the mean of
2002-01-01 has time 0.5 and bounds [0, 1] (CLM stamps the end; the bounds make both readable). A
model step whose end time is ``t`` belongs to the period ``(start, end]`` that contains ``t`` (CLM's
convention: the step ending at midnight closes the day). The period left open when the writer is
closed is written with its bounds cut at the last step's time; ``n_samples`` gives the number of
model steps in every mean (a run that starts inside a period, e.g. a resume at noon, writes that
period with its full nominal bounds and fewer samples).

Parallel use and atomic publication
-----------------------------------
netCDF4 here has no parallel I/O (ENV.md): the writers are created and used by all ranks in the same
order; at the end of a period each rank reduces its own cells (time mean, then ensemble mean and
spread: element-wise operations in a fixed order, so a cell's result does not depend on the
decomposition) and rank 0 gathers them (:func:`engine.comm.gather_array`), places every block by its
``start`` and is the only process that touches the file. ``collective=False`` makes a writer act
alone on the calling process (serial tools, or a reference written on one rank of a parallel job).

Rank 0 writes to a hidden temporary file beside ``path`` (``.<name>.<random>.tmp``) and, in
:meth:`close`, fsyncs it and renames it onto ``path`` (atomic on POSIX), then fsyncs the directory,
as :mod:`engine.restart` does. A failing run (an exception inside ``with writer:``, or
:meth:`discard`) deletes the temporary file and never opens ``path``; an existing file under the
final name stays byte-identical, and a crash leaves at most a hidden ``.tmp`` file. Errors on rank
0 (disk full, unwritable directory) reach every rank as :class:`HistoryError`. Between periods,
:meth:`HistoryWriter.add` does no communication; a rank-local input error raises on that rank
only (the driver takes the job down with :func:`engine.comm.run_collectively`).

References: CF Conventions 1.8 (Eaton et al. 2020), sections 4 (coordinates), 7.1 (bounds), 7.2
(cell measures), 7.3 (cell methods), 9 (discrete sampling geometries); CLM4 history fields and
units (Oleson et al. 2010, NCAR/TN-478+STR; CLM4 ``histFldsMod``); DART QC values (DART
``filter_mod``/``obs_diag`` documentation).
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cftime
import netCDF4
import numpy as np

import engine
from engine import comm
from kernels.physics.soil_layers import STUDY_BANDS_M

__all__ = [
    "HistoryError",
    "HistoryField",
    "FIELDS",
    "DEFAULT_FIELDS",
    "FILL_VALUE",
    "FREQUENCIES",
    "DART_QC",
    "OBS_FIELDS",
    "DEFAULT_BUDGET_TERMS",
    "patch_to_cell",
    "ensemble_mean_spread",
    "spread_name",
    "stats_name",
    "HistoryWriter",
    "AnalysisStatsWriter",
    "ObsDiagnosticsWriter",
]

#: CLM's special value (``spval`` = 1e36), used as _FillValue and missing_value of float fields.
FILL_VALUE = np.float32(1.0e36)
#: Fill of the integer QC variable (written for every observation; the fill marks a gap, never a DART code).
INT_FILL = np.int32(-2147483647)
#: Tolerance (in days) when deciding whether a step time lies exactly on a period boundary:
#: 1e-6 day = 0.0864 s, far below any model step and far above float64 round-off of day counts.
_TIME_EPS_DAYS = 1.0e-6


class HistoryError(RuntimeError):
    """History or diagnostics output that cannot be written; the message names the file and why."""


# ----------------------------------------------------------------------------------------------
# The declared table of history fields
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryField:
    """One history field: CLM name, CLM units, long name and how it reaches a grid cell.

    ``lives_on``: ``"patch"`` (a patch value, aggregated to its cell with :func:`patch_to_cell`,
    weighted by the patch's area weight, as CLM's p2c) or ``"column"`` (one value per land cell).
    ``band``: the field has the soil depth-band axis (``x[cell, band, member]``); ``band_method``
    says how soil levels become bands (:func:`kernels.physics.soil_layers.band_weights`).
    ``standard_name`` is set only where CF has a name and the CLM unit is convertible to its
    canonical unit (CLM's ``gC/m^2`` is not a udunits unit, so carbon fields carry none).
    """

    name: str
    units: str
    long_name: str
    lives_on: str = "patch"
    band: bool = False
    standard_name: str | None = None
    band_method: str | None = None

    @property
    def dims(self) -> tuple[str, ...]:
        """Dimensions of one member's value in a cell (besides cell and member): () or ('band',)."""
        return ("band",) if self.band else ()


def _f(name, units, long_name, lives_on="patch", standard_name=None, band=False, band_method=None):
    return name, HistoryField(name, units, long_name, lives_on, band, standard_name, band_method)


#: CLM4 history fields (names, units and long names of CLM4's ``histFldsMod``).
FIELDS: dict[str, HistoryField] = dict(
    [
        _f("TLAI", "m^2/m^2", "total projected leaf area index", standard_name="leaf_area_index"),
        _f("TSAI", "m^2/m^2", "total projected stem area index"),
        _f("LEAFC", "gC/m^2", "leaf C"),
        _f("LEAFN", "gN/m^2", "leaf N"),
        _f("GPP", "gC/m^2/s", "gross primary production"),
        _f("NPP", "gC/m^2/s", "net primary production"),
        _f("FSA", "W/m^2", "absorbed solar radiation", standard_name="surface_net_downward_shortwave_flux"),
        _f("FIRA", "W/m^2", "net infrared (longwave) radiation (upward positive)",
           standard_name="surface_net_upward_longwave_flux"),
        _f("FSH", "W/m^2", "sensible heat", standard_name="surface_upward_sensible_heat_flux"),
        _f("EFLX_LH_TOT", "W/m^2", "total latent heat flux [+ to atm]",
           standard_name="surface_upward_latent_heat_flux"),
        _f("FGR", "W/m^2", "heat flux into soil/snow including snow melt"),
        _f("TSA", "K", "2m air temperature", standard_name="air_temperature"),
        _f("RH2M", "%", "2m relative humidity", standard_name="relative_humidity"),
        _f("TG", "K", "ground temperature", lives_on="column"),
        _f("TV", "K", "vegetation temperature", standard_name="canopy_temperature"),
        _f("TSOI", "K", "soil temperature in the study's depth bands", lives_on="column",
           standard_name="soil_temperature", band=True, band_method="node"),
        _f("H2OSOI", "mm3/mm3", "volumetric soil water in the study's depth bands", lives_on="column",
           standard_name="volume_fraction_of_condensed_water_in_soil", band=True, band_method="layer"),
        _f("QRUNOFF", "mm/s", "total liquid runoff", lives_on="column"),
        _f("BTRAN", "1", "transpiration beta factor"),
        _f("H2OSNO", "mm", "snow depth (liquid water)", lives_on="column"),
    ]
)

#: The fields the experiment writes by default (issue 6, item 8).
DEFAULT_FIELDS = ("TLAI", "LEAFC", "LEAFN", "TSA", "FIRA", "FSH", "EFLX_LH_TOT", "TG", "TV", "TSOI",
                  "H2OSOI", "RH2M", "GPP")

#: History averaging periods: calendar days, months, years, or a fixed number of hours or days
#: counted from the reference time of ``time_units`` (e.g. "6h", "8d").
FREQUENCIES = ("daily", "monthly", "yearly", "<N>h", "<N>d")

_N_BANDS = STUDY_BANDS_M.shape[0]


def spread_name(name: str) -> str:
    """Name of the ensemble-spread variable of history field ``name`` (``TLAI`` -> ``TLAI_SPREAD``)."""
    return f"{name}_SPREAD"


def stats_name(name: str, stage: str, stat: str) -> str:
    """Variable name in an analysis-statistics file: ``stats_name('LEAFC', 'prior', 'mean')`` ->
    ``LEAFC_PRIOR_MEAN``; stage 'prior' or 'posterior', stat 'mean' or 'spread'."""
    if stage not in ("prior", "posterior") or stat not in ("mean", "spread"):
        raise ValueError(f"stats_name: stage must be 'prior'/'posterior' and stat 'mean'/'spread', got {stage!r}, {stat!r}")
    return f"{name}_{stage.upper()}_{stat.upper()}"


def _resolve_fields(fields, where: str) -> list[HistoryField]:
    out: list[HistoryField] = []
    if isinstance(fields, (str, HistoryField)):
        fields = [fields]
    for f in fields:
        if isinstance(f, HistoryField):
            out.append(f)
        elif isinstance(f, str) and f in FIELDS:
            out.append(FIELDS[f])
        else:
            raise HistoryError(f"{where}: unknown history field {f!r}; declared fields: {sorted(FIELDS)} "
                               "(or pass a HistoryField)")
    names = [f.name for f in out]
    if not out:
        raise HistoryError(f"{where}: no fields given")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HistoryError(f"{where}: fields given more than once: {dup}")
    bad = [n for n in names if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n)]
    if bad:
        raise HistoryError(f"{where}: field names must be letters, digits and '_': {bad}")
    for f in out:
        if f.lives_on not in ("patch", "column"):
            raise HistoryError(f"{where}: field {f.name!r}: lives_on must be 'patch' or 'column', got {f.lives_on!r}")
    return out


# ----------------------------------------------------------------------------------------------
# Reductions (pure NumPy, fixed summation order)
# ----------------------------------------------------------------------------------------------


def patch_to_cell(values, patch_cell, patch_weight, n_cells: int) -> np.ndarray:
    """Weighted average of patch values over the patches of each cell (CLM's p2c, 'unity' scaling).

    ``values[p, ...]`` (any unit; e.g. ``[patch, member]``), ``patch_cell[p]`` the (local) cell of
    each patch in ``[0, n_cells)``, ``patch_weight[p]`` >= 0 its area weight (fraction of the
    vegetated land unit). Returns ``out[cell, ...] = sum_p w_p x_p / sum_p w_p`` over the patches of
    the cell, float64, NaN for a cell without patches or with zero total weight.

    Summation runs over each cell's patches in patch order, one patch after another (``np.add.reduceat``
    on patches sorted by cell, stably), so a cell's value depends only on its own patches: the same
    bits on any decomposition into contiguous cell blocks.
    """
    x = np.asarray(values, dtype=np.float64)
    cell = np.asarray(patch_cell)
    w = np.asarray(patch_weight, dtype=np.float64)
    if isinstance(n_cells, bool) or not isinstance(n_cells, (int, np.integer)) or n_cells < 0:
        raise ValueError(f"patch_to_cell: n_cells must be an integer >= 0, got {n_cells!r}")
    if x.ndim < 1 or cell.ndim != 1 or w.ndim != 1 or not (x.shape[0] == cell.size == w.size):
        raise ValueError(f"patch_to_cell: values {x.shape}, patch_cell {cell.shape} and patch_weight {w.shape} "
                         "must have the same number of patches (first axis)")
    if cell.dtype.kind not in "iu":
        raise ValueError(f"patch_to_cell: patch_cell must be integers, got dtype {cell.dtype}")
    if cell.size and (cell.min() < 0 or cell.max() >= n_cells):
        raise ValueError(f"patch_to_cell: patch_cell must lie in [0, {n_cells}), got [{cell.min()}, {cell.max()}]")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("patch_to_cell: patch_weight must be finite and >= 0")
    trailing = x.shape[1:]
    out = np.full((n_cells, *trailing), np.nan)
    if cell.size == 0:
        return out
    if np.any(np.diff(cell) < 0):
        order = np.argsort(cell, kind="stable")
        x, cell, w = x[order], cell[order], w[order]
    wx = x * w.reshape((-1,) + (1,) * len(trailing))
    cells, first = np.unique(cell, return_index=True)
    num = np.add.reduceat(wx, first, axis=0)
    den = np.add.reduceat(w, first)
    with np.errstate(invalid="ignore", divide="ignore"):
        avg = num / den.reshape((-1,) + (1,) * len(trailing))
    avg[den == 0.0] = np.nan
    out[cells] = avg
    return out


def ensemble_mean_spread(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble mean and spread of ``E[..., N]`` (members last): mean and the sample standard
    deviation with N - 1 in the denominator (NaN when N = 1).

    Members are summed one after another (element-wise over the other axes), so each element's
    result depends only on its own N values, whatever the array's other dimensions are.
    """
    E = np.asarray(E, dtype=np.float64)
    N = E.shape[-1]
    if N < 1:
        raise ValueError("ensemble_mean_spread: the ensemble has no members")
    s = E[..., 0].copy()
    for k in range(1, N):
        s += E[..., k]  # sum over members, in member order
    mean = s / N
    if N == 1:
        return mean, np.full_like(mean, np.nan)
    ss = np.zeros_like(mean)
    for k in range(N):
        d = E[..., k] - mean  # anomaly of member k
        ss += d * d
    return mean, np.sqrt(ss / (N - 1))


# ----------------------------------------------------------------------------------------------
# Time: periods and conversions
# ----------------------------------------------------------------------------------------------


def _to_days_factor(time_units: str) -> float:
    unit = time_units.split(" since ")[0].strip().lower()
    factors = {"days": 1.0, "day": 1.0, "hours": 1 / 24, "hour": 1 / 24, "minutes": 1 / 1440,
               "minute": 1 / 1440, "seconds": 1 / 86400, "second": 1 / 86400}
    if unit not in factors:
        raise HistoryError(f"time_units must be '<days|hours|minutes|seconds> since <date>', got {time_units!r}")
    return factors[unit]


class _Clock:
    """Converts step times and finds the history period of a time (in the units of the file)."""

    def __init__(self, time_units: str, calendar: str, frequency: str | None):
        self.units, self.calendar = time_units, calendar
        try:
            self.epoch = cftime.num2date(0.0, time_units, calendar)
        except Exception as exc:  # noqa: BLE001 - cftime raises ValueError/TypeError variously
            raise HistoryError(f"time_units {time_units!r} with calendar {calendar!r} is not usable: {exc}") from None
        self.per_day = 1.0 / _to_days_factor(time_units)  # time units per day
        self.eps = _TIME_EPS_DAYS * self.per_day
        self.frequency = frequency
        self.fixed = None  # period length in time units for "<N>h" / "<N>d"
        if frequency is None:
            return
        m = re.fullmatch(r"(\d+)([hd])", str(frequency))
        if m and int(m.group(1)) > 0:
            self.fixed = int(m.group(1)) * self.per_day / (24.0 if m.group(2) == "h" else 1.0)
        elif frequency not in ("daily", "monthly", "yearly"):
            raise HistoryError(f"frequency must be one of {list(FREQUENCIES)} (N a positive integer), got {frequency!r}")

    def num(self, t) -> float:
        """``t`` (a number in the file's time units, or a datetime/cftime date) as a float."""
        if isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, bool):
            v = float(t)
        elif isinstance(t, (cftime.datetime, _dt.datetime)):
            v = float(cftime.date2num(t, self.units, self.calendar))
        else:
            raise HistoryError(f"time must be a number in {self.units!r} or a date, got {t!r}")
        if not np.isfinite(v):
            raise HistoryError(f"time must be finite, got {t!r}")
        return v

    def _num(self, d) -> float:
        return float(cftime.date2num(d, self.units, self.calendar))

    def period(self, t: float) -> tuple[float, float]:
        """(start, end) of the period ``(start, end]`` holding a step that ends at ``t``."""
        if self.fixed is not None:
            k = np.ceil((t - self.eps) / self.fixed)
            return float((k - 1) * self.fixed), float(k * self.fixed)
        d = cftime.num2date(t, self.units, self.calendar)
        cls = lambda *a: cftime.datetime(*a, calendar=self.calendar)  # noqa: E731
        if self.frequency == "daily":
            floor = cls(d.year, d.month, d.day)
            nxt = lambda x: x + _dt.timedelta(days=1)  # noqa: E731
        elif self.frequency == "monthly":
            floor = cls(d.year, d.month, 1)
            nxt = lambda x: cls(x.year + x.month // 12, x.month % 12 + 1, 1)  # noqa: E731
        else:  # yearly
            floor = cls(d.year, 1, 1)
            nxt = lambda x: cls(x.year + 1, 1, 1)  # noqa: E731
        f = self._num(floor)
        if t - f <= self.eps:  # on the boundary: the step closes the previous period
            end = f
            # previous boundary: step back from floor by a little and take that period's floor
            prev = cftime.num2date(f - 0.5 * self.eps - 0.5 * self.per_day / 24, self.units, self.calendar)
            if self.frequency == "daily":
                start = self._num(cls(prev.year, prev.month, prev.day))
            elif self.frequency == "monthly":
                start = self._num(cls(prev.year, prev.month, 1))
            else:
                start = self._num(cls(prev.year, 1, 1))
            return start, end
        return f, self._num(nxt(floor))


# ----------------------------------------------------------------------------------------------
# The common writer: one netCDF4 file on rank 0, published atomically
# ----------------------------------------------------------------------------------------------

_RESERVED_GLOBALS = ("Conventions", "title", "source", "history", "config_toml", "laida_version", "featureType",
                     "frequency", "n_ranks_written", "file_kind")


class _NetCDFWriter:
    """Rank 0 owns a temporary netCDF4 file; close() publishes it under its final name."""

    kind = "laida output"

    def __init__(self, path, *, title: str, config_toml: str, provenance: dict | None, time_units: str,
                 calendar: str, collective: bool, frequency: str | None = None, extra_globals: dict | None = None):
        self.collective = bool(collective)
        self.path = Path(self._bcast(str(path)))
        self._root = (not self.collective) or comm.rank() == 0
        self._ds: netCDF4.Dataset | None = None
        self._tmp: Path | None = None
        self._closed = False
        self.clock = _Clock(time_units, calendar, frequency)
        self.time_units, self.calendar, self.frequency = time_units, calendar, frequency
        provenance = dict(provenance or {})
        clash = sorted(set(provenance) & set(_RESERVED_GLOBALS))
        if clash:
            raise HistoryError(f"{self.path}: provenance may not set the reserved global attributes {clash}")
        if not isinstance(config_toml, str) or not isinstance(title, str):
            raise HistoryError(f"{self.path}: config_toml and title must be strings")
        self._globals = {
            "Conventions": "CF-1.8",
            "title": title,
            "source": f"laida {engine.__version__} (CLM4CN-class land model ensemble with EAKF data assimilation)",
            "history": (f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ} written by laida "
                        f"{engine.__version__} {type(self).__module__}.{type(self).__name__}"),
            "laida_version": engine.__version__,
            "file_kind": self.kind,
            "n_ranks_written": np.int32(comm.size() if self.collective else 1),
            "config_toml": config_toml,
            **({"frequency": frequency} if frequency is not None else {}),
            **{str(k): (v if isinstance(v, (str, int, float, np.integer, np.floating)) else str(v))
               for k, v in provenance.items()},
            **(extra_globals or {}),
        }
        self._on_root("creating the file", self._create)

    # --- collective helpers (identity when acting alone) ---
    def _bcast(self, obj):
        return comm.bcast(obj) if self.collective else obj

    def _on_root(self, what: str, func, *args):
        """Run ``func`` on rank 0; any failure there becomes a HistoryError on every rank."""
        error = None
        result = None
        if self._root:
            try:
                result = func(*args)
            except Exception as exc:  # noqa: BLE001 - must reach the other ranks
                error = f"{what}: {type(exc).__name__}: {exc}"
        error = self._bcast(error)
        if error is not None:
            self.discard()
            raise HistoryError(f"{self.path}: {type(self).__name__} failed {error}; nothing was published "
                               f"under {self.path.name}")
        return result

    def _create(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(tmp)
        self._ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        self._ds.setncatts(self._globals)
        self._define(self._ds)
        self._ds.sync()

    def _define(self, ds: netCDF4.Dataset) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def _finish(self) -> None:
        """Collective work before publication (e.g. the last, partial history period)."""

    def close(self) -> Path:
        """Write what is pending, then publish the file atomically (collective). Returns the path."""
        if self._closed:
            return self.path
        try:
            self._finish()
        except BaseException:
            self.discard()
            raise

        def publish():
            self._ds.close()
            self._ds = None
            os.chmod(self._tmp, 0o644)  # mkstemp makes 0600; outputs are for everyone to read
            fd = os.open(self._tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._tmp, self.path)
            self._tmp = None
            dfd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

        self._on_root(f"publishing as {self.path.name}", publish)
        self._closed = True
        return self.path

    def discard(self) -> None:
        """Drop the unfinished file (local, no communication): the final name is never touched."""
        self._closed = True
        if self._ds is not None:
            try:
                self._ds.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away
                pass
            self._ds = None
        if self._tmp is not None:
            try:
                self._tmp.unlink(missing_ok=True)
            except OSError:
                pass
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.discard()
            return False
        self.close()
        return False

    # --- variable definition helpers (rank 0) ---
    @staticmethod
    def _var(ds, name, dtype, dims, attrs: dict, *, fill=None, zlib=False, chunks=None):
        kw = {}
        if zlib:
            kw.update(zlib=True, complevel=1, shuffle=True)
        if chunks is not None:
            kw.update(chunksizes=chunks)
        v = ds.createVariable(name, dtype, dims, fill_value=fill if fill is not None else False, **kw)
        if fill is not None:
            attrs = {**attrs, "missing_value": fill}
        v.setncatts({k: a for k, a in attrs.items() if a is not None})
        return v

    def _define_time(self, ds, dim="time", long_name="time", bounds=True):
        ds.createDimension(dim, None)
        if "nbnd" not in ds.dimensions:
            ds.createDimension("nbnd", 2)
        self._var(ds, dim, "f8", (dim,), {"standard_name": "time", "long_name": long_name, "units": self.time_units,
                                          "calendar": self.calendar, "axis": "T",
                                          "bounds": f"{dim}_bnds" if bounds else None})
        if bounds:
            self._var(ds, f"{dim}_bnds", "f8", (dim, "nbnd"), {"long_name": f"{long_name} bounds"})


class _GriddedWriter(_NetCDFWriter):
    """Common part of the lat/lon writers: grid coordinates and gathering land-cell values."""

    def __init__(self, path, grid, fields, *, title, config_toml, provenance, time_units, calendar, collective,
                 frequency=None):
        self.grid = grid
        self.fields = _resolve_fields(fields, f"{type(self).__name__}({path})")
        self.n_land = int(grid.n_land)
        self._land_index = np.asarray(grid.land_index, dtype=np.int64)
        self._block: tuple[int, int] | None = None
        self._n_members: int | None = None
        prov = {"grid_name": grid.name, "grid_box": str(tuple(float(b) for b in grid.box)),
                "land_threshold": float(grid.land_threshold), "land_cover_source": _land_cover_source()}
        prov.update(provenance or {})
        super().__init__(path, title=title, config_toml=config_toml, provenance=prov, time_units=time_units,
                         calendar=calendar, collective=collective, frequency=frequency)

    def _define_grid(self, ds):
        g = self.grid
        nlat, nlon = g.shape
        ds.createDimension("lat", nlat)
        ds.createDimension("lon", nlon)
        if "nbnd" not in ds.dimensions:
            ds.createDimension("nbnd", 2)
        self._var(ds, "lat", "f8", ("lat",), {"standard_name": "latitude", "long_name": "latitude",
                                              "units": "degrees_north", "axis": "Y", "bounds": "lat_bnds"})[:] = g.lat
        self._var(ds, "lon", "f8", ("lon",), {"standard_name": "longitude", "long_name": "longitude",
                                              "units": "degrees_east", "axis": "X", "bounds": "lon_bnds"})[:] = g.lon
        self._var(ds, "lat_bnds", "f8", ("lat", "nbnd"), {"long_name": "latitude bounds"})[:] = np.column_stack(
            (g.lat_edges[:-1], g.lat_edges[1:]))
        self._var(ds, "lon_bnds", "f8", ("lon", "nbnd"), {"long_name": "longitude bounds"})[:] = np.column_stack(
            (g.lon_edges[:-1], g.lon_edges[1:]))
        self._var(ds, "area", "f8", ("lat", "lon"), {"standard_name": "cell_area", "long_name": "grid cell area",
                                                     "units": "km^2"})[:] = g.area
        self._var(ds, "landfrac", "f8", ("lat", "lon"),
                  {"standard_name": "land_area_fraction", "long_name": "land fraction (MODIS MCD12C1, not water)",
                   "units": "1", "cell_measures": "area: area"})[:] = g.landfrac
        mask = np.zeros(nlat * nlon, dtype=np.int32)
        mask[self._land_index] = 1
        self._var(ds, "landmask", "i4", ("lat", "lon"),
                  {"long_name": "model land cell (landfrac > 0 and >= land_threshold)", "units": "1",
                   "flag_values": np.array([0, 1], dtype=np.int32), "flag_meanings": "not_modelled land"}
                  )[:] = mask.reshape(nlat, nlon)
        if any(f.band for f in self.fields):
            ds.createDimension("band", _N_BANDS)
            self._var(ds, "band", "f8", ("band",),
                      {"standard_name": "depth", "long_name": "soil depth band (middle)", "units": "m",
                       "positive": "down", "axis": "Z", "bounds": "band_bnds"})[:] = STUDY_BANDS_M.mean(axis=1)
            self._var(ds, "band_bnds", "f8", ("band", "nbnd"), {"long_name": "soil depth band bounds"})[:] = STUDY_BANDS_M

    def _field_var(self, ds, f: HistoryField, name: str, long_name: str, cell_methods: str, extra: dict | None = None):
        nlat, nlon = self.grid.shape
        dims = ("time", *(("band",) if f.band else ()), "lat", "lon")
        chunks = (1, *((_N_BANDS,) if f.band else ()), nlat, nlon)
        attrs = {"long_name": long_name, "units": f.units, "standard_name": f.standard_name,
                 "cell_methods": cell_methods, "cell_measures": "area: area", "clm_name": f.name,
                 "lives_on": f.lives_on, **(extra or {})}
        self._var(ds, name, "f4", dims, attrs, fill=FILL_VALUE, zlib=True, chunks=chunks)

    def _check_values(self, values: dict, start, count, what: str) -> tuple[dict, int]:
        """Local check of one add()'s arrays; returns the float64 arrays and the member count."""
        where = f"{self.path}: {type(self).__name__}.{what}"
        if not isinstance(values, dict):
            raise HistoryError(f"{where}: values must be a dict field name -> array, got {type(values).__name__}")
        names = [f.name for f in self.fields]
        missing, extra = sorted(set(names) - set(values)), sorted(set(values) - set(names))
        if missing or extra:
            raise HistoryError(f"{where}: every call needs exactly the fields {names}; missing {missing}, unknown {extra}")
        for arg, v in (("start", start), ("count", count)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise HistoryError(f"{where}: {arg} must be an integer >= 0, got {v!r}")
        start, count = int(start), int(count)
        if start + count > self.n_land:
            raise HistoryError(f"{where}: block [{start}, {start + count}) exceeds the grid's {self.n_land} land cells")
        if self._block is not None and self._block != (start, count):
            raise HistoryError(f"{where}: block (start, count) = {(start, count)} differs from the first call's {self._block}")
        out = {}
        n_members = self._n_members
        for f in self.fields:
            a = np.asarray(values[f.name])
            want = (count, _N_BANDS) if f.band else (count,)
            if a.ndim != len(want) + 1 or a.shape[:-1] != want or a.dtype.kind not in "biuf":
                raise HistoryError(f"{where}: field {f.name!r} must be a numeric array of shape "
                                   f"{(*want, 'members')} (cells{', band' if f.band else ''}, members), got "
                                   f"{a.shape} {a.dtype}")
            if n_members is None:
                n_members = a.shape[-1]
            if a.shape[-1] != n_members or n_members < 1:
                raise HistoryError(f"{where}: field {f.name!r} has {a.shape[-1]} members, expected {n_members}")
            out[f.name] = a.astype(np.float64, copy=False)
        self._block, self._n_members = (start, count), n_members
        return out, n_members

    def _gather_land(self, local: np.ndarray) -> np.ndarray | None:
        """(count, K) rows of this rank -> (n_land, K) on rank 0 (placed by each block's start)."""
        start, count = self._block
        if not self.collective:
            if (start, count) != (0, self.n_land):
                raise HistoryError(f"{self.path}: a writer with collective=False needs all {self.n_land} land "
                                   f"cells, got the block [{start}, {start + count})")
            return local
        blocks = comm.gather_array(np.array([[start, count]], dtype=np.int64))
        rows = comm.gather_array(np.ascontiguousarray(local))
        error = None
        full = None
        if comm.rank() == 0:
            spans = sorted((int(s), int(c)) for s, c in blocks if c > 0)
            edge = 0
            for s, c in spans:
                if s != edge:
                    error = f"rank blocks do not tile [0, {self.n_land}): blocks (start, count) = {blocks.tolist()}"
                    break
                edge = s + c
            if error is None and edge != self.n_land:
                error = f"rank blocks cover [0, {edge}) of {self.n_land} land cells: {blocks.tolist()}"
            if error is None:
                full = np.empty((self.n_land, local.shape[1]), dtype=local.dtype)
                offset = 0
                for s, c in blocks:  # gather_array concatenates in rank order
                    full[s:s + c] = rows[offset:offset + c]
                    offset += c
        error = comm.bcast(error)
        if error is not None:
            self.discard()
            raise HistoryError(f"{self.path}: {error}")
        return full

    def _to_grid(self, land_values: np.ndarray, band: bool) -> np.ndarray:
        """(n_land[, band]) float64 -> float32 (…, nlat, nlon) with FILL_VALUE off land and on non-finite."""
        nlat, nlon = self.grid.shape
        lead = (_N_BANDS,) if band else ()
        out = np.full((*lead, nlat * nlon), FILL_VALUE, dtype=np.float32)
        v = land_values.T if band else land_values
        with np.errstate(over="ignore", invalid="ignore"):
            v32 = v.astype(np.float32)
        v32[~np.isfinite(v32)] = FILL_VALUE
        out[..., self._land_index] = v32
        return out.reshape(*lead, nlat, nlon)

    def _pack_stats(self, arrays: dict) -> np.ndarray:
        """Ensemble mean and spread of each field's (count, [band,] N) array as columns of (count, K)."""
        cols = []
        for f in self.fields:
            mean, sd = ensemble_mean_spread(arrays[f.name])
            k = _N_BANDS if f.band else 1
            cols += [mean.reshape(mean.shape[0], k), sd.reshape(sd.shape[0], k)]
        return np.concatenate(cols, axis=1) if cols else np.zeros((0, 0))

    def _unpack_stats(self, full: np.ndarray):
        """Inverse of _pack_stats on the gathered array: yields (field, mean, spread) in land order."""
        c = 0
        for f in self.fields:
            k = _N_BANDS if f.band else 1
            mean, sd = full[:, c:c + k], full[:, c + k:c + 2 * k]
            c += 2 * k
            yield f, (mean if f.band else mean[:, 0]), (sd if f.band else sd[:, 0])


def _land_cover_source() -> str:
    from engine.grid import LAND_COVER_SOURCE

    return LAND_COVER_SOURCE


# ----------------------------------------------------------------------------------------------
# History: time means of ensemble mean and spread
# ----------------------------------------------------------------------------------------------


class HistoryWriter(_GriddedWriter):
    """CLM h0-style history: per period, the ensemble mean and spread of each field's time mean.

    Create on all ranks (collectively), call :meth:`add` after every model step on all ranks with
    the same ``time``, and :meth:`close` at the end (or use ``with``). ``fields``: names from
    :data:`FIELDS` or :class:`HistoryField` objects. ``provenance``: extra global attributes
    (e.g. ``forcing_source``); the grid's land-cover source is added automatically.
    """

    kind = "laida history (time means of ensemble mean and spread)"

    def __init__(self, path, grid, fields=DEFAULT_FIELDS, *, config_toml: str, title: str,
                 time_units: str = "days since 2002-01-01 00:00:00", calendar: str = "noleap",
                 frequency: str = "daily", provenance: dict | None = None, collective: bool = True):
        self._acc: dict[str, np.ndarray] | None = None
        self._n_steps = 0
        self._period: tuple[float, float] | None = None
        self._last_t: float | None = None
        self.n_written = 0
        super().__init__(path, grid, fields, title=title, config_toml=config_toml, provenance=provenance,
                         time_units=time_units, calendar=calendar, collective=collective, frequency=frequency)

    def _define(self, ds):
        self._define_grid(ds)
        self._define_time(ds)
        self._var(ds, "n_samples", "i4", ("time",), {"long_name": "number of model steps in each time mean",
                                                     "units": "1"})
        for f in self.fields:
            self._field_var(ds, f, f.name, f"{f.long_name} (ensemble mean)", "time: mean realization: mean",
                            {"ensemble_statistic": "mean"})
            self._field_var(ds, f, spread_name(f.name), f"{f.long_name} (ensemble spread)",
                            "time: mean realization: standard_deviation",
                            {"ensemble_statistic": "sample standard deviation over members (N - 1 denominator) "
                                                   "of the members' time means"})

    def add(self, time, values: dict, start: int, count: int) -> None:
        """Add one model step ending at ``time`` (a number in ``time_units`` or a date).

        ``values[name]`` is this rank's block ``[start, start + count)`` of land cells, shape
        ``(count, members)`` or ``(count, 4, members)`` for band fields, in the field's units.
        When ``time`` lies beyond the current period, that period is written first (collective).
        """
        t = self.clock.num(time)
        if self._closed:
            raise HistoryError(f"{self.path}: add() after close() or discard()")
        if self._last_t is not None and t <= self._last_t:
            raise HistoryError(f"{self.path}: step times must increase: got {t} after {self._last_t} ({self.time_units})")
        arrays, _ = self._check_values(values, start, count, "add")
        if self._period is not None and t > self._period[1] + self.clock.eps:
            self._flush(partial=False)
        if self._period is None:
            self._period = self.clock.period(t)
            self._acc = {k: np.zeros_like(a) for k, a in arrays.items()}
            self._n_steps = 0
        for k, a in arrays.items():
            self._acc[k] += a  # element-wise running sum over steps, in step order
        self._n_steps += 1
        self._last_t = t

    def _flush(self, partial: bool) -> None:
        n = self._n_steps
        means = {k: s / n for k, s in self._acc.items()}  # time mean of each member
        full = self._gather_land(self._pack_stats(means))
        t0, t1 = self._period
        if partial:
            t1 = min(t1, self._last_t)
        self._on_root("writing a history record", self._write_record, full, t0, t1, n)
        self._period, self._acc, self._n_steps = None, None, 0
        self.n_written += 1

    def _write_record(self, full, t0, t1, n):
        ds = self._ds
        i = len(ds.dimensions["time"])
        ds["time"][i] = 0.5 * (t0 + t1)
        ds["time_bnds"][i, :] = [t0, t1]
        ds["n_samples"][i] = n
        for f, mean, sd in self._unpack_stats(full):
            ds[f.name][i] = self._to_grid(mean, f.band)
            ds[spread_name(f.name)][i] = self._to_grid(sd, f.band)
        if self._n_members is not None and "n_members" not in ds.ncattrs():
            ds.setncattr("n_members", np.int32(self._n_members))
        ds.sync()

    def _finish(self):
        if self._period is not None and self._n_steps > 0:
            self._flush(partial=True)


# ----------------------------------------------------------------------------------------------
# Analysis statistics: prior and posterior mean and spread at analysis times
# ----------------------------------------------------------------------------------------------


class AnalysisStatsWriter(_GriddedWriter):
    """Prior and posterior ensemble mean and spread of state variables at analysis times (instantaneous).

    ``fields``: names from :data:`FIELDS` or :class:`HistoryField` objects (e.g. TLAI, LEAFC,
    LEAFN, aggregated to cells by the caller). :meth:`add` is collective: call it on all ranks once
    per analysis.
    """

    kind = "laida analysis statistics (prior and posterior ensemble mean and spread)"

    def __init__(self, path, grid, fields, *, config_toml: str, title: str,
                 time_units: str = "days since 2002-01-01 00:00:00", calendar: str = "noleap",
                 provenance: dict | None = None, collective: bool = True):
        self._last_t: float | None = None
        super().__init__(path, grid, fields, title=title, config_toml=config_toml, provenance=provenance,
                         time_units=time_units, calendar=calendar, collective=collective)

    def _define(self, ds):
        self._define_grid(ds)
        self._define_time(ds, long_name="analysis time", bounds=False)
        self._var(ds, "cycle", "i4", ("time",), {"long_name": "assimilation cycle number", "units": "1"})
        for f in self.fields:
            for stage in ("prior", "posterior"):
                for stat, method in (("mean", "mean"), ("spread", "standard_deviation")):
                    self._field_var(ds, f, stats_name(f.name, stage, stat), f"{f.long_name} ({stage} ensemble {stat})",
                                    f"time: point realization: {method}",
                                    {"ensemble_statistic": stat if stat == "mean" else
                                     "sample standard deviation over members (N - 1 denominator)",
                                     "analysis_stage": stage})

    def add(self, time, cycle: int, prior: dict, posterior: dict, start: int, count: int) -> None:
        """Write the statistics of one analysis (collective). ``prior``/``posterior``: dicts
        ``name -> (count, [band,] members)`` arrays of this rank's block ``[start, start + count)``."""
        t = self.clock.num(time)
        if self._closed:
            raise HistoryError(f"{self.path}: add() after close() or discard()")
        if self._last_t is not None and t <= self._last_t:
            raise HistoryError(f"{self.path}: analysis times must increase: got {t} after {self._last_t}")
        if isinstance(cycle, bool) or not isinstance(cycle, (int, np.integer)):
            raise HistoryError(f"{self.path}: cycle must be an integer, got {cycle!r}")
        a_prior, _ = self._check_values(prior, start, count, "add(prior)")
        a_post, _ = self._check_values(posterior, start, count, "add(posterior)")
        full = self._gather_land(np.concatenate([self._pack_stats(a_prior), self._pack_stats(a_post)], axis=1))
        self._on_root("writing an analysis record", self._write_record, full, t, int(cycle))
        self._last_t = t

    def _write_record(self, full, t, cycle):
        ds = self._ds
        i = len(ds.dimensions["time"])
        ds["time"][i] = t
        ds["cycle"][i] = cycle
        half = full.shape[1] // 2
        for stage, part in (("prior", full[:, :half]), ("posterior", full[:, half:])):
            for f, mean, sd in self._unpack_stats(part):
                ds[stats_name(f.name, stage, "mean")][i] = self._to_grid(mean, f.band)
                ds[stats_name(f.name, stage, "spread")][i] = self._to_grid(sd, f.band)
        ds.sync()


# ----------------------------------------------------------------------------------------------
# Observation-space diagnostics (CF point DSG) and the analysis budget terms
# ----------------------------------------------------------------------------------------------

#: DART quality-control values (``DART_QC``), as written by DART's filter into obs_seq.final.
DART_QC = {
    0: "assimilated",
    1: "evaluated_only",
    2: "assimilated_but_posterior_forward_operator_failed",
    3: "evaluated_only_but_posterior_forward_operator_failed",
    4: "prior_forward_operator_failed",
    5: "not_used_by_namelist_control",
    6: "rejected_by_incoming_data_qc",
    7: "rejected_by_outlier_threshold",
    8: "vertical_conversion_failed",
}

#: Per-observation variables: name -> (dtype, units or None = the observation's units, long name,
#: standard name). ``time`` is in the writer's time units.
OBS_FIELDS = {
    "time": ("f8", "time", "time of the observation", "time"),
    "lat": ("f8", "degrees_north", "latitude of the observation", "latitude"),
    "lon": ("f8", "degrees_east", "longitude of the observation", "longitude"),
    "cell": ("i8", "1", "global land-cell index of the observation (engine.grid land order; -1: none)", None),
    "value": ("f8", None, "observed value", None),
    "error_variance": ("f8", "variance", "observation error variance", None),
    "prior_mean": ("f8", None, "prior ensemble mean of the forward operator", None),
    "prior_spread": ("f8", None, "prior ensemble spread (standard deviation, N - 1) of the forward operator", None),
    "posterior_mean": ("f8", None, "posterior ensemble mean of the forward operator", None),
    "posterior_spread": ("f8", None, "posterior ensemble spread (standard deviation, N - 1) of the forward operator",
                         None),
    "qc": ("i4", None, "DART quality control value", None),
}

#: Analysis budget terms per cycle (global sums over land, area-weighted): name -> (units, long name).
DEFAULT_BUDGET_TERMS = {
    "ANALYSIS_DLEAFC": ("gC", "leaf carbon added by the analysis, summed over all land (cell area x landfrac)"),
    "ANALYSIS_DLEAFN": ("gN", "leaf nitrogen added by the analysis, summed over all land (cell area x landfrac)"),
}


class ObsDiagnosticsWriter(_NetCDFWriter):
    """Observation-space diagnostics, one record per observation, appended cycle after cycle.

    A CF-1.8 discrete sampling geometry of featureType ``point``: every variable of OBS_FIELDS
    (plus ``obs_cycle`` and ``obs_number``) is a function of the growing ``obs`` dimension, with
    ``coordinates = "time lat lon"``. Per cycle, along a second growing dimension ``cycle``: the
    coordinate ``cycle`` (cycle numbers), ``cycle_time``, ``n_obs_in_cycle`` and the analysis budget terms
    (``budget_terms``: name -> (units, long name); values missing in a cycle are filled).
    ``obs_units`` is the unit of the observed quantity (LAI: m^2/m^2); the error variance is in its
    square (``variance_units``).
    """

    kind = "laida observation-space diagnostics (CF point DSG)"

    def __init__(self, path, *, config_toml: str, title: str, time_units: str = "days since 2002-01-01 00:00:00",
                 calendar: str = "noleap", obs_type: str = "LEAF_AREA_INDEX", obs_units: str = "m^2/m^2",
                 variance_units: str = "m^4/m^4", budget_terms: dict | None = None, provenance: dict | None = None,
                 collective: bool = True):
        self.obs_units, self.variance_units = obs_units, variance_units
        self.budget_terms = dict(DEFAULT_BUDGET_TERMS if budget_terms is None else budget_terms)
        for name in self.budget_terms:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", str(name)) or name in OBS_FIELDS:
                raise HistoryError(f"{path}: budget term names must be identifiers not among {sorted(OBS_FIELDS)}: {name!r}")
        self._last_cycle: int | None = None
        super().__init__(path, title=title, config_toml=config_toml, provenance=provenance, time_units=time_units,
                         calendar=calendar, collective=collective,
                         extra_globals={"featureType": "point", "observation_type": str(obs_type)})

    def _define(self, ds):
        ds.createDimension("obs", None)
        ds.createDimension("cycle", None)
        for name, (dtype, units, long_name, std) in OBS_FIELDS.items():
            units = {None: self.obs_units, "variance": self.variance_units}.get(units, units)
            attrs = {"long_name": long_name, "units": units, "standard_name": std}
            if name == "time":
                attrs.update(units=self.time_units, calendar=self.calendar, axis="T")
            elif name in ("lat", "lon"):
                attrs["axis"] = "Y" if name == "lat" else "X"
            else:  # data variables of the point features
                attrs["coordinates"] = "time lat lon"
            if name == "qc":
                attrs.update(units=None, flag_values=np.array(sorted(DART_QC), dtype=np.int32),
                             flag_meanings=" ".join(DART_QC[k] for k in sorted(DART_QC)))
            elif name == "cell":
                attrs.update(units=None)
            fill = INT_FILL if dtype == "i4" else None
            self._var(ds, name, dtype, ("obs",), attrs, fill=fill, zlib=True)
        self._var(ds, "obs_cycle", "i4", ("obs",), {"long_name": "assimilation cycle of the observation",
                                                   "coordinates": "time lat lon"}, zlib=True)
        self._var(ds, "obs_number", "i8", ("obs",), {"long_name": "number of the observation within its cycle, in "
                                                                 "the filter's global processing order",
                                                    "coordinates": "time lat lon"}, zlib=True)
        self._var(ds, "cycle", "i4", ("cycle",), {"long_name": "assimilation cycle number"})
        self._var(ds, "cycle_time", "f8", ("cycle",), {"standard_name": "time", "long_name": "analysis time",
                                                       "units": self.time_units, "calendar": self.calendar})
        self._var(ds, "n_obs_in_cycle", "i4", ("cycle",), {"long_name": "observations written for the cycle",
                                                          "units": "1"})
        for name, (units, long_name) in self.budget_terms.items():
            self._var(ds, name, "f8", ("cycle",), {"long_name": long_name, "units": units,
                                                  "coordinates": "cycle_time"}, fill=np.float64(FILL_VALUE))

    def add_cycle(self, cycle: int, time, obs: dict, budget: dict | None = None) -> int:
        """Append one cycle's observations (collective). Returns the number of observations written.

        ``obs[key]`` are this rank's observations, one entry per observation, for every key of
        :data:`OBS_FIELDS` (``time`` as a number in ``time_units``), optionally ``obs_number``
        (the global processing order; rows are then written sorted by it, so the file does not
        depend on which rank held which observation; without it, rank order). ``budget``: the
        cycle's global budget terms (rank 0's values are written).
        """
        where = f"{self.path}: ObsDiagnosticsWriter.add_cycle"
        if self._closed:
            raise HistoryError(f"{where}: called after close() or discard()")
        t = self.clock.num(time)
        if isinstance(cycle, bool) or not isinstance(cycle, (int, np.integer)):
            raise HistoryError(f"{where}: cycle must be an integer, got {cycle!r}")
        if self._last_cycle is not None and cycle <= self._last_cycle:
            raise HistoryError(f"{where}: cycles must increase: got {cycle} after {self._last_cycle}")
        if not isinstance(obs, dict):
            raise HistoryError(f"{where}: obs must be a dict key -> array")
        keys = list(OBS_FIELDS) + ["obs_number"]
        missing = [k for k in OBS_FIELDS if k not in obs]
        extra = sorted(set(obs) - set(keys))
        if missing or extra:
            raise HistoryError(f"{where}: obs needs the keys {list(OBS_FIELDS)} (and optionally 'obs_number'); "
                               f"missing {missing}, unknown {extra}")
        budget = dict(budget or {})
        unknown = sorted(set(budget) - set(self.budget_terms))
        if unknown:
            raise HistoryError(f"{where}: unknown budget terms {unknown}; declared: {sorted(self.budget_terms)}")
        has_number = self._bcast("obs_number" in obs)
        if ("obs_number" in obs) != has_number:
            raise HistoryError(f"{where}: 'obs_number' must be given on every rank or on none")
        cols = {}
        n = None
        for k in keys:
            if k == "obs_number" and not has_number:
                continue
            a = np.asarray(obs[k])
            dtype = "i8" if k == "obs_number" else OBS_FIELDS[k][0]
            if a.ndim != 1 or a.dtype.kind not in ("iu" if dtype[0] == "i" else "biuf"):
                raise HistoryError(f"{where}: obs[{k!r}] must be a 1-D {'integer' if dtype[0] == 'i' else 'numeric'} "
                                   f"array, got shape {a.shape} dtype {a.dtype}")
            if n is None:
                n = a.size
            if a.size != n:
                raise HistoryError(f"{where}: obs[{k!r}] has {a.size} entries, obs['time'] has {n}")
            cols[k] = a.astype(np.dtype(dtype))
        if self.collective:
            cols = {k: comm.gather_array(a) for k, a in cols.items()}
        n_total = self._bcast(int(cols["time"].size) if self._root else 0)
        self._on_root("writing a cycle of observations", self._write_cycle, int(cycle), t, cols,
                      {k: float(v) for k, v in budget.items()})
        self._last_cycle = int(cycle)
        return n_total

    def _write_cycle(self, cycle, t, cols, budget):
        ds = self._ds
        if "obs_number" in cols:
            order = np.argsort(cols["obs_number"], kind="stable")
            cols = {k: a[order] for k, a in cols.items()}
        else:
            cols["obs_number"] = np.arange(cols["time"].size, dtype=np.int64)
        i0 = len(ds.dimensions["obs"])
        n = cols["time"].size
        if n:
            for k, a in cols.items():
                ds[k][i0:i0 + n] = a
            ds["obs_cycle"][i0:i0 + n] = np.full(n, cycle, dtype=np.int32)
        j = len(ds.dimensions["cycle"])
        ds["cycle"][j] = cycle
        ds["cycle_time"][j] = t
        ds["n_obs_in_cycle"][j] = n
        for name in self.budget_terms:
            v = budget.get(name, np.nan)
            ds[name][j] = v if np.isfinite(v) else np.float64(FILL_VALUE)
        ds.sync()
