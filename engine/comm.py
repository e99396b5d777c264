"""All of laida's MPI, in one place (the only module that imports mpi4py).

Every call works the same on one rank: a plain ``python -m ...`` or ``laida ...`` without mpiexec
runs through these functions, which then reduce to local copies (as Veros' ``dist_context_only``
and DART's null_mpi_utilities do). Arrays are exchanged with mpi4py's buffer interface (upper-case
methods), never pickled, so gathers and reductions are exact and cheap.

Reads and writes no model state. Other modules ask this one for ``rank()``, ``size()`` and the
communicator handle ``world()`` (h5py's mpio driver needs it); nothing else touches MPI.
"""

from __future__ import annotations

import os
import sys
import traceback

import numpy as np

try:  # mpi4py initialises MPI on import; a broken MPI installation must not hide the cause
    from mpi4py import MPI
except ImportError as exc:  # pragma: no cover - set-up guarantees mpi4py
    raise ImportError(f"laida needs mpi4py with a working MPI library (run `make setup`): {exc}") from exc

_OPS = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "prod": MPI.PROD}


def world():
    """The MPI communicator of the run (MPI.COMM_WORLD); for h5py's mpio driver."""
    return MPI.COMM_WORLD


def rank() -> int:
    """This process's rank (0 on a serial run)."""
    return MPI.COMM_WORLD.Get_rank()


def size() -> int:
    """Number of ranks (1 on a serial run)."""
    return MPI.COMM_WORLD.Get_size()


def is_root() -> bool:
    return MPI.COMM_WORLD.Get_rank() == 0


def barrier() -> None:
    MPI.COMM_WORLD.Barrier()


def library_version() -> str:
    """The MPI library's own one-line version string (e.g. 'Open MPI v4.1.4, ...')."""
    return MPI.Get_library_version().splitlines()[0].strip().rstrip("\x00")


def bcast(obj, root: int = 0):
    """Broadcast a (small, picklable) Python object from ``root``; returns it on every rank."""
    return MPI.COMM_WORLD.bcast(obj, root=root)


def bcast_array(arr: np.ndarray | None, root: int = 0) -> np.ndarray:
    """Broadcast a numpy array from ``root``; other ranks may pass None (shape and dtype travel too)."""
    comm = MPI.COMM_WORLD
    meta = comm.bcast(None if arr is None else (arr.shape, arr.dtype.str), root=root)
    if comm.Get_rank() == root:
        buf = np.ascontiguousarray(arr)
    else:
        buf = np.empty(meta[0], dtype=np.dtype(meta[1]))
    comm.Bcast(buf, root=root)
    return buf


def allreduce(value, op: str = "sum"):
    """Reduce a scalar or numpy array over all ranks with ``op`` in {'sum', 'max', 'min', 'prod'}.

    Arrays are reduced element-wise with the buffer interface and returned as a new array; Python
    scalars come back as Python scalars. The MPI reduction order is fixed for a given rank count;
    code that must be rank-count independent bit for bit should gather and reduce in global order.
    """
    if op not in _OPS:
        raise ValueError(f"allreduce: op must be one of {sorted(_OPS)}, got {op!r}")
    comm = MPI.COMM_WORLD
    if isinstance(value, np.ndarray):
        send = np.ascontiguousarray(value)
        recv = np.empty_like(send)
        comm.Allreduce(send, recv, op=_OPS[op])
        return recv
    return comm.allreduce(value, op=_OPS[op])


def gather_array(local: np.ndarray, root: int = 0, *, allgather: bool = False) -> np.ndarray | None:
    """Concatenate each rank's array along axis 0, in rank order.

    The trailing shape and dtype must agree on all ranks; the leading length may differ (and be 0).
    Returns the concatenation on ``root`` (on every rank with ``allgather=True``), None elsewhere.
    """
    comm = MPI.COMM_WORLD
    local = np.ascontiguousarray(local)
    trailing = local.shape[1:]
    info = comm.allgather((local.shape[0], trailing, local.dtype.str))
    for r, (_, tr, dt) in enumerate(info):
        if tr != trailing or dt != local.dtype.str:
            raise ValueError(
                f"gather_array: rank {r} has trailing shape {tr} and dtype {dt}, "
                f"rank {comm.Get_rank()} has {trailing} and {local.dtype.str}"
            )
    row = int(np.prod(trailing, dtype=np.int64)) * local.dtype.itemsize  # bytes per row
    counts = np.array([n * row for n, _, _ in info], dtype=np.int64)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    total = int(sum(n for n, _, _ in info))
    counts, displs, dtype = counts.tolist(), displs.tolist(), MPI.BYTE  # any dtype travels as bytes
    if allgather:
        out = np.empty((total, *trailing), dtype=local.dtype)
        comm.Allgatherv([local, MPI.BYTE], [out, counts, displs, dtype])
        return out
    out = np.empty((total, *trailing), dtype=local.dtype) if comm.Get_rank() == root else None
    comm.Gatherv([local, MPI.BYTE], [out, counts, displs, dtype] if out is not None else None, root=root)
    return out


def scatter_array(full: np.ndarray | None, counts, root: int = 0) -> np.ndarray:
    """Split ``full`` (given on ``root``) along axis 0 into consecutive pieces of ``counts[r]`` rows.

    ``counts`` (one entry per rank) must be known on every rank; returns this rank's piece.
    """
    comm = MPI.COMM_WORLD
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (comm.Get_size(),):
        raise ValueError(f"scatter_array: counts needs {comm.Get_size()} entries, got {counts.shape}")
    meta = comm.bcast(None if full is None else (full.shape[1:], full.dtype.str), root=root)
    trailing, dtype = meta[0], np.dtype(meta[1])
    if comm.Get_rank() == root and full.shape[0] != counts.sum():
        raise ValueError(f"scatter_array: {full.shape[0]} rows to split but counts sum to {counts.sum()}")
    row = int(np.prod(trailing, dtype=np.int64)) * dtype.itemsize
    out = np.empty((int(counts[comm.Get_rank()]), *trailing), dtype=dtype)
    displs = np.concatenate(([0], np.cumsum(counts)[:-1]))
    send = None
    if comm.Get_rank() == root:
        send = [np.ascontiguousarray(full), (counts * row).tolist(), (displs * row).tolist(), MPI.BYTE]
    comm.Scatterv(send, [out, MPI.BYTE], root=root)
    return out


def abort(message: str, code: int = 1) -> None:
    """Print ``message`` (with the rank) to stderr and take every rank of the job down.

    Use for errors found on some ranks only; on one rank it simply exits with ``code``.
    """
    sys.stderr.write(f"laida: error on rank {rank()} of {size()}: {message}\n")
    sys.stderr.flush()
    if size() > 1:
        MPI.COMM_WORLD.Abort(code)
    raise SystemExit(code)


def run_collectively(func, *args, **kwargs):
    """Call ``func``; if it raises on any rank, abort all ranks with the traceback (no hang)."""
    try:
        return func(*args, **kwargs)
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - reported, then the whole job stops
        tb = "".join(traceback.format_exception(exc)).rstrip()
        if size() > 1:
            abort(f"{exc}\n{tb}")
        raise


def any_rank(flag: bool) -> bool:
    """True on every rank if ``flag`` is true on at least one (e.g. 'did any rank fail?')."""
    return bool(MPI.COMM_WORLD.allreduce(bool(flag), op=MPI.LOR))


def env_summary() -> dict:
    """Thread settings that matter for per-rank performance, for logs and `laida info`."""
    return {k: os.environ.get(k, "") for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "NUMBA_CACHE_DIR")}


def child_mpiexec_env(extra: dict | None = None) -> dict:
    """Environment for an ``mpiexec`` launched from this process (tests, benchmark drivers).

    Importing mpi4py without mpiexec makes Open MPI put singleton variables into ``os.environ``
    (OMPI_MCA_ess, PMIX_*, ...); a child mpiexec that inherited them would think it is a singleton
    too. They are removed; the root/oversubscribe settings and one numba/OpenMP thread per rank are
    added (ENV.md), then ``extra``.
    """
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("PMIX_", "ORTE_", "OMPI_MCA_orte_", "OMPI_COMM_WORLD", "OMPI_APP_CTX"))
                   or k in ("OMPI_MCA_ess", "OMPI_MCA_pmix"))}
    env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_rmaps_base_oversubscribe="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1")
    env.update(extra or {})
    return env


# Point-to-point messages of numpy arrays (the distributed filter sends each observation's prior
# ensemble and increments only to the ranks within its localization support).

def isend_array(arr: np.ndarray, dest: int, tag: int = 0):
    """Start sending a contiguous numpy array to rank ``dest``; returns a request for wait_all.

    The array must not be modified or freed before the request completes (keep a reference).
    The receiver must know the dtype (recv_array's ``dtype``); the length travels with the message.
    """
    buf = np.ascontiguousarray(arr)
    return MPI.COMM_WORLD.Isend(buf, dest=dest, tag=tag)


def recv_array(source: int | None, tag: int = 0, dtype=np.float64) -> np.ndarray:
    """Receive (blocking) one 1-D array of ``dtype`` sent with ``tag`` by rank ``source``
    (None: from any rank).

    Messages from one source with one tag arrive in the order they were sent (MPI non-overtaking).
    """
    status = MPI.Status()
    comm = MPI.COMM_WORLD
    comm.Probe(source=MPI.ANY_SOURCE if source is None else source, tag=tag, status=status)
    n = status.Get_count(MPI.BYTE) // np.dtype(dtype).itemsize
    out = np.empty(n, dtype=dtype)
    comm.Recv(out, source=status.Get_source(), tag=tag)
    return out


def message_waiting(source: int | None = None, tag: int = 0) -> bool:
    """True if a message with ``tag`` from ``source`` (None: any rank) can be received now."""
    return bool(MPI.COMM_WORLD.Iprobe(source=MPI.ANY_SOURCE if source is None else source, tag=tag))


def wait_all(requests) -> None:
    """Complete every request returned by isend_array."""
    if requests:
        MPI.Request.Waitall(list(requests))
