"""Experiment configuration: one TOML file, checked against one declared schema.

Reads a TOML file (``tomllib``) and ``--set section.key=value`` overrides; writes nothing but text
(``defaults_toml`` for a commented default file, ``to_toml`` for the resolved configuration that goes
into the log and into every restart and history file, as DART echoes each namelist it reads).

``SCHEMA`` is the single table of settings, one ``Key`` row per setting: section, key, type, default,
units, description and what is allowed (a range such as ``"0 < x <= 1"``, a tuple of choices, or a
``Rule``). To add a setting, add one row. Cross-key checks are ``Cross`` rows in ``CROSS_CHECKS``.
Anything the table does not allow (unknown sections or keys, wrong types, out-of-range values, bad
choices, failed cross-key checks, malformed TOML) raises ``ConfigError`` before any work starts; the
message names the file (or the ``--set`` option), the key, what was given and what is allowed.

Types: ``str``, ``int``, ``float`` (an integer is accepted and stored as float; NaN and infinities
are refused), ``bool``, ``date`` (an ISO 8601 date or naive date-time in UTC, given as a TOML date or
a string, stored as the ISO string) and ``list[<one of those>]``.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

__all__ = [
    "ConfigError", "Config", "Key", "Rule", "Cross", "SCHEMA", "SECTIONS", "CROSS_CHECKS",
    "load", "defaults_toml", "to_toml", "log_config", "reference_markdown", "parse_date", "allowed_text", "toml_dumps", "toml_value",
]


class ConfigError(ValueError):
    """A configuration that cannot be used; ``problems`` lists one message per problem found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            text = self.problems[0]
        else:
            text = f"{len(self.problems)} problems in the configuration:\n" + "\n".join(
                f"  {p}" for p in self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class Rule:
    """A check a single value must pass, with the text that tells the user what is allowed."""

    test: Callable[[Any], bool]
    text: str


@dataclass(frozen=True)
class Key:
    """One setting: ``[section] name = default`` of ``type`` in ``units``.

    ``range`` is written with ``x`` for the value: ``"1 <= x <= 10000"``, ``"0 < x <= 1"``, ``"x >= 0"``.
    """

    section: str
    name: str
    type: str
    default: Any
    units: str
    description: str
    range: str | None = None
    choices: tuple | None = None
    rule: Rule | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.name}"


@dataclass(frozen=True)
class Cross:
    """A check across keys; ``test`` gets a dict ``{"section.key": value}`` of the resolved values."""

    keys: tuple[str, ...]
    test: Callable[[dict], bool]
    text: str


def _is_date(v) -> bool:
    try:
        parse_date(v)
    except ValueError:
        return False
    return True


def _grid_box_ok(box) -> bool:
    if len(box) == 0:
        return True
    if len(box) != 4:
        return False
    lat0, lat1, lon0, lon1 = box
    return abs(lat0) <= 90 and abs(lat1) <= 90 and lat0 != lat1 and lon0 < lon1 <= lon0 + 360


DIVIDES_DAY = Rule(lambda v: v > 0 and 86400 % v == 0, "a divisor of 86400 (a whole number of steps per day)")
DIVIDES_24 = Rule(lambda v: v > 0 and 24 % v == 0, "a divisor of 24 (records at the same hours every day)")
FILE_NAME = Rule(lambda v: re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", v) is not None,
                 "letters, digits, '_', '-' and '.', starting with a letter or digit (it goes into file names)")
NOT_EMPTY = Rule(lambda v: v.strip() != "", "a non-empty path")
NAME = Rule(lambda v: v.strip() != "", "a non-empty variable name")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FREQUENCY = Rule(lambda v: v in ("daily", "monthly", "yearly") or re.fullmatch(r"[1-9][0-9]*[hd]", v) is not None,
                 '"daily", "monthly", "yearly", or "<N>h" / "<N>d" with N a positive integer')

SECTIONS = {
    "run": "The experiment: its name, where it writes, how much it logs.",
    "grid": "The model grid and the region of it that is simulated.",
    "ensemble": "The ensemble of model states.",
    "time": "Simulated period and time steps. Times are UTC.",
    "surface": "Surface data: PFT composition, soil texture and colour, elevation.",
    "decomposition": "How land cells are split over MPI ranks.",
    "restart": "Checkpoints (HDF5 restart files).",
    "history": "History files (CF netCDF): time means of ensemble mean and spread on the lat/lon grid.",
    "experiment": "The twin experiment: nature run (truth), CTL (no assimilation) and CN (LAI assimilation), cycled in lockstep.",
    "spinup": "Ensemble initial conditions in the study's three stages (one forcing, ensemble-mean forcing, own forcing).",
    "observations": "LAI observations assimilated by CN: synthetic GLASS-like observations of the nature run, gridded LAI product files, or DART obs_seq files.",
    "filter": "The ensemble filter that assimilates LAI (DART-style serial EAKF/EnKF).",
}

# fmt: off
SCHEMA: tuple[Key, ...] = (
    Key("run", "name", "str", "laida", "none", "experiment name, used in output file names and logs", rule=FILE_NAME),
    Key("run", "run_dir", "str", "runs/laida", "path", "directory for restarts, history and the log (relative paths start at the working directory)", rule=NOT_EMPTY),
    Key("run", "log_level", "str", "INFO", "none", "least severe log messages shown on rank 0", choices=LOG_LEVELS),
    Key("grid", "name", "str", "f09", "none", "CESM land grid: f09 = 0.9x1.25, f19 = 1.9x2.5, f45 = 4x5 degrees (lat x lon)", choices=("f09", "f19", "f45")),
    Key("grid", "lat_min", "float", -90.0, "degrees_north", "southern edge of the simulated box", range="-90 <= x <= 90"),
    Key("grid", "lat_max", "float", 90.0, "degrees_north", "northern edge of the simulated box", range="-90 <= x <= 90"),
    Key("grid", "lon_min", "float", 0.0, "degrees_east", "western edge of the simulated box (a box across 0E is e.g. -10 .. 10)", range="-180 <= x <= 360"),
    Key("grid", "lon_max", "float", 360.0, "degrees_east", "eastern edge of the simulated box", range="-180 <= x <= 360"),
    Key("grid", "land_threshold", "float", 0.5, "1", "minimum land fraction for a grid cell to be a land cell", range="0 < x <= 1"),
    Key("ensemble", "members", "int", 40, "members", "number of ensemble members", range="1 <= x <= 10000"),
    Key("ensemble", "seed", "int", 0, "none", "seed of the counter-based random streams (perturbations, synthetic observations)", range="0 <= x <= 9223372036854775807"),
    Key("time", "start", "date", "2002-01-01", "UTC", "first model time: ISO date or date-time", rule=Rule(_is_date, 'an ISO date such as "2002-01-01" or date-time such as "2002-01-01T06:00:00"')),
    Key("time", "stop", "date", "2003-01-01", "UTC", "end of the simulated period (exclusive): ISO date or date-time", rule=Rule(_is_date, 'an ISO date such as "2003-01-01" or date-time such as "2003-01-01T00:00:00"')),
    Key("time", "step_seconds", "int", 1800, "s", "land model time step", range="1 <= x <= 86400", rule=DIVIDES_DAY),
    Key("time", "forcing_step_hours", "int", 6, "h", "interval between atmospheric forcing records", range="1 <= x <= 24", rule=DIVIDES_24),
    Key("surface", "file", "str", "", "path", "surface dataset to use instead of building one (laida's or a CLM surfdata file); empty = build from the shipped data and cache"),
    Key("surface", "min_patch_pct", "float", 5.0, "percent", "PFTs under this share of the vegetated land unit are merged into the others", range="0 <= x < 50"),
    Key("decomposition", "weight", "str", "patches", "none", "what the blocks of land cells balance: number of patches, or number of cells", choices=("patches", "uniform")),
    Key("restart", "every_cycles", "int", 1, "cycles", "write a checkpoint every this many assimilation cycles", range="x >= 1"),
    Key("restart", "keep", "int", 2, "checkpoints", "how many complete checkpoints to keep (older ones are deleted)", range="x >= 1"),
    Key("history", "frequency", "str", "daily", "none", "averaging period of the history files (CLM h0 time means)", rule=FREQUENCY),
    Key("experiment", "cycle_days", "int", 8, "days", "length of an assimilation cycle (forecast window); GLASS LAI is 8-daily", range="1 <= x <= 366"),
    Key("experiment", "bias_pft", "int", 4, "none", "CLM4 PFT whose parameters differ between the ensemble's model and the truth (4 = broadleaf evergreen tropical tree)", range="1 <= x <= 16"),
    Key("experiment", "bias_slatop_factor", "float", 1.5, "1", "the ensemble's canopy-top specific leaf area (slatop) of bias_pft is the truth's times this factor, so CTL overestimates LAI there (1 = no bias)", range="0.1 <= x <= 10"),
    Key("spinup", "stage1_days", "int", 365, "days", "stage 1: one model, one (unperturbed) forcing", range="0 <= x <= 3650"),
    Key("spinup", "stage2_days", "int", 0, "days", "stage 2: one model, the ensemble-mean forcing", range="0 <= x <= 3650"),
    Key("spinup", "stage3_days", "int", 30, "days", "stage 3: every member with its own forcing, ending at time.start", range="0 <= x <= 3650"),
    Key("spinup", "leafc0", "float", 100.0, "gC/m2", "cold-start leaf carbon of every vegetated patch (CLM4.0 starts from 1; more shortens the growth of the canopy at affordable spin-up lengths)", range="0 < x <= 1000"),
    Key("spinup", "lai_spread", "float", 0.2, "1", "at the start of stage 3 each member's patch LAI is multiplied by a lognormal factor of this sd (mean 1; leaf C and N follow allometrically), a spread the short spin-up cannot build from the forcing alone", range="0 <= x <= 1"),
    Key("spinup", "ad", "bool", True, "none", "accelerated-decomposition spin-up during stage 1: SOM turnover x(1, 1, 5, 70) for soil1..soil4 (CLM4.5), dead stem/coarse root mortality x10 and CWD fragmentation x a latitude-dependent factor (CTSM), left with the matching exit conversion (pools times their factors)"),
    Key("spinup", "supplemental_n_fraction", "float", 0.5, "1", "during this first fraction of stage 1 in AD mode, add the mineral N that plant demand and immobilisation lack (CLM4.0 supplement_to_sminn; Biome-BGC spin-up), booked as an N input, so the pools of a short spin-up fill with nitrogen as well as carbon; the rest of stage 1 runs N-limited and the vegetation settles to what that N supports", range="0 <= x <= 1"),
    Key("observations", "source", "str", "synthetic", "none", "synthetic: GLASS-like 0.05 deg observations of the nature run, aggregated to the grid (twin experiment); product: gridded LAI files (netCDF/HDF5, GLASS/MODIS/GEOV1-like) aggregated to the grid; obs_seq: DART ASCII obs_seq.out files", choices=("synthetic", "product", "obs_seq")),
    Key("observations", "files", "str", "", "path", "product and obs_seq: path pattern of the observation file of an analysis time, with Python format fields {year} {month} {day} {doy} {hour} {minute} {cycle} (e.g. \"obs/GLASS_LAI_{year}{doy:03d}.nc\"), or a glob (* ? [) whose files carry their own times (a product's CF time coordinate, an obs_seq's observation times); relative paths start at the working directory"),
    Key("observations", "composite_days", "int", 0, "days", "0: the pattern's date fields are those of the analysis time; N > 0: those of the product composite containing it, composites starting on day-of-year 1, 1+N, 1+2N, ... of every year (GLASS and MODIS 8-day: 8)", range="0 <= x <= 366"),
    Key("observations", "window_hours", "float", 12.0, "h", "half-width of the analysis window: observations timed t with T - w < t <= T + w are assimilated at analysis time T (obs_seq files and globbed product files; the others are rejected and counted in the log)", range="x >= 0"),
    Key("observations", "missing", "str", "error", "none", "no observation file for an analysis time: error (stop, naming the expected path) or skip (log it and do no analysis that cycle)", choices=("error", "skip")),
    Key("observations", "variable", "str", "LAI", "none", "product: name of the LAI variable (its _FillValue, missing_value, valid_range and scale_factor/add_offset are honoured)", rule=NAME),
    Key("observations", "uncertainty", "str", "", "none", "product: name of the LAI uncertainty (standard deviation, m2/m2) variable on the same grid; empty or invalid pixels use the error model sd_a, sd_b"),
    Key("observations", "lat_name", "str", "", "none", "product: latitude coordinate variable (empty = find lat, latitude, ...)"),
    Key("observations", "lon_name", "str", "", "none", "product: longitude coordinate variable (empty = find lon, longitude, ...)"),
    Key("observations", "grid_box", "list[float]", [], "degrees", "product files without coordinate variables (plain HDF5 rasters such as GEOV1's): [first row's edge, last row's edge, first column's edge, last column's edge] of the evenly spaced raster, e.g. [80, -60, -180, 180]; empty = read the coordinates from the file"),
    Key("observations", "time_name", "str", "time", "none", "product with a glob pattern: the CF time coordinate variable (units \"days since ...\", Gregorian) that dates each record", rule=NAME),
    Key("observations", "seed", "int", 1, "none", "seed of the synthetic observations' counter-based streams", range="0 <= x <= 9223372036854775807"),
    Key("observations", "min_valid_fraction", "float", 0.3, "1", "minimum fraction of a cell's observable pixels that must be cloud-free to keep its observation", range="0 <= x <= 1"),
    Key("observations", "sd_a", "float", 0.1, "m2/m2", "pixel error sd = max(sd_min, sd_a + sd_b * LAI): intercept", range="x >= 0"),
    Key("observations", "sd_b", "float", 0.2, "1", "pixel error sd: slope with LAI", range="x >= 0"),
    Key("observations", "repr_a", "float", 0.05, "m2/m2", "representativeness error sd of a cell = repr_a + repr_b * LAI: intercept", range="x >= 0"),
    Key("observations", "repr_b", "float", 0.1, "1", "representativeness error sd: slope with LAI", range="x >= 0"),
    Key("observations", "p_dry", "float", 0.10, "1", "probability that a composite pixel is missing (cloud) away from the tropics", range="0 <= x <= 1"),
    Key("observations", "p_wet", "float", 0.50, "1", "probability that a composite pixel is missing at the equator", range="0 <= x <= 1"),
    Key("filter", "kind", "str", "eakf", "none", "ensemble adjustment Kalman filter (Anderson 2001) or perturbed-observation EnKF", choices=("eakf", "enkf")),
    Key("filter", "update", "str", "allometric", "none", "analysis update: allometric = the filter updates patch LAI, leaf C follows from the inverse SLA relation and leaf N = leaf C / leafcn; regression = the state holds patch LAI, leaf C and leaf N, all updated by regression on the LAI observations (as DART's CLM interface), LAI then recomputed from leaf C", choices=("allometric", "regression")),
    Key("filter", "cutoff_km", "float", 0.0, "km", "Gaspari-Cohn localization half-width; 0 = column-only (an observation updates only its own cell's patches)", range="x >= 0"),
    Key("filter", "inflation", "str", "adaptive", "none", "prior inflation: fixed factor, or spatially varying adaptive inflation (Anderson 2009)", choices=("fixed", "adaptive")),
    Key("filter", "inflation_factor", "float", 1.0, "1", "fixed prior variance inflation factor; with adaptive inflation the initial mean", range="1 <= x <= 10"),
    Key("filter", "inflation_sd", "float", 0.6, "1", "adaptive inflation: initial (and lowest) standard deviation", range="x > 0"),
    Key("filter", "inflation_damping", "float", 0.9, "1", "adaptive inflation: damping towards 1 per cycle (1 = none)", range="0 < x <= 1"),
    Key("filter", "outlier_threshold", "float", 3.0, "1", "reject an observation when |y - prior mean| exceeds this many sqrt(prior var + obs var); <= 0 disables"),
)

CROSS_CHECKS: tuple[Cross, ...] = (
    Cross(("grid.lat_min", "grid.lat_max"), lambda c: c["grid.lat_min"] < c["grid.lat_max"], "grid.lat_min must be less than grid.lat_max"),
    Cross(("grid.lon_min", "grid.lon_max"), lambda c: c["grid.lon_min"] < c["grid.lon_max"], "grid.lon_min must be less than grid.lon_max (a box across 0E is e.g. lon_min = -10, lon_max = 10)"),
    Cross(("grid.lon_min", "grid.lon_max"), lambda c: c["grid.lon_max"] - c["grid.lon_min"] <= 360, "the box must lie inside the globe: grid.lon_max - grid.lon_min <= 360"),
    Cross(("time.start", "time.stop"), lambda c: parse_date(c["time.stop"]) > parse_date(c["time.start"]), "time.stop must be after time.start"),
    Cross(("observations.source", "observations.files"), lambda c: c["observations.source"] == "synthetic" or c["observations.files"].strip() != "", "observations.files must name the observation files (a path pattern) when observations.source is product or obs_seq"),
    Cross(("observations.grid_box",), lambda c: _grid_box_ok(c["observations.grid_box"]), "observations.grid_box must be empty or 4 edges [lat, lat, lon, lon] in degrees: latitudes within [-90, 90] and different, longitudes increasing by at most 360"),
    Cross(("observations.window_hours", "experiment.cycle_days"), lambda c: c["observations.window_hours"] <= 12 * c["experiment.cycle_days"], "observations.window_hours may be at most half the cycle (12 * experiment.cycle_days), so that no observation falls into two analysis windows"),
    Cross(("spinup.stage1_days", "spinup.stage2_days", "spinup.stage3_days"), lambda c: c["spinup.stage1_days"] + c["spinup.stage2_days"] + c["spinup.stage3_days"] <= 3650, "the three spin-up stages may last at most 3650 days together"),
)
# fmt: on

_SCALAR_TYPES = ("str", "int", "float", "bool", "date")
_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "a boolean (true or false)",
               "date": "an ISO date"}


# --------------------------------------------------------------------------- the resolved configuration


class Section:
    """The keys of one section as read-only attributes: ``cfg.grid.name``."""

    __slots__ = ("_name", "_values")

    def __init__(self, name: str, values: dict):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, key):
        values = object.__getattribute__(self, "_values")
        if key in values:
            return copy.copy(values[key])
        name = object.__getattribute__(self, "_name")
        raise AttributeError(f"configuration has no key {name}.{key}{_suggest(key, values, name + '.')}")

    def __setattr__(self, key, value):
        raise AttributeError("the configuration is read-only; change the TOML file or use --set")

    def __iter__(self):
        return iter(self._values)

    def __reduce__(self):  # picklable (comm.bcast) despite the read-only __setattr__
        return Section, (self._name, self._values)

    def as_dict(self) -> dict:
        return copy.deepcopy(self._values)

    def __repr__(self):
        return f"Section({self._name!r}, {self._values!r})"


class Config:
    """A validated configuration: one ``Section`` attribute per schema section.

    ``source`` is the file it was read from (None for defaults only) and ``overrides`` the ``--set``
    strings applied after it.
    """

    def __init__(self, values: dict[str, dict], source: str | None = None, overrides: Iterable[str] = ()):
        self._values = values
        self._sections = {s: Section(s, v) for s, v in values.items()}
        self.source = source
        self.overrides = tuple(overrides)

    def __getattr__(self, section):
        sections = self.__dict__.get("_sections", {})
        if section in sections:
            return sections[section]
        raise AttributeError(f"configuration has no section [{section}]{_suggest(section, sections, '')}")

    def get(self, dotted: str):
        """The value of ``"section.key"``."""
        section, _, key = dotted.partition(".")
        return getattr(getattr(self, section), key)

    def as_dict(self) -> dict[str, dict]:
        """``{section: {key: value}}`` (a copy)."""
        return copy.deepcopy(self._values)

    def __eq__(self, other):
        return isinstance(other, Config) and self._values == other._values

    def __repr__(self):
        return f"Config(source={self.source!r}, overrides={self.overrides!r}, values={self._values!r})"


# --------------------------------------------------------------------------- loading and checking


def load(path: str | Path | None, overrides: Iterable[str] = (), *, schema: Iterable[Key] | None = None,
         cross_checks: Iterable[Cross] | None = None) -> Config:
    """Read and check a configuration; ``path=None`` means the defaults only.

    ``overrides`` are ``"section.key=value"`` strings applied after the file (the value is read as a TOML
    value, falling back to the bare string; for string and date keys a value that reads as another
    TOML type is taken as its text, so ``run.name=2002`` is the string "2002").
    ``schema`` and ``cross_checks`` default to this module's tables.
    Raises ``ConfigError`` listing every problem found.
    """
    schema = tuple(SCHEMA if schema is None else schema)
    cross_checks = tuple(CROSS_CHECKS if cross_checks is None else cross_checks)
    table = {k.dotted: k for k in schema}
    sections = list(dict.fromkeys(k.section for k in schema))
    overrides = tuple(overrides)

    given: dict[str, tuple[Any, str]] = {}  # "section.key" -> (raw value, where it came from)
    problems: list[str] = []
    source = None
    if path is not None:
        source = str(path)
        given, problems = _read_file(Path(path), table, sections)
    for text in overrides:
        dotted, value, problem = _parse_override(text, table, sections)
        if problem:
            problems.append(problem)
        else:
            given[dotted] = (value, f"--set {text}")

    values: dict[str, dict] = {s: {} for s in sections}
    where: dict[str, str] = {}
    for key in schema:
        raw, origin = given.get(key.dotted, (key.default, "defaults"))
        value, problem = _check_value(key, raw)
        if problem:
            problems.append(f"{origin}: {key.dotted} = {_show(raw)}: {problem}")
        else:
            values[key.section][key.name] = value
            where[key.dotted] = origin
    flat = {f"{s}.{k}": v for s, kv in values.items() for k, v in kv.items()}
    for check in cross_checks:
        if all(k in flat for k in check.keys) and not check.test(flat):
            origins = ", ".join(dict.fromkeys(where[k] for k in check.keys))
            shown = ", ".join(f"{k} = {_show(flat[k])}" for k in check.keys)
            problems.append(f"{origins}: {shown}: {check.text}")
    if problems:
        raise ConfigError(problems)
    return Config(values, source, overrides)


def _read_file(path: Path, table: dict[str, Key], sections: list[str]):
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except tomllib.TOMLDecodeError as exc:  # its message ends with "(at line L, column C)"
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text): {exc}") from None
    given, problems = {}, []
    for section, content in data.items():
        if section not in sections:
            if not isinstance(content, dict):
                matches = [k for k in table if k.endswith("." + section)]
                hint = f"; did you mean {' or '.join(matches)}?" if matches else ""
                problems.append(f"{path}: {section} = {_show(content)}: key outside any [section]{hint} "
                                f"(sections are {', '.join(f'[{s}]' for s in sections)})")
            else:
                problems.append(f"{path}: [{section}]: unknown section{_suggest(section, sections, '[', ']')} "
                                f"(sections are {', '.join(f'[{s}]' for s in sections)})")
            continue
        if not isinstance(content, dict):
            problems.append(f"{path}: {section} = {_show(content)}: [{section}] must be a table of keys, "
                            f"not {_toml_type(content)}")
            continue
        names = [k.split(".", 1)[1] for k in table if k.startswith(section + ".")]
        for name, value in content.items():
            dotted = f"{section}.{name}"
            if dotted not in table:
                problems.append(f"{path}: {dotted}: unknown key in [{section}]{_suggest(name, names, section + '.')} "
                                f"(keys of [{section}] are {', '.join(names)})")
            else:
                given[dotted] = (value, str(path))
    return given, problems


def _parse_override(text: str, table: dict[str, Key], sections: list[str]):
    """``"section.key=value"`` -> (dotted key, value, problem or None)."""
    dotted, eq, raw = text.partition("=")
    dotted = dotted.strip()
    if not eq or "." not in dotted:
        return None, None, f"--set {text}: expected section.key=value, e.g. --set grid.name=f19"
    if dotted not in table:
        section, name = dotted.split(".", 1)
        if section not in sections:
            hint = _suggest(dotted, list(table), "")
        else:
            hint = _suggest(name, [k.split(".", 1)[1] for k in table if k.startswith(section + ".")], section + ".")
        return None, None, f"--set {text}: {dotted}: unknown key{hint}"
    raw = raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    if table[dotted].type in ("str", "date") and not isinstance(value, str):
        value = raw  # --set run.name=2002 means the string "2002"; dates are checked as text
    return dotted, value, None


def _check_value(key: Key, raw):
    """(value converted to the key's type, None) or (None, what is wrong and what is allowed)."""
    if key.type.startswith("list[") and key.type.endswith("]"):
        item_type = key.type[5:-1]
        if not isinstance(raw, list):
            return None, f"wrong type ({_toml_type(raw)}); allowed: {allowed_text(key)}"
        out = []
        for i, item in enumerate(raw):
            value, problem = _convert(item_type, item)
            if problem:
                return None, f"item {i} = {_show(item)}: {problem}; allowed: {allowed_text(key)}"
            problem = _check_allowed(key, value)
            if problem:
                return None, f"item {i} = {_show(item)}: {problem}"
            out.append(value)
        return out, None
    value, problem = _convert(key.type, raw)
    if problem:
        return None, f"{problem}; allowed: {allowed_text(key)}"
    return value, _check_allowed(key, value)


def _convert(type_name: str, raw):
    if type_name not in _SCALAR_TYPES:
        raise ValueError(f"config schema: unknown type {type_name!r}")
    wrong = f"wrong type ({_toml_type(raw)}), expected {_TYPE_WORDS[type_name]}"
    if type_name == "bool":
        return (raw, None) if isinstance(raw, bool) else (None, wrong)
    if type_name == "int":
        return (raw, None) if isinstance(raw, int) and not isinstance(raw, bool) else (None, wrong)
    if type_name == "float":
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            return None, wrong
        if not math.isfinite(raw):
            return None, "not a finite number"
        return float(raw), None
    if type_name == "str":
        return (raw, None) if isinstance(raw, str) else (None, wrong)
    # date: a TOML date / local date-time, or an ISO string
    if isinstance(raw, (_dt.date, str)):
        try:
            parse_date(raw)
        except ValueError as exc:
            return None, str(exc)
        return (raw if isinstance(raw, str) else raw.isoformat()), None
    return None, wrong


def _check_allowed(key: Key, value):
    if key.choices is not None and value not in key.choices:
        hint = _suggest(str(value), [str(c) for c in key.choices], '"', '"')
        return f"not allowed; allowed: {allowed_text(key)}{hint}"
    if key.range is not None and not _in_range(key.range, value):
        return f"out of range; allowed: {allowed_text(key)}"
    if key.rule is not None and not key.rule.test(value):
        return f"not allowed; allowed: {allowed_text(key)}"
    return None


_RANGE = re.compile(r"^\s*(?:(?P<lo>[-+0-9.eE]+)\s*(?P<lop><=|<)\s*)?x\s*(?:(?P<hop><=|<|>=|>)\s*(?P<hi>[-+0-9.eE]+))?\s*$")


def _in_range(spec: str, v) -> bool:
    m = _RANGE.match(spec)
    if m is None:
        raise ValueError(f"config schema: cannot read range {spec!r}")
    ok = True
    if m["lo"] is not None:
        lo = _number(m["lo"])
        ok &= v > lo if m["lop"] == "<" else v >= lo
    if m["hop"] is not None:
        b = _number(m["hi"])
        ok &= {"<": v < b, "<=": v <= b, ">": v > b, ">=": v >= b}[m["hop"]]
    return bool(ok)


def _number(text: str):
    try:
        return int(text)  # exact for large integer bounds
    except ValueError:
        return float(text)


def allowed_text(key: Key) -> str:
    """What a key accepts, in words: 'an integer, 1 <= members <= 10000'."""
    is_list = key.type.startswith("list[")
    if is_list:
        parts = [f"a list of {_TYPE_WORDS[key.type[5:-1]].split(' ', 1)[1]}s"]
    elif key.type == "date":
        parts = []
    else:
        parts = [_TYPE_WORDS[key.type]]
    if key.choices is not None:
        choices = "one of " + ", ".join(_show(c) for c in key.choices)
        parts = [parts[0] + ", each " + choices] if is_list else [choices]
    if is_list and (key.range is not None or key.rule is not None):
        parts.append("each item")
    if key.range is not None:
        parts.append(re.sub(r"\bx\b", key.name, key.range.strip()))
    if key.rule is not None:
        parts.append(key.rule.text)
    return ", ".join(parts)


def parse_date(value) -> _dt.datetime:
    """An ISO 8601 date or naive date-time (UTC), as a string or a date/datetime, as a naive datetime."""
    if isinstance(value, _dt.datetime):
        when = value
    elif isinstance(value, _dt.date):
        when = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            when = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f'{value!r} is not an ISO date such as "2002-01-01" or date-time such as '
                             f'"2002-01-01T06:00:00"') from None
    else:
        raise ValueError(f"expected an ISO date, got {_toml_type(value)}")
    if when.tzinfo is not None:
        if when.utcoffset() != _dt.timedelta(0):
            raise ValueError(f"{value!s} has a time zone offset; give times in UTC without an offset")
        when = when.replace(tzinfo=None)
    return when


def _suggest(word: str, candidates: Iterable[str], prefix: str, suffix: str = "") -> str:
    """'; did you mean grid.name?' for close matches (case-insensitive), or ''."""
    candidates = list(candidates)
    lower = {c.lower(): c for c in candidates}
    close = difflib.get_close_matches(word.lower(), list(lower), n=3, cutoff=0.6)
    if not close:
        return ""
    return "; did you mean " + " or ".join(f"{prefix}{lower[c]}{suffix}" for c in close) + "?"


def _toml_type(v) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, (_dt.date, _dt.time)):
        return "date/time"
    return type(v).__name__


def _show(v) -> str:
    try:
        return toml_value(v)
    except TypeError:
        return repr(v)


# --------------------------------------------------------------------------- writing TOML

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_value(v) -> str:
    """One value as TOML: str, int, float, bool, date/datetime (as an ISO string) or a list of these."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)  # shortest round-trip repr: '0.5', '1e-05', '1e+20' are all TOML floats
    if isinstance(v, str):
        return '"' + "".join(_ESCAPES.get(c, c if c >= " " and c != "\x7f" else f"\\u{ord(c):04x}")
                             for c in v) + '"'
    if isinstance(v, (_dt.date, _dt.datetime)):
        return toml_value(v.isoformat())
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as a TOML value")


def _printable(text: str) -> str:
    """``text`` with control characters (not allowed in TOML comments) written as ``\\uXXXX``."""
    return "".join(c if (c >= " " and c != "\x7f") or c == "\t" else f"\\u{ord(c):04x}" for c in text)


def _toml_key(k: str) -> str:
    return k if _BARE_KEY.match(k) else toml_value(k)


def toml_dumps(tables: dict[str, dict], header: str = "") -> str:
    """``{section: {key: value}}`` as TOML text, one ``[section]`` table each, after ``header`` comments."""
    lines = [f"# {_printable(line)}".rstrip() for line in header.splitlines()]
    for section, content in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{_toml_key(section)}]")
        lines.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in content.items())
    return "\n".join(lines) + "\n"


def to_toml(cfg: Config) -> str:
    """The resolved configuration as TOML (it loads back to an equal ``Config``)."""
    from engine import __version__

    header = f"laida {__version__} resolved configuration\nsource: {cfg.source or '(defaults)'}"
    if cfg.overrides:
        header += "\noverrides: " + " ".join(f"--set {o}" for o in cfg.overrides)
    return toml_dumps(cfg.as_dict(), header)


def defaults_toml() -> str:
    """A complete default configuration file, each key with its description, units and allowed values."""
    from engine import __version__

    lines = [
        f"# laida {__version__} configuration: every key with its default.",
        "# Every key is optional: a key left out takes the default shown here. Times are UTC.",
        "# Check a file with `laida config FILE`; override a key with `--set section.key=value`.",
    ]
    for section in dict.fromkeys(k.section for k in SCHEMA):
        lines += ["", f"[{section}]"]
        if section in SECTIONS:
            lines.append(f"# {SECTIONS[section]}")
        for key in (k for k in SCHEMA if k.section == section):
            lines.append("")
            lines.append(f"# {key.description[0].upper()}{key.description[1:]}.")
            lines.append(f"# units: {key.units}; allowed: {allowed_text(key)}")
            lines.append(f"{_toml_key(key.name)} = {toml_value(key.default)}")
    return "\n".join(lines) + "\n"


def log_config(cfg: Config, logger) -> None:
    """Echo the resolved configuration to ``logger`` at INFO, one line per TOML line."""
    for line in to_toml(cfg).splitlines():
        logger.info("config | %s", line)


def reference_markdown() -> str:
    """The configuration reference as a Markdown table (one row per key), as the README shows it."""
    rows = ["| key | default | units | what it is | allowed |", "|---|---|---|---|---|"]
    for k in SCHEMA:
        default = f'"{k.default}"' if isinstance(k.default, str) else str(k.default)
        rows.append(f"| `{k.section}.{k.name}` | `{default}` | {k.units} | {k.description} | "
                    f"{allowed_text(k).replace('|', '/')} |")
    return "\n".join(rows)
