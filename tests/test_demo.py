"""`laida demo` (what `make demo` runs) on 2 MPI ranks, end to end, in a temporary run directory."""

import subprocess
import sys
from pathlib import Path

from engine import comm

REPO = Path(__file__).resolve().parents[1]


def test_demo_on_two_ranks(tmp_path):
    run_dir = tmp_path / "demo"
    cmd = ["timeout", "300", "mpiexec", "-n", "2", sys.executable, "-m", "engine.cli", "demo",
           "--set", f"run.run_dir={run_dir}", "--set", "ensemble.members=8"]
    proc = subprocess.run(cmd, cwd=REPO, env=comm.child_mpiexec_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "grid f45: 46 x 72" in out
    assert "rank 1: land cells" in out
    assert "read back by other ranks: identical" in out
    assert (run_dir / "checkpoint_000000.h5").is_file()
    assert "config | " in (run_dir / "laida.log").read_text()  # the resolved configuration is logged
