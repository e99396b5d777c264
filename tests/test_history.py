"""Tests of engine.history: CF netCDF4 history, analysis statistics and observation diagnostics.

The grid is a real regional f45 box over equatorial Africa and the Gulf of Guinea (MODIS land
cover, 45 land and 15 ocean cells), so fill values over ocean are checked on a real land mask.
xarray is not installed: CF-ness is checked with netCDF4 and cftime directly.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import cftime
import netCDF4
import numpy as np
import pytest

from engine import comm
from engine.decomposition import decompose, local_block
from engine.grid import make_grid
from engine.history import (
    DART_QC,
    FIELDS,
    FILL_VALUE,
    OBS_FIELDS,
    AnalysisStatsWriter,
    HistoryError,
    HistoryWriter,
    ObsDiagnosticsWriter,
    ensemble_mean_spread,
    patch_to_cell,
    spread_name,
    stats_name,
)
from kernels.physics.soil_layers import STUDY_BANDS_M

UNITS = "days since 2002-01-01 00:00:00"
CONFIG = "[run]\nrun_dir = \"runs/test\"\n"
# Stored fields are float32 roundings of float64 results; our member/step summation order differs
# from numpy's pairwise one by a few float64 ulps, which can move the float32 rounding by one ulp
# (relative size at most 2**-23 = 1.19e-7). Two float32 ulps of slack:
F32_RTOL = 2.4e-7


@pytest.fixture(scope="module")
def grid():
    return make_grid("f45", lat_min=-12.0, lat_max=12.0, lon_min=0.0, lon_max=45.0)


def _steps(grid, n_steps, n_members, seed=1):
    """Deterministic global step values {field: (n_land, [4,] N)} for TLAI and TSOI."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_steps):
        out.append({
            "TLAI": rng.gamma(2.0, 1.5, size=(grid.n_land, n_members)),
            "TSOI": 270.0 + 30.0 * rng.random((grid.n_land, 4, n_members)),
        })
    return out


def _land(var, grid):
    """Stored (time, [band,] lat, lon) -> (time, [band,] n_land) in land order."""
    return var[..., grid.land_j, grid.land_i]


def _write_history(path, grid, steps, times, start=0, count=None, **kw):
    count = grid.n_land if count is None else count
    with HistoryWriter(path, grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="test history", **kw) as w:
        for t, vals in zip(times, steps):
            w.add(t, {k: v[start:start + count] for k, v in vals.items()}, start, count)
    return path


# ------------------------------------------------------------------------------------------
# patch_to_cell and ensemble statistics
# ------------------------------------------------------------------------------------------


def test_patch_to_cell_hand_computation():
    values = np.array([[4.0, 0.0], [8.0, 4.0], [1.0, 10.0], [2.0, 20.0], [3.0, 30.0]])  # [patch, member]
    cell = np.array([0, 0, 2, 2, 2])
    w = np.array([0.25, 0.75, 0.5, 0.3, 0.2])
    out = patch_to_cell(values, cell, w, 4)
    # by hand: cell 0 = 0.25*4 + 0.75*8 = 7, 0.25*0 + 0.75*4 = 3; cell 2 = 0.5*1 + 0.3*2 + 0.2*3 = 1.7,
    # 0.5*10 + 0.3*20 + 0.2*30 = 17; cells 1 and 3 have no patches
    # abs 1e-12: 0.3 and 0.2 are not exact binary fractions (a few ulps of 17)
    assert out.shape == (4, 2)
    assert out[0] == pytest.approx([7.0, 3.0], abs=1e-12, rel=0)
    assert out[2] == pytest.approx([1.7, 17.0], abs=1e-12, rel=0)
    assert np.isnan(out[1]).all() and np.isnan(out[3]).all()
    # weights that do not sum to one are normalised (CLM p2c over the cell's patches)
    out2 = patch_to_cell(values[:2], cell[:2], np.array([1.0, 3.0]), 1)
    assert out2[0] == pytest.approx([7.0, 3.0], abs=1e-12, rel=0)
    # a patch order not sorted by cell gives the same result
    perm = np.array([2, 0, 4, 1, 3])
    np.testing.assert_allclose(patch_to_cell(values[perm], cell[perm], w[perm], 4), out, rtol=0, atol=1e-12)
    # trailing axes (band, member) are carried along
    vb = np.stack([values, 2 * values], axis=1)  # [patch, 2, member]
    ob = patch_to_cell(vb, cell, w, 4)
    np.testing.assert_allclose(ob[:, 1], 2 * out, rtol=0, atol=1e-12)
    # a cell whose patches all have zero weight has no value
    assert np.isnan(patch_to_cell(values, cell, np.array([0, 0, 0.5, 0.3, 0.2]), 4)[0]).all()


def test_patch_to_cell_same_bits_on_any_block_split():
    rng = np.random.default_rng(7)
    n_cells = 10
    per_cell = rng.integers(1, 5, size=n_cells)
    cell = np.repeat(np.arange(n_cells), per_cell)
    w = rng.random(cell.size)
    x = rng.normal(size=(cell.size, 6))
    full = patch_to_cell(x, cell, w, n_cells)
    parts = []
    for a, b in ((0, 3), (3, 7), (7, 10)):  # contiguous cell blocks, local cell numbering
        sel = (cell >= a) & (cell < b)
        parts.append(patch_to_cell(x[sel], cell[sel] - a, w[sel], b - a))
    assert np.concatenate(parts).tobytes() == full.tobytes()


def test_patch_to_cell_rejects_bad_input():
    x = np.ones((3, 2))
    with pytest.raises(ValueError, match="patch_cell must lie in"):
        patch_to_cell(x, np.array([0, 1, 5]), np.ones(3), 3)
    with pytest.raises(ValueError, match="patch_weight must be finite"):
        patch_to_cell(x, np.array([0, 1, 2]), np.array([1.0, -1.0, 1.0]), 3)
    with pytest.raises(ValueError, match="same number of patches"):
        patch_to_cell(x, np.array([0, 1]), np.ones(2), 3)


def test_ensemble_mean_spread_matches_numpy():
    E = np.random.default_rng(3).normal(5.0, 2.0, size=(7, 4, 40))
    mean, sd = ensemble_mean_spread(E)
    # rtol 1e-13: only the summation order differs from numpy's (pairwise vs sequential over 40)
    np.testing.assert_allclose(mean, E.mean(axis=-1), rtol=1e-13, atol=0)
    np.testing.assert_allclose(sd, E.std(axis=-1, ddof=1), rtol=1e-13, atol=0)
    m1, s1 = ensemble_mean_spread(E[..., :1])
    assert np.array_equal(m1, E[..., 0]) and np.isnan(s1).all()


# ------------------------------------------------------------------------------------------
# History files
# ------------------------------------------------------------------------------------------


def test_time_means_and_ensemble_statistics(tmp_path, grid):
    n_members = 6
    times = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5]  # 4 steps per day, 6-hourly
    steps = _steps(grid, len(times), n_members)
    path = _write_history(tmp_path / "h.nc", grid, steps, times)
    periods = [range(0, 4), range(4, 8), range(8, 10)]  # day 1, day 2, the open part of day 3
    with netCDF4.Dataset(path) as ds:
        assert ds["n_samples"][:].tolist() == [4, 4, 2]
        np.testing.assert_array_equal(ds["time_bnds"][:], [[0.0, 1.0], [1.0, 2.0], [2.0, 2.5]])
        np.testing.assert_array_equal(ds["time"][:], [0.5, 1.5, 2.25])
        assert ds.n_members == n_members
        for name in ("TLAI", "TSOI"):
            mean = _land(ds[name][:], grid)
            spread = _land(ds[spread_name(name)][:], grid)
            assert mean.dtype == np.float32 and not np.ma.is_masked(mean)
            for r, idx in enumerate(periods):
                tmean = np.mean([steps[i][name] for i in idx], axis=0)  # time mean of each member
                want_mean = tmean.mean(axis=-1)
                want_sd = tmean.std(axis=-1, ddof=1)
                if name == "TSOI":  # stored as (band, land)
                    want_mean, want_sd = want_mean.T, want_sd.T
                np.testing.assert_allclose(mean[r], want_mean.astype(np.float32), rtol=F32_RTOL, atol=0)
                np.testing.assert_allclose(spread[r], want_sd.astype(np.float32), rtol=F32_RTOL, atol=0)


def test_fill_values_over_ocean_and_non_finite(tmp_path, grid):
    times = [0.5, 1.0]
    steps = _steps(grid, 2, 3)
    steps[0]["TLAI"][5, 1] = np.nan  # one member of land cell 5 has no value in one step
    path = _write_history(tmp_path / "h.nc", grid, steps, times)
    with netCDF4.Dataset(path) as ds:
        v = ds["TLAI"]
        assert v.dtype == np.float32 and v._FillValue == FILL_VALUE and v.missing_value == FILL_VALUE
        assert v.filters()["zlib"] is True
        data = v[0]
        landmask = ds["landmask"][:] == 1
        assert landmask.sum() == grid.n_land and (~landmask).sum() == 15
        assert data.mask[~landmask].all()  # every non-land cell is fill
        j5, i5 = grid.land_j[5], grid.land_i[5]
        assert data.mask[j5, i5]  # NaN time mean -> fill
        assert data.mask[landmask].sum() == 1
        v.set_auto_mask(False)
        assert (v[0][~landmask] == FILL_VALUE).all()
        assert not ds["TSOI"][0][:, landmask].mask.any()


def test_cf_attributes_and_time_decoding(tmp_path, grid):
    path = tmp_path / "h.nc"
    steps = _steps(grid, 4, 4)
    # times may be dates as well as numbers
    times = [cftime.DatetimeNoLeap(2002, 1, 1, 12), 1.0, cftime.DatetimeNoLeap(2002, 1, 2, 12), 2.0]
    prov = {"forcing_source": "generated test forcing"}
    _write_history(path, grid, steps, times, provenance=prov)
    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        assert ds.title == "test history"
        assert "laida" in ds.source and "laida" in ds.history
        assert ds.config_toml == CONFIG
        assert "MCD12C1" in ds.land_cover_source and ds.forcing_source == prov["forcing_source"]
        assert ds.frequency == "daily"
        for c, units in (("lat", "degrees_north"), ("lon", "degrees_east")):
            var = ds[c]
            assert var.units == units and var.standard_name in ("latitude", "longitude")
            bnds = ds[var.bounds][:]
            assert bnds.shape == (var.size, 2)
            assert (bnds[:, 0] < var[:]).all() and (var[:] < bnds[:, 1]).all()
        np.testing.assert_array_equal(ds["lat_bnds"][:, 0], grid.lat_edges[:-1])
        assert ds["area"].units == "km^2" and ds["area"].standard_name == "cell_area"
        np.testing.assert_array_equal(ds["landfrac"][:], grid.landfrac)
        band = ds["band"]
        assert band.units == "m" and band.positive == "down" and band.standard_name == "depth"
        np.testing.assert_array_equal(ds[band.bounds][:], STUDY_BANDS_M)
        tvar = ds["time"]
        assert tvar.units == UNITS and tvar.calendar == "noleap" and tvar.bounds == "time_bnds"
        assert ds.dimensions["time"].isunlimited()
        dates = cftime.num2date(tvar[:], tvar.units, tvar.calendar)
        assert list(dates) == [cftime.DatetimeNoLeap(2002, 1, 1, 12), cftime.DatetimeNoLeap(2002, 1, 2, 12)]
        bnds = cftime.num2date(ds["time_bnds"][:], tvar.units, tvar.calendar)
        assert bnds[1].tolist() == [cftime.DatetimeNoLeap(2002, 1, 2), cftime.DatetimeNoLeap(2002, 1, 3)]
        for name in ("TLAI", "TSOI"):
            f = FIELDS[name]
            for vname in (name, spread_name(name)):
                var = ds[vname]
                assert var.units == f.units and var.standard_name == f.standard_name
                assert var.cell_methods.startswith("time: mean")
                assert var.cell_measures == "area: area"
                assert var.dimensions == ("time", *f.dims, "lat", "lon")
        assert ds["TLAI"].standard_name == "leaf_area_index" and ds["TSOI"].units == "K"


def test_monthly_periods_follow_the_noleap_calendar(tmp_path, grid):
    # 2004 is a leap year in the standard calendar; in "noleap" February still has 28 days
    units = "days since 2004-01-01 00:00:00"
    times = [float(d) for d in range(1, 60)]  # daily steps ending Jan 2 ... Mar 1 00:00
    steps = [{"TLAI": np.full((grid.n_land, 2), float(k)), "TSOI": np.zeros((grid.n_land, 4, 2))}
             for k in range(len(times))]
    path = _write_history(tmp_path / "m.nc", grid, steps, times, time_units=units, frequency="monthly")
    with netCDF4.Dataset(path) as ds:
        assert ds["n_samples"][:].tolist() == [31, 28]
        b = cftime.num2date(ds["time_bnds"][:], units, "noleap")
        assert b.tolist() == [[cftime.DatetimeNoLeap(2004, 1, 1), cftime.DatetimeNoLeap(2004, 2, 1)],
                              [cftime.DatetimeNoLeap(2004, 2, 1), cftime.DatetimeNoLeap(2004, 3, 1)]]
        # the mean of steps 0..30 is 15, of steps 31..58 is 44.5; exact in float32
        assert np.unique(_land(ds["TLAI"][:], grid)[0]).tolist() == [15.0]
        assert np.unique(_land(ds["TLAI"][:], grid)[1]).tolist() == [44.5]


def test_fixed_length_periods_count_from_the_reference_time(tmp_path, grid):
    times = [float(d) for d in range(1, 18)]  # daily steps; "8d" periods (0, 8], (8, 16], (16, 24]
    steps = [{"TLAI": np.full((grid.n_land, 2), 1.0), "TSOI": np.ones((grid.n_land, 4, 2))} for _ in times]
    path = _write_history(tmp_path / "p.nc", grid, steps, times, frequency="8d")
    with netCDF4.Dataset(path) as ds:
        assert ds["n_samples"][:].tolist() == [8, 8, 1]
        assert ds["time_bnds"][:].tolist() == [[0.0, 8.0], [8.0, 16.0], [16.0, 17.0]]


def test_ncdump_header(tmp_path, grid):
    exe = shutil.which("ncdump")
    if exe is None:
        pytest.skip("ncdump is not installed (Debian package netcdf-bin); the header check needs it")
    path = _write_history(tmp_path / "h.nc", grid, _steps(grid, 2, 3), [0.5, 1.0])
    head = subprocess.run([exe, "-h", str(path)], capture_output=True, text=True, check=True).stdout
    for text in ('TLAI:units = "m^2/m^2"', 'time:calendar = "noleap"', ':Conventions = "CF-1.8"',
                 "float TSOI(time, band, lat, lon)", 'lat:bounds = "lat_bnds"'):
        assert text in head


def test_failed_run_never_publishes_and_keeps_existing_file(tmp_path, grid):
    path = tmp_path / "h.nc"
    steps = _steps(grid, 6, 3)
    times = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]

    class Crash(RuntimeError):
        pass

    # no file yet: a crash after two written periods leaves nothing under the final name
    with pytest.raises(Crash):
        with HistoryWriter(path, grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="t") as w:
            for t, v in zip(times, steps):
                w.add(t, v, 0, grid.n_land)
            assert w.n_written == 2 and not path.exists()
            assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written under a temp name
            raise Crash("simulated crash mid-run")
    assert list(tmp_path.iterdir()) == []

    # an existing complete file of the same period is left byte-identical by a failing run
    _write_history(path, grid, steps, times)
    before = path.read_bytes()
    with pytest.raises(Crash):
        with HistoryWriter(path, grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="rerun") as w:
            for t, v in zip(times, steps):
                w.add(t, {k: a + 1.0 for k, a in v.items()}, 0, grid.n_land)
            raise Crash("simulated crash before close")
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]

    # an input error inside the run behaves the same way
    with pytest.raises(HistoryError, match="'TSOI' must be a numeric array of shape"):
        with HistoryWriter(path, grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="bad") as w:
            w.add(0.5, steps[0], 0, grid.n_land)
            w.add(1.5, {"TLAI": steps[1]["TLAI"], "TSOI": steps[1]["TLAI"]}, 0, grid.n_land)
    assert path.read_bytes() == before and list(tmp_path.iterdir()) == [path]

    # a successful rerun replaces the file
    _write_history(path, grid, steps[:2], times[:2])
    with netCDF4.Dataset(path) as ds:
        assert len(ds.dimensions["time"]) == 1


def test_bad_inputs_name_the_problem(tmp_path, grid):
    with pytest.raises(HistoryError, match="unknown history field 'LAI'"):
        HistoryWriter(tmp_path / "a.nc", grid, ["LAI"], config_toml="", title="t")
    with pytest.raises(HistoryError, match="frequency must be one of"):
        HistoryWriter(tmp_path / "a.nc", grid, ["TLAI"], config_toml="", title="t", frequency="weekly")
    with pytest.raises(HistoryError, match="reserved global attributes"):
        HistoryWriter(tmp_path / "a.nc", grid, ["TLAI"], config_toml="", title="t", provenance={"title": "x"})
    w = HistoryWriter(tmp_path / "a.nc", grid, ["TLAI", "TSOI"], config_toml="", title="t")
    v = _steps(grid, 1, 2)[0]
    with pytest.raises(HistoryError, match=r"missing \['TSOI'\]"):
        w.add(0.5, {"TLAI": v["TLAI"]}, 0, grid.n_land)
    w.add(0.5, v, 0, grid.n_land)
    with pytest.raises(HistoryError, match="step times must increase"):
        w.add(0.5, v, 0, grid.n_land)
    with pytest.raises(HistoryError, match="has 3 members, expected 2"):
        w.add(0.75, {"TLAI": np.ones((grid.n_land, 3)), "TSOI": np.ones((grid.n_land, 4, 3))}, 0, grid.n_land)
    with pytest.raises(HistoryError, match="collective=False needs all"):
        s = HistoryWriter(tmp_path / "b.nc", grid, ["TLAI"], config_toml="", title="t", collective=False)
        s.add(0.5, {"TLAI": v["TLAI"][:3]}, 0, 3)
        s.close()
    w.discard()
    assert list(tmp_path.iterdir()) == []
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("x")
    with pytest.raises(HistoryError, match="not_a_directory/h.nc: HistoryWriter failed creating the file"):
        HistoryWriter(blocker / "h.nc", grid, ["TLAI"], config_toml="", title="t")


# ------------------------------------------------------------------------------------------
# Observation diagnostics and analysis statistics
# ------------------------------------------------------------------------------------------


def _obs(rng, n, t, numbers):
    return dict(time=np.full(n, t), lat=rng.uniform(-10, 10, n), lon=rng.uniform(0, 45, n),
                cell=rng.integers(0, 45, n), value=rng.gamma(2, 1.5, n), error_variance=rng.uniform(0.1, 1, n),
                prior_mean=rng.gamma(2, 1.5, n), prior_spread=rng.uniform(0.1, 1, n),
                posterior_mean=rng.gamma(2, 1.5, n), posterior_spread=rng.uniform(0.1, 1, n),
                qc=rng.integers(0, 8, n).astype(np.int32), obs_number=np.asarray(numbers, dtype=np.int64))


def test_obs_diagnostics_append_across_cycles(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "obs.nc"
    c1 = _obs(rng, 5, 8.0, [3, 0, 4, 1, 2])  # given out of processing order
    c2 = _obs(rng, 3, 16.0, [0, 1, 2])
    with ObsDiagnosticsWriter(path, config_toml=CONFIG, title="obs diag") as w:
        assert w.add_cycle(1, 8.0, c1, {"ANALYSIS_DLEAFC": 1.5e12, "ANALYSIS_DLEAFN": 3.0e10}) == 5
        assert w.add_cycle(2, 16.0, c2, {"ANALYSIS_DLEAFC": -2.0e11}) == 3
        assert w.add_cycle(3, 24.0, {k: v[:0] for k, v in c2.items()}) == 0
        with pytest.raises(HistoryError, match="cycles must increase"):
            w.add_cycle(3, 32.0, c2)
    with netCDF4.Dataset(path) as ds:
        assert ds.featureType == "point" and ds.Conventions == "CF-1.8" and ds.config_toml == CONFIG
        assert len(ds.dimensions["obs"]) == 8 and ds.dimensions["obs"].isunlimited()
        o1 = np.argsort(c1["obs_number"])
        for k in OBS_FIELDS:
            np.testing.assert_array_equal(ds[k][:], np.concatenate([c1[k][o1], c2[k]]))
        assert ds["obs_number"][:].tolist() == [0, 1, 2, 3, 4, 0, 1, 2]
        assert ds["obs_cycle"][:].tolist() == [1] * 5 + [2] * 3
        qc = ds["qc"]
        assert qc.dtype == np.int32 and qc.flag_values.tolist() == sorted(DART_QC)
        assert qc.flag_meanings.split()[0] == "assimilated"
        for k in ("value", "prior_mean", "posterior_spread", "qc"):
            assert ds[k].coordinates == "time lat lon"
        assert ds["lat"].standard_name == "latitude" and ds["time"].standard_name == "time"
        assert cftime.num2date(ds["time"][0], ds["time"].units, ds["time"].calendar) == cftime.DatetimeNoLeap(2002, 1, 9)
        assert ds["cycle"][:].tolist() == [1, 2, 3] and ds["n_obs_in_cycle"][:].tolist() == [5, 3, 0]
        dc = ds["ANALYSIS_DLEAFC"][:]
        assert dc[:2].tolist() == [1.5e12, -2.0e11] and dc.mask.tolist() == [False, False, True]
        assert ds["ANALYSIS_DLEAFN"][:].mask.tolist() == [False, True, True]
        assert ds["ANALYSIS_DLEAFC"].units == "gC"


def test_analysis_statistics(tmp_path, grid):
    rng = np.random.default_rng(5)
    path = tmp_path / "an.nc"
    prior = [{"TLAI": rng.gamma(2, 2, (grid.n_land, 8)), "TSOI": 280 + rng.random((grid.n_land, 4, 8))}
             for _ in range(2)]
    post = [{k: 0.5 * v for k, v in p.items()} for p in prior]
    with AnalysisStatsWriter(path, grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="an") as w:
        w.add(8.0, 1, prior[0], post[0], 0, grid.n_land)
        w.add(16.0, 2, prior[1], post[1], 0, grid.n_land)
    with netCDF4.Dataset(path) as ds:
        assert ds["cycle"][:].tolist() == [1, 2] and ds["time"][:].tolist() == [8.0, 16.0]
        for stage, data in (("prior", prior), ("posterior", post)):
            for name in ("TLAI", "TSOI"):
                mean = _land(ds[stats_name(name, stage, "mean")][:], grid)
                sd = _land(ds[stats_name(name, stage, "spread")][:], grid)
                assert ds[stats_name(name, stage, "mean")].cell_methods.startswith("time: point")
                for r in range(2):
                    want_m, want_s = data[r][name].mean(-1), data[r][name].std(-1, ddof=1)
                    if name == "TSOI":
                        want_m, want_s = want_m.T, want_s.T
                    np.testing.assert_allclose(mean[r], want_m.astype(np.float32), rtol=F32_RTOL, atol=0)
                    np.testing.assert_allclose(sd[r], want_s.astype(np.float32), rtol=F32_RTOL, atol=0)
        assert ds["TLAI_PRIOR_MEAN"][0].mask[ds["landmask"][:] == 0].all()


# ------------------------------------------------------------------------------------------
# Any rank count writes the same file
# ------------------------------------------------------------------------------------------


def _data_of(path):
    """{variable: raw bytes} of every variable, and the global attributes that must agree."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_maskandscale(False)
        data = {k: (v.dtype.str, v.shape, v[:].tobytes()) for k, v in ds.variables.items()}
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs() if k not in ("history", "n_ranks_written")}
    return data, attrs


@pytest.mark.mpi
def test_files_identical_for_any_rank_count(shared_tmp_path, grid):
    decomp = decompose(np.ones(grid.n_land), comm.size())
    start, count = local_block(decomp, comm.rank())
    times = [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    steps = _steps(grid, len(times), 5, seed=42)  # the same global values on every rank
    rng = np.random.default_rng(9)
    obs = [_obs(rng, 12, 8.0 * (c + 1), rng.permutation(12)) for c in range(2)]
    prior = {"TLAI": rng.gamma(2, 2, (grid.n_land, 5)), "TSOI": 280 + rng.random((grid.n_land, 4, 5))}
    post = {k: 0.9 * v for k, v in prior.items()}

    def write_all(tag, collective, s, c):
        d = shared_tmp_path
        _write_history(d / f"h_{tag}.nc", grid, steps, times, start=s, count=c, collective=collective)
        with AnalysisStatsWriter(d / f"a_{tag}.nc", grid, ["TLAI", "TSOI"], config_toml=CONFIG, title="a",
                                 collective=collective) as w:
            w.add(8.0, 1, {k: v[s:s + c] for k, v in prior.items()}, {k: v[s:s + c] for k, v in post.items()}, s, c)
        with ObsDiagnosticsWriter(d / f"o_{tag}.nc", config_toml=CONFIG, title="o", collective=collective) as w:
            for cyc, ob in enumerate(obs, start=1):
                mine = (ob["cell"] >= s) & (ob["cell"] < s + c)  # each rank holds the obs of its cells
                w.add_cycle(cyc, 8.0 * cyc, {k: v[mine] for k, v in ob.items()}, {"ANALYSIS_DLEAFC": 1.0 * cyc})

    write_all("par", True, start, count)
    if comm.rank() == 0:
        write_all("ser", False, 0, grid.n_land)  # the serial reference, from the full arrays
    comm.barrier()
    problems = []
    if comm.rank() == 0:
        for kind in ("h", "a", "o"):
            par, par_attrs = _data_of(shared_tmp_path / f"{kind}_par.nc")
            ser, ser_attrs = _data_of(shared_tmp_path / f"{kind}_ser.nc")
            if sorted(par) != sorted(ser):
                problems.append(f"{kind}: variables differ: {sorted(par)} vs {sorted(ser)}")
            problems += [f"{kind}: variable {k} differs" for k in ser if par.get(k) != ser[k]]
            if par_attrs != ser_attrs:
                problems.append(f"{kind}: global attributes differ")
        with netCDF4.Dataset(shared_tmp_path / "h_par.nc") as ds:
            if ds.n_ranks_written != comm.size() or len(ds.dimensions["time"]) != 2:
                problems.append("h_par.nc: wrong n_ranks_written or record count")
        leftovers = [p.name for p in shared_tmp_path.iterdir() if p.name.endswith(".tmp")]
        if leftovers:
            problems.append(f"temporary files left: {leftovers}")
    problems = comm.bcast(problems)
    assert problems == []
