"""A real one-node Slurm (Debian slurm-wlm + munge) started and stopped by the tests, as root.

``SlurmCluster`` writes a private ``slurm.conf`` into a temporary directory (state, spool, pid files,
logs, job output and the job-completion log all live there), picks free TCP ports so that a stale
daemon or a second test run cannot collide, starts ``slurmctld`` and ``slurmd`` in the foreground
(``-D``, so their pids are known from the start; each also writes its pid file), starts ``munged``
only if no munge daemon answers, and waits until the node is idle. ``stop()`` cancels this cluster's
jobs, stops exactly the processes it started (checked against their pid files) and removes the
directory. The settings follow ENV.md ("A real one-node Slurm"): the node advertises ``cpus`` CPUs
(4) on a 2-core machine through ``SlurmdParameters=config_overrides``.

Use it as the ``slurm_cluster`` pytest fixture (session scope):
``from slurm_cluster import slurm_cluster  # noqa`` in a test module, or by hand::

    with SlurmCluster() as c:
        code, job = c.sbatch_wait("slurm/smoke.sbatch", ["out"], {"LAUNCHER": "srun"}, sbatch_options=["-n", "4"])

Reads and writes no model state; writes only its temporary directory (and, if missing, installs the
Debian packages and a munge key, as ``make setup`` would).
"""

from __future__ import annotations

import ctypes
import os
import re
import secrets
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

# Variables from a surrounding MPI launch or Slurm job that must not leak into our daemons or jobs
# (an OMPI_COMM_WORLD_SIZE or SLURM_JOB_ID from the caller would mislead Open MPI and srun).
_LEAKY_PREFIXES = ("OMPI_", "OPAL_", "ORTE_", "PRTE_", "PMIX_", "PMI_", "SLURM_", "SLURMD_", "SBATCH_", "SRUN_",
                   "SALLOC_", "SQUEUE_", "SINFO_", "SACCT_", "SCONTROL_")
MUNGE_KEY = Path("/etc/munge/munge.key")
MUNGE_RUN = Path("/run/munge")


class SlurmError(RuntimeError):
    """The cluster could not be started, or a Slurm command failed; the message holds the logs."""


def _free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports nobody listens on now (the kernel's choices for ephemeral binds)."""
    socks = []
    try:
        for _ in range(n):  # all bound at once, so the kernel cannot hand out the same port twice
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:  # runs in the child between fork and exec
    """Ask the kernel to SIGTERM the daemon if the test process dies without calling stop()."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception:  # noqa: BLE001 - best effort only; stop() is the real clean-up
        pass


def _pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (an exited daemon not yet reaped by init)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"    ({path}: {exc})"
    return "\n".join("    " + line for line in text[-lines:]) or f"    ({path} is empty)"


def clean_environment(extra: dict | None = None) -> dict:
    """os.environ without MPI-launcher and Slurm variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES)}
    env.update(extra or {})
    return env


class SlurmCluster:
    """One slurmctld + one slurmd (+ munged if none runs) on this host, private to one test session.

    Parameters: ``cpus`` the CPUs the node advertises; ``start_timeout`` seconds to wait for the node
    to become idle; ``prefix`` of the temporary directory.
    """

    DAEMONS = ("slurmctld", "slurmd")

    def __init__(self, cpus: int = 4, start_timeout: float = 30.0, prefix: str = "laida-slurm-"):
        self.cpus = int(cpus)
        self.start_timeout = float(start_timeout)
        self.prefix = prefix
        self.host = socket.gethostname().split(".")[0]  # what `hostname -s` prints
        self.workdir: Path | None = None
        self.conf: Path | None = None
        self.ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen] = {}
        self._munged_pid: int | None = None  # set only if this object started munged
        self._munged_pidfile: Path | None = None

    # ----------------------------------------------------------------------------------- set-up
    @staticmethod
    def ensure_installed() -> None:
        """apt-get install slurm-wlm and munge if ``slurmctld`` is missing (normally `make setup` did)."""
        if shutil.which("slurmctld") and shutil.which("munged") and shutil.which("sbatch"):
            return
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "slurm-wlm", "munge"]):
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
            if r.returncode != 0:
                raise SlurmError(f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")
        if not shutil.which("slurmctld"):
            raise SlurmError("slurm-wlm installed but slurmctld is still not on PATH")

    @staticmethod
    def ensure_munge_key() -> None:
        """Create /etc/munge/munge.key (1024 random bytes, owner munge, mode 0400) if there is none."""
        if MUNGE_KEY.exists():
            return
        MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
        if shutil.which("mungekey"):
            r = subprocess.run(["mungekey", "--create", "--keyfile", str(MUNGE_KEY)], capture_output=True, text=True)
            if r.returncode != 0:
                raise SlurmError(f"mungekey --create failed: {r.stderr.strip()}")
        else:
            fd = os.open(MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(1024))
        shutil.chown(MUNGE_KEY, "munge", "munge")
        shutil.chown(MUNGE_KEY.parent, "munge", "munge")
        os.chmod(MUNGE_KEY, 0o400)

    @staticmethod
    def munge_works() -> bool:
        """True if a munge daemon answers: a credential made by ``munge -n`` decodes with ``unmunge``."""
        if not (shutil.which("munge") and shutil.which("unmunge")):
            return False
        try:
            cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
            if cred.returncode != 0:
                return False
            return subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _start_munged(self) -> None:
        if self.munge_works():
            return
        MUNGE_RUN.mkdir(parents=True, exist_ok=True)
        shutil.chown(MUNGE_RUN, "munge", "munge")
        pidfile = MUNGE_RUN / "munged.pid"
        r = subprocess.run(["runuser", "-u", "munge", "--", shutil.which("munged") or "/usr/sbin/munged"],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SlurmError(f"munged did not start ({r.returncode}): {r.stderr.strip()} {r.stdout.strip()}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (pidfile.exists() and self.munge_works()):
            time.sleep(0.1)
        if not pidfile.exists():
            raise SlurmError(f"munged started but wrote no pid file {pidfile}")
        self._munged_pid = int(pidfile.read_text().split()[0])
        self._munged_pidfile = pidfile
        if not self.munge_works():
            raise SlurmError(f"munged (pid {self._munged_pid}) runs but `munge -n | unmunge` fails")

    def _write_conf(self) -> None:
        w = self.workdir
        for sub in ("state", "spool", "tmp", "jobs"):
            (w / sub).mkdir()
        self.ports = dict(zip(("ctld", "slurmd"), _free_ports(2)))
        first_job = 1000 + secrets.randbelow(900_000)  # job ids unlikely to meet another cluster's
        settings = {
            "ClusterName": "laida-test",
            "SlurmctldHost": self.host,
            "SlurmctldPort": self.ports["ctld"],
            "SlurmdPort": self.ports["slurmd"],
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "StateSaveLocation": w / "state",
            "SlurmdSpoolDir": w / "spool",
            "TmpFS": w / "tmp",
            "SlurmctldPidFile": w / "slurmctld.pid",
            "SlurmdPidFile": w / "slurmd.pid",
            "SlurmctldLogFile": w / "slurmctld.log",
            "SlurmdLogFile": w / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "AccountingStorageType": "accounting_storage/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": w / "jobcomp.txt",
            "SchedulerType": "sched/backfill",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_Core",
            "MpiDefault": "pmix",
            "ReturnToService": 2,
            "EnforcePartLimits": "ALL",  # an impossible request is rejected instead of pending forever
            "SlurmdParameters": "config_overrides",  # the node may advertise more CPUs than it has
            "FirstJobId": first_job,
            # `sbatch --wait` polls every 2 s only if MinJobAge < 6 (else after 2, 8, 32 s: sbatch.c
            # _job_wait); finished jobs then leave `scontrol show job` after 4 s, `sacct -c` keeps them.
            "MinJobAge": 4,
            "KillWait": 5,
            "MailProg": shutil.which("true") or "/bin/true",  # no mail; silences 'MailProg is invalid'
            "InactiveLimit": 0,
        }
        lines = ["# written by tests/slurm_cluster.py for a private one-node test cluster"]
        lines += [f"{k}={v}" for k, v in settings.items()]
        lines.append(f"NodeName={self.host} CPUs={self.cpus} State=UNKNOWN")
        lines.append(f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP")
        self.conf = w / "slurm.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> "SlurmCluster":
        """Install if needed, start munged (if none answers), slurmctld and slurmd; wait for an idle node."""
        if os.geteuid() != 0:
            raise SlurmError("SlurmCluster runs slurmctld/slurmd as root (SlurmUser=root): run as root")
        if self.workdir is not None:
            raise SlurmError("this SlurmCluster was already started")
        self.ensure_installed()
        self.ensure_munge_key()
        self.workdir = Path(tempfile.mkdtemp(prefix=self.prefix))
        try:
            self._start_munged()
            self._write_conf()
            for name in self.DAEMONS:
                log = open(self.workdir / f"{name}.stdout", "wb")
                with log:
                    self._procs[name] = subprocess.Popen(
                        [shutil.which(name) or f"/usr/sbin/{name}", "-D", "-f", str(self.conf)],
                        env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                        cwd=self.workdir, start_new_session=True, preexec_fn=_die_with_parent,
                    )
            self._wait_idle()
        except BaseException as exc:
            logs = self.logs()
            self.stop()
            if isinstance(exc, SlurmError):
                raise SlurmError(f"{exc}\n{logs}") from None
            raise SlurmError(f"starting the test Slurm failed: {type(exc).__name__}: {exc}\n{logs}") from exc
        return self

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        state = ""
        while time.monotonic() < deadline:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SlurmError(f"{name} exited with code {proc.returncode} while starting")
            try:
                r = self.run(["sinfo", "-h", "-N", "-n", self.host, "-o", "%T"], check=False, timeout=3)
            except subprocess.TimeoutExpired:
                continue  # the controller is not answering yet
            state = r.stdout.strip()
            if r.returncode == 0 and state == "idle":
                return
            time.sleep(0.2)
        raise SlurmError(f"node {self.host} not idle after {self.start_timeout:.0f} s (sinfo state {state!r})")

    # ----------------------------------------------------------------------------------- use
    def env(self, extra: dict | None = None) -> dict:
        """The environment for this cluster's commands and jobs: clean of launcher variables, with SLURM_CONF."""
        if self.conf is None:
            raise SlurmError("the cluster is not started")
        env = clean_environment({"SLURM_CONF": str(self.conf)})
        env.update({k: str(v) for k, v in (extra or {}).items()})
        return env

    def run(self, cmd: list[str], *, check: bool = True, timeout: float = 30, env: dict | None = None,
            cwd=None) -> subprocess.CompletedProcess:
        """Run a Slurm client command (sinfo, squeue, scontrol, sacct, scancel) against this cluster."""
        r = subprocess.run(cmd, env=self.env(env), capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if check and r.returncode != 0:
            raise SlurmError(f"`{' '.join(cmd)}` failed ({r.returncode}): {r.stderr.strip()}")
        return r

    def sbatch_wait(self, script, args=(), env: dict | None = None, *, sbatch_options=(), cwd=None,
                    timeout: float = 120) -> tuple[int, int]:
        """Submit ``script args`` with ``sbatch --wait``; return (sbatch's exit code, job id).

        ``sbatch --wait`` exits with the job's exit code. ``env`` is added to the job's environment
        (sbatch's default --export=ALL); ``sbatch_options`` go before the script (e.g. ``["-n", "4"]``);
        a relative ``script`` is taken from the caller's working directory, the job runs in ``cwd``
        (default the cluster's directory; relative ``args`` are seen from there) and writes its output to
        ``job_output(job_id)``. A job still running after ``timeout`` seconds is cancelled and raises.
        """
        output = self.workdir / "jobs" / "job-%j.out"
        cmd = ["sbatch", "--parsable", "--wait", f"--output={output}", *map(str, sbatch_options), str(Path(script).resolve()),
               *map(str, args)]
        proc = subprocess.Popen(cmd, env=self.env(env), cwd=cwd or self.workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        job_id = None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            line = proc.stdout.readline() if ready else ""
            m = re.match(r"\s*(\d+)", line)
            if m is None:
                proc.kill()
                out, err = proc.communicate(timeout=10)
                raise SlurmError(f"`{' '.join(cmd)}` did not submit a job: {line}{out}{err.strip()}")
            job_id = int(m.group(1))
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            if job_id is not None:
                self.run(["scancel", str(job_id)], check=False)
            raise SlurmError(f"job {job_id} ({script}) did not finish within {timeout:.0f} s:\n"
                             f"{self.job_output(job_id) if job_id else ''}") from None
        proc.communicate()
        return proc.returncode, job_id

    def job_state(self, job_id: int, timeout: float = 10) -> dict:
        """``State`` and ``ExitCode`` of a finished job from ``sacct -c`` (the jobcomp/filetxt log).

        The completion log keeps every job, unlike ``scontrol show job`` whose records go after
        MinJobAge; slurmctld appends the record as the job ends, so it is awaited up to ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while True:
            r = self.run(["sacct", "-c", "-j", str(job_id), "-n", "-P", "-o", "JobID,State,ExitCode"], check=False)
            for line in r.stdout.splitlines():
                fields = line.strip().split("|")
                if len(fields) == 3 and fields[0] == str(job_id):
                    return {"State": fields[1], "ExitCode": fields[2]}
            if time.monotonic() > deadline:
                raise SlurmError(f"`sacct -c -j {job_id}` has no record of the job ({r.returncode}): "
                                 f"{r.stdout.strip()} {r.stderr.strip()}")
            time.sleep(0.2)

    def job_output(self, job_id: int) -> str:
        path = self.workdir / "jobs" / f"job-{job_id}.out"
        return path.read_text(errors="replace") if path.exists() else f"({path} does not exist)"

    def logs(self, lines: int = 30) -> str:
        """The tails of the daemons' logs, for error messages."""
        if self.workdir is None:
            return ""
        parts = []
        for name in ("slurmctld.log", "slurmctld.stdout", "slurmd.log", "slurmd.stdout"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {path} (last {lines} lines)\n{_tail(path, lines)}")
        return "\n".join(parts)

    # ----------------------------------------------------------------------------------- tear-down
    def stop(self) -> None:
        """Cancel this cluster's jobs, stop the daemons this object started, remove its directory."""
        errors = []
        if self._procs.get("slurmctld") is not None and self._procs["slurmctld"].poll() is None:
            try:
                self.run(["scancel", "--user", str(os.geteuid())], check=False, timeout=10)
            except Exception as exc:  # noqa: BLE001
                errors.append(f"scancel: {exc}")
        for name in reversed(self.DAEMONS):  # slurmd first, then its controller
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            pidfile = self.workdir / f"{name}.pid"
            if pidfile.exists():
                try:
                    recorded = int(pidfile.read_text().split()[0])
                except (ValueError, IndexError):
                    recorded = None
                if recorded is not None and recorded != proc.pid and proc.poll() is None:
                    errors.append(f"{name}: pid file says {recorded}, started pid {proc.pid}; stopped {proc.pid}")
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        if self._munged_pid is not None:
            pid, self._munged_pid = self._munged_pid, None
            if _pid_alive(pid):
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _pid_alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if errors:
            raise SlurmError("stopping the test Slurm: " + "; ".join(errors))

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@pytest.fixture(scope="session")
def slurm_cluster():
    """A started one-node Slurm for the whole session, stopped at the end even if tests fail."""
    if os.geteuid() != 0:
        pytest.skip("the test Slurm runs its daemons as root (SlurmUser=root); these tests need root")
    cluster = SlurmCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
