"""slurm/smoke.sbatch on a real one-node Slurm: MPI + parallel HDF5 under mpiexec and srun --mpi=pmix.

Starts slurmctld + slurmd (+ munged) through the ``slurm_cluster`` fixture (tests/slurm_cluster.py),
submits the smoke job with ``sbatch --wait`` and checks the exit code, the state Slurm recorded
(``sacct -c``) and the JSON the job wrote. Serial tests (marked ``slurm``, not ``mpi``): the MPI runs
happen inside the Slurm jobs. Reads and writes only pytest's temporary directories.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "slurm" / "smoke.sbatch"


def _job_env(launcher: str, explicit_paths: bool) -> dict:
    """The job's variables: the launcher, and the laida tree and Python unless the defaults are tested."""
    env = {"LAUNCHER": launcher}
    if explicit_paths:
        env["LAIDA_ROOT"] = str(REPO)
    if explicit_paths or Path(sys.executable) != REPO / ".venv" / "bin" / "python":
        env["LAIDA_PYTHON"] = sys.executable  # the interpreter running the tests has h5py with mpio
    return env


def _why(cluster, job_id) -> str:
    return f"\n--- job {job_id} output:\n{cluster.job_output(job_id)}\n{cluster.logs(15)}"


@pytest.mark.parametrize(
    "launcher, ntasks",
    [("mpiexec", 2), ("mpiexec", 4), ("srun", 2), ("srun", 4)],
    ids=["mpiexec-2", "mpiexec-4", "srun-pmix-2", "srun-pmix-4"],
)
def test_smoke_job_completes(slurm_cluster, tmp_path, launcher, ntasks):  # noqa: F811
    outdir = tmp_path / "out"
    # mpiexec-2 is submitted from the repository without LAIDA_ROOT: the script's defaults must work
    explicit = (launcher, ntasks) != ("mpiexec", 2)
    code, job = slurm_cluster.sbatch_wait(
        SCRIPT, [outdir], _job_env(launcher, explicit), sbatch_options=["-n", ntasks],
        cwd=REPO if not explicit else tmp_path, timeout=120,
    )
    assert code == 0, f"sbatch --wait returned {code}" + _why(slurm_cluster, job)
    state = slurm_cluster.job_state(job)
    assert state == {"State": "COMPLETED", "ExitCode": "0:0"}, f"{state}" + _why(slurm_cluster, job)

    summary = json.loads((outdir / f"smoke-{ntasks}.json").read_text())
    assert summary["ok"] is True
    assert summary["ranks"] == ntasks
    assert summary["h5py_mpi"] is True
    assert len(summary["hostnames"]) == ntasks
    assert summary["mpi_library"].startswith("Open MPI")
    # the rank count was checked against what the launcher promised: mpiexec sets OMPI_COMM_WORLD_SIZE,
    # a direct srun launch leaves only the step's SLURM_NTASKS
    expected_variable = {"mpiexec": "OMPI_COMM_WORLD_SIZE", "srun": "SLURM_NTASKS"}[launcher]
    assert summary["launcher_size_variable"] == expected_variable
    assert f"laida smoke ok: {ntasks} ranks" in slurm_cluster.job_output(job)


def test_failing_job_is_seen(slurm_cluster, tmp_path):  # noqa: F811
    """A smoke job that cannot write its OUTDIR (under a regular file) fails with a non-zero code."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file, so OUTDIR cannot be created below it\n")
    code, job = slurm_cluster.sbatch_wait(
        SCRIPT, [blocker / "out"], _job_env("srun", True), sbatch_options=["-n", 2], cwd=tmp_path, timeout=120
    )
    assert code != 0, "sbatch --wait returned 0 for a failing job" + _why(slurm_cluster, job)
    state = slurm_cluster.job_state(job)
    assert state["State"] == "FAILED", f"{state}" + _why(slurm_cluster, job)
    assert "smoke test failed" in slurm_cluster.job_output(job)
    assert not (blocker.parent / "out").exists()


def test_bad_launcher_is_refused(slurm_cluster, tmp_path):  # noqa: F811
    code, job = slurm_cluster.sbatch_wait(
        SCRIPT, [tmp_path / "out"], _job_env("mpirun-typo", True), sbatch_options=["-n", 1], cwd=tmp_path
    )
    assert code == 2, f"sbatch --wait returned {code}" + _why(slurm_cluster, job)
    assert "LAUNCHER must be mpiexec or srun" in slurm_cluster.job_output(job)
