"""Checkpoint I/O (engine.restart): collective write/read, atomic publication, validation, pruning.

Every stored value encodes its (global cell, level, member) position, so a slab written to or read
from the wrong place, a transposed member axis or a dtype conversion shows up as a mismatch. Data
must come back bit for bit (np.array_equal, no tolerance): checkpoints are a copy, not a computation.

`mpi` tests run under `mpiexec -n 1, 2, 4` (make test-mpi); every rank makes the same collective calls.
`test_write_4_ranks_read_2_ranks` launches its own mpiexec jobs from a serial test.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest

import engine
from engine import comm
from engine.restart import (
    CheckpointError,
    checkpoint_name,
    latest_checkpoint,
    prune_checkpoints,
    read_checkpoint,
    validate_checkpoint,
    write_checkpoint,
)

N_GLOBAL, LEVELS, MEMBERS = 37, 5, 6  # 37 cells: uneven blocks on 2 and 4 ranks
CONFIG = 'title = "laida test"\n[filter]\nkind = "eakf"\ninflation = 1.02\n# état initial\n'


def pattern(n_global=N_GLOBAL, levels=LEVELS, members=MEMBERS) -> dict[str, np.ndarray]:
    """Global fields whose values encode their position: cell*1e4 + level*1e2 + member (+0.25)."""
    c = np.arange(n_global)[:, None, None]
    lev = np.arange(levels)[None, :, None]
    m = np.arange(members)[None, None, :]
    return {
        "t_soil": (c * 1e4 + lev * 1e2 + m + 0.25).astype(np.float64),  # exact in float64
        "lai": (c[:, 0] * 1e4 + m[:, 0] + 0.5).astype(np.float64),
        "pft": (c[:, 0] * 1000 + m[:, 0]).astype(np.int32),
    }


def blocks(n_global: int, n_ranks: int) -> list[tuple[int, int]]:
    """Contiguous (start, count) per rank, sizes differing by at most one."""
    counts = [n_global // n_ranks + (r < n_global % n_ranks) for r in range(n_ranks)]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).tolist()
    return list(zip(starts, counts))


def local(fields: dict, start: int, count: int) -> dict:
    return {k: np.ascontiguousarray(v[start:start + count]) for k, v in fields.items()}


def write_pattern(run_dir, cycle, fields=None, **kw):
    fields = pattern() if fields is None else fields
    n_global = next(iter(fields.values())).shape[0]
    start, count = blocks(n_global, comm.size())[comm.rank()]
    return write_checkpoint(run_dir, cycle, local(fields, start, count), start=start, n_global=n_global,
                            model_time=kw.pop("model_time", f"2005-07-{cycle:02d}T00:00:00"),
                            config_toml=kw.pop("config_toml", CONFIG), **kw)


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def on_root(func, *args):
    """Run a file manipulation on rank 0 only, then let every rank continue."""
    if comm.rank() == 0:
        func(*args)
    comm.barrier()


@pytest.mark.mpi
def test_round_trip_same_split(shared_tmp_path):
    fields = pattern()
    path = write_pattern(shared_tmp_path, 12)
    assert path == shared_tmp_path / "checkpoint_000012.h5"
    assert sorted(os.listdir(shared_tmp_path)) == ["checkpoint_000012.h5"]  # no temp file left
    start, count = blocks(N_GLOBAL, comm.size())[comm.rank()]
    data, attrs = read_checkpoint(path, start=start, count=count)
    assert list(data) == ["t_soil", "lai", "pft"]
    for name, full in fields.items():
        assert data[name].dtype == full.dtype, name
        assert np.array_equal(data[name], full[start:start + count]), name
    with h5py.File(path, "r") as f:  # the file itself is in global order, whatever the rank count
        for name, full in fields.items():
            assert f[name].shape == full.shape
            assert np.array_equal(f[name][...], full), name


@pytest.mark.mpi
def test_read_with_other_splits(shared_tmp_path):
    fields = pattern()
    path = write_pattern(shared_tmp_path, 3)
    n = comm.size()
    # every rank reads the block another rank wrote (reversed order)
    start, count = blocks(N_GLOBAL, n)[n - 1 - comm.rank()]
    data, _ = read_checkpoint(path, start=start, count=count)
    for name, full in fields.items():
        assert np.array_equal(data[name], full[start:start + count]), name
    # rank 0 reads everything, the others nothing (a zero-row slab still takes part collectively)
    start, count = (0, N_GLOBAL) if comm.rank() == 0 else (N_GLOBAL, 0)
    data, _ = read_checkpoint(path, start=start, count=count, variables=["pft", "t_soil"])
    assert list(data) == ["pft", "t_soil"]
    assert data["t_soil"].shape == (count, LEVELS, MEMBERS)
    assert np.array_equal(data["t_soil"], fields["t_soil"][start:start + count])
    assert np.array_equal(data["pft"], fields["pft"][start:start + count])
    # a block outside the file and an unknown variable are refused on every rank, naming the file
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5: .*start=30 count=8"):
        read_checkpoint(path, start=30, count=8)
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5: .*\['leaf_n'\] are not in"):
        read_checkpoint(path, start=0, count=0, variables=["lai", "leaf_n"])


@pytest.mark.mpi
def test_ranks_without_cells(shared_tmp_path):
    """Fewer cells than ranks: empty ranks join the collective write and read."""
    fields = pattern(n_global=2)
    path = write_pattern(shared_tmp_path, 1, fields)
    start, count = blocks(2, comm.size())[comm.rank()]
    data, attrs = read_checkpoint(path, start=start, count=count)
    assert attrs["n_global"] == 2
    for name, full in fields.items():
        assert np.array_equal(data[name], full[start:start + count]), name


@pytest.mark.mpi
def test_large_slabs_go_in_pieces(shared_tmp_path, monkeypatch):
    """Slabs above the per-call limit (1 GiB in production) are moved in several collective calls;
    with a 1000-byte limit each rank needs up to 10 calls and ranks with fewer rows join with empty ones."""
    import engine.restart as restart

    monkeypatch.setattr(restart, "_MAX_BYTES_PER_CALL", 1000)
    fields = pattern()
    path = write_pattern(shared_tmp_path, 2)
    n = comm.size()
    start, count = blocks(N_GLOBAL, n)[n - 1 - comm.rank()]
    data, _ = read_checkpoint(path, start=start, count=count)
    for name, full in fields.items():
        assert np.array_equal(data[name], full[start:start + count]), name


@pytest.mark.mpi
def test_attributes_round_trip(shared_tmp_path):
    big_config = CONFIG + "".join(f"key_{i} = {i}\n" for i in range(8000))  # > 64 KiB header limit
    path = write_pattern(shared_tmp_path, 7, model_time="2005-07-07T06:00:00", config_toml=big_config,
                         extra_attrs={"calendar": "noleap", "inflation": 1.02})
    start, count = blocks(N_GLOBAL, comm.size())[comm.rank()]
    _, attrs = read_checkpoint(path, start=start, count=count, variables=["lai"])
    assert attrs["model_time"] == "2005-07-07T06:00:00"
    assert attrs["cycle"] == 7
    assert attrs["config_toml"] == big_config
    assert attrs["software_version"] == engine.__version__
    assert attrs["laida_checkpoint"] == 1
    assert attrs["n_global"] == N_GLOBAL and attrs["n_members"] == MEMBERS
    assert attrs["n_ranks_written"] == comm.size()
    assert attrs["variables"] == ["t_soil", "lai", "pft"]
    assert attrs["calendar"] == "noleap" and attrs["inflation"] == 1.02
    assert attrs["created_utc"].endswith("+00:00")
    assert validate_checkpoint(path) == attrs


@pytest.mark.mpi
def test_failed_write_leaves_existing_checkpoint(shared_tmp_path):
    path = write_pattern(shared_tmp_path, 5)
    before = sha256(path)
    fields = pattern()
    start, count = blocks(N_GLOBAL, comm.size())[comm.rank()]
    mine = local(fields, start, count)
    if comm.rank() == comm.size() - 1:  # one rank hands over a wrong member axis for one variable
        mine["lai"] = mine["lai"][:, :-1]
    with pytest.raises(CheckpointError, match=r"checkpoint_000005\.h5.*'lai'"):
        write_checkpoint(shared_tmp_path, 5, mine, start=start, n_global=N_GLOBAL, model_time="x",
                         config_toml=CONFIG)
    # blocks that do not tile the global axis
    with pytest.raises(CheckpointError, match=r"checkpoint_000005\.h5.*n_global is 38"):
        write_checkpoint(shared_tmp_path, 5, local(fields, start, count), start=start, n_global=38,
                         model_time="x", config_toml=CONFIG)
    # a failure after the temporary file exists (an attribute HDF5 cannot store), on all ranks
    with pytest.raises(CheckpointError, match=r"checkpoint_000005\.h5.*attribute 'bad'"):
        write_pattern(shared_tmp_path, 5, extra_attrs={"bad": {"not": "storable"}})
    with pytest.raises(CheckpointError, match=r"checkpoint_000005\.h5.*reserved attributes \['cycle'\]"):
        write_pattern(shared_tmp_path, 5, extra_attrs={"cycle": 99})
    comm.barrier()
    assert sha256(path) == before
    assert sorted(os.listdir(shared_tmp_path)) == ["checkpoint_000005.h5"]  # no temp file
    assert latest_checkpoint(shared_tmp_path) == path


@pytest.mark.mpi
def test_truncated_checkpoint_falls_back(shared_tmp_path, caplog):
    for cycle in (1, 2, 3):
        write_pattern(shared_tmp_path, cycle)
    newest = shared_tmp_path / checkpoint_name(3)
    assert latest_checkpoint(shared_tmp_path) == newest

    def truncate():
        copy = shared_tmp_path / "copy.h5"  # truncate a copy, then put it in place of the newest
        shutil.copyfile(newest, copy)
        with open(copy, "r+b") as f:
            f.truncate(copy.stat().st_size // 2)
        os.replace(copy, newest)

    on_root(truncate)
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5.*truncated"):
        validate_checkpoint(newest)
    with caplog.at_level(logging.WARNING, logger="engine.restart"):
        assert latest_checkpoint(shared_tmp_path) == shared_tmp_path / checkpoint_name(2)
    if comm.rank() == 0:  # rank 0 decides and warns
        assert "checkpoint_000003.h5" in caplog.text
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5"):
        read_checkpoint(newest, start=0, count=0)
    # the previous checkpoint is intact and usable
    start, count = blocks(N_GLOBAL, comm.size())[comm.rank()]
    data, attrs = read_checkpoint(latest_checkpoint(shared_tmp_path), start=start, count=count)
    assert attrs["cycle"] == 2
    assert np.array_equal(data["t_soil"], pattern()["t_soil"][start:start + count])


@pytest.mark.mpi
def test_prune_keeps_newest(shared_tmp_path):
    for cycle in (1, 2, 3, 4, 5):
        write_pattern(shared_tmp_path, cycle, pattern(n_global=4))
    on_root((shared_tmp_path / ".checkpoint_000006.h5.tmp").write_bytes, b"unfinished")
    removed = prune_checkpoints(shared_tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [checkpoint_name(c) for c in (1, 2, 3)]
    assert sorted(os.listdir(shared_tmp_path)) == [".checkpoint_000006.h5.tmp", checkpoint_name(4),
                                                   checkpoint_name(5)]
    assert prune_checkpoints(shared_tmp_path, keep=2) == []
    assert latest_checkpoint(shared_tmp_path) == shared_tmp_path / checkpoint_name(5)
    with pytest.raises(ValueError, match="keep"):
        prune_checkpoints(shared_tmp_path, keep=0)


# ---------------------------------------------------------------- serial tests (one process)

def test_foreign_and_non_hdf5_files(tmp_path, caplog):
    good = write_pattern(tmp_path, 1, pattern(n_global=4))
    foreign = tmp_path / checkpoint_name(2)
    with h5py.File(foreign, "w") as f:  # a plain HDF5 file, as another program would write
        f["t_soil"] = np.zeros((4, 6))
        f.attrs["model_time"] = "2005-07-02T00:00:00"
    with pytest.raises(CheckpointError, match=r"checkpoint_000002\.h5: foreign HDF5 file"):
        validate_checkpoint(foreign)
    text = tmp_path / checkpoint_name(3)
    text.write_text("this is not HDF5\n" * 100)
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5: not an HDF5 file"):
        validate_checkpoint(text)
    empty = tmp_path / checkpoint_name(4)
    empty.touch()
    with pytest.raises(CheckpointError, match=r"checkpoint_000004\.h5: empty file"):
        validate_checkpoint(empty)
    with pytest.raises(CheckpointError, match=r"checkpoint_000009\.h5: no such checkpoint file"):
        validate_checkpoint(tmp_path / checkpoint_name(9))
    with pytest.raises(CheckpointError, match=r"checkpoint_000003\.h5: not an HDF5 file"):
        read_checkpoint(text, start=0, count=4)
    with caplog.at_level(logging.WARNING, logger="engine.restart"):
        assert latest_checkpoint(tmp_path) == good
    for name in ("checkpoint_000002.h5", "checkpoint_000003.h5", "checkpoint_000004.h5"):
        assert name in caplog.text


def test_damaged_contents_named(tmp_path):
    path = write_pattern(tmp_path, 1, pattern(n_global=4))
    copies = {}
    for case in ("missing_attr", "wrong_first_axis", "wrong_cycle", "future_version", "missing_dataset"):
        p = tmp_path / f"{case}.h5"
        shutil.copyfile(path, p)
        copies[case] = p
    with h5py.File(copies["missing_attr"], "r+") as f:
        del f.attrs["config_toml"]
    with h5py.File(copies["wrong_first_axis"], "r+") as f:
        del f["lai"]
        f["lai"] = np.zeros((3, MEMBERS))
    with h5py.File(copies["future_version"], "r+") as f:
        f.attrs["laida_checkpoint"] = 2
    with h5py.File(copies["missing_dataset"], "r+") as f:
        del f["pft"]
    wrong_cycle = tmp_path / checkpoint_name(8)
    os.replace(copies.pop("wrong_cycle"), wrong_cycle)
    expected = {
        "missing_attr": r"missing_attr\.h5: missing attributes \['config_toml'\]",
        "wrong_first_axis": r"wrong_first_axis\.h5: variable 'lai' has shape \(3, 6\); first axis must be n_global=4",
        "future_version": r"future_version\.h5: checkpoint format version 2",
        "missing_dataset": r"missing_dataset\.h5: variable 'pft' is listed but has no dataset",
    }
    for case, msg in expected.items():
        with pytest.raises(CheckpointError, match=msg):
            validate_checkpoint(copies[case])
    with pytest.raises(CheckpointError, match=r"checkpoint_000008\.h5: file name says cycle 8, attribute says 1"):
        validate_checkpoint(wrong_cycle)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.999])
def test_truncation_detected_at_any_length(tmp_path, keep_fraction):
    path = write_pattern(tmp_path, 1)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep_fraction))
    with pytest.raises(CheckpointError, match=r"checkpoint_000001\.h5.*truncated"):
        validate_checkpoint(path)
    assert latest_checkpoint(tmp_path) is None


def test_latest_ignores_temp_files_and_empty_dir(tmp_path):
    assert latest_checkpoint(tmp_path / "does-not-exist") is None
    assert latest_checkpoint(tmp_path) is None
    write_pattern(tmp_path, 4, pattern(n_global=4))
    (tmp_path / ".checkpoint_000005.h5.tmp").write_bytes(b"\x89HDF\r\n\x1a\n unfinished")
    (tmp_path / "checkpoint_000010.h5.tmp").write_bytes(b"unfinished")
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(4)
    write_pattern(tmp_path, 11, pattern(n_global=4))  # cycles compare as numbers
    assert latest_checkpoint(tmp_path) == tmp_path / checkpoint_name(11)


# A job that writes with 4 ranks and one that reads with 2, each its own mpiexec.
_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from engine import comm, restart

    mode, run_dir, out = sys.argv[1:4]
    n_global, levels, members = 37, 5, 6
    counts = [n_global // comm.size() + (r < n_global % comm.size()) for r in range(comm.size())]
    start, count = sum(counts[:comm.rank()]), counts[comm.rank()]
    if mode == "write":
        c = np.arange(start, start + count)[:, None, None]
        lev = np.arange(levels)[None, :, None]
        m = np.arange(members)[None, None, :]
        fields = {
            "t_soil": (c * 1e4 + lev * 1e2 + m + 0.25).astype(np.float64),
            "lai": (c[:, 0] * 1e4 + m[:, 0] + 0.5).astype(np.float64),
            "pft": (c[:, 0] * 1000 + m[:, 0]).astype(np.int32),
        }
        restart.write_checkpoint(run_dir, 9, fields, start=start, n_global=n_global,
                                 model_time="2005-07-09T00:00:00", config_toml="x = 1\\n")
    else:
        path = restart.latest_checkpoint(run_dir)
        data, attrs = restart.read_checkpoint(path, start=start, count=count)
        full = {k: comm.gather_array(v) for k, v in data.items()}
        if comm.rank() == 0:
            np.savez(out, n_ranks_written=attrs["n_ranks_written"], n_ranks_read=comm.size(), **full)
""")


def test_write_4_ranks_read_2_ranks(tmp_path):
    mpiexec = shutil.which("mpiexec")
    assert mpiexec, "mpiexec not found on PATH (Open MPI is part of `make setup`)"
    script = tmp_path / "job.py"
    script.write_text(_SCRIPT)
    run_dir, out = tmp_path / "run", tmp_path / "read.npz"
    for n, mode in ((4, "write"), (2, "read")):
        proc = subprocess.run(["timeout", "120", mpiexec, "-n", str(n), sys.executable, str(script), mode,
                               str(run_dir), str(out)], env=comm.child_mpiexec_env(), capture_output=True, text=True)
        assert proc.returncode == 0, f"mpiexec -n {n} {mode} failed:\n{proc.stdout}\n{proc.stderr}"
    got = np.load(out)
    assert int(got["n_ranks_written"]) == 4 and int(got["n_ranks_read"]) == 2
    for name, full in pattern().items():
        assert got[name].dtype == full.dtype, name
        assert np.array_equal(got[name], full), name
