#!/bin/bash
# Submit a laida twin experiment to Slurm as a chain of dependent jobs, then a report job.
#
#   slurm/submit_experiment.sh [options] CONFIG
#
# Reads CONFIG (and the --set overrides) with engine.config, works out the number of assimilation cycles
# from time.start, time.stop and experiment.cycle_days exactly as engine.experiment does (whole cycles;
# a remainder shorter than a cycle is not run), subtracts the cycles the run directory already holds a
# complete checkpoint of (nature/, ctl/ and cn/), and submits ceil(remaining / K) jobs of
# slurm/experiment.sbatch, each `laida run CONFIG --cycles K`, each after the previous one succeeded
# (`--dependency=afterok`), then one report job (afterok on the last) that writes the evaluation tables of
# all history segments to <run_dir>/report.txt (`laida report`). The first job of a fresh run also does the
# spin-up. A failing job cancels the jobs after it (`--kill-on-invalid-dep=yes`); submitting the same
# command again continues from the newest checkpoint. Prints one line per job and, last, `jobs: ID ...`.
# Writes nothing but the job-output directory (unless --dry-run).
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
SBATCH_SCRIPT=$SCRIPT_DIR/experiment.sbatch

usage() {
  cat <<EOF
usage: slurm/submit_experiment.sh [options] CONFIG

Submits the experiment of CONFIG as a chain of Slurm jobs (slurm/experiment.sbatch), each running
\`laida run CONFIG --cycles K\` after the previous one succeeded, then a report job writing
<run_dir>/report.txt.

options:
  -n, --ntasks N            MPI ranks of each experiment job (default 4)
  -k, --cycles-per-job K    assimilation cycles per job (default 8)
  -t, --time T              wall time of each experiment job, Slurm format (default 02:00:00)
      --first-time T        wall time of the first job when it spins up (default: --time)
      --report-time T       wall time of the report job (default 00:30:00)
  -s, --set SECTION.KEY=VALUE
                            override a configuration key in every job (repeatable)
      --launcher L          mpiexec or srun (default: \$LAUNCHER, else mpiexec)
      --log-dir DIR         where the jobs' output goes (default <run_dir>/jobs)
      --sbatch-opt OPT      one more sbatch option for every job, e.g. --sbatch-opt=--partition=compute
                            (repeatable)
      --dry-run             print the sbatch commands, submit nothing
  -h, --help                this text

environment: LAIDA_ROOT (default: the tree holding this script), LAIDA_PYTHON (default
\$LAIDA_ROOT/.venv/bin/python), LAUNCHER; passed on to the jobs.
EOF
}
die() {
  echo "submit_experiment.sh: $*" >&2
  exit 2
}

NTASKS=4
CYCLES_PER_JOB=8
TIME=02:00:00
FIRST_TIME=""
REPORT_TIME=00:30:00
SETS=()
LOG_DIR=""
EXTRA=()
DRY_RUN=0
CONFIG=""
LAUNCHER=${LAUNCHER:-mpiexec}

need() { [[ $# -ge 2 && -n $2 ]] || die "option $1 needs a value (see --help)"; }
while [[ $# -gt 0 ]]; do
  case $1 in
    -n | --ntasks) need "$@"; NTASKS=$2; shift 2 ;;
    --ntasks=*) NTASKS=${1#*=}; shift ;;
    -k | --cycles-per-job) need "$@"; CYCLES_PER_JOB=$2; shift 2 ;;
    --cycles-per-job=*) CYCLES_PER_JOB=${1#*=}; shift ;;
    -t | --time) need "$@"; TIME=$2; shift 2 ;;
    --time=*) TIME=${1#*=}; shift ;;
    --first-time) need "$@"; FIRST_TIME=$2; shift 2 ;;
    --first-time=*) FIRST_TIME=${1#*=}; shift ;;
    --report-time) need "$@"; REPORT_TIME=$2; shift 2 ;;
    --report-time=*) REPORT_TIME=${1#*=}; shift ;;
    -s | --set) need "$@"; SETS+=("$2"); shift 2 ;;
    --set=*) SETS+=("${1#*=}"); shift ;;
    --launcher) need "$@"; LAUNCHER=$2; shift 2 ;;
    --launcher=*) LAUNCHER=${1#*=}; shift ;;
    --log-dir) need "$@"; LOG_DIR=$2; shift 2 ;;
    --log-dir=*) LOG_DIR=${1#*=}; shift ;;
    --sbatch-opt) need "$@"; EXTRA+=("$2"); shift 2 ;;
    --sbatch-opt=*) EXTRA+=("${1#*=}"); shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; [[ $# -eq 1 && -z $CONFIG ]] || die "exactly one CONFIG expected"; CONFIG=$1; shift ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) [[ -z $CONFIG ]] || die "exactly one CONFIG expected, got '$CONFIG' and '$1'"; CONFIG=$1; shift ;;
  esac
done
[[ -n $CONFIG ]] || { usage >&2; exit 2; }

[[ $NTASKS =~ ^[1-9][0-9]*$ ]] || die "--ntasks must be a positive number of ranks, got '$NTASKS'"
[[ $CYCLES_PER_JOB =~ ^[1-9][0-9]*$ ]] || die "--cycles-per-job must be a positive number of cycles, got '$CYCLES_PER_JOB'"
FIRST_TIME=${FIRST_TIME:-$TIME}
TIME_RE='^([0-9]+-)?[0-9]+(:[0-9]+){0,2}$'
for t in "$TIME" "$FIRST_TIME" "$REPORT_TIME"; do
  [[ $t =~ $TIME_RE ]] || die "wall time '$t' is not a Slurm time (MM, MM:SS, HH:MM:SS or D-HH:MM:SS)"
done
case $LAUNCHER in
  mpiexec | srun) ;;
  *) die "--launcher must be mpiexec or srun, got '$LAUNCHER'" ;;
esac
for kv in "${SETS[@]}"; do
  [[ $kv == *.*=* ]] || die "--set takes SECTION.KEY=VALUE, got '$kv'"
done
[[ -f $CONFIG ]] || die "no configuration file $CONFIG"
CONFIG=$(realpath -- "$CONFIG")

export LAIDA_ROOT=${LAIDA_ROOT:-$(cd -- "$SCRIPT_DIR/.." && pwd)}
export LAIDA_PYTHON=${LAIDA_PYTHON:-$LAIDA_ROOT/.venv/bin/python}
export LAUNCHER
[[ -x $LAIDA_PYTHON ]] || die "LAIDA_PYTHON=$LAIDA_PYTHON is not an executable (run \`make setup\` in $LAIDA_ROOT)"
[[ -f $LAIDA_ROOT/engine/config.py ]] || die "LAIDA_ROOT=$LAIDA_ROOT has no engine/config.py (set LAIDA_ROOT)"

# The plan from the configuration (engine.config only: no grid, no MPI): name, absolute run directory,
# number of cycles, cycles already checkpointed in nature/, ctl/ and cn/ (-1: none, a fresh run).
PLAN=$(PYTHONPATH=$LAIDA_ROOT${PYTHONPATH:+:$PYTHONPATH} "$LAIDA_PYTHON" - "$CONFIG" "${SETS[@]}" <<'PY'
import re
import sys
from pathlib import Path

from engine import config as cfgmod

try:
    cfg = cfgmod.load(sys.argv[1], sys.argv[2:])
except cfgmod.ConfigError as exc:
    sys.exit(f"submit_experiment.sh: {sys.argv[1]}: configuration error: {exc}")
start, stop = cfgmod.parse_date(cfg.time.start), cfgmod.parse_date(cfg.time.stop)
cycle_s = int(cfg.experiment.cycle_days) * 86400
n_cycles = int((stop - start).total_seconds() // cycle_s)  # as engine.experiment.Experiment counts them
if n_cycles < 1:
    sys.exit(f"submit_experiment.sh: {sys.argv[1]}: time.start = {cfg.time.start}, time.stop = {cfg.time.stop} "
             f"is shorter than one cycle of experiment.cycle_days = {cfg.experiment.cycle_days} days")
run_dir = Path(cfg.run.run_dir).resolve()  # relative to where the chain is submitted
done = -1
newest = []
for name in ("nature", "ctl", "cn"):  # engine.experiment.Experiment.newest_cycle, from the file names
    cycles = {int(m.group(1)) for p in (run_dir / name).glob("checkpoint_*.h5")
              if (m := re.fullmatch(r"checkpoint_(\d+)\.h5", p.name))}
    newest.append(cycles)
if all(newest):
    c = min(max(s) for s in newest)
    if all(c in s for s in newest):
        done = c
print(cfg.run.name)
print(run_dir)
print(n_cycles)
print(done)
PY
) || exit 2
mapfile -t plan <<<"$PLAN"
NAME=${plan[0]}
RUN_DIR=${plan[1]}
N_CYCLES=${plan[2]}
DONE=${plan[3]}
LOG_DIR=$(realpath -m -- "${LOG_DIR:-$RUN_DIR/jobs}")

first=$((DONE < 0 ? 1 : DONE + 1))
remaining=$((N_CYCLES - first + 1))
N_JOBS=$(((remaining + CYCLES_PER_JOB - 1) / CYCLES_PER_JOB))
if ((DONE < 0)); then
  echo "experiment $NAME: $N_CYCLES cycles in $RUN_DIR; no checkpoint yet: the first job spins up"
elif ((DONE >= N_CYCLES)); then
  echo "experiment $NAME: all $N_CYCLES cycles are done in $RUN_DIR (checkpoint of cycle $DONE): only the report job"
else
  echo "experiment $NAME: $N_CYCLES cycles in $RUN_DIR; checkpoint of cycle $DONE found: continuing from it"
fi
if ((N_JOBS < 0)); then N_JOBS=0; fi
echo "plan: $N_JOBS job(s) of up to $CYCLES_PER_JOB cycles on $NTASKS rank(s) ($LAUNCHER), then a report job;" \
     "job output in $LOG_DIR"

show() { printf '%q ' "$@" | sed 's/ $//'; echo; }
submit() {  # submit "$@" (an sbatch command line); sets JOBID (a placeholder in a dry run)
  if ((DRY_RUN)); then
    show "$@"
    JOBID="job$((${#IDS[@]} + 1))"
    return
  fi
  local out
  if ! out=$("$@"); then
    echo "submit_experiment.sh: sbatch failed; jobs submitted so far: ${IDS[*]:-none}" \
         "(scancel them, or let them run and submit again later: the chain continues from the newest checkpoint)" >&2
    exit 1
  fi
  JOBID=${out%%;*}  # --parsable prints "jobid[;cluster]"
  [[ $JOBID =~ ^[0-9]+$ ]] || { echo "submit_experiment.sh: sbatch printed '$out', not a job id" >&2; exit 1; }
}

if ((DRY_RUN)); then
  echo "dry run: the sbatch commands, with LAIDA_ROOT=$LAIDA_ROOT LAIDA_PYTHON=$LAIDA_PYTHON LAUNCHER=$LAUNCHER" \
       "in their environment (job1, job2, ...: the ids sbatch would print):"
else
  mkdir -p -- "$LOG_DIR"
fi
IDS=()
prev=""
OVERRIDES=()
for kv in "${SETS[@]}"; do
  [[ $kv == run.run_dir=* ]] || OVERRIDES+=("$kv")  # replaced by the absolute path below
done
OVERRIDES+=("run.run_dir=$RUN_DIR")
for ((j = 1; j <= N_JOBS; j++)); do
  a=$((first + (j - 1) * CYCLES_PER_JOB))
  b=$((a + CYCLES_PER_JOB - 1 < N_CYCLES ? a + CYCLES_PER_JOB - 1 : N_CYCLES))
  t=$TIME
  what="cycles $a-$b"
  if ((j == 1 && DONE < 0)); then
    t=$FIRST_TIME
    what="spin-up, $what"
  fi
  cmd=(sbatch --parsable --kill-on-invalid-dep=yes --job-name="$NAME-$j" --ntasks="$NTASKS" --time="$t"
       --output="$LOG_DIR/%x-%j.out" "${EXTRA[@]}")
  [[ -n $prev ]] && cmd+=(--dependency="afterok:$prev")
  cmd+=("$SBATCH_SCRIPT" "$CONFIG" "$CYCLES_PER_JOB" "${OVERRIDES[@]}")
  submit "${cmd[@]}"
  prev=$JOBID
  IDS+=("$prev")
  echo "job $prev: $NAME-$j ($what of $N_CYCLES)"
done
cmd=(sbatch --parsable --kill-on-invalid-dep=yes --job-name="$NAME-report" --ntasks=1 --time="$REPORT_TIME"
     --output="$LOG_DIR/%x-%j.out" "${EXTRA[@]}")
[[ -n $prev ]] && cmd+=(--dependency="afterok:$prev")
cmd+=("$SBATCH_SCRIPT" --report "$RUN_DIR" "$RUN_DIR/report.txt")
submit "${cmd[@]}"
IDS+=("$JOBID")
echo "job $JOBID: $NAME-report (evaluation tables to $RUN_DIR/report.txt)"
echo "jobs: ${IDS[*]}"
