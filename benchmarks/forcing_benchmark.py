"""Throughput of the ensemble forcing: generation of 6-hourly records and their interpolation to the
model step, per cell-member-record and per cell-member-step, for the numba kernels and a plain-NumPy
implementation of the same algorithm measured in the same run (figures are ratios, not absolutes).

Usage (any rank count; each rank generates its own block of columns):
  python benchmarks/forcing_benchmark.py --columns 200 --members 40 --steps 384 --out benchmarks/results/forcing.json
  mpiexec -n 2 python benchmarks/forcing_benchmark.py ...

Reads the ERA5/ETOPO5 climatology for the columns (timed separately as ``setup``); writes the JSON
report (on rank 0). JIT compilation is excluded (one warm-up call); ``barrier()`` precedes every
clock reading; each timing is the best of ``--repeat`` runs. Before timing, the NumPy baseline is
checked against the numba kernels on the same input.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import comm  # noqa: E402
from engine.climatology import PointClimatology  # noqa: E402
from engine import forcing as F  # noqa: E402
from kernels import forcing as kf  # noqa: E402

# ----------------------------------------------------------------------------------------------
# NumPy baseline: the algorithm of kernels.forcing.generate_records / records_to_steps, vectorised
# over (cell, member) with a Python loop over records / steps.
# ----------------------------------------------------------------------------------------------
_G = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def np_mix64(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def np_combine(h, x):
    return np_mix64((h ^ x) + _G)


def np_prefix(seed, member, key):
    member = np.asarray(member, dtype=np.int64).astype(np.uint64)
    key = np.asarray(key, dtype=np.int64).astype(np.uint64)
    h = np_mix64(np.array([seed], dtype=np.uint64) + _G)
    return np_combine(np_combine(h, member), key)


def np_normal_pair(prefix, k, pair):
    hk = np_combine(prefix, np.uint64(k))
    h1 = np_combine(hk, np.uint64(2 * pair))
    h2 = np_combine(hk, np.uint64(2 * pair + 1))
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
    u2 = ((h2 >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0 ** -53
    r = np.sqrt(-2.0 * np.log(u1))
    a = 2.0 * np.pi * u2
    return r * np.cos(a), r * np.sin(a)


def np_mean_cosz(lat, lon, t1, t2, decl):
    a = np.sin(lat) * np.sin(decl)
    b = np.cos(lat) * np.cos(decl)
    x = np.where(b > 1e-12, -a / np.where(b > 1e-12, b, 1.0), 0.0)
    half = np.where(x <= -1.0, np.pi, np.arccos(np.clip(x, -1.0, 1.0)))
    h1 = 2 * np.pi * (t1 / 86400.0) + lon - np.pi
    h2 = 2 * np.pi * (t2 / 86400.0) + lon - np.pi
    n = np.floor((h1 + np.pi) / (2 * np.pi))
    h1 = h1 - 2 * np.pi * n
    h2 = h2 - 2 * np.pi * n
    total = np.zeros_like(lat)
    for j in range(2):
        c = 2 * np.pi * j
        lo = np.maximum(h1, c - half)
        hi = np.minimum(h2, c + half)
        total += np.where(hi > lo, a * (hi - lo) + b * (np.sin(hi - c) - np.sin(lo - c)), 0.0)
    out = np.maximum(total / (h2 - h1), 0.0)
    out = np.where(x >= 1.0, 0.0, out)
    return np.where(b <= 1e-12, np.maximum(a, 0.0), out)


def np_esat(t):
    return 611.2 * np.exp(17.67 * (t - kf.TFRZ) / (t - 29.65))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def numpy_generate(gen: F.ForcingGenerator, k0: int, nrec: int) -> np.ndarray:
    """Records k0.. from record 0 state (k0 must be 0 here: the baseline starts the AR at record 0)."""
    assert k0 == 0
    i = gen._in
    wp, pp, chol = gen._wp, gen._pp, gen._chol
    lat, lon, elev = gen._lat_r, gen._lon_r, gen.elev
    nc, nm = lat.size, gen.members.size
    node_pref = np_prefix(gen.seed, F.BASE_MEMBER, gen._node_keys)  # (nc, 4)
    mem_pref = np_prefix(gen.seed, gen.members[None, :], gen.cell_id[:, None])  # (nc, nm)
    base = np.zeros((nc, 4, 3))
    ms = np.zeros((nc, nm, 4))
    zmax = np.array([pp.max_p, pp.max_sw, pp.max_lw, pp.max_t])
    out = np.empty((nrec, 7, nc, nm))
    lon_hours = lon * 12.0 / np.pi
    for r in range(nrec):
        k = k0 + r
        t = (k * wp.dt_rec) % kf.SECONDS_PER_YEAR
        e1, e2 = np_normal_pair(node_pref, k, 0)
        e3, _ = np_normal_pair(node_pref, k, 1)
        for v, (e, phi, sq) in enumerate(((e1, wp.phi_t, wp.sq_t), (e2, wp.phi_p, wp.sq_p), (e3, wp.phi_w, wp.sq_w))):
            base[:, :, v] = e if k == 0 else phi * base[:, :, v] + sq * e
        zt = (gen._node_w * base[:, :, 0]).sum(axis=1)
        zp = (gen._node_w * base[:, :, 1]).sum(axis=1)
        zw = (gen._node_w * base[:, :, 2]).sum(axis=1)
        mo = kf.month_of(t)
        unit = np.eye(12)
        wts = np.array([kf.clim_interp(unit[j], t) for j in range(12)])
        t_clim = i["t_nodes"] @ wts
        t_daily = t_clim + i["sigma_t"] * zt
        hour_local = (t % 86400.0) / 3600.0 + lon_hours
        tb = t_daily + 0.5 * i["dtr"][:, mo] * np.cos(2 * np.pi * (hour_local - 15.0) / 24.0)
        q = i["p_thresh"][:, mo]
        pn = i["p_norm"][:, mo]
        pb = np.where(pn > 0, i["p_rate"][:, mo] * np.maximum(zp - q, 0.0) / np.where(pn > 0, pn, 1.0), 0.0)
        cloud = 1.0 / (1.0 + np.exp(-wp.cloud_slope * (zp - q + wp.cloud_shift)))
        rh = i["rh_base"][:, mo] + (wp.rh_cloud_max - i["rh_base"][:, mo]) * cloud * cloud
        e_b = rh * np_esat(t_daily)
        tm_ = t_clim + 0.5 * kf.LAPSE * elev
        ps = kf.P0 * np.exp(-kf.GRAV * elev / (kf.RDAIR * tm_))
        decl, e0 = kf.orbit(t + 0.5 * wp.dt_rec)
        toa = kf.S0 * e0 * np_mean_cosz(lat, lon, t, t + wp.dt_rec, decl)
        clear = toa * (wp.clear_a + wp.clear_b * elev)
        clf = wp.cloud_k * cloud ** wp.cloud_c
        swb = clear * (1.0 - clf)
        tail = 0.5 * _erfc(zw / math.sqrt(2.0)).astype(np.float64)
        wind = wp.wind_scale * np.sqrt(-np.log(tail))
        wind = np.maximum(wind * (1.0 + wp.wind_diurnal * np.cos(2 * np.pi * (hour_local - 14.0) / 24.0)), 0.1)
        # members
        if gen.perturb:
            d1, d2 = np_normal_pair(mem_pref, k, 0)
            d3, d4 = np_normal_pair(mem_pref, k, 1)
            for v, e in enumerate((d1, d2, d3, d4)):
                ms[:, :, v] = e if k == 0 else pp.phi * ms[:, :, v] + pp.sq * e
            z = np.empty((nc, nm, 4))
            z[..., 0] = chol[0, 0] * ms[..., 0]
            z[..., 1] = chol[1, 0] * ms[..., 0] + chol[1, 1] * ms[..., 1]
            z[..., 2] = chol[2, 0] * ms[..., 0] + chol[2, 1] * ms[..., 1] + chol[2, 2] * ms[..., 2]
            z[..., 3] = (chol[3, 0] * ms[..., 0] + chol[3, 1] * ms[..., 1] + chol[3, 2] * ms[..., 2]
                         + chol[3, 3] * ms[..., 3])
            z = np.clip(z, -zmax, zmax)
            tm = tb[:, None] + pp.sd_t * z[..., 3]
            dlw = pp.sd_lw * z[..., 2]
            f_p = np.exp(pp.mu_p + pp.sg_p * z[..., 0])
            f_sw = np.exp(pp.mu_sw + pp.sg_sw * z[..., 1])
        else:
            tm = np.repeat(tb[:, None], nm, 1)
            dlw, f_p, f_sw = 0.0, 1.0, 1.0
        em = np.minimum(e_b[:, None], np_esat(tm))
        w = 46.5 * 0.01 * em / tm
        eps_clr = 1.0 - (1.0 + w) * np.exp(-np.sqrt(1.2 + 3.0 * w))
        eps = clf[:, None] + (1.0 - clf[:, None]) * eps_clr
        lw = np.maximum(eps * kf.STEBOL * tm ** 4 + dlw, pp.lw_min_emis * kf.STEBOL * tm ** 4)
        out[r, kf.R_TBOT] = tm
        out[r, kf.R_QBOT] = 0.622 * em / (ps[:, None] - 0.378 * em)
        out[r, kf.R_PSRF] = ps[:, None]
        out[r, kf.R_WIND] = wind[:, None]
        out[r, kf.R_FSDS] = np.minimum(swb[:, None] * f_sw, clear[:, None])
        out[r, kf.R_FLDS] = lw
        out[r, kf.R_PREC] = pb[:, None] * f_p
    return out


def numpy_steps(rec: F.ForcingRecords, lat_deg, lon_deg, dt_step) -> np.ndarray:
    v = rec.values
    nsub = int(round(rec.dt / dt_step))
    lat, lon = np.deg2rad(lat_deg), np.deg2rad(lon_deg)
    out = np.empty(((v.shape[0] - 1) * nsub, 12, v.shape[2], v.shape[3]))
    for a in range(v.shape[0] - 1):
        ta = rec.t0 + a * rec.dt
        decl, _ = kf.orbit(ta + 0.5 * rec.dt)
        mrec = np_mean_cosz(lat, lon, ta, ta + rec.dt, decl)
        for j in range(nsub):
            s = a * nsub + j
            w = j / nsub
            m = np_mean_cosz(lat, lon, ta + j * dt_step, ta + (j + 1) * dt_step, decl)
            fac = np.where(mrec > 0, m / np.where(mrec > 0, mrec, 1.0), 0.0)[:, None]
            lin = (1.0 - w) * v[a] + w * v[a + 1]
            tb = lin[kf.R_TBOT]
            out[s, kf.S_TBOT] = tb
            out[s, kf.S_QBOT] = lin[kf.R_QBOT]
            out[s, kf.S_PSRF] = lin[kf.R_PSRF]
            out[s, kf.S_WIND] = lin[kf.R_WIND]
            out[s, kf.S_FLDS] = lin[kf.R_FLDS]
            sw = v[a, kf.R_FSDS] * fac
            out[s, kf.S_FSDS] = sw
            h = 0.5 * sw
            rn = np.clip(0.29548 + 0.00504 * h - 1.4957e-05 * h * h + 1.4881e-08 * h * h * h, 0.01, 0.99)
            rv = np.clip(0.17639 + 0.00380 * h - 9.0039e-06 * h * h + 8.1351e-09 * h * h * h, 0.01, 0.99)
            out[s, kf.S_SWVDR], out[s, kf.S_SWVDF] = rv * h, (1 - rv) * h
            out[s, kf.S_SWNDR], out[s, kf.S_SWNDF] = rn * h, (1 - rn) * h
            p = v[a, kf.R_PREC]
            fr = np.clip((tb - kf.TFRZ) * 0.5, 0.0, 1.0)
            out[s, kf.S_RAIN] = np.maximum(p * fr, 0.0)
            out[s, kf.S_SNOW] = np.maximum(p * (1.0 - fr), 0.0)
    return out


# ----------------------------------------------------------------------------------------------
def _best(fn, repeat):
    best = math.inf
    res = None
    for _ in range(repeat):
        comm.barrier()
        t = time.perf_counter()
        res = fn()
        comm.barrier()
        best = min(best, time.perf_counter() - t)
    return best, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--columns", type=int, default=200, help="land cells per rank")
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--steps", type=int, default=384, help="model steps (default 8 days of 1800 s)")
    ap.add_argument("--dt", type=float, default=1800.0, help="model step (s)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--numpy-columns", type=int, default=None,
                    help="columns for the (slow) NumPy baseline (default: min(columns, 50))")
    ap.add_argument("--out", default="benchmarks/results/forcing.json")
    a = ap.parse_args(argv)

    rank, size = comm.rank(), comm.size()
    nsub = int(round(21600.0 / a.dt))
    nrec = -(-a.steps // nsub) + 1
    rng = np.random.default_rng(2024)
    ntot = a.columns * size
    lat_all = rng.uniform(-55.0, 70.0, ntot)
    lon_all = rng.uniform(-180.0, 180.0, ntot)
    mine = slice(rank * a.columns, (rank + 1) * a.columns)
    lat, lon = lat_all[mine], lon_all[mine]
    ids = np.arange(rank * a.columns, (rank + 1) * a.columns, dtype=np.int64)

    comm.barrier()
    t = time.perf_counter()
    gen = F.ForcingGenerator(lat, lon, ids, n_members=a.members, seed=1)
    comm.barrier()
    t_setup = time.perf_counter() - t

    # warm-up (JIT) and agreement of the NumPy baseline with the kernels
    ncol_np = a.numpy_columns or min(a.columns, 50)
    small = F.ForcingGenerator(lat[:ncol_np], lon[:ncol_np], ids[:ncol_np], n_members=a.members, seed=1,
                               climatology=PointClimatology(
                                   lat[:ncol_np], lon[:ncol_np], gen.climatology.t2m[:ncol_np],
                                   gen.climatology.precip[:ncol_np], gen.elev[:ncol_np], "bench", ""))
    r_nb = small.records(0, 9)
    r_np = numpy_generate(small, 0, 9)
    gen_diff = float(np.max(np.abs(r_np - r_nb.values) / (np.abs(r_nb.values) + 1e-12)))
    s_nb = F.records_to_steps(r_nb, lat[:ncol_np], lon[:ncol_np], a.dt)
    s_np = numpy_steps(r_nb, lat[:ncol_np], lon[:ncol_np], a.dt)
    step_diff = float(np.max(np.abs(s_np - s_nb) / (np.abs(s_nb) + 1e-12)))
    if gen_diff > 1e-9 or step_diff > 1e-9:
        raise SystemExit(f"NumPy baseline disagrees with the kernels: generation {gen_diff}, steps {step_diff}")

    # numba: generation (fresh generator state each repeat: records from 0) and interpolation
    def gen_numba():
        gen._reset()
        return gen.records(0, nrec)

    t_gen, rec = _best(gen_numba, a.repeat)
    t_steps, steps = _best(lambda: F.records_to_steps(rec, lat, lon, a.dt), a.repeat)
    t_gen_np, _ = _best(lambda: numpy_generate(small, 0, nrec), max(1, a.repeat - 1))
    sub = F.ForcingRecords(rec.k0, rec.dt, rec.t0, np.ascontiguousarray(rec.values[:, :, :ncol_np]))
    t_steps_np, _ = _best(lambda: numpy_steps(sub, lat[:ncol_np], lon[:ncol_np], a.dt), max(1, a.repeat - 1))

    n_cmr = a.columns * a.members * nrec  # cell-member-records per rank
    n_cms = a.columns * a.members * steps.shape[0]
    n_cmr_np = ncol_np * a.members * nrec
    n_cms_np = ncol_np * a.members * steps.shape[0]
    t_gen = comm.allreduce(t_gen, "max")
    t_steps = comm.allreduce(t_steps, "max")
    t_gen_np = comm.allreduce(t_gen_np, "max")
    t_steps_np = comm.allreduce(t_steps_np, "max")
    res = {
        "benchmark": "forcing",
        "settings": {"columns_per_rank": a.columns, "members": a.members, "steps": int(steps.shape[0]),
                     "records": nrec, "dt_step_s": a.dt, "dt_record_s": 21600.0, "repeat": a.repeat,
                     "numpy_columns_per_rank": ncol_np},
        "ranks": size,
        "machine": {"node": platform.node(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "numba": __import__("numba").__version__, "env": comm.env_summary(),
                    "mpi": comm.library_version()},
        "version": __import__("engine").__version__ if hasattr(__import__("engine"), "__version__") else None,
        "setup_s": comm.allreduce(t_setup, "max"),
        "numba": {
            "generate_s": t_gen, "interpolate_s": t_steps,
            "ns_per_cell_member_record": 1e9 * t_gen / n_cmr,
            "ns_per_cell_member_step_interpolation": 1e9 * t_steps / n_cms,
            "ns_per_cell_member_step_total": 1e9 * (t_gen + t_steps) / n_cms,
        },
        "numpy_baseline": {
            "generate_s": t_gen_np, "interpolate_s": t_steps_np,
            "ns_per_cell_member_record": 1e9 * t_gen_np / n_cmr_np,
            "ns_per_cell_member_step_interpolation": 1e9 * t_steps_np / n_cms_np,
            "ns_per_cell_member_step_total": 1e9 * (t_gen_np + t_steps_np) / n_cms_np,
            "max_rel_diff_vs_numba": {"records": gen_diff, "steps": step_diff},
        },
    }
    res["speedup_numba_vs_numpy"] = {
        "generation": res["numpy_baseline"]["ns_per_cell_member_record"] / res["numba"]["ns_per_cell_member_record"],
        "interpolation": (res["numpy_baseline"]["ns_per_cell_member_step_interpolation"]
                          / res["numba"]["ns_per_cell_member_step_interpolation"]),
    }
    # one simulated year at f09 (about 20000 land cells, 40 members, 1800 s steps) on one core
    year_cms = 20000 * 40 * 17520
    res["f09_year_estimate_core_hours"] = year_cms * res["numba"]["ns_per_cell_member_step_total"] * 1e-9 / 3600.0
    if rank == 0:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2))
        print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
