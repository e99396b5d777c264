"""The experiment's analysis modes (engine.experiment): the regression update (patch LAI, leaf C and
leaf N in the state vector, as DART's CLM interface) and the observation sources "product" (gridded
LAI files) and "obs_seq" (DART obs_seq.out files), with missing and bad files.

The tiny region is test_experiment's: the f45 cells with centres in 6S-6N, 10E-30E (19 land cells,
53 patches), 3 members, a 3-day spin-up, 2-day cycles starting 2002-01-01 (analyses on 3 and 5
January). Each run takes about 10 s once the kernels are compiled.
"""

import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pytest

from engine import comm, evaluation, experiment
from engine import config as cfgmod
from engine import filter as filt
from engine import grid as gridmod
from engine import observations as obsmod
from engine.experiment import EXPERIMENTS
from engine.landmodel import BudgetError
from kernels.physics import cn_canopy as CA
from kernels.physics import cn_state as S
from test_experiment import checkpoint_contents

REPO = Path(__file__).resolve().parents[1]

TINY = ["grid.name=f45", "grid.lat_min=-6", "grid.lat_max=6", "grid.lon_min=10", "grid.lon_max=30",
        "ensemble.members=3", "time.start=2002-01-01", "time.stop=2002-01-05", "experiment.cycle_days=2",
        "spinup.stage1_days=1", "spinup.stage2_days=1", "spinup.stage3_days=1", "restart.keep=5",
        "run.log_level=INFO"]
T1 = np.datetime64("2002-01-03T00:00:00", "s")  # analysis times of cycles 1 and 2
T2 = np.datetime64("2002-01-05T00:00:00", "s")


def tiny_config(run_dir, extra=()):
    return cfgmod.load(None, [*TINY, f"run.run_dir={run_dir}", *extra])


def obs_diag(run_dir):
    """The CN observation diagnostics of a run, all its segments (one per checkpoint) joined."""
    return evaluation.load_obs_diag(run_dir)


def cycle_rows(diag, cycle):
    """Rows of the obs diagnostics of ``cycle``, in obs_number order."""
    sel = np.flatnonzero(diag["obs_cycle"] == cycle)
    sel = sel[np.argsort(diag["obs_number"][sel])]
    return {k: v[sel] for k, v in diag.items() if v.shape == diag["obs_cycle"].shape}


def spy_filter(monkeypatch):
    """Record (prior X, FilterResult) of every call of engine.filter.assimilate_block."""
    calls = []
    real = filt.assimilate_block

    def spy(X, *args, **kw):
        res = real(X, *args, **kw)
        calls.append((np.array(X, copy=True), res))
        return res

    monkeypatch.setattr(filt, "assimilate_block", spy)
    return calls


def land_cells(exp):
    g = exp.grid
    return np.asarray(g.land_lat), np.mod(np.asarray(g.land_lon), 360.0)


def batch_of(lat, lon, y, r, time, kind=obsmod.KIND_LAI):
    n = len(y)
    return obsmod.ObsBatch(y=np.asarray(y, float), r=np.full(n, float(r)) if np.ndim(r) == 0 else np.asarray(r, float),
                           cell=np.zeros(n, dtype=np.int64), lat=np.asarray(lat, float), lon=np.asarray(lon, float),
                           time=np.full(n, np.datetime64(time, "s")), qc=np.zeros(n, dtype=np.int32), kind=kind)


def log_text(run_dir):
    return (Path(run_dir) / "laida.log").read_text()


# ---------------------------------------------------------------------------------------------- regression
def test_regression_update_end_to_end(tmp_path, monkeypatch):
    """One cycle with filter.update = "regression": the filter's state is (LAI, leaf C, leaf N) per
    patch interleaved, leaf C and N are what the regression gave (not the allometric relation),
    LAI is recomputed from leaf C, everything >= 0, the analysis budget term is the leaf C/N added,
    LAI moved toward the observations, and the next steps' C/N budget checks close (and would fail
    without the analysis term)."""
    calls = spy_filter(monkeypatch)
    exp = experiment.Experiment(tiny_config(tmp_path, ["filter.update=regression", "filter.inflation=fixed"]))
    exp.run(max_cycles=1)
    assert len(calls) == 1
    X0, res = calls[0]
    assert res.counts["bound_contracted"] == res.counts["bound_collapsed"] == 0  # pure regression below
    cn, ctl = exp.runs["cn"].model, exp.runs["ctl"].model
    ps = cn.state.ps
    npch = cn.npatch
    assert X0.shape == (3 * npch, 3)
    # the prior is CTL's state (same ensemble, same forcing), interleaved as element 3p + v
    for v, i in enumerate((S.TLAI, S.LEAFC, S.LEAFN)):
        np.testing.assert_array_equal(X0[v::3], ctl.state.ps[i])
    # the model holds the regressed leaf C and N, and the LAI of that leaf C
    np.testing.assert_array_equal(ps[S.LEAFC], res.X[1::3])
    np.testing.assert_array_equal(ps[S.LEAFN], res.X[2::3])
    veg = cn.patch_pft > 0
    lai = np.empty((npch, 3))
    CA.leafc_to_lai(cn.patch_pft, np.ascontiguousarray(ps[S.LEAFC]), cn.pft, lai)
    np.testing.assert_array_equal(ps[S.TLAI][veg], lai[veg])
    for i in (S.TLAI, S.LEAFC, S.LEAFN, S.ELAI):
        assert np.all(ps[i] >= 0.0)
    assert np.all(res.X >= 0.0)
    # leaf C is not the allometric one of the regressed LAI (their difference is the documented gap)
    allo = np.empty((npch, 3))
    CA.lai_to_leafc(cn.patch_pft, np.ascontiguousarray(res.X[0::3]), cn.pft, allo)
    assert np.max(np.abs(allo[veg] - ps[S.LEAFC][veg])) > 1e-3
    # regression: one observation per cell, column-only, no inflation -> for every element x of the
    # cell's patches, x_post - x_prior = cov(x, y)/var(y) (y_post - y_prior), y = sum_p w_p LAI_p
    diag = cycle_rows(obs_diag(tmp_path), 1)
    assert diag["cell"].size == np.unique(diag["cell"]).size > 10
    n_checked = 0
    for cell, qc in zip(diag["cell"].astype(int), diag["qc"]):
        p = np.flatnonzero(cn.patch_col == cell)  # one rank: local column = global land cell
        w = cn.patch_wt[p]
        y0, y1 = w @ X0[3 * p], w @ res.X[3 * p]
        for v in (1, 2):
            x0, x1 = X0[3 * p + v], res.X[3 * p + v]
            if qc != 0 or np.ptp(y0) == 0.0:  # not assimilated, or no prior spread: no update
                np.testing.assert_array_equal(x1, x0)
                continue
            b = ((x0 - x0.mean(axis=1, keepdims=True)) @ (y0 - y0.mean())) / np.sum((y0 - y0.mean()) ** 2)
            np.testing.assert_allclose(x1 - x0, b[:, None] * (y1 - y0)[None, :], rtol=1e-8,
                                       atol=1e-10 * (1 + np.abs(x0).max()))
            n_checked += 1
    assert n_checked >= 20
    # LAI moved toward the observations: the filter's (regressed) H(x) and the model's cell LAI
    ok = diag["qc"] == 0
    y, pri, post = diag["value"][ok], diag["prior_mean"][ok], diag["posterior_mean"][ok]
    assert np.all(np.abs(post - y) <= np.abs(pri - y) + 1e-12) and np.sum(np.abs(post - y)) < np.sum(np.abs(pri - y))
    model_post = cn.to_column(ps[S.TLAI]).mean(axis=1)[diag["cell"][ok].astype(int)]
    assert np.sum(np.abs(model_post - y)) < np.sum(np.abs(pri - y))
    # the budget term: ensemble-mean leaf C and N added, summed over land (area x landfrac)
    area = np.asarray(exp.grid.land_area) * np.asarray(exp.grid.land_landfrac) * 1e6
    with netCDF4.Dataset(tmp_path / "cn" / "cn.obs_diag.c00001.nc") as ds:
        term_c, term_n = float(ds["ANALYSIS_DLEAFC"][0]), float(ds["ANALYSIS_DLEAFN"][0])
    dc = cn.to_column(res.X[1::3] - X0[1::3]).mean(axis=1) @ area
    dn = cn.to_column(res.X[2::3] - X0[2::3]).mean(axis=1) @ area
    assert term_c == pytest.approx(dc, rel=1e-12) and term_c != 0.0
    assert term_n == pytest.approx(dn, rel=1e-12) and term_n != 0.0
    # six hours of CN with its budget checks on, the analysis term included (a BudgetError fails)
    exp._restore_generators()
    gen = exp.runs["cn"].gen
    exp._advance({"cn": (cn, gen)}, exp.start_s + exp.cycle_s, exp.rec_s)
    # set_leaf refuses what the filter's bounds exclude
    with pytest.raises(ValueError, match="set_leaf: leafn = -1.0 at patch"):
        cn.set_leaf(ps[S.LEAFC], np.where(np.arange(npch)[:, None] == 5, -1.0, ps[S.LEAFN]))
    # ... and the check does look at the term: an increment left unrecorded is caught
    cn.set_leaf(ps[S.LEAFC] * 1.01, ps[S.LEAFN])
    cn._analysis_c[...] = 0.0
    with pytest.raises(BudgetError, match="carbon \\(analysis increment\\)"):
        exp._advance({"cn": (cn, gen)}, exp.start_s + exp.cycle_s + exp.rec_s, exp.rec_s)


def test_regression_lower_bounds_hold(tmp_path, monkeypatch):
    """Observations of LAI 0 with a tiny error (outlier check off) drive the regression below zero:
    the filter contracts the members onto the bound 0 for LAI, leaf C and leaf N, the model's state
    stays >= 0 and the C/N budget still closes in the next steps. Also: obs_seq files found by a
    date pattern, one per analysis time."""
    calls = spy_filter(monkeypatch)
    exp = experiment.Experiment(tiny_config(tmp_path, [
        "filter.update=regression", "filter.outlier_threshold=0", "observations.source=obs_seq",
        f"observations.files={tmp_path}/obs/obs_seq.{{year}}{{month:02d}}{{day:02d}}"]))
    lat, lon = land_cells(exp)
    for t in (T1, T2):
        obsmod.write_obs_seq(tmp_path / "obs" / f"obs_seq.{str(t)[:10].replace('-', '')}",
                             batch_of(lat, lon, np.zeros(lat.size), 1e-4, t))
    exp.run()
    assert len(calls) == 2
    counts = calls[0][1].counts
    assert counts["bound_contracted"] + counts["bound_collapsed"] > 0, counts
    ps = exp.runs["cn"].model.state.ps
    for X0, res in calls:
        assert np.all(res.X >= 0.0)
    for i in (S.TLAI, S.LEAFC, S.LEAFN):
        assert np.all(ps[i] >= 0.0)
    # cycle 2 ran its budget checks after the first analysis; its prior is that analysis' posterior
    # advanced two days: LAI far below CTL's
    cn_lai = exp.runs["cn"].model.to_column(ps[S.TLAI]).mean()
    ctl_lai = exp.runs["ctl"].model.to_column(exp.runs["ctl"].model.state.ps[S.TLAI]).mean()
    assert cn_lai < 0.5 * ctl_lai
    # the checkpoint holds the adaptive inflation of all three state variables; a resume reads it back
    infl = exp.runs["cn"].inflation
    assert infl.mean.shape == (3 * exp.runs["cn"].model.npatch,) and np.ptp(infl.mean.reshape(-1, 3), axis=0).max() > 0
    again = experiment.Experiment(exp.cfg)
    again._load(2)
    np.testing.assert_array_equal(again.runs["cn"].inflation.mean, infl.mean)
    np.testing.assert_array_equal(again.runs["cn"].inflation.sd, infl.sd)


# ---------------------------------------------------------------------------------------------- product
def write_product(path, rng, *, flip_lat=True):
    """A 0.5 deg GLASS-like LAI product over 10S-10N, 5E-35E (finer than f45, aligned with its cell
    edges): int16 packed with scale_factor 0.01, _FillValue -1, valid_range 0..1000, some pixels
    out of the valid range, an uncertainty layer (scale 0.001, some fill); the f45 cell centred at
    2N, 20E almost all fill. Returns (lat centres, lon centres, LAI with NaN where
    invalid, sd with NaN where missing)."""
    lat = np.arange(-10 + 0.25, 10, 0.5)
    lon = np.arange(5 + 0.25, 35, 0.5)
    if flip_lat:
        lat = lat[::-1]  # north to south, as GLASS
    lai = rng.uniform(0.5, 6.5, (lat.size, lon.size))
    packed = np.round(lai / 0.01).astype(np.int16)
    fill = rng.random(packed.shape) < 0.1
    fill |= ((lat[:, None] > 0) & (lat[:, None] < 4) & (lon[None, :] > 17.5) & (lon[None, :] < 22.5)
             & (rng.random(packed.shape) < 0.9))
    high = ~fill & (rng.random(packed.shape) < 0.05)
    packed[fill] = -1
    packed[high] = 2000  # beyond valid_range: invalid
    sd = rng.uniform(0.2, 1.0, packed.shape)
    sd_packed = np.round(sd / 0.001).astype(np.int16)
    sd_fill = rng.random(packed.shape) < 0.2
    sd_packed[sd_fill] = -1
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", lon.size)
        ds.createVariable("lat", "f8", ("lat",))[:] = lat
        ds.createVariable("lon", "f8", ("lon",))[:] = lon
        v = ds.createVariable("GLASS_LAI", "i2", ("lat", "lon"), fill_value=np.int16(-1))
        v.set_auto_maskandscale(False)
        v.scale_factor, v.add_offset, v.valid_range, v.units = 0.01, 0.0, np.array([0, 1000], np.int16), "m2/m2"
        v[:] = packed
        u = ds.createVariable("LAI_SD", "i2", ("lat", "lon"), fill_value=np.int16(-1))
        u.set_auto_maskandscale(False)
        u.scale_factor, u.units = 0.001, "m2/m2"
        u[:] = sd_packed
    good = packed.astype(float) * 0.01
    good[fill | high] = np.nan
    sdv = sd_packed.astype(float) * 0.001
    sdv[sd_fill] = np.nan
    return lat, lon, good, sdv


def expected_observations(g, cfg, lat, lon, res, lai, sd):
    """The observations of the land cells of grid ``g`` from a product of resolution ``res`` deg
    whose pixels (centres lat, lon) lie wholly in one f45 cell, computed here: area-weighted mean of
    the valid pixels, pixel error from ``sd`` where finite else the error model, plus the
    representativeness error; cells whose valid area is below min_valid_fraction of their land
    area are dropped. Returns (cells, values, error variances)."""
    _, _, plat_e, plon_e = gridmod.global_coordinates("f45")
    pidx = np.asarray(g.land_parent_index)
    j = np.searchsorted(plat_e, lat, side="right") - 1
    i = np.searchsorted(plon_e, lon, side="right") - 1
    w = np.abs(np.sin(np.deg2rad(lat + res / 2)) - np.sin(np.deg2rad(lat - res / 2)))[:, None] * np.ones(lon.size)
    cell_of = j[:, None] * (plon_e.size - 1) + i[None, :]
    cells, ys, rs = [], [], []
    for c in range(g.n_land):
        inside = cell_of == pidx[c]
        valid = inside & np.isfinite(lai)
        land_w = float(np.asarray(g.land_landfrac)[c]) * w[inside].sum()
        if min(w[valid].sum() / land_w, 1.0) < cfg.min_valid_fraction:
            continue
        wv, v = w[valid], lai[valid]
        s = np.where(np.isfinite(sd[valid]), sd[valid], np.maximum(0.1, cfg.sd_a + cfg.sd_b * v))
        mean = np.sum(wv * v) / wv.sum()
        cells.append(c)
        ys.append(mean)
        rs.append(np.sum(wv**2 * s**2) / wv.sum() ** 2 + (cfg.repr_a + cfg.repr_b * mean) ** 2)
    return np.array(cells), np.array(ys), np.array(rs)


def test_product_source_aggregates_the_files(tmp_path):
    """A GLASS-like product file named by year and day of year of the 8-day composite containing
    the analysis time: its valid pixels, unpacked and masked, averaged over each f45 cell by area,
    with the uncertainty layer (else the error model) and the representativeness error, are the
    observations in the diagnostics; a cell with too few valid pixels is dropped."""
    rng = np.random.default_rng(7)
    lat, lon, lai, sd = write_product(tmp_path / "obs" / "GLASS_LAI_2002001.nc", rng)
    exp = experiment.Experiment(tiny_config(tmp_path, [
        "time.stop=2002-01-03", "observations.source=product", "observations.composite_days=8",
        f"observations.files={tmp_path}/obs/GLASS_LAI_{{year}}{{doy:03d}}.nc", "observations.variable=GLASS_LAI",
        "observations.uncertainty=LAI_SD"]))
    exp.run()
    g = exp.grid
    exp_cells, exp_y, exp_r = expected_observations(g, exp.cfg.observations, lat, lon, 0.5, lai, sd)
    d = cycle_rows(obs_diag(tmp_path), 1)
    order = np.argsort(d["cell"])
    cloudy = int(np.flatnonzero((np.asarray(g.land_lat) == 2) & (np.asarray(g.land_lon) == 20))[0])
    assert cloudy not in exp_cells and 10 < len(exp_cells) < g.n_land  # the mostly-fill cell is dropped
    np.testing.assert_array_equal(d["cell"][order], exp_cells)
    np.testing.assert_allclose(d["value"][order], exp_y, rtol=1e-12)
    np.testing.assert_allclose(d["error_variance"][order], exp_r, rtol=1e-12)
    np.testing.assert_array_equal(d["time"], 0.0)  # the composite of day-of-year 1: model day 0
    assert np.count_nonzero(d["qc"] == 0) > 0
    assert "GLASS_LAI_2002001.nc" in log_text(tmp_path)


def test_product_plain_hdf5_raster_with_grid_box(tmp_path):
    """A GEOV1-like plain HDF5 raster without coordinate variables (uint8 digital numbers, LAI =
    DN / 30, fill 255, a time axis of one record, 0.25 deg, rows from north to south) placed by
    observations.grid_box and aggregated like any product (error model: no uncertainty layer)."""
    rng = np.random.default_rng(11)
    lat = np.arange(10 - 0.125, -10, -0.25)
    lon = np.arange(5 + 0.125, 35, 0.25)
    dn = rng.integers(15, 200, (1, lat.size, lon.size)).astype(np.uint8)
    dn[rng.random(dn.shape) < 0.15] = 255
    path = tmp_path / "GEOV1_LAI_20020103.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("LAI", data=dn)
        d.attrs["scale_factor"] = np.float64(1 / 30)
        d.attrs["_FillValue"] = np.uint8(255)
        d.attrs["valid_range"] = np.array([0, 210], dtype=np.uint8)
    exp = experiment.Experiment(tiny_config(tmp_path / "run", [
        "observations.source=product", f"observations.files={tmp_path}/GEOV1_LAI_{{year}}{{month:02d}}{{day:02d}}.h5",
        "observations.grid_box=[10, -10, 5, 35]"]))
    batch = exp._observations(1, T1)
    lai = np.where(dn[0] == 255, np.nan, dn[0] / 30)
    cells, y, r = expected_observations(exp.grid, exp.cfg.observations, lat, lon, 0.25, lai, np.full(lai.shape, np.nan))
    assert 10 < cells.size
    np.testing.assert_array_equal(batch.cell, cells)
    np.testing.assert_allclose(batch.y, y, rtol=1e-12)
    np.testing.assert_allclose(batch.r, r, rtol=1e-12)
    np.testing.assert_array_equal(batch.time, T1)
    with pytest.raises(cfgmod.ConfigError, match="observations.grid_box must be empty or 4 edges"):
        tiny_config(tmp_path, ["observations.grid_box=[10, -10, 5]"])


# ---------------------------------------------------------------------------------------------- obs_seq
def test_obs_seq_source_round_trip(tmp_path):
    """obs_seq.out files written by engine.observations.write_obs_seq and found by a glob: the LAI
    observations of each analysis window are assimilated with their values, error variances and
    locations; another type, a location outside the region and a time outside every window are
    rejected and counted in the log."""
    exp = experiment.Experiment(tiny_config(tmp_path, [
        "observations.source=obs_seq", f"observations.files={tmp_path}/obs/seq_*.out"]))
    lat, lon = land_cells(exp)
    rng = np.random.default_rng(3)
    y1, y2 = rng.uniform(1, 5, lat.size), rng.uniform(1, 5, lat.size)
    r1, r2 = rng.uniform(0.2, 0.6, lat.size), rng.uniform(0.2, 0.6, lat.size)
    a = batch_of(lat, lon, y1, r1, T1)
    extra = batch_of([2.0, 40.0], [20.0, 20.0], [3.0, 3.0], 0.3, T1)  # in the region 5 days later; outside
    extra = obsmod.ObsBatch(**{k: getattr(extra, k) for k in ("y", "r", "cell", "lat", "lon", "qc")},
                            time=np.array([T1 + np.timedelta64(5, "D"), T1]))
    obsmod.write_obs_seq(tmp_path / "obs" / "seq_a.out", obsmod.concat_batches([a, extra]))
    obsmod.write_obs_seq(tmp_path / "obs" / "seq_b.out", batch_of(lat, lon, y2, r2, T2 - np.timedelta64(6, "h")))
    obsmod.write_obs_seq(tmp_path / "obs" / "seq_t.out",
                         batch_of(lat[:2], lon[:2], [300.0, 301.0], 1.0, T1, kind="SOIL_TEMPERATURE"))
    exp.run()
    diag = obs_diag(tmp_path)
    for cycle, y, r, t in ((1, y1, r1, 2.0), (2, y2, r2, 3.75)):
        d = cycle_rows(diag, cycle)
        assert d["cell"].size == lat.size
        np.testing.assert_array_equal(d["cell"], np.arange(lat.size))  # file order = processing order
        np.testing.assert_array_equal(d["value"], y)  # the text round trip is exact (repr)
        np.testing.assert_array_equal(d["error_variance"], r)
        np.testing.assert_allclose(d["lat"], lat, atol=1e-12)
        np.testing.assert_allclose(d["lon"], lon, atol=1e-12)
        np.testing.assert_allclose(d["time"], t, atol=1e-9)  # the observations' own times (model days)
        assert np.count_nonzero(d["qc"] == 0) > 0
        ok = d["qc"] == 0
        post, pri = np.abs(d["posterior_mean"][ok] - y[ok]), np.abs(d["prior_mean"][ok] - y[ok])
        assert np.all(post <= pri + 1e-12) and np.sum(post) < np.sum(pri)
        final = obsmod.read_obs_seq(tmp_path / "cn" / f"obs_seq.final.{cycle:05d}")
        np.testing.assert_array_equal(final.copy("observation"), y)
        np.testing.assert_array_equal(final.copy("posterior ensemble mean"), d["posterior_mean"])
    # one diagnostics segment per checkpoint (restart.every_cycles = 1), joined in cycle order; a
    # cycle in two segments is an error naming both
    assert [p.name for p in evaluation.obs_diag_segments(tmp_path)] == ["cn.obs_diag.c00001.nc", "cn.obs_diag.c00002.nc"]
    np.testing.assert_array_equal(diag["cycle"], [1, 2])
    shutil.copy(tmp_path / "cn" / "cn.obs_diag.c00002.nc", tmp_path / "cn" / "cn.obs_diag.c00003.nc")
    with pytest.raises(evaluation.EvaluationError, match=r"cycle 2 is in both .*c00002\.nc and .*c00003\.nc"):
        evaluation.load_obs_diag(tmp_path)
    log = log_text(tmp_path)
    # cycle 1 reads all three files (seq_b: 19 later observations); cycle 2 skips seq_t, whose times
    # (known from cycle 1) lie before its window
    assert (f"cycle 1: {2 * lat.size + 4} observations read from {tmp_path}/obs/seq_a.out; rejected: 2 not LAI, "
            f"1 outside the region's land cells, {lat.size + 1} outside the analysis window" in log), log
    assert (f"cycle 2: {2 * lat.size + 2} observations read from {tmp_path}/obs/seq_b.out; rejected: 0 not LAI, "
            f"1 outside the region's land cells, {lat.size + 1} outside the analysis window" in log), log


# ---------------------------------------------------------------------------------------------- missing, bad
def test_missing_observation_files_error_or_skip(tmp_path):
    """observations.missing = "error": the error names the expected file; "skip": the cycle without a
    file has no analysis (CN equals CTL after it, an empty cycle in the diagnostics, a warning)."""
    pattern = f"{tmp_path}/obs/obs_seq.{{year}}{{month:02d}}{{day:02d}}"
    exp = experiment.Experiment(tiny_config(tmp_path / "err", ["observations.source=obs_seq",
                                                               f"observations.files={pattern}"]))
    with pytest.raises(obsmod.ObservationError, match=f"file {tmp_path}/obs/obs_seq.20020103 not found"):
        exp._observations(1, T1)
    exp = experiment.Experiment(tiny_config(tmp_path / "skip", ["observations.source=obs_seq",
                                                                f"observations.files={pattern}",
                                                                "observations.missing=skip"]))
    lat, lon = land_cells(exp)
    obsmod.write_obs_seq(tmp_path / "obs" / "obs_seq.20020105", batch_of(lat, lon, np.full(lat.size, 2.0), 0.3, T2))
    exp.run()
    diag = obs_diag(tmp_path / "skip")
    np.testing.assert_array_equal(diag["cycle"], [1, 2])
    np.testing.assert_array_equal(diag["n_obs_in_cycle"], [0, lat.size])
    assert np.isnan(diag["ANALYSIS_DLEAFC"][0]) and np.isfinite(diag["ANALYSIS_DLEAFC"][1])
    with h5py.File(tmp_path / "skip" / "cn" / "checkpoint_000001.h5") as f, \
            h5py.File(tmp_path / "skip" / "ctl" / "checkpoint_000001.h5") as g:
        np.testing.assert_array_equal(f["cn_leafc"][...], g["cn_leafc"][...])
    assert not (tmp_path / "skip" / "cn" / "obs_seq.final.00001").exists()
    assert (tmp_path / "skip" / "cn" / "obs_seq.final.00002").exists()
    log = log_text(tmp_path / "skip")
    assert f"no obs_seq observations: file {tmp_path}/obs/obs_seq.20020103 not found" in log
    assert "no analysis this cycle" in log


def test_bad_observation_files_name_the_file(tmp_path):
    """Unreadable product or obs_seq files, a missing variable, a glob over undated product files
    and an empty glob give ObservationError naming the file (or pattern) and what is wrong."""
    obs = tmp_path / "obs"
    obs.mkdir()
    (obs / "GLASS_LAI_2002001.nc").write_bytes(b"this is not netCDF\n" * 10)
    write_product(obs / "other_2002001.nc", np.random.default_rng(1))
    seq = obs / "obs_seq.20020103"
    seq.write_text(" obs_sequence\nobs_kind_definitions\n           1\n           1 LEAF_AREA_INDEX\n"
                   "  num_copies:            1  num_qc:            1\n  num_obs:            2  max_num_obs: 2\n")

    def observations(*extra):
        exp = experiment.Experiment(tiny_config(tmp_path / "run", list(extra)))
        return exp._observations(1, T1)

    product = ["observations.source=product", "observations.composite_days=8"]
    with pytest.raises(obsmod.ObservationError, match=f"{obs}/GLASS_LAI_2002001.nc: cannot open"):
        observations(*product, f"observations.files={obs}/GLASS_LAI_{{year}}{{doy:03d}}.nc")
    with pytest.raises(obsmod.ObservationError, match=f"{obs}/other_2002001.nc: variable 'LAI' not found"):
        observations(*product, f"observations.files={obs}/other_{{year}}{{doy:03d}}.nc")
    undated = f"{obs}/other_2002001.nc: found by the glob .* no time coordinate"
    with pytest.raises(obsmod.ObservationError, match=undated):
        observations(*product, f"observations.files={obs}/other_*.nc", "observations.variable=GLASS_LAI")
    with pytest.raises(obsmod.ObservationError, match=f"no file matches '{obs}/nothing_\\*.nc'"):
        observations(*product, f"observations.files={obs}/nothing_*.nc")
    with pytest.raises(obsmod.ObservationError, match=f"obs_seq {seq}: file ends early, expected copy metadata"):
        observations("observations.source=obs_seq",
                     f"observations.files={obs}/obs_seq.{{year}}{{month:02d}}{{day:02d}}")
    with pytest.raises(obsmod.ObservationError, match="pattern .*\\{date\\}.*cannot fill it"):
        observations("observations.source=obs_seq", f"observations.files={obs}/obs_seq.{{date}}")
    # a product file found by a glob carries its own time: the record of the window is used
    with netCDF4.Dataset(obs / "other_2002001.nc", "a") as ds:
        ds.createDimension("time", 1)
        t = ds.createVariable("time", "f8", ("time",))
        t.units, t.calendar = "days since 2002-01-01 00:00:00", "standard"
        t[:] = [2.25]  # 3 January 06 UTC: inside the window of the analysis at T1 (12 h)
    batch = observations(*product, f"observations.files={obs}/other_*.nc", "observations.variable=GLASS_LAI")
    assert batch.n > 10 and np.all(batch.time == np.datetime64("2002-01-03T06:00:00"))
    with pytest.raises(obsmod.ObservationError, match="no record of .*other_2002001.nc lies within the analysis"):
        observations(*product, f"observations.files={obs}/other_*.nc", "observations.variable=GLASS_LAI",
                     "observations.window_hours=3")


def test_new_configuration_keys_are_checked(tmp_path):
    with pytest.raises(cfgmod.ConfigError, match="observations.files must name"):
        tiny_config(tmp_path, ["observations.source=product"])
    with pytest.raises(cfgmod.ConfigError, match="observations.window_hours may be at most half the cycle"):
        tiny_config(tmp_path, ["observations.window_hours=30"])
    with pytest.raises(cfgmod.ConfigError, match="observations.missing"):
        tiny_config(tmp_path, ["observations.missing=ignore"])
    with pytest.raises(cfgmod.ConfigError, match="filter.update"):
        tiny_config(tmp_path, ["filter.update=linear"])


# ---------------------------------------------------------------------------------------------- MPI
@pytest.mark.mpi
def test_regression_bit_identical_across_ranks(shared_tmp_path):
    """Regression update with a 600 km localization (tiled observation order, observations updating
    the neighbouring cells' LAI, leaf C and leaf N across rank boundaries) and adaptive inflation:
    checkpoints, obs diagnostics and obs_seq.final on this rank count equal a serial run's bits."""
    extra = ["filter.update=regression", "filter.cutoff_km=600", "run.log_level=WARNING", "spinup.stage2_days=0"]
    par, ser = shared_tmp_path / "par", shared_tmp_path / "ser"
    experiment.run(tiny_config(par, extra))
    problems = None
    done = shared_tmp_path / "serial_done"
    if comm.rank() != 0:  # wait without spinning in MPI, so that the serial run below gets the cores
        while not done.exists():
            time.sleep(0.2)
    else:
        try:
            (shared_tmp_path / "ser.toml").write_text(cfgmod.to_toml(tiny_config(ser, extra)))
            proc = subprocess.run([sys.executable, "-m", "engine.cli", "run", str(shared_tmp_path / "ser.toml")],
                                  cwd=REPO, env=comm.child_mpiexec_env(), capture_output=True, text=True, timeout=240)
            problems = [] if proc.returncode == 0 else [f"serial run failed:\n{proc.stdout}\n{proc.stderr}"]
            if not problems:
                ref, got = checkpoint_contents(ser, 2), checkpoint_contents(par, 2)
                problems += [f"checkpoint: {k} differs" for k in ref if not np.array_equal(got.get(k), ref[k])]
                if not any(k.startswith("cn/inflation_mean_leafc_") for k in ref):
                    problems.append("no adaptive inflation fields of leaf C in the checkpoint")
                a, b = obs_diag(par), obs_diag(ser)
                problems += [f"obs diagnostics: {k} differs" for k in b
                             if not np.array_equal(a[k], b[k], equal_nan=True)]
                d = cycle_rows(b, 1)  # processed in engine.filter.tiled_order of the observed cells
                cells = np.argsort(d["cell"], kind="stable")
                perm = filt.tiled_order(np.column_stack((d["lat"][cells], d["lon"][cells])), 600.0 / 6371.0, "sphere")
                if not np.array_equal(d["cell"][cells][perm], d["cell"]):
                    problems.append(f"observations not in tiled order: {d['cell']}")
                for c in (1, 2):
                    name = f"cn/obs_seq.final.{c:05d}"
                    if (par / name).read_bytes() != (ser / name).read_bytes():
                        problems.append(f"obs_seq.final of cycle {c} differs")
                if np.array_equal(ref["cn/cn_leafc"], ref["ctl/cn_leafc"]):
                    problems.append("CN equals CTL: no analysis happened")
        finally:
            done.touch()  # even if the comparison fails, so that no rank waits forever
    problems = comm.bcast(problems)
    assert not problems, "\n".join(problems[:20])
