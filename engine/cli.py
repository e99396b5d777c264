"""The ``laida`` command: ``laida info | config | run | resume | report | surface | forcing | demo`` (``laida --help``
lists them).

Each subcommand is one function decorated with ``@subcommand(name, help, *arguments)`` that takes the
parsed arguments and returns the exit code. ``info`` and ``config`` write only to stdout/stderr (rank 0
under MPI); ``run``, ``resume``, ``surface``, ``forcing`` and ``demo`` write the files they are asked for;
``report`` reads a run directory's history and writes only the text file it is asked for. A ``ConfigError`` from
any subcommand ends with its message on stderr and exit code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import engine
from engine import comm
from engine.config import ConfigError

_SUBCOMMANDS: list[tuple[str, str, tuple, object]] = []  # (name, help, arguments, handler)


def arg(*names, **options):
    """One argparse argument of a subcommand: ``arg("--json", action="store_true", help=...)``."""
    return names, options


def subcommand(name: str, help: str, *arguments):
    """Register ``func(args) -> int`` as ``laida <name>`` with the given ``arg(...)`` arguments."""

    def register(func):
        _SUBCOMMANDS.append((name, help, arguments, func))
        return func

    return register


# arguments shared by every subcommand that reads a configuration
CONFIG_FILE = arg("config", nargs="?", metavar="FILE", help="experiment configuration (TOML); defaults if left out")
SET = arg("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
          help="override one configuration key (value read as TOML, else as a plain string); repeatable")


def _print(text: str = "") -> None:
    if comm.rank() == 0:
        print(text, flush=True)


# --------------------------------------------------------------------------- subcommands


def environment() -> dict:
    """Versions and settings of everything a run depends on (MPI, HDF5, numba, ...), as a dict."""
    info: dict = {"laida": engine.__version__, "python": f"{platform.python_version()} ({sys.executable})"}
    info["mpi_library"] = comm.library_version()
    info["ranks"] = comm.size()
    try:
        import mpi4py

        info["mpi4py"] = mpi4py.__version__
    except ImportError as exc:  # pragma: no cover - comm imported it already
        info["mpi4py"] = f"not importable: {exc}"
    try:
        import h5py

        info["h5py"] = h5py.__version__
        info["hdf5"] = h5py.version.hdf5_version
        info["h5py_parallel"] = bool(h5py.get_config().mpi)
    except ImportError as exc:
        info["h5py"] = f"not importable: {exc}"
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_num_threads"] = int(numba.config.NUMBA_NUM_THREADS)
        info["numba_cache_dir"] = numba.config.CACHE_DIR or "(not set: next to the source files)"
    except ImportError as exc:
        info["numba"] = f"not importable: {exc}"
    info["omp_num_threads"] = comm.env_summary()["OMP_NUM_THREADS"] or "(not set)"
    import numpy

    info["numpy"] = numpy.__version__
    try:
        import netCDF4

        info["netcdf4"] = netCDF4.__version__
        info["netcdf4_libs"] = f"netcdf-c {netCDF4.__netcdf4libversion__}, HDF5 {netCDF4.__hdf5libversion__} (bundled)"
    except ImportError as exc:
        info["netcdf4"] = f"not importable: {exc}"
    info["host"] = platform.node()
    return info


def _failed_on_root(err: str | None) -> bool:
    """Broadcast rank 0's error message (None: no error); every rank returns whether there was one,
    and rank 0 writes it to stderr."""
    err = comm.bcast(err)
    if err is not None and comm.rank() == 0:
        sys.stderr.write(err + "\n")
    return err is not None


@subcommand("info", "print the versions of MPI, HDF5, numba, numpy, netCDF4 and python, and the rank count",
            arg("--json", action="store_true", help="print JSON instead of aligned text"))
def info(args) -> int:
    env = environment()
    if args.json:
        _print(json.dumps(env, indent=2))
    else:
        width = max(len(k) for k in env) + 1
        _print("\n".join(f"{k + ':':<{width}} {v}" for k, v in env.items()))
    return 0


@subcommand("config", "check a configuration file and print it resolved, or print the default file",
            CONFIG_FILE, SET,
            arg("--defaults", action="store_true", help="print the commented default configuration file"))
def config(args) -> int:
    from engine import config as cfgmod

    if args.defaults:
        if args.config or args.overrides:
            raise ConfigError("laida config --defaults takes no FILE and no --set")
        _print(cfgmod.defaults_toml().rstrip("\n"))
        return 0
    cfg = cfgmod.load(args.config, args.overrides)
    _print(cfgmod.to_toml(cfg).rstrip("\n"))
    return 0


@subcommand("demo", "run the small demonstration experiment", CONFIG_FILE, SET)
def demo(args) -> int:
    from engine import demo as demo_module  # imported here: only this subcommand needs it

    return demo_module.main(args)


CYCLES = arg("--cycles", type=int, default=None, metavar="M",
             help="stop after M more assimilation cycles (default: run to time.stop)")


def _cycles_arg(args):
    if args.cycles is not None and args.cycles < 1:
        raise ConfigError(f"--cycles {args.cycles}: must be a positive number of cycles")
    return args.cycles


@subcommand("run", "run the twin experiment: spin-up, nature run, CTL and CN cycles with LAI assimilation "
            "(continues from the newest checkpoint when the run directory holds one)",
            arg("config", metavar="FILE", help="experiment configuration (TOML)"), SET, CYCLES)
def run(args) -> int:
    from engine import config as cfgmod
    from engine import experiment

    cfg = cfgmod.load(args.config, args.overrides)
    cycles = _cycles_arg(args)
    exp = experiment.Experiment(cfg)  # configuration problems: the same ConfigError on every rank
    comm.run_collectively(exp.run, cycles)
    _print(f"laida run: cycle {exp.cycle} of {exp.n_cycles} done; files in {exp.run_dir.resolve()}")
    return 0


@subcommand("resume", "continue a run from the newest complete checkpoint in its run directory",
            arg("run_dir", metavar="RUNDIR", help="run directory of an earlier `laida run` (holds config.toml)"),
            CYCLES)
def resume(args) -> int:
    from engine import experiment

    cycles = _cycles_arg(args)
    exp = experiment.Experiment(experiment.run_config(args.run_dir))
    comm.run_collectively(exp.run, cycles, resume=True)
    _print(f"laida resume: cycle {exp.cycle} of {exp.n_cycles} done; files in {exp.run_dir.resolve()}")
    return 0


@subcommand("report", "print the evaluation tables of a run directory (CTL and CN against the nature run, like "
            "the study's Tables II and III) from ALL its history segments, joined in time order",
            arg("run_dir", metavar="RUNDIR", help="run directory of `laida run` (holds nature/, ctl/ and cn/)"),
            arg("--out", metavar="FILE", help="also write the text to FILE (published atomically)"),
            arg("--area-weights", action="store_true",
                help="weight samples by cell area (default: the study's plain means over cell-time samples)"),
            arg("--per-band", action="store_true", help="also list ST and SM for each of the four soil bands"))
def report(args) -> int:
    from engine import evaluation

    text, err = None, None
    if comm.rank() == 0:  # pure NumPy on one process; the other ranks (if any) wait for the outcome
        try:
            text = evaluation.run_report(args.run_dir, out=args.out, weights="area" if args.area_weights else None,
                                         per_band=args.per_band)
        except evaluation.EvaluationError as exc:
            err = f"laida report: {exc}"
        except OSError as exc:  # e.g. a directory of the run that cannot be read
            err = f"laida report: {exc.filename or args.run_dir}: {exc.strerror or exc}"
    if _failed_on_root(err):
        return 1
    if comm.rank() == 0:
        _print(text.rstrip("\n"))
    if args.out:
        from pathlib import Path

        _print(f"\nreport written to {Path(args.out).resolve()}")
    return 0


@subcommand("surface", "build (or find in the cache) the land surface dataset of a grid; optionally copy it "
            "and plot its dominant-PFT map",
            arg("--grid", default="f09", choices=("f09", "f19", "f45"), help="CESM grid (default f09)"),
            arg("--box", nargs=4, type=float, metavar=("LAT_MIN", "LAT_MAX", "LON_MIN", "LON_MAX"),
                help="regional box of the grid (deg); default the globe"),
            arg("--land-threshold", type=float, default=0.5, help="minimum land fraction of a land cell (default 0.5)"),
            arg("--out", metavar="FILE", help="also copy the surface file (netCDF, CLM surfdata layout) to FILE"),
            arg("--plot", metavar="PNG", help="write a map of the dominant PFT to PNG"))
def surface(args) -> int:
    import shutil
    import time
    from pathlib import Path

    from engine import grid as gridmod
    from engine import surface as surfmod

    t0 = time.perf_counter()
    box = {} if args.box is None else dict(zip(("lat_min", "lat_max", "lon_min", "lon_max"), args.box))
    try:
        g = gridmod.make_grid(args.grid, land_threshold=args.land_threshold, **box)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    surf = surfmod.load_or_build_surface(g)
    path = surfmod.cache_path(g)
    err = None
    if comm.rank() == 0:  # copy and plot on rank 0; a failure is reported by every rank, none waits
        try:
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, args.out)
            if args.plot:
                surfmod.plot_dominant_pft(surf, g, args.plot)
        except OSError as exc:
            err = f"laida surface: cannot write {exc.filename or ''}: {exc.strerror or exc}"
    if _failed_on_root(err):
        return 1
    _print(f"surface: grid {g.name} {g.shape}, {surf.n_land} land cells, {surf.n_patch} patches, "
           f"{time.perf_counter() - t0:.1f} s")
    _print(f"file:    {path}")
    if args.out:
        _print(f"copy:    {args.out}")
    if args.plot:
        _print(f"plot:    {args.plot}")
    return 0


@subcommand("forcing", "generate one year of the ensemble forcing on a grid's land cells (MPI: each rank its "
            "block) and write its annual-mean maps and ensemble spread; compare with the ERA5 climatology",
            arg("--grid", default="f09", choices=("f09", "f19", "f45"), help="CESM grid (default f09)"),
            arg("--box", nargs=4, type=float, metavar=("LAT_MIN", "LAT_MAX", "LON_MIN", "LON_MAX"),
                help="regional box of the grid (deg); default the globe"),
            arg("--year", type=int, default=2002, help="year to generate (default 2002)"),
            arg("--start-year", type=int, default=None,
                help="first year of the run whose forcing this is (record 0 = 1 January 00 UTC of it); "
                     "default --year"),
            arg("--members", type=int, default=4, help="ensemble members, at least 2 (default 4)"),
            arg("--seed", type=int, default=0, help="seed of the random streams (default 0, as ensemble.seed)"),
            arg("--out", metavar="FILE", help="write the maps as CF netCDF to FILE"),
            arg("--plot", metavar="PNG", help="write a PNG with a map per variable"))
def forcing(args) -> int:
    import time

    from engine import forcing as forcmod
    from engine import grid as gridmod

    t0 = time.perf_counter()
    box = {} if args.box is None else dict(zip(("lat_min", "lat_max", "lon_min", "lon_max"), args.box))
    if args.members < 2:
        raise ConfigError(f"--members must be at least 2 (the ensemble spread needs 2), got {args.members}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {args.seed}")
    if args.start_year is not None and args.year < args.start_year:
        raise ConfigError(f"--year {args.year} lies before --start-year {args.start_year}")
    try:
        g = gridmod.make_grid(args.grid, **box)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if g.n_land < comm.size():
        raise ConfigError(f"the region has {g.n_land} land cells, fewer than the {comm.size()} ranks")
    maps = comm.run_collectively(forcmod.forcing_maps, g, members=args.members, seed=args.seed, year=args.year,
                                 start_year=args.start_year)
    t_gen = time.perf_counter() - t0
    err = None
    if comm.rank() == 0:  # write and plot on rank 0; a failure is reported by every rank, none waits
        try:
            if args.out:
                forcmod.write_forcing_maps(maps, args.out)
            if args.plot:
                forcmod.plot_forcing_maps(maps, args.plot)
        except OSError as exc:
            err = f"laida forcing: cannot write {exc.filename or ''}: {exc.strerror or exc}"
    if _failed_on_root(err):
        return 1
    if comm.rank() == 0:
        s = maps.settings
        mean = forcmod.land_means(maps)
        _print(f"forcing: grid {g.name} {g.shape}, {g.n_land} land cells on {comm.size()} rank(s), year {args.year} "
               f"(records {s['forcing_first_record']}..{s['forcing_last_record']}, 6-hourly), {args.members} members, "
               f"seed {args.seed}: generated in {t_gen:.1f} s")
        _print("land means (area-weighted: cell area x land fraction); spread = mean ensemble s.d.")
        fmt = {"TBOT": ".2f", "PRECT": ".1f", "FSDS": ".1f", "FLDS": ".1f", "QBOT": ".5f", "WIND": ".2f", "PSRF": ".0f"}
        for name, field, scale, offset, _, units, *_ in forcmod.MAP_VARIABLES:
            if name == "TBOT_degC":
                continue
            line = f"  {name:<6} {mean[name]:>10{fmt[name]}} {units:<6} spread {mean[name + '_spread']:{fmt[name]}}"
            if name == "TBOT":
                line += f"  ({mean['TBOT_degC']:.2f} degC)"
            if name + "_clim" in mean:
                c = mean[name + "_clim"]
                rel = ""
                if name == "PRECT":  # one year of weather drifts from the climatology by a few %
                    se = forcmod.land_mean_standard_error(maps, "PRECT")
                    rel = f" ({100 * (mean[name] - c) / c:+.2f} %; 1-year sampling s.e. {100 * se / c:.2f} %)"
                line += f"   ERA5 {c:{fmt[name]}} {units}, generated - ERA5 {mean[name] - c:+{fmt[name]}}{rel}"
            _print(line)
    if args.out:
        _print(f"netCDF: {args.out}")
    if args.plot:
        _print(f"plot:   {args.plot}")
    _print(f"total:  {time.perf_counter() - t0:.1f} s")
    return 0


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="laida",
        description="laida: ensemble data assimilation of leaf area index into a CLM4CN-class land model "
                    "(serial EAKF, MPI, parallel HDF5). Run under `mpiexec -n N` for N ranks.")
    parser.add_argument("--version", action="version", version=f"laida {engine.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text, arguments, handler in _SUBCOMMANDS:
        p = sub.add_parser(name, help=help_text, description=help_text)
        for names, options in arguments:
            p.add_argument(*names, **options)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``laida`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors: argparse has printed the message
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code = args.handler(args)
    except ConfigError as exc:
        prefix = f"laida [rank {comm.rank()}]" if comm.rank() else "laida"
        sys.stderr.write(f"{prefix}: configuration error: {exc}\n")
        sys.stderr.flush()
        return 2
    except BrokenPipeError:  # `laida config --defaults | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
