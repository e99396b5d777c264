"""The ``laida`` command (engine.cli) and engine.log, in-process and as the installed console script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine
from engine import cli, comm, config
from engine.log import get_logger

REPO = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = REPO / ".venv" / "bin" / "laida"
INFO_KEYS = {"laida", "python", "mpi_library", "ranks", "mpi4py", "h5py", "hdf5", "h5py_parallel", "numba",
             "numba_num_threads", "numba_cache_dir", "numpy", "netcdf4"}


def test_version_and_help(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"laida {engine.__version__}"
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("info", "config", "demo"):
        assert f"    {name} " in out
    assert cli.main([]) == 2  # no subcommand: usage on stderr
    assert "usage: laida" in capsys.readouterr().err
    assert cli.main(["frobnicate"]) == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


def test_info_prints_aligned_key_value_lines(capsys):
    assert cli.main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = [line.split(":", 1)[0] for line in lines]
    assert INFO_KEYS <= set(keys)
    columns = {len(line) - len(line.split(":", 1)[1].lstrip()) for line in lines}
    assert len(columns) == 1, "values must start in one column"
    assert f"ranks:{' ' * (columns.pop() - len('ranks:'))}{comm.size()}" in lines


def test_info_json_reports_the_real_environment(capsys):
    import h5py
    import numba
    import numpy

    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert INFO_KEYS <= set(info)
    assert info["laida"] == engine.__version__ and info["ranks"] == comm.size()
    assert info["mpi_library"] == comm.library_version() and "MPI" in info["mpi_library"]
    assert info["hdf5"] == h5py.version.hdf5_version
    assert info["h5py_parallel"] is True  # the project needs h5py built against parallel HDF5
    assert info["numba_num_threads"] == numba.config.NUMBA_NUM_THREADS
    assert info["numpy"] == numpy.__version__


def test_config_defaults_prints_the_commented_default_file(capsys, tmp_path):
    assert cli.main(["config", "--defaults"]) == 0
    out = capsys.readouterr().out
    assert out == config.defaults_toml()
    path = tmp_path / "defaults.toml"
    path.write_text(out)
    assert config.load(path) == config.load(None)
    assert cli.main(["config", "--defaults", str(path)]) == 2
    assert "takes no FILE" in capsys.readouterr().err


def test_config_file_with_overrides_prints_the_resolved_toml(capsys, tmp_path):
    path = tmp_path / "exp.toml"
    path.write_text('[grid]\nname = "f45"\n[ensemble]\nmembers = 4\n')
    assert cli.main(["config", str(path), "--set", "ensemble.members=6", "--set", "grid.lat_min=-60"]) == 0
    out = capsys.readouterr().out
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(out)
    cfg = config.load(resolved)
    assert (cfg.grid.name, cfg.ensemble.members, cfg.grid.lat_min) == ("f45", 6, -60.0)
    assert cfg == config.load(path, ["ensemble.members=6", "grid.lat_min=-60"])


def test_config_errors_exit_2_with_the_message_and_no_traceback(capsys, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[grid]\nnmae = "f19"\n')
    assert cli.main(["config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"laida: configuration error: {path}: grid.nmae: unknown key" in captured.err
    assert "did you mean grid.name?" in captured.err and "Traceback" not in captured.err
    assert cli.main(["config", "--set", "ensemble.members=0"]) == 2
    assert "--set ensemble.members=0: ensemble.members = 0: out of range" in capsys.readouterr().err
    path.write_text("[grid\n")
    assert cli.main(["config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def _run(cmd):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    for var in [v for v in env if v.startswith(("OMPI_COMM_WORLD", "PMIX_", "OMPI_MCA_orte", "OMPI_MCA_ess"))]:
        del env[var]  # a test started under mpiexec must not make the child join that job
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env, cwd=REPO)


def test_installed_console_script_info_json():
    cmd = [str(CONSOLE_SCRIPT), "info", "--json"]
    if not CONSOLE_SCRIPT.exists():  # not installed yet: the module form is the same entry point
        cmd = [sys.executable, "-m", "engine.cli", "info", "--json"]
    result = _run(cmd)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ranks"] == 1 and info["laida"] == engine.__version__ and info["h5py_parallel"] is True


def test_python_dash_m_engine_cli_reports_config_errors_without_traceback():
    result = _run([sys.executable, "-m", "engine.cli", "config", "--set", "grid.name=f10"])
    assert result.returncode == 2
    assert 'grid.name = "f10": not allowed' in result.stderr and "Traceback" not in result.stderr


def test_logger_writes_to_stderr_and_the_run_log(capsys, tmp_path):
    if comm.size() > 1:
        pytest.skip("serial test")
    logger = get_logger("laida.test", run_dir=tmp_path / "run", level="INFO")
    logger.debug("hidden")
    logger.info("cycle %d done", 3)
    logger = get_logger("laida.test", run_dir=tmp_path / "run", level="DEBUG")  # again: no duplicate handlers
    logger.debug("now shown")
    for h in logger.handlers:
        h.flush()
    err = capsys.readouterr().err
    assert "cycle 3 done" in err and "now shown" in err and "hidden" not in err
    assert err.count("cycle 3 done") == 1 and "[rank" not in err
    text = (tmp_path / "run" / "laida.log").read_text()
    assert "INFO    cycle 3 done" in text and text.count("now shown") == 1
    assert text.split()[0].endswith("Z")  # UTC time stamps
    with pytest.raises(ValueError, match="log level must be one of"):
        get_logger("laida.test", level="LOUD")
    config.log_config(config.load(None), logger)
    assert "config | members = 40" in capsys.readouterr().err
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()


@pytest.mark.mpi
def test_info_json_under_mpi_reports_the_rank_count(capsys):
    assert cli.main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    if comm.rank() == 0:
        assert json.loads(out)["ranks"] == comm.size()
    else:
        assert out == ""  # only rank 0 prints


@pytest.mark.mpi
def test_logger_other_ranks_show_warnings_only_with_their_rank(capsys, shared_tmp_path):
    logger = get_logger("laida.mpitest", run_dir=shared_tmp_path, level="INFO")
    logger.info("info from every rank")
    logger.warning("warning from every rank")
    for h in logger.handlers:
        h.flush()
    err = capsys.readouterr().err
    r = comm.rank()
    assert "warning from every rank" in err
    if r == 0:
        assert "info from every rank" in err and "[rank" not in err
    else:
        assert "info from every rank" not in err and f"[rank {r}] WARNING" in err
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    comm.barrier()
    text = (shared_tmp_path / "laida.log").read_text()  # rank 0's log only
    assert text.count("warning from every rank") == 1 and "[rank" not in text
