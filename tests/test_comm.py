"""engine.comm: the same calls on one rank and under mpiexec; abort takes the whole job down."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from engine import comm

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.mpi
def test_rank_size_and_collectives():
    r, p = comm.rank(), comm.size()
    assert 0 <= r < p
    assert comm.is_root() == (r == 0)
    assert comm.bcast({"x": r} if r == 0 else None) == {"x": 0}
    assert comm.allreduce(r + 1) == p * (p + 1) // 2
    assert comm.allreduce(r, op="max") == p - 1
    arr = comm.allreduce(np.full(3, float(r + 1)), op="sum")
    np.testing.assert_array_equal(arr, np.full(3, p * (p + 1) / 2))
    got = comm.bcast_array(np.arange(6.0).reshape(2, 3) if r == 0 else None)
    np.testing.assert_array_equal(got, np.arange(6.0).reshape(2, 3))
    assert comm.any_rank(r == p - 1)
    assert not comm.any_rank(False)
    with pytest.raises(ValueError, match="op must be one of"):
        comm.allreduce(1, op="mean")


@pytest.mark.mpi
@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.uint8])
def test_gather_scatter_round_trip_uneven_blocks(dtype):
    r, p = comm.rank(), comm.size()
    counts = np.array([(k * 3) % 4 for k in range(p)], dtype=np.int64)  # rank 0 holds no rows
    start = int(counts[:r].sum())
    local = (np.arange(start, start + counts[r])[:, None, None] * 100
             + np.arange(2)[None, :, None] * 10 + np.arange(3)[None, None, :]).astype(dtype)
    full = comm.gather_array(local)
    expect = (np.arange(counts.sum())[:, None, None] * 100 + np.arange(2)[None, :, None] * 10
              + np.arange(3)[None, None, :]).astype(dtype)
    if r == 0:
        np.testing.assert_array_equal(full, expect)
        assert full.dtype == dtype
    else:
        assert full is None
    everywhere = comm.gather_array(local, allgather=True)
    np.testing.assert_array_equal(everywhere, expect)
    back = comm.scatter_array(full if r == 0 else None, counts)
    np.testing.assert_array_equal(back, local)


@pytest.mark.mpi
def test_gather_rejects_mismatched_trailing_shape():
    local = np.zeros((1, 2 if comm.rank() == 0 else 3))
    if comm.size() == 1:
        comm.gather_array(local)  # nothing to disagree with
        return
    with pytest.raises(ValueError, match="trailing shape"):
        comm.gather_array(local)


def test_abort_takes_all_ranks_down():
    script = textwrap.dedent("""
        from engine import comm
        if comm.rank() == 1:
            comm.abort("rank one found bad input in file x.nc, variable LAI", code=3)
        comm.barrier()  # rank 0 would wait here forever without the abort
    """)
    proc = subprocess.run(["timeout", "120", "mpiexec", "-n", "2", sys.executable, "-c", script],
                          cwd=REPO, env=comm.child_mpiexec_env(), capture_output=True, text=True)
    assert proc.returncode not in (0, 124, 137), proc.stderr  # non-zero, and not the timeout
    assert "error on rank 1 of 2: rank one found bad input in file x.nc, variable LAI" in proc.stderr


def test_serial_run_needs_no_mpiexec():
    proc = subprocess.run([sys.executable, "-c", "from engine import comm; "
                           "import numpy as np; print(comm.size(), comm.gather_array(np.ones((2, 1))).shape)"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1", "(2,", "1)"]
