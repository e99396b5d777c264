"""Filter throughput: assimilation time only, on any number of ranks, JSON out (issue 5, item 9).

Cases:
- ``lorenz96``: Lorenz-96 with --columns variables (4000), --members (40), every variable observed
  every cycle with R = 1, Gaspari-Cohn half-width --cutoff (0.002), --steps cycles (100). The model
  advance (RK4 of the whole ensemble on every rank) and the allgather of the posterior are outside
  the clock; the clock covers engine.filter.assimilate_block between two barriers. Observations are
  assimilated in a fixed pseudo-random order (--order shuffled, like an observation sequence of
  randomly placed observations), along the ring (--order spatial; see engine.filter's docstring on
  why that order is a dependency chain that no rank count can shorten) or engine.filter.tiled_order.
- ``land``: --columns grid cells (20000) on the sphere (synthetic, uniformly spread between 60S and
  75N, labelled as such), 1-4 patches each with LAI, leaf C and leaf N (bounded >= 0), --members,
  one LAI observation per cell (patch-weighted mean), column-only (--cutoff-km 0) or a horizontal
  half-width in km (e.g. 500). One analysis per step, the same prior each time. Observations in
  engine.filter.tiled_order (--order tiled, default), grid order (spatial) or shuffled.

Baseline measured in the same run (rank 0): the plain-NumPy reference (tests/filter_reference.py)
on the same state with the first --reference-obs observations; figures are reported per
observation and per (observation x state element updated), and as the ratio to the reference.

Usage: mpiexec -n 2 python benchmarks/filter_benchmark.py --case lorenz96 --out results/filter.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))

import engine  # noqa: E402
from engine import comm  # noqa: E402
from engine.filter import assimilate_block, identity_operator, tiled_order  # noqa: E402
from filter_reference import reference_assimilate  # noqa: E402
from lorenz96 import counter_normals, rk4_steps  # noqa: E402

EARTH_RADIUS_KM = 6371.0


def even_blocks(n, p):
    counts = np.full(p, n // p, dtype=np.int64)
    counts[: n % p] += 1
    return np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64), counts


def support_size(loc, cutoff, order_loc):
    """Mean number of elements within 2*cutoff of an observation (periodic ring)."""
    if cutoff is None:
        return loc.size
    return float(np.mean([np.sum(np.minimum(np.abs(loc - o), 1 - np.abs(loc - o)) < 2 * cutoff)
                          for o in order_loc[:200]]))


def bench_lorenz96(a):
    nx, N = a.columns, a.members
    me, p = comm.rank(), comm.size()
    starts, counts = even_blocks(nx, p)
    lo, hi = starts[me], starts[me] + counts[me]
    loc = np.arange(nx) / nx
    if a.order == "shuffled":
        order = np.random.default_rng(12345).permutation(nx)
    elif a.order == "tiled":
        order = tiled_order(loc, a.cutoff, "periodic1d")
    else:
        order = np.arange(nx)
    H = identity_operator(order)
    oloc = loc[order]
    r = np.ones(nx)
    truth = np.full((1, nx), 8.0)
    truth[0, ::5] += 0.01
    rk4_steps(truth, 500, 0.05, 8.0)
    E = np.empty((N, nx))
    z = np.empty(nx)
    for m in range(N):
        counter_normals(99, 1_000_000 + m, nx, z)
        E[m] = truth[0] + z
    times, rmse, sent, msgs = [], [], 0, 0
    for c in range(a.steps + 1):  # cycle 0: JIT warm-up, not timed
        rk4_steps(truth, 1, 0.05, 8.0)
        rk4_steps(E, 1, 0.05, 8.0)
        counter_normals(7, c, nx, z)
        y = truth[0][order] + z
        Xb = np.ascontiguousarray(E[:, lo:hi].T)
        comm.barrier()
        t0 = time.perf_counter()
        res = assimilate_block(Xb, starts, counts, loc[lo:hi], y, r, H, oloc, cutoff=a.cutoff,
                               geometry="periodic1d", inflation=a.inflation, outlier_threshold=None)
        comm.barrier()
        t1 = time.perf_counter()
        E = np.ascontiguousarray(comm.gather_array(res.X, allgather=True).T)
        if c > 0:
            times.append(t1 - t0)
            rmse.append(float(np.sqrt(np.mean((E.mean(0) - truth[0]) ** 2))))
            sent += res.counts["records_sent"]
            msgs += res.counts["messages_sent"]
    out = dict(assim_seconds_total=float(np.sum(times)), assim_seconds_per_cycle_median=float(np.median(times)),
               assim_seconds_per_cycle_min=float(np.min(times)), obs_per_cycle=nx, records_sent_total=int(sent),
               messages_sent_total=int(msgs),
               analysis_rmse_last_half=float(np.mean(rmse[len(rmse) // 2:])))
    ns = support_size(loc, a.cutoff, oloc)
    out["mean_support_elements"] = ns
    out["seconds_per_obs"] = out["assim_seconds_total"] / (a.steps * nx)
    out["seconds_per_obs_x_element"] = out["seconds_per_obs"] / (2 * ns)  # state + extended-state priors
    if me == 0 and a.reference_obs > 0:
        k = a.reference_obs
        Hs = identity_operator(order[:k])
        t0 = time.perf_counter()
        reference_assimilate(E, y[:k], r[:k], Hs, state_loc=loc, obs_loc=oloc[:k], cutoff=a.cutoff,
                             geometry="periodic1d", inflation=a.inflation, outlier_threshold=None)
        tref = time.perf_counter() - t0
        out["reference_seconds_per_obs"] = tref / k
        out["speedup_vs_reference"] = out["reference_seconds_per_obs"] / out["seconds_per_obs"]
    return out


def land_problem(ncell, N, seed=2024):
    rng = np.random.default_rng(seed)
    lat = np.degrees(np.arcsin(rng.uniform(np.sin(np.radians(-60)), np.sin(np.radians(75)), ncell)))
    lon = rng.uniform(0, 360, ncell)
    key = np.lexsort((lon, np.round(lat, 0)))  # grid-like order: latitude rows, then longitude
    lat, lon = lat[key], lon[key]
    npatch = rng.integers(1, 5, ncell)
    nvar = 3  # LAI (m2/m2), leaf C (gC/m2), leaf N (gN/m2) per patch
    cell_of_patch = np.repeat(np.arange(ncell), npatch)
    npt = cell_of_patch.size
    lai = rng.gamma(2.0, 0.8, size=(npt, 1)) * rng.gamma(20.0, 0.05, size=(npt, N))  # member spread ~22%
    lai[rng.random(npt) < 0.05] = 0.0  # some bare patches: zero spread at LAI = 0
    sla = 0.03  # m2/gC
    leafc = lai / sla * rng.uniform(0.9, 1.1, size=(npt, N))
    leafn = leafc / 25.0
    X = np.empty((npt * nvar, N))
    X[0::3], X[1::3], X[2::3] = lai, leafc, leafn
    elem_cell = np.repeat(cell_of_patch, nvar)
    state_loc = np.c_[lat[elem_cell], lon[elem_cell]]
    wts = rng.uniform(0.1, 1.0, npt)
    wts /= np.bincount(cell_of_patch, wts)[cell_of_patch]  # patch weights sum to 1 per cell
    first_patch = np.r_[0, np.cumsum(npatch)[:-1]]
    indptr = np.r_[0, np.cumsum(npatch)].astype(np.int64)
    indices = (np.arange(npt) * nvar).astype(np.int64)  # LAI element of each patch, cell by cell
    H = (indptr, indices, wts)
    truth_lai = np.array([np.sum(wts[first_patch[c]:first_patch[c] + npatch[c]] *
                                 lai[first_patch[c]:first_patch[c] + npatch[c], 0]) for c in range(ncell)])
    y = np.maximum(truth_lai * rng.uniform(0.7, 1.3, ncell), 0.0)
    r = (0.1 + 0.1 * y) ** 2
    # element blocks cut at cell boundaries
    return X, state_loc, H, y, r, np.c_[lat, lon], elem_cell


def bench_land(a):
    me, p = comm.rank(), comm.size()
    X, sloc, H, y, r, oloc, elem_cell = land_problem(a.columns, a.members)
    ncell = a.columns
    cell_starts = np.r_[0, np.cumsum(np.full(p, ncell // p) + (np.arange(p) < ncell % p))[:-1]]
    estarts = np.searchsorted(elem_cell, cell_starts).astype(np.int64)
    ecounts = np.diff(np.r_[estarts, elem_cell.size]).astype(np.int64)
    lo, hi = estarts[me], estarts[me] + ecounts[me]
    cutoff = a.cutoff_km / EARTH_RADIUS_KM if a.cutoff_km > 0 else 0.0
    lb = np.zeros(hi - lo)
    if a.order != "spatial":  # permute the observations (cells stay in grid order)
        perm = (tiled_order(oloc, cutoff if cutoff > 0 else None, "sphere") if a.order == "tiled"
                else np.random.default_rng(12345).permutation(ncell))
        indptr, indices, wts = H
        rows = [np.arange(indptr[k], indptr[k + 1]) for k in perm]
        sel = np.concatenate(rows)
        H = (np.r_[0, np.cumsum([len(x) for x in rows])].astype(np.int64), indices[sel], wts[sel])
        y, r, oloc = y[perm], r[perm], oloc[perm]
    times = []
    res = None
    for c in range(a.steps + 1):
        comm.barrier()
        t0 = time.perf_counter()
        res = assimilate_block(X[lo:hi], estarts, ecounts, sloc[lo:hi], y, r, H, oloc, cutoff=cutoff,
                               geometry="sphere", inflation=a.inflation, lower_bounds=lb)
        comm.barrier()
        if c > 0:
            times.append(time.perf_counter() - t0)
    assert np.all(res.X >= 0) and np.all(np.isfinite(res.X))
    out = dict(assim_seconds_total=float(np.sum(times)), assim_seconds_per_cycle_median=float(np.median(times)),
               assim_seconds_per_cycle_min=float(np.min(times)), obs_per_cycle=ncell,
               state_elements=int(elem_cell.size), cutoff_km=a.cutoff_km,
               qc_counts={k: v for k, v in res.counts.items() if k.startswith("qc_")},
               records_sent=res.counts["records_sent"], messages_sent=res.counts["messages_sent"],
               bound_contracted=res.counts["bound_contracted"], bound_collapsed=res.counts["bound_collapsed"],
               zero_spread_obs=res.counts["zero_spread_obs"])
    out["seconds_per_obs"] = out["assim_seconds_per_cycle_median"] / ncell
    if me == 0 and a.reference_obs > 0:
        k = min(a.reference_obs, ncell)
        Hs = (H[0][: k + 1], H[1][: H[0][k]], H[2][: H[0][k]])
        t0 = time.perf_counter()
        reference_assimilate(X.T, y[:k], r[:k], Hs, state_loc=sloc, obs_loc=oloc[:k], cutoff=cutoff,
                             geometry="sphere", inflation=a.inflation, lower_bounds=np.zeros(X.shape[0]))
        out["reference_seconds_per_obs"] = (time.perf_counter() - t0) / k
        out["speedup_vs_reference"] = out["reference_seconds_per_obs"] / out["seconds_per_obs"]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=("lorenz96", "land"), default="lorenz96")
    ap.add_argument("--columns", type=int, default=None, help="state variables (lorenz96) or grid cells (land)")
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--steps", type=int, default=None, help="assimilation cycles timed (after one warm-up)")
    ap.add_argument("--cutoff", type=float, default=0.002, help="lorenz96: GC half-width on the unit ring")
    ap.add_argument("--cutoff-km", type=float, default=0.0, help="land: GC half-width in km (0: column-only)")
    ap.add_argument("--order", choices=("shuffled", "spatial", "tiled"), default=None,
                    help="observation order (lorenz96 default shuffled, land default tiled)")
    ap.add_argument("--inflation", type=float, default=1.02)
    ap.add_argument("--reference-obs", type=int, default=20, help="observations for the NumPy baseline")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.columns is None:
        a.columns = 4000 if a.case == "lorenz96" else 20000
    if a.steps is None:
        a.steps = 100 if a.case == "lorenz96" else 3
    if a.order is None:
        a.order = "shuffled" if a.case == "lorenz96" else "tiled"
    result = bench_lorenz96(a) if a.case == "lorenz96" else bench_land(a)
    if comm.rank() == 0:
        doc = dict(benchmark="filter", case=a.case, settings=vars(a) | {"out": str(a.out)}, ranks=comm.size(),
                   machine=dict(node=platform.node(), processor=platform.processor(), cpus=os.cpu_count(),
                                python=platform.python_version(), mpi=comm.library_version()),
                   version=engine.__version__, threads=comm.env_summary(), load_average=os.getloadavg(),
                   result=result)
        text = json.dumps(doc, indent=2, default=float)
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(text + "\n")
        print(text)


if __name__ == "__main__":
    main()
