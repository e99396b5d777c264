"""Restart I/O benchmark: collective checkpoint write and read bandwidth against raw sequential I/O.

Measures engine.restart.write_checkpoint / read_checkpoint on an ensemble of ``--members`` members x
``--cells`` land cells x ``--values`` float64 state values per cell (default 40 x 20000 x 100 =
640 MB), split into ``--nvars`` variables of shape (cells, values/nvars, members), cells in
contiguous blocks over the ranks. Baseline, measured in the same run and interleaved with the
checkpoint repetitions: one process writing the same number of bytes sequentially with os.write
(then fsync) and reading them back with readinto. Figures are reported as times, GB/s (1e9 bytes/s)
and ratios checkpoint / raw (bandwidth ratio: 1.0 means as fast as raw sequential I/O).

  write to close   collective write, file closed by every rank (data may sit in the page cache)
  write to fsync   ... and fsynced by every rank (durable); raw: write, close, open, fsync
  read cold        page cache dropped before each repetition (root only: /proc/sys/vm/drop_caches)
  read warm        file in the page cache

One untimed full-size write and read per process comes first (first-open, MPI-IO and page-fault
warm-up). Clocks are read after a barrier. While rank 0 runs the raw baseline the other ranks sleep
(not MPI-spin) so that they do not steal its core. Files go to a fresh directory under ``--dir``
(default /tmp) and are deleted at the end.

Run as ``mpiexec -n R python benchmarks/restart_io_benchmark.py --out FILE.json`` (one rank count),
or as plain ``python benchmarks/restart_io_benchmark.py --ranks 1,2,4 --out FILE.json``: the driver
launches ``mpiexec -n R`` for each R and merges the results into FILE.json (also the default when
started without mpiexec). Reads no model state; writes only its temporary files and the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

_UNDER_MPIEXEC = any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))
_METRICS = ("write_close", "write_fsync", "read_cold", "read_warm")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cells", type=int, default=20000, help="land cells (global)")
    p.add_argument("--members", type=int, default=40, help="ensemble members")
    p.add_argument("--values", type=int, default=100, help="float64 state values per cell and member")
    p.add_argument("--nvars", type=int, default=4, help="variables the values are split into")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement")
    p.add_argument("--out", type=Path, default=None, help="JSON result file")
    p.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()), help="where the test files go")
    p.add_argument("--ranks", default=None, help="driver mode: comma-separated rank counts, e.g. 1,2,4")
    p.add_argument("--no-drop-caches", action="store_true", help="do not drop the page cache before cold reads")
    args = p.parse_args(argv)
    if args.values % args.nvars:
        p.error(f"--values ({args.values}) must be a multiple of --nvars ({args.nvars})")
    if min(args.cells, args.members, args.values, args.nvars, args.reps) < 1:
        p.error("--cells, --members, --values, --nvars and --reps must be >= 1")
    return args


# ------------------------------------------------------------------------------------------ driver

def drive(args) -> dict:
    """Launch one mpiexec job per rank count and merge their JSON results."""
    from engine import comm  # for the child environment only

    ranks = [int(r) for r in args.ranks.split(",")]
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        sys.exit("restart_io_benchmark: mpiexec not found on PATH")
    runs = []
    with tempfile.TemporaryDirectory(prefix="laida-bench-json-") as tmp:
        for r in ranks:
            out = Path(tmp) / f"ranks{r}.json"
            cmd = ["timeout", "300", mpiexec, "-n", str(r), sys.executable, str(Path(__file__).resolve()),
                   "--cells", str(args.cells), "--members", str(args.members), "--values", str(args.values),
                   "--nvars", str(args.nvars), "--reps", str(args.reps), "--dir", str(args.dir),
                   "--out", str(out)] + (["--no-drop-caches"] if args.no_drop_caches else [])
            print(f"[driver] mpiexec -n {r} {Path(__file__).name} ...", flush=True)
            proc = subprocess.run(cmd, env=comm.child_mpiexec_env())
            if proc.returncode != 0:
                sys.exit(f"restart_io_benchmark: mpiexec -n {r} failed with exit code {proc.returncode}")
            runs.append(json.loads(out.read_text()))
    first = runs[0]
    return {
        "benchmark": "restart_io",
        "settings": first["settings"],
        "machine": first["machine"],
        "versions": first["versions"],
        "runs": runs,
        "summary": {str(run["ranks"]): {"bandwidth_GBps": run["bandwidth_GBps"],
                                        "ratio_to_baseline": run["ratio_to_baseline"]} for run in runs},
    }


# ------------------------------------------------------------------------------------------ worker

def _fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mnt, fstype, *_ = line.split()
            if str(path.resolve()).startswith(mnt) and len(mnt) > len(best):
                best, kind = mnt, fstype
    except OSError:
        pass
    return kind


def _drop_caches(enabled: bool) -> bool:
    """Flush and drop the page cache (rank 0 calls it); False if not permitted."""
    if not enabled:
        return False
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def _raw_write(path: Path, buffers, nbytes: int) -> tuple[float, float]:
    """Sequential write of ``buffers`` (``nbytes`` in all) to a new file; seconds to close and to fsync."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    for buf in buffers:
        view = memoryview(buf).cast("B")
        while len(view):
            view = view[os.write(fd, view):]
    os.close(fd)
    t_close = time.perf_counter() - t0
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    assert path.stat().st_size == nbytes
    return t_close, time.perf_counter() - t0


def _raw_read(path: Path, sizes, np) -> float:
    """Sequential read into fresh buffers of ``sizes`` bytes (as read_checkpoint allocates one array
    per variable); seconds."""
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    pos = 0
    for size in sizes:
        view = memoryview(np.empty(size, dtype=np.uint8))
        while len(view):
            got = os.preadv(fd, [view], pos)
            if got == 0:
                raise RuntimeError(f"{path}: short read at byte {pos}")
            view, pos = view[got:], pos + got
    os.close(fd)
    return time.perf_counter() - t0


def work(args) -> dict | None:
    import h5py
    import numpy as np

    import engine
    from engine import comm, restart

    rank, size = comm.rank(), comm.size()
    nbytes = args.cells * args.members * args.values * 8
    per_var = args.values // args.nvars
    counts = [args.cells // size + (r < args.cells % size) for r in range(size)]
    start, count = sum(counts[:rank]), counts[rank]
    cells = np.arange(start, start + count, dtype=np.float64)[:, None, None]
    variables = {
        f"state_{v:02d}": cells * 1e4
        + (v * per_var + np.arange(per_var, dtype=np.float64))[None, :, None] * 1e1
        + np.arange(args.members, dtype=np.float64)[None, None, :] * 1e-2
        for v in range(args.nvars)
    }
    work_dir = Path(comm.bcast(tempfile.mkdtemp(prefix="laida-restart-bench-", dir=args.dir) if rank == 0 else None))
    run_dir, raw_file, marker = work_dir / "run", work_dir / "raw.bin", work_dir / "baseline.done"
    # the baseline moves the same bytes in the same pieces (one buffer per variable) from rank 0
    sizes = [nbytes // args.nvars] * args.nvars
    raw_buffers = [np.arange(i, i + size // 8, dtype=np.float64) for i, size in enumerate(sizes)] if rank == 0 else []
    drop = not args.no_drop_caches
    reps: dict[str, list[float]] = {k: [] for k in (
        "checkpoint_write_close_s", "checkpoint_write_fsync_s", "checkpoint_write_published_s",
        "raw_write_close_s", "raw_write_fsync_s",
        "checkpoint_read_cold_s", "raw_read_cold_s", "checkpoint_read_warm_s", "raw_read_warm_s")}

    def baseline(func):
        """Run ``func`` on rank 0 while the other ranks sleep (no MPI busy-wait); then a barrier."""
        comm.barrier()
        if rank == 0:
            func()
            marker.touch()
        else:
            while not marker.exists():
                time.sleep(0.002)
        comm.barrier()
        if rank == 0:
            marker.unlink()

    def write_cp(cycle):
        t = {}
        comm.barrier()
        restart.write_checkpoint(run_dir, cycle, variables, start=start, n_global=args.cells,
                                 model_time="2005-07-01T00:00:00", config_toml="[benchmark]\n", timings=t)
        return t

    def read_cp(path):
        comm.barrier()
        t0 = time.perf_counter()
        data, _ = restart.read_checkpoint(path, start=start, count=count)
        comm.barrier()
        return time.perf_counter() - t0, data

    def remove(path):
        comm.barrier()
        if rank == 0:
            path.unlink()
        comm.barrier()

    cold = False
    try:
        # warm-up: one full-size write and read, untimed
        t_warm0 = time.perf_counter()
        write_cp(0)
        path = run_dir / restart.checkpoint_name(0)
        _, data = read_cp(path)
        if comm.any_rank(not all(np.array_equal(data[k], variables[k]) for k in variables)):
            raise RuntimeError("restart_io_benchmark: checkpoint read back differs from what was written")
        del data
        baseline(lambda: (_raw_write(raw_file, raw_buffers, nbytes), _raw_read(raw_file, sizes, np), raw_file.unlink()))
        warmup_s = time.perf_counter() - t_warm0
        remove(path)
        for i in range(1, args.reps + 1):
            box = {}
            baseline(lambda: box.update(zip(("close", "fsync"), _raw_write(raw_file, raw_buffers, nbytes))))
            if rank == 0:
                reps["raw_write_close_s"].append(box["close"])
                reps["raw_write_fsync_s"].append(box["fsync"])
            if i < args.reps:
                baseline(raw_file.unlink)  # untimed, as the previous checkpoint is removed untimed
            t = write_cp(i)
            reps["checkpoint_write_close_s"].append(t["closed"])
            reps["checkpoint_write_fsync_s"].append(t["synced"])
            reps["checkpoint_write_published_s"].append(t["published"])
            if i < args.reps:
                remove(run_dir / restart.checkpoint_name(i))
        path = run_dir / restart.checkpoint_name(args.reps)
        for i in range(args.reps):
            baseline(lambda: box.update(cold=_drop_caches(drop)))
            baseline(lambda: reps["raw_read_cold_s"].append(_raw_read(raw_file, sizes, np)))
            baseline(lambda: box.update(cold=_drop_caches(drop) and box["cold"]))
            reps["checkpoint_read_cold_s"].append(read_cp(path)[0])
            baseline(lambda: reps["raw_read_warm_s"].append(_raw_read(raw_file, sizes, np)))
            reps["checkpoint_read_warm_s"].append(read_cp(path)[0])
        cold = comm.bcast(box.get("cold", False) if rank == 0 else None)
    finally:
        comm.barrier()
        if rank == 0:
            shutil.rmtree(work_dir, ignore_errors=True)
    if rank != 0:
        return None

    med = {k: statistics.median(v) for k, v in reps.items()}
    bw = {
        "checkpoint_write_close": nbytes / med["checkpoint_write_close_s"] / 1e9,
        "checkpoint_write_fsync": nbytes / med["checkpoint_write_fsync_s"] / 1e9,
        "checkpoint_read_cold": nbytes / med["checkpoint_read_cold_s"] / 1e9,
        "checkpoint_read_warm": nbytes / med["checkpoint_read_warm_s"] / 1e9,
        "raw_write_close": nbytes / med["raw_write_close_s"] / 1e9,
        "raw_write_fsync": nbytes / med["raw_write_fsync_s"] / 1e9,
        "raw_read_cold": nbytes / med["raw_read_cold_s"] / 1e9,
        "raw_read_warm": nbytes / med["raw_read_warm_s"] / 1e9,
    }
    return {
        "benchmark": "restart_io",
        "settings": {"cells": args.cells, "members": args.members, "values": args.values, "nvars": args.nvars,
                     "reps": args.reps, "bytes": nbytes, "dtype": "float64", "dir": str(args.dir),
                     "filesystem": _fs_type(args.dir), "cold_reads_dropped_page_cache": cold,
                     "warmup_excluded_s": warmup_s},
        "ranks": size,
        "machine": {"hostname": socket.gethostname(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_1_5_15_at_end": list(os.getloadavg())},
        "versions": {"laida": engine.__version__, "h5py": h5py.__version__, "hdf5": h5py.version.hdf5_version,
                     "h5py_mpi": bool(h5py.get_config().mpi), "mpi4py": metadata.version("mpi4py"),
                     "mpi_library": comm.library_version(), "numpy": np.__version__},
        "repetitions": reps,
        "medians_s": med,
        "bandwidth_GBps": bw,
        "ratio_to_baseline": {m: bw[f"checkpoint_{m}"] / bw[f"raw_{m}"] for m in _METRICS},
    }


def _print_table(result: dict) -> None:
    runs = result.get("runs", [result])
    print(f"{'ranks':>5} " + " ".join(f"{m + ' GB/s (x raw)':>26}" for m in _METRICS))
    for run in runs:
        bw, ratio = run["bandwidth_GBps"], run["ratio_to_baseline"]
        print(f"{run['ranks']:>5} " + " ".join(
            f"{bw['checkpoint_' + m]:>8.2f} (raw {bw['raw_' + m]:5.2f}, x{ratio[m]:4.2f})" for m in _METRICS))


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.ranks is None and not _UNDER_MPIEXEC:
        args.ranks = "1,2,4"
    elif args.ranks is not None and _UNDER_MPIEXEC:
        sys.exit("restart_io_benchmark: --ranks launches mpiexec itself; run it without mpiexec")
    result = drive(args) if args.ranks is not None else work(args)
    if result is not None:
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        _print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
