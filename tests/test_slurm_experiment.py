"""The twin experiment under a real one-node Slurm: the demo as a job, a chain of dependent jobs
submitted by slurm/submit_experiment.sh (slurm/experiment.sbatch), its report job, and a broken chain.

Starts slurmctld + slurmd through the ``slurm_cluster`` fixture (tests/slurm_cluster.py). Serial
tests (marked ``slurm``, not ``mpi``): the MPI runs happen inside the jobs, on 2 ranks under
mpiexec. The model runs are the smallest that exercise everything (an f45 box of 38 land cells,
3 members, 2-day cycles, a 3-day spin-up without AD, whose kernels would add a compilation). Reads
and writes only pytest's temporary directories (and the numba cache of NUMBA_CACHE_DIR).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from slurm_cluster import slurm_cluster  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SUBMIT = REPO / "slurm" / "submit_experiment.sh"
SBATCH = REPO / "slurm" / "experiment.sbatch"
TIMEOUT = 900  # s: a job takes under a minute with a warm numba cache, minutes when it compiles everything

TINY = """\
[run]
name = "chain"
run_dir = "chain-run"
[grid]
name = "f45"
lat_min = -10.0
lat_max = 10.0
lon_min = 10.0
lon_max = 40.0
[ensemble]
members = 3
[time]
start = "2002-01-01"
stop = "2002-01-05"
step_seconds = 3600
[experiment]
cycle_days = 2
[spinup]
stage1_days = 2
stage2_days = 0
stage3_days = 1
ad = false
[restart]
every_cycles = 1
keep = 2
"""


def _env() -> dict:
    """The jobs' variables: the laida tree and the interpreter running the tests (h5py with mpio)."""
    return {"LAUNCHER": "mpiexec", "LAIDA_ROOT": str(REPO), "LAIDA_PYTHON": sys.executable}


def _submit(cluster, args, cwd) -> tuple[subprocess.CompletedProcess, list[int]]:
    r = subprocess.run([str(SUBMIT), *map(str, args)], env=cluster.env(_env()), cwd=cwd, capture_output=True,
                       text=True, timeout=60)
    ids = []
    if r.returncode == 0:
        last = r.stdout.strip().splitlines()[-1]
        assert last.startswith("jobs: "), r.stdout
        ids = [int(x) if x.isdigit() else x for x in last.split()[1:]]  # job1, job2, ... in a dry run
    return r, ids


def _wait_gone(cluster, ids, timeout=TIMEOUT * 2) -> None:
    """Wait until none of ``ids`` is pending or running."""
    deadline = time.monotonic() + timeout
    wanted = ",".join(map(str, ids))
    while True:
        r = cluster.run(["squeue", "-h", "-j", wanted, "-o", "%i %T %r"], check=False)
        if r.returncode == 0 and not r.stdout.strip():
            return
        if r.returncode != 0 and "Invalid job id" in r.stderr:  # all gone from the controller
            return
        if time.monotonic() > deadline:
            cluster.run(["scancel", *map(str, ids)], check=False)
            raise AssertionError(f"jobs still queued after {timeout} s: {r.stdout}{r.stderr}\n{cluster.logs(15)}")
        time.sleep(1.0)


def _times(cluster, job_id) -> tuple[str, str]:
    """(start, end) of a finished job from the completion log (ISO date-times, comparable as text)."""
    r = cluster.run(["sacct", "-c", "-j", str(job_id), "-n", "-P", "-o", "JobID,Start,End"])
    for line in r.stdout.splitlines():
        f = line.strip().split("|")
        if f[0] == str(job_id):
            return f[1], f[2]
    raise AssertionError(f"no sacct -c record of job {job_id}: {r.stdout}")


def _log(run_dir: Path, name: str, job_id: int) -> str:
    path = run_dir / "jobs" / f"{name}-{job_id}.out"
    return path.read_text(errors="replace") if path.exists() else f"({path} does not exist)"


def test_demo_job_prints_the_lai_table(slurm_cluster, tmp_path):  # noqa: F811
    """`laida demo` on 2 ranks as a Slurm job, shortened by --set to one 2-day cycle of 3 members."""
    run_dir = tmp_path / "demo"
    small = ["grid.lat_min=-10", "grid.lat_max=10", "grid.lon_min=10", "grid.lon_max=40", "ensemble.members=3",
             "time.stop=2002-01-03", "experiment.cycle_days=2", "spinup.stage1_days=2", "spinup.stage2_days=0",
             "spinup.stage3_days=1", "spinup.ad=false", f"run.run_dir={run_dir}"]
    script = tmp_path / "demo.sbatch"
    sets = " ".join(f"--set {s}" for s in small)
    script.write_text(
        "#!/bin/bash\n#SBATCH --job-name=laida-demo\n#SBATCH --time=00:20:00\nset -euo pipefail\n"
        "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1\n"
        f"export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH={REPO}\n"
        f'exec timeout -k 10 {TIMEOUT} mpiexec -n "$SLURM_NTASKS" {sys.executable} -m engine.cli demo {sets}\n')
    code, job = slurm_cluster.sbatch_wait(script, [], _env(), sbatch_options=["-n", 2], cwd=tmp_path,
                                          timeout=TIMEOUT + 30)
    out = slurm_cluster.job_output(job)
    assert code == 0, f"sbatch --wait returned {code}\n{out}\n{slurm_cluster.logs(15)}"
    assert slurm_cluster.job_state(job) == {"State": "COMPLETED", "ExitCode": "0:0"}, out
    assert "3 members, 2 MPI rank(s), 1 cycles of 2 days" in out
    table = out.split("CTL and CN against truth (like the study's Table II)", 1)[1].split("\n\n", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^[-0-9]\s+(Global|Central Africa|Eastern Amazonia)\b.*$",
                                                        table, re.M)}
    assert set(rows) == {"Global", "Central Africa", "Eastern Amazonia"}, table
    glob = rows["Global"].split()
    assert int(glob[4]) > 0 and all(re.fullmatch(r"-?\d+\.\d\d", v) for v in glob[6:10]), rows["Global"]
    assert "(like the study's Table III)" in out
    assert (run_dir / "ctl" / "ctl.h0.c00001.nc").is_file()


def test_chain_of_two_jobs_and_the_report(slurm_cluster, tmp_path):  # noqa: F811
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    r, ids = _submit(slurm_cluster, ["-n", 2, "-k", 1, "-t", "00:20:00", "--report-time", "00:05:00",
                                     "--launcher", "srun", config], tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    run_dir = tmp_path / "chain-run"  # run.run_dir, relative to where the chain was submitted
    assert f"experiment chain: 2 cycles in {run_dir}; no checkpoint yet: the first job spins up" in r.stdout
    assert "plan: 2 job(s) of up to 1 cycles on 2 rank(s) (srun)" in r.stdout
    assert len(ids) == 3
    first, second, report = ids
    assert f"job {first}: chain-1 (spin-up, cycles 1-1 of 2)" in r.stdout
    assert f"job {second}: chain-2 (cycles 2-2 of 2)" in r.stdout
    _wait_gone(slurm_cluster, ids)
    logs = {j: _log(run_dir, n, j) for j, n in zip(ids, ("chain-1", "chain-2", "chain-report"))}
    why = "\n".join(f"--- job {j}:\n{t}" for j, t in logs.items())
    for j in ids:
        assert slurm_cluster.job_state(j) == {"State": "COMPLETED", "ExitCode": "0:0"}, why
    # afterok: each job started only after the one before it ended
    assert _times(slurm_cluster, second)[0] >= _times(slurm_cluster, first)[1]
    assert _times(slurm_cluster, report)[0] >= _times(slurm_cluster, second)[1]
    assert "2 tasks, launcher srun" in logs[first] and "2 rank(s); rank 0 holds 19 cells" in logs[first]
    assert "spin-up done (2 + 0 + 1 days)" in logs[first] and "laida run: cycle 1 of 2 done" in logs[first]
    assert "resuming from cycle 1 (2002-01-03T00:00:00)" in logs[second], logs[second]
    assert "spin-up" not in logs[second] and "laida run: cycle 2 of 2 done" in logs[second]
    for exp in ("nature", "ctl", "cn"):
        d = run_dir / exp
        assert sorted(p.name for p in d.glob("checkpoint_*.h5")) == ["checkpoint_000001.h5", "checkpoint_000002.h5"]
        with h5py.File(d / "checkpoint_000002.h5", "r") as f:
            assert int(f.attrs["cycle"]) == 2  # the final checkpoint is the last cycle
        assert sorted(p.name for p in d.glob(f"{exp}.h0.*.nc")) == [f"{exp}.h0.c00001.nc", f"{exp}.h0.c00002.nc"]
    text = (run_dir / "report.txt").read_text()
    assert "ctl: 2 history segment(s): ctl.h0.c00001.nc, ctl.h0.c00002.nc" in text
    assert "history: 4 records from 2002-01-01 to 2002-01-05 (4 days, 2 of the run's 2 cycles)" in text
    assert "CTL and CN against truth (like the study's Table II)" in text
    assert re.search(r"^-\s+Global\s+180W-180E\s+90S-90N\s+(\d+)\s", text, re.M).group(1) == str(4 * 38)
    assert "Central Africa" in text and "(like the study's Table III)" in text
    # submitting again finds the run complete: only a report job
    r, ids = _submit(slurm_cluster, ["--dry-run", config], tmp_path)
    assert "all 2 cycles are done" in r.stdout and "plan: 0 job(s)" in r.stdout and ids == ["job1"]
    assert r.stdout.count("sbatch --parsable") == 1 and "--report" in r.stdout


def test_failing_first_job_cancels_the_chain(slurm_cluster, tmp_path):  # noqa: F811
    """A configuration engine.config accepts but the experiment refuses (one member) fails job 1 with
    exit code 2; the jobs that depend on it never run: Slurm cancels them (--kill-on-invalid-dep)."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    r, ids = _submit(slurm_cluster, ["-n", 2, "-k", 1, "-t", "00:20:00", "-s", "ensemble.members=1",
                                     "-s", f"run.run_dir={tmp_path / 'bad-run'}", config], tmp_path)
    assert r.returncode == 0 and len(ids) == 3, r.stdout + r.stderr
    _wait_gone(slurm_cluster, ids)
    run_dir = tmp_path / "bad-run"
    out = _log(run_dir, "chain-1", ids[0])
    assert slurm_cluster.job_state(ids[0]) == {"State": "FAILED", "ExitCode": "2:0"}, out
    assert "the experiment needs at least 2 members" in out and "laida run failed with exit code 2" in out
    for j in ids[1:]:
        assert slurm_cluster.job_state(j)["State"] == "CANCELLED"
    assert not list((run_dir / "jobs").glob("chain-2-*.out")) and not list((run_dir / "jobs").glob("chain-report-*"))
    assert not (run_dir / "report.txt").exists()


def test_usage_errors(slurm_cluster, tmp_path):  # noqa: F811
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    r, _ = _submit(slurm_cluster, ["-s", "ensemble.members=0", config], tmp_path)
    assert r.returncode == 2 and "configuration error" in r.stderr and "ensemble.members" in r.stderr
    r, _ = _submit(slurm_cluster, ["-s", "time.stop=2002-01-02", config], tmp_path)
    assert r.returncode == 2 and "shorter than one cycle" in r.stderr
    r, _ = _submit(slurm_cluster, ["-t", "1:00:00:00", config], tmp_path)
    assert r.returncode == 2 and "not a Slurm time" in r.stderr
    r, _ = _submit(slurm_cluster, [tmp_path / "missing.toml"], tmp_path)
    assert r.returncode == 2 and "no configuration file" in r.stderr
    # the job script refuses bad arguments with exit code 2 and says how to call it
    code, job = slurm_cluster.sbatch_wait(SBATCH, [config, "zero"], _env(), sbatch_options=["-n", 1], cwd=tmp_path)
    assert code == 2 and "CYCLES must be a positive number" in slurm_cluster.job_output(job)
    code, job = slurm_cluster.sbatch_wait(SBATCH, [config], _env(), sbatch_options=["-n", 1], cwd=tmp_path)
    assert code == 2 and "usage: sbatch [-n N] slurm/experiment.sbatch CONFIG CYCLES" in slurm_cluster.job_output(job)


def test_timeout_stops_the_run_with_a_message(slurm_cluster, tmp_path):  # noqa: F811
    """EXPERIMENT_TIMEOUT (default: the job's remaining wall time less a margin) ends the run: exit 124."""
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    env = dict(_env(), EXPERIMENT_TIMEOUT="2")  # less than the start-up of Python, MPI and the grid
    code, job = slurm_cluster.sbatch_wait(SBATCH, [config, 1, f"run.run_dir={tmp_path / 'run'}"], env,
                                          sbatch_options=["-n", 2], cwd=tmp_path, timeout=120)
    out = slurm_cluster.job_output(job)
    assert code == 124, out
    assert slurm_cluster.job_state(job) == {"State": "FAILED", "ExitCode": "124:0"}, out
    assert "time limit 2 s" in out and "laida run stopped after EXPERIMENT_TIMEOUT=2 s" in out
    assert not list((tmp_path / "run").glob("*/checkpoint_*.h5"))
    # without EXPERIMENT_TIMEOUT the limit is the job's remaining wall time less 60 s
    code, job = slurm_cluster.sbatch_wait(SBATCH, ["--report", tmp_path / "missing"], _env(),
                                          sbatch_options=["-n", 1, "--time", "00:03:00"], cwd=tmp_path)
    out = slurm_cluster.job_output(job)
    assert code == 1 and re.search(r"time limit 1[0-2]\d s", out), out
    assert f"laida report: {tmp_path / 'missing'}: no such run directory" in out


def test_global_f09_plan(slurm_cluster, tmp_path):  # noqa: F811
    """The study's global experiment: 45 eight-day cycles from 2002-01-01 to 2003-01-01, 3 jobs of 15."""
    r, ids = _submit(slurm_cluster, ["--dry-run", "-n", 64, "-k", 15, "-t", "01:00:00", "--first-time", "02:00:00",
                                     "-s", f"run.run_dir={tmp_path / 'g'}", REPO / "slurm" / "global_f09.toml"],
                     tmp_path)
    assert r.returncode == 0, r.stderr
    assert ids == ["job1", "job2", "job3", "job4"] and not (tmp_path / "g").exists()  # submits, writes nothing
    assert "experiment global_f09: 45 cycles" in r.stdout and "plan: 3 job(s) of up to 15 cycles on 64 rank(s)" in r.stdout
    cmds = [line for line in r.stdout.splitlines() if line.startswith("sbatch ")]
    assert len(cmds) == 4
    assert "--time=02:00:00" in cmds[0] and "--dependency" not in cmds[0] and "--ntasks=64" in cmds[0]
    assert "--time=01:00:00" in cmds[1] and "--dependency=afterok:job1" in cmds[1]
    assert "--dependency=afterok:job2" in cmds[2] and "--dependency=afterok:job3" in cmds[3]
    assert all(f"{SBATCH} {REPO / 'slurm' / 'global_f09.toml'} 15 run.run_dir={tmp_path / 'g'}" in c for c in cmds[:3])
    assert "--ntasks=1" in cmds[3] and f"--report {tmp_path / 'g'} {tmp_path / 'g' / 'report.txt'}" in cmds[3]
    assert "job job3: global_f09-3 (cycles 31-45 of 45)" in r.stdout
