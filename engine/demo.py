"""`laida demo` (what `make demo` runs on 2 MPI ranks): the study's twin experiment, small.

The nature run, CTL and CN of :mod:`engine.experiment` on the global f45 grid (4 x 5 degrees, 1082
land cells, 2409 patches), starting 1 January 2002, then the study's evaluation tables
(:func:`engine.evaluation.evaluation_report`: LAI like Table II, T2m, NLW, HS, LE, ST and SM like
Table III) of CTL and CN against the truth, and where the files are.

Choices, for about 5 minutes on 2 cores after set-up: 12 members, a 1-hour model step (CLM4's
default is 30 minutes; the budgets are still checked every step), spin-up stages of 10, 5 and 10
days from a cold start with 100 gC/m2 of leaf carbon (the study: 4000 years, 1000 years, 4 years),
and six 8-day cycles (1 January to 18 February 2002). Measured on the development machine (2
cores shared with other jobs, load ~3): 5 min 32 s in all, of which about 55 s spin-up and 33-51 s
per 8-day cycle of the three runs on 2 ranks (~250,000 patch-member-steps per second); a longer
period costs about 45 s per 8 days, 16 members about 20 % more per cycle than 12.
Everything is a configuration key: a FILE or ``--set`` overrides the defaults
below (e.g. ``--set time.stop=2003-01-01`` for the whole year).

Reads the data packages (land cover, climate) through the experiment; writes ``<run_dir>/``
(``runs/demo`` by default): ``laida.log``, ``config.toml`` and ``nature/``, ``ctl/``, ``cn/``
(checkpoints, history, CN's observation diagnostics). A previous demo's ``nature/``, ``ctl/`` and
``cn/`` in the same run directory are removed first: the demo always starts from its spin-up.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from engine import __version__, comm
from engine import config as cfgmod
from engine import evaluation, experiment

DEMO_DEFAULTS = (
    "run.name=demo", "run.run_dir=runs/demo", "grid.name=f45", "ensemble.members=12",
    "time.start=2002-01-01", "time.stop=2002-02-18", "time.step_seconds=3600",
    "spinup.stage1_days=10", "spinup.stage2_days=5", "spinup.stage3_days=10",
)


def main(args) -> int:
    """Run the demo; ``args`` carries ``config`` (a TOML path or None) and ``overrides``."""
    cfg = cfgmod.load(getattr(args, "config", None), [*DEMO_DEFAULTS, *(getattr(args, "overrides", None) or [])])
    t0 = time.perf_counter()
    run_dir = Path(cfg.run.run_dir)
    if comm.is_root():
        for name in experiment.EXPERIMENTS:
            shutil.rmtree(run_dir / name, ignore_errors=True)
    comm.barrier()
    exp = experiment.Experiment(cfg)
    say(f"laida {__version__} demo: twin experiment on {cfg.grid.name} ({exp.grid.n_land} land cells, "
        f"{exp.surface.n_patch} patches), {exp.N} members, {comm.size()} MPI rank(s), {exp.n_cycles} cycles of "
        f"{cfg.experiment.cycle_days} days from {cfg.time.start}; the ensemble's slatop of PFT "
        f"{cfg.experiment.bias_pft} is {cfg.experiment.bias_slatop_factor} x the truth's")
    comm.run_collectively(exp.run)
    elapsed = time.perf_counter() - t0
    code = 0
    if comm.is_root():
        try:
            paths = {n: evaluation.history_segments(run_dir, n) for n in experiment.EXPERIMENTS}
            print(evaluation.evaluation_report(paths["ctl"], paths["cn"], paths["nature"]), flush=True)
        except evaluation.EvaluationError as exc:
            print(f"demo: evaluation failed: {exc}", flush=True)
            code = 1
        print(f"\ndemo done in {elapsed:.1f} s ({exp.n_cycles} cycles, {exp.N} members, {comm.size()} ranks)", flush=True)
        print(f"files in {run_dir.resolve()}:", flush=True)
        for n in experiment.EXPERIMENTS:
            files = sorted(p.name for p in (run_dir / n).iterdir())
            print(f"  {n}/: {', '.join(files)}", flush=True)
        print(f"  log: {run_dir.resolve() / 'laida.log'}", flush=True)
    return comm.bcast(code)


def say(text: str) -> None:
    if comm.is_root():
        print(text, flush=True)
