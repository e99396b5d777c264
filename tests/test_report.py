"""`laida report` and the evaluation of a chained run: history segments joined along time.

A chained run (slurm/submit_experiment.sh: one `laida run --cycles K` per job) leaves one history file
per experiment and job, ``<exp>/<exp>.h0.c<first cycle>.nc``. These tests write such segments with
engine.history.HistoryWriter (serial, ``collective=False``) on a real f45 box from the same model
steps as one continuous file, and check that engine.evaluation joins them into exactly the
continuous history (including a daily period cut by a segment boundary at noon), that gaps, overlaps,
missing experiments and unjoinable spreads are refused with messages naming the files, and that
`laida report` prints and writes the study's tables. Writes only pytest's temporary directories.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine import cli
from engine import config as cfgmod
from engine.evaluation import (EvaluationError, evaluation_report, history_segments, load_history,
                               load_history_series, run_report)
from engine.grid import make_grid
from engine.history import HistoryWriter

FIELDS = ["TLAI", "FIRA", "TSA", "FSH", "EFLX_LH_TOT", "TSOI", "H2OSOI"]
STEP_DAYS = 0.25  # 6-hour model steps
STEP_TOML = "[time]\nstep_seconds = 21600\n"  # what the writer's config_toml says (the step check reads it)


@pytest.fixture(scope="module")
def box():
    # a real f45 box over equatorial Africa that holds the study's region 1 (Central Africa)
    return make_grid("f45", lat_min=-12.0, lat_max=12.0, lon_min=0.0, lon_max=45.0)


def _steps(grid, n_steps, shift, seed, members=3):
    """Per model step, the members' values of FIELDS on the box's land cells (plausible magnitudes)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        out.append({"TLAI": rng.gamma(2.0, 1.5, (grid.n_land, members)) + shift,
                    "FIRA": 60.0 + 20.0 * rng.random((grid.n_land, members)),
                    "TSA": 295.0 + 3.0 * rng.random((grid.n_land, members)),
                    "FSH": 40.0 + 30.0 * rng.random((grid.n_land, members)),
                    "EFLX_LH_TOT": 80.0 + 40.0 * rng.random((grid.n_land, members)),
                    "TSOI": 290.0 + rng.random((grid.n_land, 4, members)),
                    "H2OSOI": 0.2 + 0.1 * rng.random((grid.n_land, 4, members))})
    return out


def _write(path, grid, steps, first_step, *, toml=STEP_TOML, frequency="daily"):
    """A history file of the model steps steps[first_step:] (step k ends at (k + 1) * STEP_DAYS days)."""
    with HistoryWriter(path, grid, FIELDS, config_toml=toml, title="report test", frequency=frequency,
                       collective=False) as w:
        for k in range(first_step, len(steps)):
            w.add(STEP_DAYS * (k + 1), steps[k], 0, grid.n_land)
    return Path(path)


def _segments(directory, name, grid, steps, cuts, **kw):
    """The steps as segments named like a chained run's: a new segment starts at each step in ``cuts``."""
    starts = [0, *cuts]
    ends = [*cuts, len(steps)]
    paths = []
    for i, (a, b) in enumerate(zip(starts, ends)):
        paths.append(_write(Path(directory) / name / f"{name}.h0.c{i + 1:05d}.nc", grid, steps[:b], a, **kw))
    return paths


def test_segments_are_listed_in_cycle_order_without_unfinished_files(tmp_path, box):
    steps = _steps(box, 12, 0.0, 1)
    d = tmp_path / "run" / "ctl"
    d.mkdir(parents=True)
    for first, a, b in ((10, 8, 12), (2, 4, 8), (1, 0, 4)):  # c00010 sorts after c00002 by number
        _write(d / f"ctl.h0.c{first:05d}.nc", box, steps[:b], a)
    (d / ".ctl.h0.c00014.nc.abc123.tmp").write_bytes(b"a segment being written")
    (d / "cn.h0.c00001.nc").write_bytes(b"another experiment's name")
    names = [p.name for p in history_segments(tmp_path / "run", "ctl")]
    assert names == ["ctl.h0.c00001.nc", "ctl.h0.c00002.nc", "ctl.h0.c00010.nc"]
    with pytest.raises(EvaluationError, match=r"no cn/ directory"):
        history_segments(tmp_path / "run", "cn")
    (tmp_path / "run" / "nature").mkdir()
    with pytest.raises(EvaluationError, match=r"nature.*no history file nature\.h0\.c<cycle>\.nc"):
        history_segments(tmp_path / "run", "nature")


@pytest.mark.parametrize("cuts", [[8], [4, 12]], ids=["2-segments", "3-segments"])
def test_joined_segments_equal_the_continuous_history(tmp_path, box, cuts):
    steps = _steps(box, 16, 0.0, 2)  # 4 days of 6-hour steps; cuts at day boundaries
    whole = load_history(_write(tmp_path / "whole.nc", box, steps, 0), FIELDS)
    paths = _segments(tmp_path, "ctl", box, steps, cuts)
    joined = load_history_series(list(reversed(paths)), FIELDS)  # any order: sorted by time
    assert joined["paths"] == [str(p) for p in paths]
    assert [(Path(p).name, r, n) for p, r, n in joined["segments"]] == \
        [(p.name, a // 4, (b - a) // 4) for p, a, b in zip(paths, [0, *cuts], [*cuts, 16])]
    for key in ("time", "time_bnds", "n_samples", "lat", "lon", "lat_edges", "lon_edges", "landmask", *FIELDS):
        np.testing.assert_array_equal(joined[key], whole[key], err_msg=key)
    assert joined["time_units"] == whole["time_units"] and joined["units"] == whole["units"]


def test_a_period_cut_by_the_segment_boundary_is_joined_by_its_steps(tmp_path, box):
    # the second job starts at noon of day 2: day 2 is written half by each segment
    steps = _steps(box, 16, 0.0, 3)
    whole = load_history(_write(tmp_path / "whole.nc", box, steps, 0), FIELDS)
    a, b = _segments(tmp_path, "cn", box, steps, [6])
    part_a, part_b = load_history(a, ["TLAI"]), load_history(b, ["TLAI"])
    assert part_a["time_bnds"][-1].tolist() == [1.0, 1.5] and part_b["time_bnds"][0].tolist() == [1.0, 2.0]
    joined = load_history_series([a, b], FIELDS)
    np.testing.assert_array_equal(joined["time_bnds"], whole["time_bnds"])
    np.testing.assert_array_equal(joined["time"], whole["time"])
    np.testing.assert_array_equal(joined["n_samples"], [4, 4, 4, 4])
    land = (slice(None), box.land_j, box.land_i)
    for f in FIELDS:
        # the split day is the step-weighted mean of two float32 half-day means: a few float32 ulps
        got, want = joined[f], whole[f]
        assert np.array_equal(np.isnan(got), np.isnan(want)), f
        np.testing.assert_allclose(got[~np.isnan(got)], want[~np.isnan(want)], rtol=3e-7, atol=0, err_msg=f)
        np.testing.assert_array_equal(got[[0, 2, 3]], want[[0, 2, 3]], err_msg=f)  # whole days: the same bits
    assert np.isfinite(joined["TLAI"][land]).all()
    with pytest.raises(EvaluationError, match=r"TLAI_SPREAD.*split between two segments"):
        load_history_series([a, b], ["TLAI", "TLAI_SPREAD"])
    # without a split, spreads join like everything else
    c, d = _segments(tmp_path / "other", "cn", box, steps, [8])
    joined = load_history_series([c, d], ["TLAI_SPREAD"])
    np.testing.assert_array_equal(joined["TLAI_SPREAD"], load_history(tmp_path / "whole.nc", ["TLAI_SPREAD"])["TLAI_SPREAD"])


def test_monthly_history_split_by_8_day_jobs(tmp_path, box):
    # January is written in parts by four jobs, February by two: joined, they are the continuous months
    steps = _steps(box, 160, 0.0, 5)  # 40 days
    whole = load_history(_write(tmp_path / "whole.nc", box, steps, 0, frequency="monthly"), FIELDS)
    paths = _segments(tmp_path, "ctl", box, steps, [32, 64, 96, 128], frequency="monthly")
    assert load_history(paths[1], ["TLAI"])["time_bnds"].tolist() == [[0.0, 16.0]]  # a part of January
    joined = load_history_series(paths, FIELDS)
    assert whole["time_bnds"].tolist() == [[0.0, 31.0], [31.0, 40.0]]
    np.testing.assert_array_equal(joined["time_bnds"], whole["time_bnds"])
    np.testing.assert_array_equal(joined["time"], whole["time"])
    np.testing.assert_array_equal(joined["n_samples"], [124, 36])
    for f in FIELDS:
        ok = ~np.isnan(whole[f])
        assert np.array_equal(np.isnan(joined[f]), ~ok), f
        np.testing.assert_allclose(joined[f][ok], whole[f][ok], rtol=5e-7, atol=0, err_msg=f)


def test_gaps_and_overlaps_are_refused(tmp_path, box):
    steps = _steps(box, 16, 0.0, 4)
    first = _write(tmp_path / "a" / "ctl.h0.c00001.nc", box, steps[:4], 0)  # day 0
    later = _write(tmp_path / "a" / "ctl.h0.c00003.nc", box, steps[:12], 8)  # day 2: day 1 is missing
    with pytest.raises(EvaluationError, match=r"gap from 1 to 2 \(days since 2002-01-01 00:00:00\) between "
                                              r"ctl\.h0\.c00001\.nc .* and ctl\.h0\.c00003\.nc"):
        load_history_series([first, later], ["TLAI"])
    again = _write(tmp_path / "b" / "ctl.h0.c00001.nc", box, steps[:8], 0)  # days 0-1
    rerun = _write(tmp_path / "b" / "ctl.h0.c00002.nc", box, steps[:12], 4)  # days 1-2: day 1 twice
    with pytest.raises(EvaluationError, match=r"overlap.*ctl\.h0\.c00001\.nc.*ctl\.h0\.c00002\.nc"):
        load_history_series([again, rerun], ["TLAI"])
    # a gap inside a period: the first segment ends at noon of day 1, the second starts at 18 h
    noon = _write(tmp_path / "c" / "ctl.h0.c00001.nc", box, steps[:6], 0)
    late = _write(tmp_path / "c" / "ctl.h0.c00002.nc", box, steps[:12], 7)
    with pytest.raises(EvaluationError, match=r"needs 2 model steps after 1\.5 in the second, it holds 1"):
        load_history_series([noon, late], ["TLAI"])
    # the same at a day boundary: the second segment starts 6 h into day 2
    day = _write(tmp_path / "d" / "ctl.h0.c00001.nc", box, steps[:8], 0)
    short = _write(tmp_path / "d" / "ctl.h0.c00002.nc", box, steps[:12], 9)
    with pytest.raises(EvaluationError, match=r"first period holds 3 model steps of 21600 s, the period has 4"):
        load_history_series([day, short], ["TLAI"])
    # segments of different runs do not join: other averaging periods, another time axis
    other = _write(tmp_path / "e" / "ctl.h0.c00002.nc", box, steps[:12], 8, frequency="6h")
    with pytest.raises(EvaluationError, match=r"c00002\.nc holds 6h means, .*c00001\.nc daily means"):
        load_history_series([again, other], ["TLAI"])
    with HistoryWriter(tmp_path / "f.nc", box, ["TLAI"], config_toml=STEP_TOML, title="another run",
                       time_units="days since 2003-01-01 00:00:00", collective=False) as w:
        w.add(2.25, {"TLAI": steps[8]["TLAI"]}, 0, box.n_land)
    with pytest.raises(EvaluationError, match=r"time units 'days since 2003-01-01 00:00:00'.*not one run"):
        load_history_series([again, tmp_path / "f.nc"], ["TLAI"])
    with pytest.raises(EvaluationError, match="no such history file"):
        load_history_series([first, tmp_path / "missing.nc"], ["TLAI"])


def _run_dir(root, box, cuts, *, config=True, drop=()):
    """A run directory with nature/, ctl/ and cn/ in segments; CN = truth, CTL's LAI 1.5 too high."""
    for name, shift, seed in (("nature", 0.0, 7), ("ctl", 1.5, 7), ("cn", 0.0, 7)):
        if name in drop:
            continue
        _segments(root, name, box, _steps(box, 16, shift, seed), cuts)
    if config:
        cfg = cfgmod.load(None, ["run.name=chain", "grid.name=f45", "grid.lat_min=-12", "grid.lat_max=12",
                                 "grid.lon_min=0", "grid.lon_max=45", "ensemble.members=3", "time.stop=2002-01-09",
                                 "experiment.cycle_days=2", f"run.run_dir={root}"])
        (Path(root) / "config.toml").write_text(cfgmod.to_toml(cfg))
    return Path(root)


def test_run_report_of_segments_equals_the_report_of_continuous_files(tmp_path, box):
    run = _run_dir(tmp_path / "run", box, [8])
    whole = {}
    for name, shift in (("nature", 0.0), ("ctl", 1.5), ("cn", 0.0)):
        whole[name] = _write(tmp_path / f"{name}.nc", box, _steps(box, 16, shift, 7), 0)
    tables = evaluation_report(whole["ctl"], whole["cn"], whole["nature"])
    out = tmp_path / "reports" / "report.txt"
    text = run_report(run, out=out)
    assert out.read_text() == text
    head, body = text.split("\n\n", 1)
    assert body == tables + "\n"
    assert "run chain: grid f45, box -12..12 N, 0..45 E, 3 members, 2-day cycles from 2002-01-01 to 2002-01-09" in head
    assert "ctl: 2 history segment(s): ctl.h0.c00001.nc, ctl.h0.c00002.nc" in head
    assert "history: 4 records from 2002-01-01 to 2002-01-05 (4 days, 2 of the run's 4 cycles; the run is not " \
           "finished)" in head
    assert "CTL and CN against truth (like the study's Table II)" in body and "Central Africa" in body
    rows = {line.split()[1]: line.split() for line in body.splitlines() if line.startswith(("-  Global", "1  "))}
    assert rows["Global"][6] == "0.00" and rows["Global"][7] == "1.50"  # CN-truth, CTL-truth
    assert "(like the study's Table III)" in body and "T2m" in body and "0-255 cm" in body
    # the sequence form of evaluation_report gives the same tables
    assert evaluation_report(history_segments(run, "ctl"), history_segments(run, "cn"),
                             history_segments(run, "nature")) == tables


def test_run_report_refuses_incomplete_run_directories(tmp_path, box):
    with pytest.raises(EvaluationError, match="lacks experiments: .*no cn/ directory"):
        run_report(_run_dir(tmp_path / "a", box, [8], drop=("cn",)))
    b = _run_dir(tmp_path / "b", box, [8])
    (b / "cn" / "cn.h0.c00002.nc").unlink()  # CN's second job did not finish
    with pytest.raises(EvaluationError, match=r"the history of cn \(2 records, 0 to 2 days.*\) and of ctl "
                                              r"\(4 records, 0 to 4 days.*\) cover different times"):
        run_report(b)
    c = _run_dir(tmp_path / "c", box, [8], config=False)  # no config.toml: reported without the run's period
    text = run_report(c)
    assert "history: 4 records from 2002-01-01 to 2002-01-05 (4 days)" in text and "run chain" not in text
    with pytest.raises(EvaluationError, match="no such run directory"):
        run_report(tmp_path / "missing")


def test_laida_report_prints_and_writes_the_tables(tmp_path, box, capsys):
    run = _run_dir(tmp_path / "run", box, [8])
    out = tmp_path / "report.txt"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(out.read_text()) and f"report written to {out.resolve()}" in printed
    assert cli.main(["report", str(run), "--area-weights", "--per-band"]) == 0
    area = capsys.readouterr().out
    assert "7-28 cm" in area and area != out.read_text()  # area-weighted means and per-band rows
    assert cli.main(["report", str(tmp_path / "nothing")]) == 1
    assert "laida report: " in (err := capsys.readouterr().err) and "no such run directory" in err
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    assert cli.main(["report", str(run), "--out", str(blocker / "report.txt")]) == 1
    assert "laida report: cannot write" in capsys.readouterr().err


@pytest.mark.mpi
def test_laida_report_on_every_rank_count(shared_tmp_path, box, capsys):
    """`mpiexec -n N laida report`: rank 0 reads and prints, the others wait and return the same code."""
    from engine import comm

    run = shared_tmp_path / "run"
    if comm.rank() == 0:
        _run_dir(run, box, [8])
    comm.barrier()
    out = shared_tmp_path / "report.txt"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    if comm.rank() == 0:
        assert printed.startswith(out.read_text())
    else:
        assert printed == ""
    assert cli.main(["report", str(shared_tmp_path / "nothing")]) == 1
    err = capsys.readouterr().err
    assert ("no such run directory" in err) == (comm.rank() == 0)
