"""`laida demo` (what `make demo` runs) on 2 MPI ranks, end to end, in a temporary run directory.

The demo's defaults take about 5 minutes; the test runs the same code on the tropical band of the
f45 grid with 4 members, one cycle and a 3-day spin-up, and checks that it prints the study's two
tables for CTL and CN against the truth and writes the files it names.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from engine import comm

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_on_two_ranks(tmp_path):
    run_dir = tmp_path / "demo"
    small = ["grid.lat_min=-10", "grid.lat_max=10", "ensemble.members=4", "time.stop=2002-01-09",
             "spinup.stage1_days=1", "spinup.stage2_days=1", "spinup.stage3_days=1", f"run.run_dir={run_dir}"]
    cmd = ["timeout", "300", "mpiexec", "-n", "2", sys.executable, "-m", "engine.cli", "demo"]
    for s in small:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=REPO, env=comm.child_mpiexec_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "twin experiment on f45" in out and "4 members, 2 MPI rank(s), 1 cycles of 8 days" in out
    assert "CTL and CN against truth (like the study's Table II)" in out
    assert "Central Africa" in out and "Eastern Amazonia" in out
    assert "(like the study's Table III)" in out and "T2m" in out and "NLW" in out
    assert f"files in {run_dir.resolve()}" in out
    for name in ("nature", "ctl", "cn"):
        assert (run_dir / name / f"{name}.h0.c00001.nc").is_file()
        assert (run_dir / name / "checkpoint_000001.h5").is_file()
    assert (run_dir / "cn" / "cn.obs_diag.c00001.nc").is_file()
    log = (run_dir / "laida.log").read_text()
    assert "config | " in log and "cycle 1/1" in log  # the resolved configuration and the progress line
