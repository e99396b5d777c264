"""Annual-mean maps of the generated ensemble forcing (engine.forcing: annual_means, forcing_maps,
write_forcing_maps, plot_forcing_maps) and the ``laida forcing`` subcommand.

The region is a small f45 box over equatorial Africa (58 land cells: Congo rain forest, East African
highlands, savannas), so a full year of 6-hourly records takes about a second.
"""

from __future__ import annotations

import math

import netCDF4
import numpy as np
import pytest

from engine import cli, comm
from engine import forcing as F
from engine import grid as gridmod
from kernels import forcing as kf

BOX = dict(lat_min=-16.0, lat_max=16.0, lon_min=5.0, lon_max=45.0)
BOX_ARGS = ["--box", "-16", "16", "5", "45"]
REC_PER_YEAR = 1460


@pytest.fixture(scope="module")
def box():
    return gridmod.make_grid("f45", **BOX)


def _generator(g, cells=slice(None), **kw):
    """The generator forcing_maps builds for ``cells`` of grid ``g`` (area-sampled climatology)."""
    return F.ForcingGenerator(g.land_lat[cells], g.land_lon[cells], g.land_parent_index[cells],
                              method="area", half_width=F.grid_half_width(g), **kw)


def _ar_mean_var(phi, n):
    """Variance of the mean of n consecutive samples of a unit-variance AR(1) with coefficient phi."""
    lag = np.arange(1, n)
    return (n + 2.0 * np.sum((n - lag) * phi ** lag)) / n ** 2


# ----------------------------------------------------------------------------------------------
# Streaming means
# ----------------------------------------------------------------------------------------------
def test_annual_means_in_blocks_equal_a_direct_computation(box):
    cells = slice(0, 6)
    k0, nrec, nmem = 37, 100, 3  # a span that does not start at record 0 or on a block boundary
    gen = _generator(box, cells, n_members=nmem, seed=4)
    direct = gen.records(k0, nrec).values  # (rec, field, cell, member)
    d_mean = direct.mean(axis=(0, 3))
    d_spread = direct.std(axis=3, ddof=1).mean(axis=0)
    results = [F.annual_means(_generator(box, cells, n_members=nmem, seed=4, climatology=gen.climatology), nrec,
                              k0=k0, block=b, batches=4) for b in (None, 1, 7, nrec)]
    for res in results[1:]:  # fixed-order element-wise sums: the block length changes nothing, bit for bit
        for key in results[0]:
            assert np.array_equal(res[key], results[0][key]), key
    res = results[0]
    assert sorted(res) == sorted(list(F.RECORD_FIELDS) + [f + s for f in F.RECORD_FIELDS for s in ("_spread", "_batches")])
    d_batches = direct.reshape(4, nrec // 4, *direct.shape[1:]).mean(axis=(1, 4))  # (batch, field, cell)
    for i, f in enumerate(F.RECORD_FIELDS):
        np.testing.assert_allclose(res[f + "_batches"], d_batches[:, i], rtol=1e-12, atol=0)
        # numpy sums pairwise, annual_means record by record: they differ by rounding only
        # (<= ~nrec * 2**-52 relative), far below 1e-12 of the field's magnitude
        scale = np.abs(d_mean[i]).max()
        np.testing.assert_allclose(res[f], d_mean[i], rtol=1e-12, atol=0)
        np.testing.assert_allclose(res[f + "_spread"], d_spread[i], rtol=1e-12, atol=1e-12 * scale)
    # perturbed fields have a spread (TBOT ~ 1 K), PSRF and WIND are not perturbed
    assert np.all(res["TBOT_spread"] > 0.5) and np.all(res["FLDS_spread"] > 5.0)
    assert np.all(res["PSRF_spread"] <= 1e-9 * res["PSRF"])
    one = F.annual_means(_generator(box, cells, n_members=1, seed=4, climatology=gen.climatology), 10)
    assert "TBOT_spread" not in one and one["TBOT"].shape == (6,)
    with pytest.raises(ValueError, match="nrec >= 1"):
        F.annual_means(_generator(box, cells, n_members=2, climatology=gen.climatology), 0)


def test_climatology_annual_means_are_month_length_weighted(box):
    clim = _generator(box, slice(0, 4), n_members=2).climatology
    c = F.climatology_annual_means(clim)
    days = kf.MONTH_DAYS / 365.0
    np.testing.assert_allclose(c["TBOT_clim"], clim.t2m @ days, rtol=1e-14, atol=0)
    # mm/s x month seconds summed = mm per 365-day year
    np.testing.assert_allclose(c["PRECT_clim"], (clim.precip * kf.MONTH_DAYS * 86400.0).sum(axis=1), rtol=1e-13)


# ----------------------------------------------------------------------------------------------
# The generated year against the climatology it is anchored on
# ----------------------------------------------------------------------------------------------
def test_box_annual_means_match_the_climatology(box):
    """Area-weighted box means of the generated year match ERA5's annual means at the same cells.

    TBOT: the deterministic part reproduces each month's mean exactly, so the error is the AR(1)
    noise of the annual mean: shared synoptic weather (sigma_T = 1 + 3 sin^2(lat) K, e-folding 3 d)
    plus the member perturbations (1 K, 1 d, averaged over N members). Its standard deviation per
    cell, sd_c, follows from the AR(1) parameters; the box mean's sd is at most the weighted mean of
    the sd_c whatever the correlation between cells (triangle inequality). Tolerance: 4 x that bound
    for the box mean, 5 sd_c for every single cell.
    PRECT: E[P] = P_month for every record, so the anomaly series P_r - P_month(r) has mean 0; the
    standard error of its box-mean annual mean is estimated by batch means (20 batches of 73
    records = 18 days, far longer than the 0.5-1 d correlation times) and the tolerance is 4
    standard errors plus 0.2 % for the bias of the lognormal multiplier from truncating its deviates
    at 3 sd (-0.08 %, computed from PerturbationSpec).
    """
    nmem = 4
    maps = F.forcing_maps(box, members=nmem, seed=0, allgather=True)
    gen = _generator(box, n_members=nmem, seed=0)
    rec = gen.records(0, REC_PER_YEAR)
    w = box.land_area * box.land_landfrac
    means = F.land_means(maps)
    # the maps are the annual means of this year (the same generator, streamed)
    np.testing.assert_allclose(maps.values["TBOT"], rec.field("TBOT").mean(axis=(0, 2)), rtol=1e-12)
    np.testing.assert_allclose(maps.values["PRECT"], rec.field("PRECTmms").mean(axis=(0, 2)) * 365 * 86400.0,
                               rtol=1e-12)
    np.testing.assert_array_equal(maps.values["TBOT_degC"], maps.values["TBOT"] - 273.15)

    wp, pp = F.DEFAULT_WEATHER.params(21600.0), F.DEFAULT_PERTURBATIONS.params(21600.0)
    sigma_t = 1.0 + 3.0 * np.sin(np.deg2rad(box.land_lat)) ** 2
    sd_c = np.sqrt(sigma_t ** 2 * _ar_mean_var(wp.phi_t, REC_PER_YEAR)
                   + pp.sd_t ** 2 * _ar_mean_var(pp.phi, REC_PER_YEAR) / nmem)
    err_c = maps.values["TBOT"] - maps.values["TBOT_clim"]
    assert np.all(np.abs(err_c) <= 5.0 * sd_c), f"cell TBOT errors {err_c[np.abs(err_c) > 5 * sd_c]} K"
    tol_t = 4.0 * float(np.dot(w, sd_c) / w.sum())
    assert abs(means["TBOT"] - means["TBOT_clim"]) <= tol_t, (means["TBOT"], means["TBOT_clim"], tol_t)
    assert tol_t < 0.6  # the check has teeth: well under the 1 K member perturbation

    months = kf.DAY_TO_MONTH[((np.arange(REC_PER_YEAR) * 21600.0) % kf.SECONDS_PER_YEAR // 86400).astype(int)]
    anomaly = rec.field("PRECTmms").mean(axis=2) - gen.climatology.precip[:, months].T  # (record, cell) mm/s
    box_anomaly = anomaly @ w / w.sum()
    batches = box_anomaly.reshape(20, 73).mean(axis=1)
    se = batches.std(ddof=1) / math.sqrt(batches.size) * kf.SECONDS_PER_YEAR  # mm/yr
    mu, sg = F.DEFAULT_PERTURBATIONS.lognormal(F.DEFAULT_PERTURBATIONS.precip_sd)
    z = np.linspace(-8, 8, 160001)  # E[exp(mu + sg clip(z, -3, 3))] by quadrature on a fine grid
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    bias = float(np.sum(np.exp(mu + sg * np.clip(z, -3, 3)) * phi) * (z[1] - z[0])) - 1.0
    assert -0.002 < bias < 0.0
    # the streamed batch means of forcing_maps give the same standard error (rounding only)
    assert F.land_mean_standard_error(maps, "PRECT") == pytest.approx(se, rel=1e-9)
    tol_p = 4.0 * se + 0.002 * means["PRECT_clim"]
    assert abs(means["PRECT"] - means["PRECT_clim"]) <= tol_p, (means["PRECT"], means["PRECT_clim"], tol_p)
    assert tol_p < 0.2 * means["PRECT_clim"]  # a wrong rain amount (e.g. a missing factor) would fail
    # the spread is the member perturbation: TBOT ~ 1 K (truncated at 2.5 sd; c4(4) = 0.92 bias of s)
    assert 0.8 < means["TBOT_spread"] < 1.0
    assert 12.0 < means["FLDS_spread"] < 26.0  # 20 W/m2 perturbation plus ~5 W/m2 from the 1 K in sigma T^4


# ----------------------------------------------------------------------------------------------
# MPI: the gathered result does not depend on the rank count
# ----------------------------------------------------------------------------------------------
@pytest.mark.mpi
def test_forcing_maps_are_independent_of_the_rank_count(box):
    kw = dict(members=3, seed=5, year=2003, start_year=2002)  # the second year of a run: records 1460..2919
    maps = F.forcing_maps(box, **kw)
    if comm.rank() != 0:
        assert maps is None
        return
    assert maps.settings["forcing_first_record"] == REC_PER_YEAR and maps.settings["forcing_ranks"] == comm.size()
    gen = _generator(box, n_members=3, seed=5)  # all cells on this rank alone: the serial answer
    ref, anomaly = F._local_maps(gen, REC_PER_YEAR, REC_PER_YEAR, None)
    assert np.array_equal(maps.batch_anomalies["PRECT"], anomaly)
    assert sorted(maps.values) == sorted(ref)
    for k, v in ref.items():
        assert maps.values[k].shape == (box.n_land,)
        assert np.array_equal(maps.values[k], v), f"{k} differs on {comm.size()} ranks"


# ----------------------------------------------------------------------------------------------
# The CLI
# ----------------------------------------------------------------------------------------------
def _check_netcdf(path, g, members):
    with netCDF4.Dataset(path) as ds:
        assert ds.Conventions == "CF-1.8"
        assert "Copernicus" in ds.source_era5 and "ETOPO5" in ds.source_etopo5
        assert ds.forcing_members == members and ds.forcing_seed == 0 and ds.forcing_year == 2002
        assert ds["lat"].shape == (g.nlat,) and ds["lon"].shape == (g.nlon,)
        expect = {"TBOT": "K", "TBOT_degC": "degC", "PRECT": "mm year-1", "FSDS": "W m-2", "FLDS": "W m-2",
                  "QBOT": "kg kg-1", "WIND": "m s-1", "PSRF": "Pa", "TBOT_spread": "K", "PRECT_spread": "mm year-1",
                  "FLDS_spread": "W m-2", "TBOT_clim": "K", "PRECT_clim": "mm year-1"}
        for name, units in expect.items():
            v = ds[name]
            assert v.units == units and v.dimensions == ("lat", "lon"), name
            a = v[:]
            land = ~np.ma.getmaskarray(a)
            assert np.array_equal(np.flatnonzero(land.ravel()), g.land_index), name  # fill over ocean
            assert np.all(np.isfinite(a.compressed())), name
        t = ds["TBOT"][:].compressed()
        assert 270.0 < t.min() and t.max() < 305.0  # tropical Africa, highlands included
        assert ds["time"].calendar == "noleap"


def test_forcing_subcommand_writes_netcdf_and_png(box, shared_tmp_path, capsys):
    out, png = shared_tmp_path / "box.nc", shared_tmp_path / "box.png"
    assert cli.main(["forcing", "--grid", "f45", *BOX_ARGS, "--members", "2", "--out", str(out),
                     "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert f"{box.n_land} land cells" in text and "ERA5" in text
    for name in ("TBOT", "PRECT", "FSDS", "FLDS", "QBOT", "WIND", "PSRF"):
        assert f"  {name} " in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    _check_netcdf(out, box, 2)
    assert not list(shared_tmp_path.glob("*.tmp"))  # written atomically, no leftovers


@pytest.mark.mpi
def test_forcing_subcommand_under_mpi(box, shared_tmp_path, capsys):
    out = shared_tmp_path / "box_mpi.nc"
    assert cli.main(["forcing", "--grid", "f45", *BOX_ARGS, "--members", "2", "--out", str(out)]) == 0
    comm.barrier()
    _check_netcdf(out, box, 2)


def test_forcing_subcommand_rejects_bad_arguments(tmp_path, capsys):
    assert cli.main(["forcing", "--grid", "f45", *BOX_ARGS, "--members", "1"]) == 2
    assert "--members must be at least 2" in capsys.readouterr().err
    assert cli.main(["forcing", "--grid", "f45", "--box", "10", "0", "0", "10"]) == 2
    assert "lat_min (10) is greater than lat_max (0)" in capsys.readouterr().err
    assert cli.main(["forcing", "--grid", "f45", "--year", "2001", "--start-year", "2002"]) == 2
    assert "lies before --start-year" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory is needed
    assert cli.main(["forcing", "--grid", "f45", *BOX_ARGS, "--members", "2",
                     "--out", str(blocker / "sub" / "x.nc")]) == 1
    assert "laida forcing: cannot write" in capsys.readouterr().err
