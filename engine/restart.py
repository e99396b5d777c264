"""Checkpoints (restart files): one HDF5 file per checkpoint, written collectively with parallel HDF5.

State read and written
----------------------
Writes the ensemble state a caller hands over (a dict ``name -> local array``, member axis last:
``x[cell, member]``, ``t_soil[cell, level, member]``) and reads it back as each rank's slab. It keeps
no state of its own; the run directory holds the files.

File layout (format ``laida_checkpoint`` = 1)
--------------------------------------------
``<run_dir>/checkpoint_<cycle:06d>.h5`` holds, for every variable, one contiguous, uncompressed
dataset ``/<name>`` of global shape ``(n_global, *trailing)`` in global land-cell order: rank r's
block of cells ``[start_r, start_r + count_r)`` is its hyperslab along the first axis. All ranks
write their hyperslabs in one collective call per dataset (h5py ``driver="mpio"``, MPI-IO collective
transfer), so the file does not depend on how many ranks wrote it, and any split of
``[0, n_global)`` can read it back (write with 4 ranks, read with 2 or 1). On a single rank the
default (sec2) driver writes the same file without the MPI-IO layer. File attributes:

======================  ====================================================================
``laida_checkpoint``    format version (int, 1); its absence marks a foreign HDF5 file
``model_time``          model time of the state (str, e.g. ISO 8601 ``2005-07-01T00:00:00``)
``cycle``               assimilation cycle number (int)
``config_toml``         the resolved configuration of the run (TOML text)
``software_version``    ``engine.__version__`` of the writer
``n_global``            number of land cells (first axis of every dataset)
``n_members``           ensemble size (last axis of every dataset with 2 or more axes)
``created_utc``         wall-clock creation time (ISO 8601, UTC)
``n_ranks_written``     number of MPI ranks that wrote the file (information only)
``variables``           names of the datasets, in writing order
======================  ====================================================================
plus any caller-provided ``extra_attrs`` (the reserved names above cannot be overridden).

Atomic publication
------------------
1. Before any file is touched, every rank's input is checked and the verdict agreed on all ranks:
   same variable names, trailing shapes and dtypes on every rank, one row count per rank, the rank
   blocks tiling ``[0, n_global)`` exactly. A mismatch raises :class:`CheckpointError` on every rank
   (naming the variable and the ranks) and nothing is written.
2. All ranks write ``<run_dir>/.checkpoint_<cycle>.h5.tmp`` collectively and close it.
3. Every rank fsyncs the temporary file (on a local file system the first call does the work; on a
   parallel file system each client flushes its own cached pages).
4. The ranks agree (``comm.any_rank``, which is also the barrier) that nobody failed. Only then does
   rank 0 ``os.replace`` the temporary file onto ``checkpoint_<cycle>.h5`` (atomic on POSIX) and
   fsync the directory so the rename itself is durable. On failure anywhere, rank 0 deletes the
   temporary file and every rank raises :class:`CheckpointError`; an existing checkpoint of the
   same or another cycle is never opened for writing, so it stays byte-identical.
A reader therefore sees either the complete old file or the complete new one, never a partial one.

What is validated (:func:`validate_checkpoint`)
------------------------------------------------
The file exists, is non-empty and carries the HDF5 signature (else: "not an HDF5 file"); HDF5 opens
it (a file shorter than the end-of-allocation recorded in its superblock, i.e. truncated, fails
here); it carries ``laida_checkpoint`` (else "foreign HDF5 file") with a version this code reads;
all attributes above are present; every listed variable is a dataset whose first axis is
``n_global`` and whose last axis is ``n_members`` (datasets with 2 or more axes); each dataset's
stored bytes lie inside the file; the cycle attribute matches the file name. Every failure is a
:class:`CheckpointError` that names the file and what is wrong; h5py's ``OSError`` is wrapped.

Collective use: :func:`write_checkpoint`, :func:`read_checkpoint`, :func:`latest_checkpoint` and
:func:`prune_checkpoints` must be called by all ranks in the same order. :func:`validate_checkpoint`
is local (any rank, any time).

HDF5 file locking: HDF5 >= 1.10 takes an ``flock`` on every file it opens; some file systems (NFS
without lockd, some Lustre mounts) refuse it and the open fails with "unable to lock file". We open
with h5py's ``locking="best-effort"`` (HDF5's ignore-when-disabled), which keeps locking where it
works and skips it where the file system has it disabled, without changing the process-wide
``HDF5_USE_FILE_LOCKING`` other modules may rely on. The mpio driver takes no locks.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
import time
from pathlib import Path

import h5py
import numpy as np
from h5py import h5fd, h5p, h5s

import engine
from engine import comm

log = logging.getLogger(__name__)

FORMAT_TAG = "laida_checkpoint"
FORMAT_VERSION = 1
REQUIRED_ATTRS = (
    FORMAT_TAG,
    "model_time",
    "cycle",
    "config_toml",
    "software_version",
    "n_global",
    "n_members",
    "created_utc",
    "n_ranks_written",
    "variables",
)
_NAME_RE = re.compile(r"^checkpoint_(\d+)\.h5$")
# Largest transfer per rank in one collective HDF5/MPI-IO call. MPI-IO counts are C ints and
# HDF5 1.10's mpio driver fails on selections of 2 GiB or more, so larger slabs go in pieces.
_MAX_BYTES_PER_CALL = 1 << 30
_LOCKING = "best-effort" if h5py.version.hdf5_version_tuple >= (1, 10, 7) else None


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written, read or trusted; the message names the file and the reason."""


def checkpoint_name(cycle: int) -> str:
    """File name of the checkpoint of ``cycle`` (``checkpoint_000012.h5``)."""
    return f"checkpoint_{int(cycle):06d}.h5"


def _temp_name(cycle: int) -> str:
    return f".{checkpoint_name(cycle)}.tmp"


def _use_mpio() -> bool:
    return comm.size() > 1


def _open(path: Path, mode: str) -> h5py.File:
    """Open ``path``: collectively with the mpio driver on several ranks, else the default driver."""
    kwargs = {} if _LOCKING is None else {"locking": _LOCKING}
    if _use_mpio():
        return h5py.File(path, mode, driver="mpio", comm=comm.world(), **kwargs)
    return h5py.File(path, mode, **kwargs)


def _agree(local_errors: list[str]) -> list[str]:
    """All ranks' error messages, in rank order, on every rank (empty list: nobody failed)."""
    text = "".join(f"rank {comm.rank()}: {e}\n" for e in local_errors)
    if comm.size() == 1:
        return text.splitlines()
    raw = comm.gather_array(np.frombuffer(text.encode(), dtype=np.uint8), allgather=True)
    return raw.tobytes().decode().splitlines()


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pieces(count: int, row_bytes: int) -> int:
    """Number of collective calls needed so that no rank moves more than the per-call limit."""
    need = -(-count * row_bytes // _MAX_BYTES_PER_CALL) if count else 1
    return int(comm.allreduce(max(1, need), op="max"))


def _transfer(dset, arr: np.ndarray, start: int, *, write: bool) -> None:
    """Collectively write ``arr`` to (or read it from) rows ``[start, start+len(arr))`` of ``dset``.

    Uses h5py's low-level API because the high-level one skips the HDF5 call for an empty selection,
    which would leave the other ranks waiting in the collective transfer; here a rank without
    cells takes part with a "none" selection.
    """
    dxpl = h5p.create(h5p.DATASET_XFER)
    if _use_mpio():
        dxpl.set_dxpl_mpio(h5fd.MPIO_COLLECTIVE)
    count = arr.shape[0]
    trailing = tuple(arr.shape[1:])
    row_bytes = int(np.prod(trailing, dtype=np.int64)) * arr.dtype.itemsize
    n_pieces = _pieces(count, row_bytes)
    step = -(-count // n_pieces) if count else 0
    dummy = np.zeros(1, dtype=arr.dtype)
    for p in range(n_pieces):
        lo, hi = min(p * step, count), min((p + 1) * step, count)
        fspace = dset.id.get_space()
        if hi > lo:
            fspace.select_hyperslab((start + lo,) + (0,) * len(trailing), (hi - lo,) + trailing)
            part = arr[lo:hi]
            mspace = h5s.create_simple(part.shape)
        else:
            fspace.select_none()
            part = dummy
            mspace = h5s.create_simple((1,))
            mspace.select_none()
        if write:
            dset.id.write(mspace, fspace, part, dxpl=dxpl)
        else:
            dset.id.read(mspace, fspace, part, dxpl=dxpl)


def _check_inputs(variables: dict, start: int, n_global: int) -> tuple[list[str], int, int]:
    """Agree on all ranks that the checkpoint inputs are consistent; returns (names, count, n_members)."""
    errors: list[str] = []
    if not isinstance(variables, dict) or not variables:
        errors.append("variables must be a non-empty dict name -> array")
        variables = {}
    bad_names = [k for k in variables if not isinstance(k, str) or not k or "/" in k or k.startswith(".")]
    if bad_names:
        errors.append(f"variable names must be non-empty strings without '/' or a leading '.': {bad_names}")
        variables = {k: v for k, v in variables.items() if k not in bad_names}
    arrays = {k: np.asarray(v) for k, v in variables.items()}
    counts = {k: a.shape[0] for k, a in arrays.items() if a.ndim >= 1}
    for k, a in arrays.items():
        if a.ndim == 0:
            errors.append(f"variable {k!r} is a scalar; the first axis must be land cells")
        elif a.dtype.kind not in "biuf":
            errors.append(f"variable {k!r} has dtype {a.dtype}; only bool, integer and float are stored")
    if len(set(counts.values())) > 1:
        errors.append(f"variables have different numbers of cells on this rank: {counts}")
    count = next(iter(counts.values()), 0)
    if not isinstance(start, (int, np.integer)) or start < 0:
        errors.append(f"start must be an integer >= 0, got {start!r}")
        start = -1
    if not isinstance(n_global, (int, np.integer)) or n_global < 1:
        errors.append(f"n_global must be an integer >= 1, got {n_global!r}")
    # compare every rank's variable table to rank 0's
    mine = [(k, tuple(a.shape[1:]), a.dtype.str) for k, a in arrays.items()]
    ref = comm.bcast(mine)
    ref_names = [k for k, _, _ in ref]
    if sorted(ref_names) != sorted(k for k, _, _ in mine):
        errors.append(f"variable names {sorted(arrays)} differ from rank 0's {sorted(ref_names)}")
    else:
        table = {k: (s, d) for k, s, d in mine}
        for k, shape, dt in ref:
            if table[k] != (shape, dt):
                errors.append(
                    f"variable {k!r}: trailing shape {table[k][0]} dtype {np.dtype(table[k][1])} "
                    f"but rank 0 has trailing shape {shape} dtype {np.dtype(dt)}"
                )
    members = {k: s[-1] for k, s, _ in ref if len(s) >= 1}  # variables with a member axis
    n_members = next(iter(members.values()), 0)
    for k, m in members.items():
        if m != n_members:
            first = next(iter(members))
            errors.append(f"variable {k!r} has {m} members (last axis) but {first!r} has {n_members}")
    # the blocks must tile [0, n_global)
    blocks = comm.gather_array(np.array([[int(start), int(count)]], dtype=np.int64), allgather=True)
    if comm.rank() == 0:
        spans = sorted((int(s), int(s + c), r) for r, (s, c) in enumerate(blocks) if c > 0 and s >= 0)
        edge = 0
        for s, e, r in spans:
            if s != edge:
                kind = "gap" if s > edge else "overlap"
                errors.append(f"rank blocks do not tile [0, {n_global}): {kind} at cell {min(s, edge)} "
                              f"(rank {r} starts at {s}); blocks [start, count) = {blocks.tolist()}")
                break
            edge = e
        else:
            if edge != n_global:
                errors.append(f"rank blocks cover [0, {edge}) but n_global is {n_global}; "
                              f"blocks [start, count) = {blocks.tolist()}")
    all_errors = _agree(errors)
    if all_errors:
        raise CheckpointError("; ".join(all_errors))
    return ref_names, count, int(n_members)


def _header(run_dir, cycle, names, n_global, n_members, model_time, config_toml, extra_attrs):
    """(cycle, file attributes, error or None), built on rank 0; creates the run directory."""
    if not isinstance(cycle, (int, np.integer)) or cycle < 0:
        return None, None, f"cycle must be an integer >= 0, got {cycle!r}"
    reserved = sorted(set(REQUIRED_ATTRS) & set(extra_attrs or {}))
    if reserved:
        return int(cycle), None, f"extra_attrs may not override the reserved attributes {reserved}"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return int(cycle), None, f"cannot create the run directory {run_dir}: {exc}"
    attrs = {
        FORMAT_TAG: np.int64(FORMAT_VERSION),
        "model_time": str(model_time),
        "cycle": np.int64(cycle),
        "config_toml": str(config_toml),
        "software_version": str(engine.__version__),
        "n_global": np.int64(n_global),
        "n_members": np.int64(n_members),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "n_ranks_written": np.int64(comm.size()),
        "variables": np.array(names, dtype=h5py.string_dtype()),
        **(extra_attrs or {}),
    }
    return int(cycle), attrs, None


def write_checkpoint(
    run_dir,
    cycle: int,
    variables: dict[str, np.ndarray],
    *,
    start: int,
    n_global: int,
    model_time: str,
    config_toml: str,
    extra_attrs: dict | None = None,
    fsync: bool = True,
    timings: dict | None = None,
) -> Path:
    """Write the checkpoint of ``cycle`` collectively (all ranks) and publish it atomically.

    ``variables[name]`` is this rank's block ``[start, start + count)`` of the global land-cell axis,
    first axis cells, last axis members, same trailing shape and dtype on every rank. ``n_global``
    is the global number of land cells. With ``fsync=False`` the data are left to the OS to flush
    (benchmarks, throw-away runs); the rename is still atomic. If ``timings`` is a dict it receives
    the seconds from entry to "closed" (every rank closed the file), "synced" (every rank fsynced
    it) and "published" (renamed and directory synced), read after the agreement points, so they
    include the slowest rank. Returns the path of the published file on every rank.

    ``cycle``, ``model_time``, ``config_toml`` and ``extra_attrs`` are taken from rank 0 (the file
    has one set of attributes). Raises :class:`CheckpointError` on every rank if any rank fails.
    """
    t0 = time.perf_counter()
    run_dir = Path(comm.bcast(str(run_dir)))
    try:
        names, count, n_members = _check_inputs(variables, start, n_global)
    except CheckpointError as exc:
        where = run_dir / checkpoint_name(cycle) if isinstance(cycle, (int, np.integer)) and cycle >= 0 else run_dir
        raise CheckpointError(f"{where}: checkpoint not written: {exc}") from None
    header = None
    if comm.rank() == 0:  # one set of values for the collective metadata writes and file names
        try:
            header = _header(run_dir, cycle, names, n_global, n_members, model_time, config_toml, extra_attrs)
        except Exception as exc:  # noqa: BLE001 - must reach the other ranks, which wait in bcast
            header = (None, None, f"cannot build the file attributes: {type(exc).__name__}: {exc}")
    cycle, attrs, error = comm.bcast(header)
    final = run_dir if cycle is None else run_dir / checkpoint_name(cycle)
    if error is not None:
        raise CheckpointError(f"{final}: checkpoint not written: {error}")
    tmp = run_dir / _temp_name(cycle)

    failed: list[str] = []
    stage = "opening"
    try:
        with _open(tmp, "w") as f:
            stage = "writing attributes"
            for key, value in attrs.items():
                stage = f"writing attribute {key!r}"
                f.attrs[key] = value
            for name in names:
                stage = f"writing variable {name!r}"
                local = np.ascontiguousarray(variables[name])
                dset = f.create_dataset(name, shape=(n_global, *local.shape[1:]), dtype=local.dtype)
                _transfer(dset, local, int(start), write=True)
            stage = "closing"
    except Exception as exc:  # noqa: BLE001 - reported on every rank below
        failed.append(f"{stage}: {type(exc).__name__}: {exc}")
    errors = _agree(failed)
    closed = time.perf_counter()
    if not errors and fsync:
        try:
            _fsync_path(tmp)
        except OSError as exc:
            failed.append(f"fsync: {exc}")
        errors = _agree(failed)
    synced = time.perf_counter()
    if not errors and comm.rank() == 0:
        try:
            os.replace(tmp, final)
            if fsync:
                _fsync_path(run_dir, directory=True)
        except OSError as exc:
            errors = [f"rank 0: publishing {tmp.name} as {final.name}: {exc}"]
    errors = comm.bcast(errors)
    if errors:
        if comm.rank() == 0:
            try:
                tmp.unlink(missing_ok=True)
            except OSError as exc:  # pragma: no cover - reported with the original error
                errors.append(f"rank 0: could not remove {tmp}: {exc}")
        comm.barrier()
        raise CheckpointError(f"{final}: checkpoint not written: " + "; ".join(errors))
    published = time.perf_counter()
    if timings is not None:
        timings.update(closed=closed - t0, synced=synced - t0, published=published - t0)
    return final


def _plain(value):
    """HDF5 attribute value as a plain Python value (int, float, str, list)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "O" or value.dtype.kind == "S":
            return [v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def validate_checkpoint(path) -> dict:
    """Check that ``path`` is a complete laida checkpoint; returns its attributes (plain Python values).

    Local (not collective). Raises :class:`CheckpointError` naming the file and the problem; see the
    module docstring for the list of checks.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    file_size = path.stat().st_size
    if file_size == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes), not a checkpoint")
    if not h5py.is_hdf5(path):
        raise CheckpointError(f"{path}: not an HDF5 file (no HDF5 signature); not a laida checkpoint")
    kwargs = {} if _LOCKING is None else {"locking": _LOCKING}
    try:
        f = h5py.File(path, "r", **kwargs)
    except OSError as exc:
        raise CheckpointError(
            f"{path}: HDF5 cannot open it ({file_size} bytes; truncated or damaged file): {exc}"
        ) from None
    try:
        with f:
            if FORMAT_TAG not in f.attrs:
                raise CheckpointError(
                    f"{path}: foreign HDF5 file: attribute {FORMAT_TAG!r} is missing, not a laida checkpoint"
                )
            version = _plain(f.attrs[FORMAT_TAG])
            if version != FORMAT_VERSION:
                raise CheckpointError(
                    f"{path}: checkpoint format version {version!r}; this laida reads version {FORMAT_VERSION}"
                )
            missing = [k for k in REQUIRED_ATTRS if k not in f.attrs]
            if missing:
                raise CheckpointError(f"{path}: missing attributes {missing}")
            attrs = {k: _plain(v) for k, v in f.attrs.items()}
            n_global, n_members = attrs["n_global"], attrs["n_members"]
            names = attrs["variables"]
            if isinstance(names, str):
                names = [names]
            for name in names:
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise CheckpointError(f"{path}: variable {name!r} is listed but has no dataset")
                dset = f[name]
                if dset.ndim < 1 or dset.shape[0] != n_global:
                    raise CheckpointError(
                        f"{path}: variable {name!r} has shape {dset.shape}; first axis must be n_global={n_global}"
                    )
                if dset.ndim >= 2 and dset.shape[-1] != n_members:
                    raise CheckpointError(
                        f"{path}: variable {name!r} has shape {dset.shape}; last axis must be n_members={n_members}"
                    )
                offset, nbytes = dset.id.get_offset(), dset.id.get_storage_size()
                if dset.size and (offset is None or offset + nbytes > file_size):
                    raise CheckpointError(
                        f"{path}: variable {name!r} data (offset {offset}, {nbytes} bytes) lie beyond the "
                        f"end of the file ({file_size} bytes): truncated file"
                    )
            m = _NAME_RE.match(path.name)
            if m and int(m.group(1)) != attrs["cycle"]:
                raise CheckpointError(
                    f"{path}: file name says cycle {int(m.group(1))}, attribute says {attrs['cycle']}"
                )
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - HDF5 errors inside a damaged file
        raise CheckpointError(f"{path}: damaged checkpoint ({type(exc).__name__}: {exc})") from None
    attrs["variables"] = list(names)
    return attrs


def read_checkpoint(path, *, start: int, count: int, variables=None) -> tuple[dict[str, np.ndarray], dict]:
    """Read this rank's block ``[start, start + count)`` of every (or the listed) variable; collective.

    Works for any number of ranks, independent of how many wrote the file. Rank 0 validates the file
    first; every rank gets the same :class:`CheckpointError` if it is not a complete checkpoint, a
    variable is missing, or a rank's block lies outside ``[0, n_global)``. Returns
    ``({name: array (count, *trailing)}, attributes)``.
    """
    path = Path(path)
    verdict = None
    if comm.rank() == 0:
        try:
            verdict = ("ok", validate_checkpoint(path))
        except CheckpointError as exc:
            verdict = ("error", str(exc))
    status, attrs = comm.bcast(verdict)
    if status == "error":
        raise CheckpointError(attrs)
    if variables is None:
        names = attrs["variables"]
    else:
        names = [variables] if isinstance(variables, str) else [str(v) for v in variables]
    errors = []
    if comm.bcast(names) != names:
        errors.append(f"variables {names} differ from rank 0's list")
    unknown = [n for n in names if n not in attrs["variables"]]
    if unknown:
        errors.append(f"variables {unknown} are not in the checkpoint (it has {attrs['variables']})")
    n_global = attrs["n_global"]
    if not (isinstance(start, (int, np.integer)) and isinstance(count, (int, np.integer))
            and 0 <= start and 0 <= count and start + count <= n_global):
        errors.append(f"block start={start!r} count={count!r} is not inside [0, {n_global})")
    errors = _agree(errors)
    if errors:
        raise CheckpointError(f"{path}: " + "; ".join(errors))
    out: dict[str, np.ndarray] = {}
    failed: list[str] = []
    try:
        with _open(path, "r") as f:
            for name in names:
                dset = f[name]
                out[name] = np.empty((count, *dset.shape[1:]), dtype=dset.dtype)
                _transfer(dset, out[name], int(start), write=False)
    except Exception as exc:  # noqa: BLE001 - reported on every rank below
        failed.append(f"{type(exc).__name__}: {exc}")
    errors = _agree(failed)
    if errors:
        raise CheckpointError(f"{path}: reading failed: " + "; ".join(errors))
    return out, attrs


def _candidates(run_dir: Path) -> list[tuple[int, Path]]:
    """``checkpoint_<cycle>.h5`` files in ``run_dir``, highest cycle first (temporary files excluded)."""
    if not run_dir.is_dir():
        return []
    return sorted(((int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME_RE.match(p.name))),
                  reverse=True)


def latest_checkpoint(run_dir) -> Path | None:
    """The newest complete checkpoint in ``run_dir`` (highest cycle that validates), or None; collective.

    Temporary files of unfinished writes are ignored. A damaged newer file is logged as a warning
    (naming it and why) and skipped, so the run resumes from the previous complete checkpoint.
    Decided on rank 0 and broadcast, so every rank gets the same answer.
    """
    result = None
    if comm.rank() == 0:
        for _, p in _candidates(Path(run_dir)):
            try:
                validate_checkpoint(p)
            except CheckpointError as exc:
                log.warning("skipping damaged checkpoint %s: %s", p, exc)
                continue
            result = str(p)
            break
    result = comm.bcast(result)
    return None if result is None else Path(result)


def prune_checkpoints(run_dir, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` complete checkpoints in ``run_dir``; collective.

    Rank 0 removes, the others wait. Damaged files are left in place (logged) for inspection, and
    temporary files are not touched. Returns the removed paths on every rank.
    """
    if not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"prune_checkpoints: keep must be an integer >= 1, got {keep!r}")
    removed, error = [], None
    if comm.rank() == 0:
        run_dir = Path(run_dir)
        good = []
        for cyc, p in _candidates(run_dir):
            try:
                validate_checkpoint(p)
                good.append((cyc, p))
            except CheckpointError as exc:
                log.warning("prune_checkpoints leaves damaged file %s in place: %s", p, exc)
        try:
            for _, p in good[keep:]:
                p.unlink()
                removed.append(str(p))
            if removed:
                _fsync_path(run_dir, directory=True)
        except OSError as exc:
            error = f"{run_dir}: prune_checkpoints failed: {exc}"
    removed, error = comm.bcast((removed, error))
    if error:
        raise CheckpointError(error)
    return [Path(p) for p in removed]
