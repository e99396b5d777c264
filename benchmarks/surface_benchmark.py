"""Surface-dataset build time per grid (issue 3, item 5), JSON out.

For each grid in --grids (default f45, f19, f09), one process (rank 0 only: the build is serial and
``load_or_build_surface`` builds on rank 0) measures, with --reps repetitions each (median and min):

  sources_cold   reading the sources from scratch: the MCD12C1 and Koppen-Geiger rasters and their
                 joint aggregation to the grid (engine.surface.joint_fractions with its caches
                 bypassed); the same for every grid apart from the bincount size
  build          engine.surface.build_surface with the joint-fraction cache warm (ERA5 and ETOPO5
                 cell means, the rules, patch merging, soil fields)
  write          engine.surface.write_surface (netCDF4, compressed, atomic rename)
  read           engine.surface.read_surface of that file
  cli_cached     ``laida surface --grid G`` in a fresh process when the cached file exists
                 (interpreter start, imports, cache check, read)

Baseline measured in the same run: reading the MCD12C1 raster (engine.grid.read_igbp), the
smallest unit of real input work; every figure is also given as a ratio to it. The JSON records
the settings, cell/patch counts, machine, Python/numpy/netCDF4 versions and laida's version.

Usage: python benchmarks/surface_benchmark.py [--grids f45,f19,f09] [--reps 3] [--out FILE.json]
Writes its netCDF files to a temporary directory (deleted) and the JSON (to FILE or stdout); reads
no model state.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import engine  # noqa: E402
from engine import grid as gridmod  # noqa: E402
from engine import surface as surf  # noqa: E402


def timed(fn, reps):
    out, times = None, []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return out, {"median_s": statistics.median(times), "min_s": min(times), "reps": reps}


def cold_sources(name):
    """Joint IGBP x Koppen-Geiger fractions from the raw files, bypassing every cache."""
    surf._koppen_005_cached.cache_clear()
    surf._joint_cached.cache_clear()
    with tempfile.TemporaryDirectory() as d:
        old = os.environ.get("LAIDA_CACHE_DIR")
        os.environ["LAIDA_CACHE_DIR"] = d
        try:
            return surf.joint_fractions(name)
        finally:
            if old is None:
                os.environ.pop("LAIDA_CACHE_DIR", None)
            else:
                os.environ["LAIDA_CACHE_DIR"] = old
            surf._koppen_005_cached.cache_clear()
            surf._joint_cached.cache_clear()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grids", default="f45,f19,f09", help="comma-separated grid names")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per measurement")
    ap.add_argument("--out", type=Path, default=None, help="JSON result file (default: print the JSON)")
    args = ap.parse_args(argv)
    grids = [g.strip() for g in args.grids.split(",") if g.strip()]

    lc = gridmod.land_cover_file()
    _, base = timed(lambda: gridmod.read_igbp(lc), args.reps)
    result = {
        "benchmark": "surface",
        "laida": engine.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"grids": grids, "reps": args.reps, "min_patch_pct": surf.MIN_PATCH_PCT},
        "baseline": {"what": "engine.grid.read_igbp (MCD12C1 0.05 deg raster)", **base},
        "grids": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in grids:
            g = gridmod.make_grid(name)
            _, cold = timed(lambda: cold_sources(name), args.reps)
            surf.joint_fractions(name)  # warm the normal cache for the build timing
            s, build = timed(lambda: surf.build_surface(g), args.reps)
            path = Path(tmp) / f"surfdata_{name}.nc"
            _, write = timed(lambda: surf.write_surface(s, g, path), args.reps)
            _, read = timed(lambda: surf.read_surface(path, g), args.reps)
            surf.load_or_build_surface(g)  # make sure the cached file exists
            cmd = [sys.executable, "-m", "engine.cli", "surface", "--grid", name]
            _, cli = timed(lambda: subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT), args.reps)
            entry = {"shape": list(g.shape), "n_land": s.n_land, "n_patch": s.n_patch,
                     "file_bytes": path.stat().st_size}
            for key, t in (("sources_cold", cold), ("build", build), ("write", write), ("read", read),
                           ("cli_cached", cli)):
                entry[key] = {**t, "ratio_to_baseline": t["median_s"] / base["median_s"]}
            entry["cold_total_s"] = cold["median_s"] + build["median_s"] + write["median_s"]
            result["grids"][name] = entry
            print(f"{name}: n_land {s.n_land}, n_patch {s.n_patch}, sources cold {cold['median_s']:.2f} s, "
                  f"build {build['median_s']:.2f} s, write {write['median_s']:.2f} s, read {read['median_s']:.3f} s, "
                  f"cached CLI {cli['median_s']:.2f} s", flush=True)
    text = json.dumps(result, indent=2) + "\n"
    print(f"baseline read_igbp {base['median_s']:.3f} s")
    if args.out is None:
        print(text, end="")
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
