"""Shared pytest set-up.

`make test` runs the suite twice over: serially (``-m "not mpi"``) and the ``mpi``-marked tests on
every rank under ``mpiexec -n 1, 2, 4``. An MPI test is written for any rank count and runs the same
collective calls on every rank. If any rank's session fails, this file aborts the whole MPI job so
that no other rank waits forever in a collective (mpiexec also carries a timeout).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("NUMBA_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))

from engine import comm  # noqa: E402  (after the environment above)


def pytest_configure(config):
    if comm.size() > 1 and comm.rank() != 0:
        config.option.verbose = -1  # rank 0 tells the story; others print only their summary


def pytest_sessionfinish(session, exitstatus):
    if comm.size() > 1:
        if exitstatus not in (0, 5):  # 5: no tests collected; no collective here, it could hang
            comm.abort(f"pytest failed on rank {comm.rank()} (exit status {exitstatus})", code=1)


@pytest.fixture
def shared_tmp_path(request):
    """A temporary directory that is the same on every rank (made by rank 0, broadcast)."""
    path = None
    if comm.rank() == 0:
        path = tempfile.mkdtemp(prefix=f"laida-{request.node.name[:40]}-")
    path = Path(comm.bcast(path))
    yield path
    comm.barrier()
    if comm.rank() == 0:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
