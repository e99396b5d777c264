"""Land-physics throughput: patch-member-steps per second per core of engine.landmodel.LandModel.step
(issue 4, benchmark), on any number of ranks, JSON out.

Case: --columns f45 land cells picked evenly along the global land order (a realistic mix of PFTs,
soils and climates from the real surface data), --members (40) members with perturbed generated
forcing, --steps (96) 30-min steps starting 1 July 00 UTC. Each rank takes its patch-balanced block
(engine.decomposition) and runs it without communication.

Outside the clock: surface and forcing generation (all forcing steps are made beforehand) and the
first step, which carries the JIT compilation (or the load from the numba cache); it is timed and
reported separately. With --fresh-cache (default) the numba cache is a new temporary directory, so
the first step's time is the full compile time of the physics kernels. The clock covers --steps
steps between two barriers, with the run-time budget checks on (the production setting) and again
with them off.

Per-kernel breakdown (--kernel-steps, default 24; 0 switches it off): after the clocked runs, a
further --kernel-steps steps (budget checks on) with every kernel that engine.landmodel calls wrapped
in a timer (in this process only; the wrappers cost ~1 us per call, about 100 calls per step);
reported per kernel in microseconds per patch-member-step (rank 0's block; column kernels are
normalised by the patch-member-steps too, so the rows add up to the step) plus the rest of the step
(the driver's NumPy work and Python).

Baseline in the same run: the NumPy triad a = b + s c (McCalpin's STREAM triad) on --triad-mb MB
arrays, done as two in-place passes (a = 3 c; a += b, no temporary): bandwidth = 5 x 8 bytes per
element / time (best of 5), on every rank at once.

Usage: mpiexec -n 2 python benchmarks/physics_benchmark.py --columns 200 --members 40 --steps 96 --out results/physics.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--columns", type=int, default=200, help="f45 land cells (total over ranks)")
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--steps", type=int, default=96, help="timed 30-min steps")
    ap.add_argument("--triad-mb", type=float, default=200.0, help="size of each triad array (MB)")
    ap.add_argument("--fresh-cache", dest="fresh_cache", action="store_true", default=True)
    ap.add_argument("--warm-cache", dest="fresh_cache", action="store_false",
                    help="use the project's numba cache (first step = cache load)")
    ap.add_argument("--kernel-steps", type=int, default=24,
                    help="extra steps with per-kernel timers after the clocked runs (0: none)")
    ap.add_argument("--out", type=str, default=None, help="JSON output file (rank 0)")
    return ap.parse_args()


def kernel_breakdown(model, frc, dt, nsteps):
    """Time every kernel engine.landmodel calls over ``nsteps`` further steps (forcing ``frc`` reused
    from its start); returns (per-kernel seconds, total seconds). The wrappers replace the names in
    engine.landmodel and in the kernel modules it calls through, and are removed afterwards."""
    import collections
    import time as _t

    import engine.landmodel as LM

    spent = collections.Counter()
    saved = []

    def wrap(owner, name, label):
        f = getattr(owner, name)

        def timed(*a, **k):
            t0 = _t.perf_counter()
            r = f(*a, **k)
            spent[label] += _t.perf_counter() - t0
            return r

        saved.append((owner, name, f))
        setattr(owner, name, timed)

    for name in dir(LM):
        if hasattr(getattr(LM, name), "py_func"):
            wrap(LM, name, name)
    for alias in ("AL", "CA", "DE", "PH", "S"):
        mod = getattr(LM, alias)
        for name in dir(mod):
            if hasattr(getattr(mod, name), "py_func"):
                wrap(mod, name, f"{mod.__name__.rsplit('.', 1)[-1]}.{name}")
    wrap(LM.kf, "mean_cosz", "forcing.mean_cosz")
    try:
        model.check_budgets = True
        t0 = _t.perf_counter()
        for k in range(nsteps):
            j, f = frc[1 + k % (len(frc) - 1)]
            model.step(f, j * dt)
        total = _t.perf_counter() - t0
    finally:
        for owner, name, f in reversed(saved):
            setattr(owner, name, f)
    return spent, total


def main():
    args = parse()
    if args.fresh_cache:
        from engine import comm as _c  # noqa: F401 - MPI initialised before the broadcast below

        d = tempfile.mkdtemp(prefix="laida-numba-") if _c.rank() == 0 else None
        os.environ["NUMBA_CACHE_DIR"] = _c.bcast(d)
    else:
        os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".numba_cache"))
    import numpy as np

    import engine
    from engine import comm
    from engine.decomposition import decompose, local_block
    from engine.forcing import ForcingGenerator, iter_model_steps
    from engine.grid import make_grid
    from engine.landmodel import LandModel
    from engine.surface import load_or_build_surface

    dt = 1800.0
    first = (181 * 86400) // int(dt)  # 1 July 00 UTC
    surf = load_or_build_surface(make_grid("f45"))
    ncol = min(args.columns, surf.n_land)
    cells_all = np.unique(np.linspace(0, surf.n_land - 1, ncol).round().astype(np.int64))
    ncol = cells_all.size
    ppc = surf.patches_per_cell()[cells_all].astype(np.float64)
    start, count = local_block(decompose(ppc, comm.size()), comm.rank())
    cells = cells_all[start:start + count]

    # baseline: numpy triad on every rank at once
    n = int(args.triad_mb * 1e6 / 8)
    b = np.ones(n)
    c = np.full(n, 2.0)
    a = np.empty(n)
    best = np.inf
    for _ in range(5):
        comm.barrier()
        t0 = time.perf_counter()
        np.multiply(c, 3.0, out=a)  # a = b + 3 c in two passes, no temporary
        np.add(a, b, out=a)
        best = min(best, time.perf_counter() - t0)
    # the two passes move c, a | a, b, a: 5 x 8 bytes per element
    triad_gbs = 5 * 8 * n / best / 1e9
    del a, b, c

    gen = ForcingGenerator(surf.lat[cells], surf.lon[cells], surf.land_index[cells], n_members=args.members, seed=1)
    frc = [(j, f.copy()) for j, f in iter_model_steps(gen, surf.lat[cells], surf.lon[cells], first,
                                                      args.steps + 1, dt)]
    t0 = time.perf_counter()
    model = LandModel(surf, args.members, dt, cells=cells)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    j, f = frc[0]
    model.step(f, j * dt)
    t_first = time.perf_counter() - t0
    timed = {}
    for check in (True, False):
        model.check_budgets = check
        comm.barrier()
        t0 = time.perf_counter()
        for j, f in frc[1:]:
            model.step(f, j * dt)
        comm.barrier()
        timed[check] = time.perf_counter() - t0
    kernels = None
    if args.kernel_steps > 0:
        spent, total = kernel_breakdown(model, frc, dt, args.kernel_steps)
        local_pms = model.npatch * args.members * args.kernel_steps
        kernels = {k: v / local_pms * 1e6 for k, v in sorted(spent.items(), key=lambda kv: -kv[1])}
        kernels["(rest of the step: driver NumPy and Python)"] = (total - sum(spent.values())) / local_pms * 1e6
        kernels["(step total)"] = total / local_pms * 1e6
    npatch_total = comm.allreduce(model.npatch)
    pms = npatch_total * args.members * args.steps
    pft_counts = np.bincount(surf.patch_pft[np.isin(surf.patch_cell, cells_all)], minlength=17)
    res = {
        "benchmark": "physics",
        "version": getattr(engine, "__version__", "unknown"),
        "machine": {"node": platform.node(), "processor": platform.processor(), "python": platform.python_version(),
                    "cpu_count": os.cpu_count()},
        "ranks": comm.size(),
        "settings": {"columns": int(ncol), "members": args.members, "steps": args.steps, "dt_s": dt,
                     "first_step": int(first), "fresh_numba_cache": args.fresh_cache, "grid": "f45"},
        "patches": int(npatch_total),
        "patches_per_pft": pft_counts.tolist(),
        "init_s_max": comm.allreduce(t_init, "max"),
        "first_step_jit_s_max": comm.allreduce(t_first, "max"),
        "elapsed_s": {"budgets_on": timed[True], "budgets_off": timed[False]},
        "us_per_patch_member_step_per_core": {
            "budgets_on": timed[True] * comm.size() / pms * 1e6,
            "budgets_off": timed[False] * comm.size() / pms * 1e6,
        },
        "patch_member_steps_per_s_per_core": {
            "budgets_on": pms / (timed[True] * comm.size()),
            "budgets_off": pms / (timed[False] * comm.size()),
        },
        "kernel_us_per_patch_member_step_rank0": kernels,
        "kernel_steps": args.kernel_steps,
        "load_average_at_end": list(os.getloadavg()),
        "triad_GBps_per_rank_min": comm.allreduce(triad_gbs, "min"),
        "triad_array_MB": args.triad_mb,
    }
    res["bytes_moved_per_patch_member_step_at_triad_rate"] = (
        res["us_per_patch_member_step_per_core"]["budgets_off"] * 1e-6 * res["triad_GBps_per_rank_min"] * 1e9)
    if comm.rank() == 0:
        text = json.dumps(res, indent=2)
        print(text)
        if args.out:
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text + "\n")


if __name__ == "__main__":
    main()
