"""MPI + parallel-HDF5 smoke program: ``python -m engine.smoke OUTDIR`` (any launcher, any rank count).

Proves, on the machine and launcher at hand (plain ``python``, ``mpiexec -n N``, ``srun --mpi=pmix -n
N``, inside or outside a Slurm job), that the pieces laida's restarts rely on work together:

1. the MPI world has the size the launcher promised (``OMPI_COMM_WORLD_SIZE`` from Open MPI's
   ``mpiexec``, else ``SLURM_NTASKS`` from Slurm, when set);
2. a collective reduction is right (the sum of the ranks is N(N-1)/2);
3. h5py's ``mpio`` driver writes one HDF5 file collectively, each rank its own hyperslab (one row),
   and every rank reads the whole file back with the exact values (value = rank * 10**6 + index).

Writes ``OUTDIR/smoke-<N>.h5`` (the test file, kept for inspection) and, on rank 0,
``OUTDIR/smoke-<N>.json`` with the rank count, MPI library, HDF5 and h5py versions, h5py's MPI flag,
the hostnames of the ranks and ``"ok": true``; prints one line. Any failure on any rank takes all
ranks down with a non-zero exit code (``comm.abort``), so ``mpiexec``, ``srun`` and ``sbatch --wait``
see it. Reads no model state.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from engine import comm

ROW = 4096  # int64 values per rank in the test dataset (32 KiB per rank)
HOST_BYTES = 64  # fixed width for gathering hostnames as a numpy byte-string array


def expected_size() -> tuple[str, int] | None:
    """The world size the launcher promised, as (variable name, value), or None when no launcher said.

    ``OMPI_COMM_WORLD_SIZE`` (set by Open MPI's mpiexec for its ranks) is the most specific; inside a
    Slurm step ``SLURM_NTASKS`` is the step's task count (srun sets it per step).
    """
    for name in ("OMPI_COMM_WORLD_SIZE", "SLURM_NTASKS"):
        value = os.environ.get(name)
        if value:
            try:
                return name, int(value)
            except ValueError:
                raise RuntimeError(f"environment variable {name}={value!r} is not an integer") from None
    return None


def _row_values(r: int) -> np.ndarray:
    """The values rank ``r`` writes: r * 10**6 + index, so any misplaced row or element is detected."""
    return np.int64(r) * np.int64(1_000_000) + np.arange(ROW, dtype=np.int64)


def run(outdir: Path) -> dict:
    """Run every check on every rank (collectively); return the summary (complete on rank 0)."""
    t0 = time.perf_counter()
    nranks, me = comm.size(), comm.rank()

    promised = expected_size()
    if promised is not None and promised[1] != nranks:
        raise RuntimeError(
            f"MPI world has {nranks} ranks but {promised[0]}={promised[1]}: the launcher and MPI disagree "
            f"(wrong --mpi plugin, or mpi4py loaded a different MPI library than the launcher's)"
        )

    total = comm.allreduce(me, op="sum")
    if total != nranks * (nranks - 1) // 2:
        raise RuntimeError(f"allreduce of the ranks gave {total}, expected {nranks * (nranks - 1) // 2}")

    import h5py  # after MPI is initialised by engine.comm

    if not h5py.get_config().mpi:
        raise RuntimeError(
            f"h5py {h5py.__version__} at {h5py.__file__} is built without MPI: the mpio driver is missing "
            f"(rebuild it against parallel HDF5 with `make setup`)"
        )

    if me == 0:
        outdir.mkdir(parents=True, exist_ok=True)
    comm.barrier()
    path = outdir / f"smoke-{nranks}.h5"

    with h5py.File(path, "w", driver="mpio", comm=comm.world()) as f:
        dset = f.create_dataset("rank_rows", shape=(nranks, ROW), dtype=np.int64)
        dset.attrs["description"] = "row r holds r * 1e6 + index, written by rank r"
        with dset.collective:
            dset[me, :] = _row_values(me)
    comm.barrier()

    with h5py.File(path, "r", driver="mpio", comm=comm.world()) as f:
        dset = f["rank_rows"]
        if dset.shape != (nranks, ROW):
            raise RuntimeError(f"{path}: dataset 'rank_rows' has shape {dset.shape}, expected {(nranks, ROW)}")
        with dset.collective:
            back = dset[...]
    for r in range(nranks):
        bad = np.flatnonzero(back[r] != _row_values(r))
        if bad.size:
            i = int(bad[0])
            raise RuntimeError(
                f"{path}: dataset 'rank_rows' row {r} index {i} reads {int(back[r, i])}, "
                f"expected {int(_row_values(r)[i])} ({bad.size} wrong values in that row)"
            )

    name = np.array([socket.gethostname().encode()[:HOST_BYTES]], dtype=f"S{HOST_BYTES}")
    hosts = comm.gather_array(name)
    return {
        "ranks": nranks,
        "mpi_library": comm.library_version(),
        "hdf5_version": h5py.version.hdf5_version,
        "h5py_version": h5py.__version__,
        "h5py_mpi": bool(h5py.get_config().mpi),
        "hostnames": None if hosts is None else [h.decode() for h in hosts],
        "launcher_size_variable": None if promised is None else promised[0],
        "hdf5_file": str(path),
        "seconds": round(time.perf_counter() - t0, 3),
        "ok": True,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        comm.abort("usage: python -m engine.smoke OUTDIR", code=2)
    outdir = Path(argv[0]).resolve()
    try:
        summary = run(outdir)
        if comm.rank() == 0:
            out = outdir / f"smoke-{summary['ranks']}.json"
            tmp = out.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(summary, indent=2) + "\n")
            tmp.replace(out)  # visible only when complete
            hosts = sorted(set(summary["hostnames"]))
            print(
                f"laida smoke ok: {summary['ranks']} ranks on {','.join(hosts)} | {summary['mpi_library']} | "
                f"HDF5 {summary['hdf5_version']} (h5py {summary['h5py_version']}, mpio) | {out}",
                flush=True,
            )
        comm.barrier()  # no rank reports success before rank 0 has written the summary
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - any failure on any rank stops all ranks, non-zero
        comm.abort(f"smoke test failed: {type(exc).__name__}: {exc}", code=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
