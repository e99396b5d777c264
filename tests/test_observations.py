"""Tests of engine/observations.py and kernels/obsop.py: the LAI observation operator, synthetic
GLASS-like observations, the gridded-product reader and regridder, and DART obs_seq I/O."""

from __future__ import annotations

import numpy as np
import pytest

from engine import grid as gridmod
from engine import observations as ob
from engine.surface import load_or_build_surface

TIME = ob.composite_time(2002, 185)  # GLASS composite of 4 July 2002


@pytest.fixture(scope="module")
def f45():
    grid = gridmod.make_grid("f45")
    return grid, load_or_build_surface(grid)


@pytest.fixture(scope="module")
def truth(f45):
    """Truth patch LAI 1..6 (0 on bare soil) and its grid-cell LAI."""
    grid, sf = f45
    lai = np.random.default_rng(42).uniform(1.0, 6.0, sf.n_patch)
    lai[sf.patch_pft == 0] = 0.0
    return lai, ob.cell_lai(sf.patch_cell, sf.patch_weight, lai, sf.n_land)


# ----------------------------------------------------------------------------------------------
# Observation operator
# ----------------------------------------------------------------------------------------------
def test_operator_equals_weighted_sum_by_hand(f45):
    grid, sf = f45
    rng = np.random.default_rng(1)
    x = rng.uniform(0.0, 7.0, (sf.n_patch, 5))  # 5 members
    cells = rng.choice(sf.n_land, 60, replace=False)
    H, keep, n_skip = ob.operator_from_surface(sf, cells)
    y = ob.apply_operator(H, x)
    veg = np.array([np.any(sf.patch_pft[sf.patch_cell == c] > 0) for c in cells])
    assert np.array_equal(keep, veg) and n_skip == int(np.count_nonzero(~veg))
    expect = np.array([[sum(sf.patch_weight[p] * x[p, m] for p in np.flatnonzero(sf.patch_cell == c))
                        for m in range(5)] for c in cells[keep]])
    # same terms, summed in the same (patch) order: equal to round-off of a few additions
    np.testing.assert_allclose(y, expect, rtol=1e-14, atol=0)
    # weights of a cell sum to 1: a uniform LAI field is observed as itself
    np.testing.assert_allclose(ob.apply_operator(H, np.full(sf.n_patch, 2.5)), 2.5, rtol=1e-14, atol=0)


def test_operator_state_index_and_skipped_cells():
    # cell 0: bare soil only -> skipped; cell 1: two PFTs; cell 2: bare + one PFT
    pc, pp, pw = np.array([0, 1, 1, 2, 2]), np.array([0, 4, 13, 0, 15]), np.array([1.0, 0.75, 0.25, 0.5, 0.5])
    state_index = 10 + 3 * np.arange(5)  # LAI of patch p stored at element 10 + 3 p
    H, keep, n_skip = ob.build_operator(pc, pp, pw, [2, 0, 1], state_index)
    assert keep.tolist() == [True, False, True] and n_skip == 1
    assert H[0].tolist() == [0, 2, 4] and H[1].tolist() == [19, 22, 13, 16]
    x = np.zeros(25)
    x[state_index] = [9.0, 4.0, 2.0, 0.0, 3.0]
    np.testing.assert_array_equal(ob.apply_operator(H, x), [1.5, 3.5])
    with pytest.raises(ob.ObservationError, match="land cells"):
        ob.build_operator(pc, pp, pw, [3])


# ----------------------------------------------------------------------------------------------
# Synthetic observations
# ----------------------------------------------------------------------------------------------
NO_ERROR = ob.LaiErrorModel(sd_a=0.0, sd_b=0.0, sd_min=0.0, repr_a=0.0, repr_b=0.0)
NO_CLOUD = ob.CloudModel(p_dry=0.0, p_wet=0.0)


def test_synthetic_zero_error_zero_cloud_is_the_truth(f45, truth):
    grid, sf = f45
    b, d = ob.synthetic_observations(grid, truth[1], TIME, seed=3, error=NO_ERROR, clouds=NO_CLOUD)
    # every cell with an observable pixel is kept (f45 edges lie on 0.05 deg pixel edges: no sharing)
    assert b.n == int(np.count_nonzero(d["n_observable"] > 0)) > 600
    np.testing.assert_array_equal(d["valid_fraction"][d["n_observable"] > 0], 1.0)
    np.testing.assert_array_equal(b.y, truth[1][b.cell])  # exactly: shifted-data mean of equal values
    np.testing.assert_array_equal(b.r, 0.0)
    assert np.all(b.time == TIME) and np.all(b.qc == 0)
    np.testing.assert_array_equal(b.lat, grid.land_lat[b.cell])


def test_synthetic_error_statistics_match_the_model(f45, truth):
    grid, sf = f45
    err = ob.LaiErrorModel()
    b, d = ob.synthetic_observations(grid, truth[1], TIME, seed=11, error=err)
    t = truth[1][b.cell]
    dense = t >= 1.0  # away from the clipping at LAI 0
    assert np.count_nonzero(dense) > 400
    z = (b.y - t)[dense] / np.sqrt(b.r[dense])
    # n > 400 standard normals: sd within 10 % (> 4 standard errors), mean within 0.2 (4 se)
    assert abs(z.std() - 1.0) < 0.10 and abs(z.mean()) < 0.2
    # pixel part alone: without the representativeness error, residual / sqrt(r_pixel) ~ N(0, 1)
    e0 = ob.LaiErrorModel(repr_a=0.0, repr_b=0.0)
    b0, d0 = ob.synthetic_observations(grid, truth[1], TIME, seed=11, error=e0)
    t0 = truth[1][b0.cell]
    z0 = ((b0.y - t0) / np.sqrt(b0.r))[t0 >= 1.0]
    assert abs(z0.std() - 1.0) < 0.10 and abs(z0.mean()) < 0.2
    # r_pixel = mean pixel variance / number of valid pixels (f45: no shared pixels, weights ~ equal
    # within a cell up to cos(lat) over 4 deg): check the order of magnitude for one dense cell
    k = int(np.flatnonzero(dense)[0])
    c = b0.cell[k]
    sd = err.pixel_sd(truth[1][c])
    i = int(np.flatnonzero(d0["cells"] == c)[0])
    assert d0["r_pixel"][i] == pytest.approx(sd**2 / d0["n_valid"][i], rel=0.01)  # 1 %: cos(lat) weights
    # the values differ from the truth (errors really are drawn) and scale as documented
    assert np.std(b0.y - t0) > 0


def test_synthetic_cloud_gaps_and_valid_fraction(f45, truth):
    grid, sf = f45
    p = 0.7
    clouds = ob.CloudModel(p_dry=p, p_wet=p)
    b, d = ob.synthetic_observations(grid, truth[1], TIME, seed=5, clouds=clouds, min_valid_fraction=0.3)
    has = d["n_observable"] > 0
    frac_n = d["n_valid"][has].sum() / d["n_observable"][has].sum()
    # ~5e6 Bernoulli(0.3) pixels: the count fraction is within 0.002 of 1 - p (> 10 standard errors)
    assert abs(frac_n - (1 - p)) < 0.002
    # the documented rule: kept exactly when some pixel is valid and the valid fraction >= 0.3
    assert np.array_equal(d["kept"], (d["n_valid"] > 0) & (d["valid_fraction"] >= 0.3))
    assert np.count_nonzero(has & ~d["kept"]) > 50 and np.count_nonzero(d["kept"]) > 50
    assert np.array_equal(b.cell, d["cells"][d["kept"]])
    # latitude rule: wet tropics lose more pixels than the dry default elsewhere
    b2, d2 = ob.synthetic_observations(grid, truth[1], TIME, seed=5)
    lat = grid.land_lat[d2["cells"]]
    h2 = d2["n_observable"] > 0
    trop, extra = h2 & (np.abs(lat) < 5), h2 & (np.abs(lat) > 40)
    gap_trop = 1 - d2["n_valid"][trop].sum() / d2["n_observable"][trop].sum()
    gap_extra = 1 - d2["n_valid"][extra].sum() / d2["n_observable"][extra].sum()
    cm = ob.CloudModel()
    assert gap_trop == pytest.approx(cm.probability(0.0), abs=0.03)  # |lat| < 5: p within 0.03 of p(0)
    assert gap_extra == pytest.approx(cm.p_dry, abs=0.01)  # |lat| > 40: exp(-(40/15)^2) < 0.001


def test_synthetic_decomposition_independence(f45, truth):
    grid, sf = f45
    full, dfull = ob.synthetic_observations(grid, truth[1], TIME, seed=9)
    for sub in (np.arange(0, 300), np.arange(700, grid.n_land), np.arange(1, grid.n_land, 7)):
        part, dpart = ob.synthetic_observations(grid, truth[1], TIME, seed=9, cells=sub)
        sel = np.isin(full.cell, sub)
        for k in ("y", "r", "cell", "lat", "lon"):
            np.testing.assert_array_equal(getattr(part, k), getattr(full, k)[sel])
    other, _ = ob.synthetic_observations(grid, truth[1], TIME + np.timedelta64(8, "D"), seed=9)
    assert not np.array_equal(other.y[:50], full.y[:50])  # a different composite draws other numbers


def test_glass_cadence():
    d = ob.glass_days()
    assert d[0] == 1 and d[1] == 9 and d[-1] == 361 and d.size == 46
    assert ob.composite_time(2002, 9) == np.datetime64("2002-01-09T00:00:00")
    assert ob.dart_day(np.datetime64("1601-01-02")) == 1


# ----------------------------------------------------------------------------------------------
# Real products
# ----------------------------------------------------------------------------------------------
SCALE, OFFSET, FILL = 0.01, 0.5, -32768


def _field_05(lat, lon):
    la, lo = np.deg2rad(lat)[:, None], np.deg2rad(lon)[None, :]
    return 3.0 + 2.0 * np.sin(la) * np.cos(2 * lo) + 0.3 * np.cos(la)


def _write_product(path, lat, lon, values, *, sd=None, fill_mask=None, oor_mask=None, units="m2/m2", lon_first=False,
                   name="LAI"):
    import netCDF4

    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", 1)
        ds.createDimension("lat", lat.size)
        ds.createDimension("lon", lon.size)
        ds.createVariable("lat", "f8", ("lat",))[:] = lat
        ds.createVariable("lon", "f8", ("lon",))[:] = lon
        dims = ("time", "lon", "lat") if lon_first else ("time", "lat", "lon")
        v = ds.createVariable(name, "i2", dims, fill_value=FILL)
        v.set_auto_maskandscale(False)
        v.scale_factor, v.add_offset = SCALE, OFFSET
        v.valid_range = np.array([-50, 10000], dtype=np.int16)
        v.units = units
        raw = np.round((values - OFFSET) / SCALE).astype(np.int16)
        if fill_mask is not None:
            raw[fill_mask] = FILL
        if oor_mask is not None:
            raw[oor_mask] = 20000  # above valid_max: invalid
        v[0] = raw.T if lon_first else raw
        if sd is not None:
            u = ds.createVariable("LAI_SD", "u1", dims, fill_value=255)
            u.set_auto_maskandscale(False)
            u.scale_factor = 0.01
            u.units = "m2 m-2"
            u[0] = np.round(sd / 0.01).astype(np.uint8).T if lon_first else np.round(sd / 0.01).astype(np.uint8)
    return path


def _unpacked(values, fill_mask, oor_mask):
    v = np.round((values - OFFSET) / SCALE).astype(np.int16).astype(np.float64) * SCALE + OFFSET
    v[fill_mask | oor_mask] = np.nan
    return v


def _hand_mean(lat_e, lon_e, v, sd, lat_s, lat_n, lon_w, lon_e_):
    """Brute-force overlap-weighted mean over one model cell (loops, independent of the module)."""
    num = den = var = 0.0
    for a in range(lat_e.size - 1):
        s, n = min(lat_e[a], lat_e[a + 1]), max(lat_e[a], lat_e[a + 1])
        lo, hi = max(s, lat_s), min(n, lat_n)
        if hi <= lo + 1e-12:
            continue
        wl = np.sin(np.deg2rad(hi)) - np.sin(np.deg2rad(lo))
        for b in range(lon_e.size - 1):
            best = 0.0
            for shift in (-360.0, 0.0, 360.0):
                w0, e0 = lon_e[b] + shift, lon_e[b + 1] + shift
                best += max(0.0, min(e0, lon_e_) - max(w0, lon_w))
            if best <= 1e-12 or not np.isfinite(v[a, b]):
                continue
            w = wl * np.deg2rad(best)
            num += w * v[a, b]
            den += w
            var += w * w * sd[a, b] ** 2
    return num / den, var / den**2


@pytest.fixture(scope="module")
def product_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lai")
    lat = np.arange(-89.75, 90.0, 0.5)
    lon = np.arange(-179.75, 180.0, 0.5)
    vals = _field_05(lat, lon)
    rng = np.random.default_rng(7)
    fill = rng.random(vals.shape) < 0.2
    fill[(lat > 60)[:, None] & (lon > 100)[None, :]] = True  # a whole region missing
    oor = (rng.random(vals.shape) < 0.05) & ~fill
    sd = np.round((0.1 + 0.1 * vals) / 0.01) * 0.01
    inc = _write_product(d / "inc.nc", lat, lon, vals, sd=sd, fill_mask=fill, oor_mask=oor)
    # decreasing latitude, longitudes 0..360, (lon, lat) storage order: the same data
    perm = np.r_[np.arange(360, 720), np.arange(0, 360)]
    dec = _write_product(d / "dec.nc", lat[::-1], np.mod(lon[perm], 360.0), vals[::-1][:, perm], sd=sd[::-1][:, perm],
                         fill_mask=fill[::-1][:, perm], oor_mask=oor[::-1][:, perm], lon_first=True)
    return dict(dir=d, lat=lat, lon=lon, vals=vals, fill=fill, oor=oor, sd=sd, inc=inc, dec=dec)


def test_product_reader_unpacks_and_masks(product_files):
    pf = product_files
    p = ob.read_lai_product(pf["inc"], "LAI", uncertainty="LAI_SD")
    expect = _unpacked(pf["vals"], pf["fill"], pf["oor"])
    np.testing.assert_array_equal(np.isnan(p.values), pf["fill"] | pf["oor"])
    np.testing.assert_allclose(p.values, expect, rtol=0, atol=1e-12, equal_nan=True)  # same float ops
    np.testing.assert_allclose(p.sd, pf["sd"], rtol=0, atol=1e-12)
    assert p.lat_edges[0] == -90.0 and p.lat_edges[-1] == 90.0 and p.lon_edges[0] == -180.0


def test_product_aggregation_by_hand_and_orientation(product_files, f45):
    grid, sf = f45
    pf = product_files
    p = ob.read_lai_product(pf["inc"], "LAI", uncertainty="LAI_SD")
    q = ob.read_lai_product(pf["dec"], "LAI", uncertainty="LAI_SD")
    err = ob.LaiErrorModel()
    b, d = ob.product_observations(p, grid, TIME, error=err, min_valid_fraction=0.0)
    b2, d2 = ob.product_observations(q, grid, TIME, error=err, min_valid_fraction=0.0)
    # the same data stored the other way round: same cells, values to round-off of the sum order
    np.testing.assert_array_equal(b.cell, b2.cell)
    np.testing.assert_allclose(b2.y, b.y, rtol=1e-13, atol=0)
    np.testing.assert_allclose(b2.r, b.r, rtol=1e-12, atol=0)
    _, _, plat_e, plon_e = gridmod.global_coordinates("f45")
    vals = _unpacked(pf["vals"], pf["fill"], pf["oor"])
    for c in (0, 100, 400, 777, grid.n_land - 1):
        k = int(np.flatnonzero(b.cell == c)[0])
        pj, pi = divmod(int(grid.land_parent_index[c]), 72)
        m, v = _hand_mean(p.lat_edges, p.lon_edges, vals, pf["sd"], *plat_e[pj:pj + 2], *plon_e[pi:pi + 2])
        assert b.y[k] == pytest.approx(m, rel=1e-12, abs=0)  # same sum, other order: round-off only
        assert b.r[k] == pytest.approx(v + err.repr_sd(m) ** 2, rel=1e-12, abs=0)


def test_product_area_weighted_mean_conserved(tmp_path, f45):
    grid, _ = f45
    lat = np.arange(-89.75, 90.0, 0.5)
    lon = np.arange(0.25, 360.0, 0.5)
    vals = _field_05(lat, lon)
    path = _write_product(tmp_path / "full.nc", lat, lon, vals)
    p = ob.read_lai_product(path, "LAI")
    nlat, nlon = 46, 72
    jj, ii = np.divmod(np.arange(nlat * nlon), nlon)
    g = ob.regrid_product(p, grid, parent_rows=jj, parent_cols=ii)
    # the product covers every f45 cell completely: cell weights are the exact cell areas
    np.testing.assert_allclose(g["w_total"], g["w_cell"], rtol=1e-12, atol=0)
    w_pix = np.diff(np.sin(np.deg2rad(p.lat_edges)))[:, None] * np.deg2rad(np.diff(p.lon_edges))[None, :]
    glob_prod = np.sum(w_pix * p.values) / np.sum(w_pix)
    glob_cells = np.sum(g["w_cell"] * g["mean"]) / np.sum(g["w_cell"])
    assert glob_cells == pytest.approx(glob_prod, rel=1e-13, abs=0)  # conservation to round-off


def test_product_offset_grid_partial_overlaps(tmp_path, f45):
    grid, _ = f45
    lat = np.arange(-89.65, 89.7, 0.7)  # 0.7 deg, edges not on the f45 edges: partial overlaps
    lon = np.arange(-179.3, 180.0, 0.7)
    vals = _field_05(lat, lon)
    path = _write_product(tmp_path / "odd.nc", lat, lon, vals)
    p = ob.read_lai_product(path, "LAI")
    b, _ = ob.product_observations(p, grid, TIME, min_valid_fraction=0.0)
    _, _, plat_e, plon_e = gridmod.global_coordinates("f45")
    sd = ob.LaiErrorModel().pixel_sd(np.nan_to_num(p.values))
    for c in (5, 321, 640):
        k = int(np.flatnonzero(b.cell == c)[0])
        pj, pi = divmod(int(grid.land_parent_index[c]), 72)
        m, _ = _hand_mean(p.lat_edges, p.lon_edges, p.values, sd, *plat_e[pj:pj + 2], *plon_e[pi:pi + 2])
        assert b.y[k] == pytest.approx(m, rel=1e-12, abs=0)


def test_product_valid_fraction_threshold(product_files, f45):
    grid, _ = f45
    p = ob.read_lai_product(product_files["inc"], "LAI")
    b, d = ob.product_observations(p, grid, TIME, min_valid_fraction=0.5)
    assert np.array_equal(d["kept"], (d["n_valid"] > 0) & (d["valid_fraction"] >= 0.5))
    lat = grid.land_lat[d["cells"]]
    lon = np.mod(grid.land_lon[d["cells"]], 360.0)
    hole = (lat > 64) & (lon > 104) & (lon < 176)  # inside the missing region: no valid pixel
    assert hole.any() and not d["kept"][hole].any()
    assert d["kept"].sum() > 500


def test_product_bad_files(tmp_path):
    lat = np.arange(-89.75, 90.0, 0.5)
    lon = np.arange(-179.75, 180.0, 0.5)
    vals = _field_05(lat, lon)
    good = _write_product(tmp_path / "g.nc", lat, lon, vals)
    with pytest.raises(ob.ObservationError, match=r"g\.nc.*'GLASS_LAI' not found"):
        ob.read_lai_product(good, "GLASS_LAI")
    with pytest.raises(ob.ObservationError, match=r"g\.nc.*'LAI_SD' not found"):
        ob.read_lai_product(good, "LAI", uncertainty="LAI_SD")
    units = _write_product(tmp_path / "u.nc", lat, lon, vals, units="K")
    with pytest.raises(ob.ObservationError, match=r"u\.nc.*'LAI' has units 'K'"):
        ob.read_lai_product(units, "LAI")
    allfill = _write_product(tmp_path / "f.nc", lat, lon, vals, fill_mask=np.ones(vals.shape, bool))
    with pytest.raises(ob.ObservationError, match=r"f\.nc.*'LAI' holds no valid value"):
        ob.read_lai_product(allfill, "LAI")
    badlat = _write_product(tmp_path / "l.nc", lat * 1.2, lon, vals)
    with pytest.raises(ob.ObservationError, match=r"l\.nc: latitude 'lat' out of range"):
        ob.read_lai_product(badlat, "LAI")
    (tmp_path / "t.nc").write_text("not a netCDF file")
    with pytest.raises(ob.ObservationError, match=r"t\.nc: cannot open"):
        ob.read_lai_product(tmp_path / "t.nc", "LAI")
    with pytest.raises(ob.ObservationError, match="file not found"):
        ob.read_lai_product(tmp_path / "missing.nc", "LAI")


# ----------------------------------------------------------------------------------------------
# DART obs_seq
# ----------------------------------------------------------------------------------------------
def test_obs_seq_round_trip(tmp_path, f45, truth):
    grid, sf = f45
    b, _ = ob.synthetic_observations(grid, truth[1], TIME, seed=2, cells=np.arange(0, grid.n_land, 9))
    b = ob.ObsBatch(y=b.y, r=b.r, cell=b.cell, lat=b.lat, lon=b.lon,
                    time=b.time + (np.arange(b.n) % 3 * 3600).astype("timedelta64[s]")[::-1], qc=b.qc,
                    kind=ob.KIND_LAI)  # mixed times: the file is time-ordered
    rng = np.random.default_rng(0)
    prior = b.y[:, None] + rng.normal(0, 0.5, (b.n, 4))
    post = b.y[:, None] + rng.normal(0, 0.2, (b.n, 4))
    dart_qc = rng.integers(0, 8, b.n)
    path = ob.write_obs_seq(tmp_path / "obs_seq.final", b, copies=ob.ensemble_copies(prior, post, members=True),
                            dart_qc=dart_qc)
    seq = ob.read_obs_seq(path)
    order = np.argsort(b.time, kind="stable")
    assert seq.n == b.n and list(seq.kind) == [ob.KIND_LAI] * b.n
    assert seq.copy_names[:5] == ["observation", "prior ensemble mean", "posterior ensemble mean",
                                  "prior ensemble spread", "posterior ensemble spread"]
    assert seq.qc_names == ["Quality Control", "DART quality control"]
    np.testing.assert_array_equal(seq.copy("observation"), b.y[order])  # repr(): exact float text
    np.testing.assert_array_equal(seq.error_variance, b.r[order])
    np.testing.assert_array_equal(seq.copy("prior ensemble mean"), prior.mean(axis=1)[order])
    np.testing.assert_array_equal(seq.copy("posterior ensemble spread"), post.std(axis=1, ddof=1)[order])
    np.testing.assert_array_equal(seq.copy("prior ensemble member     3"), prior[order, 2])
    np.testing.assert_array_equal(seq.qc[:, 1], dart_qc[order])
    np.testing.assert_array_equal(seq.time, b.time[order])
    # degrees -> radians -> degrees: 1e-12 deg is ~1e-7 m
    np.testing.assert_allclose(seq.lat, b.lat[order], rtol=0, atol=1e-12)
    np.testing.assert_allclose(seq.lon, b.lon[order], rtol=0, atol=1e-12)
    back, counts = ob.obs_seq_to_batch(seq, grid)
    assert counts == dict(not_lai=0, not_land=0)
    np.testing.assert_array_equal(back.cell, b.cell[order])
    np.testing.assert_array_equal(back.y, b.y[order])


HAND_WRITTEN = """ obs_sequence
obs_kind_definitions
           2
          17 MODIS_LEAF_AREA_INDEX
          31 SOIL_TEMPERATURE
  num_copies:            2  num_qc:            1
  num_obs:            3  max_num_obs:            5
observation
truth
Quality Control
  first:            1  last:            3
 OBS            1
   3.2500000000000000
   3.1000000000000001D+00
   0.0000000000000000
          -1           2          -1
obdef
loc3d
     0.4363323129985824        0.8726646259971648         0.000000000000000     -1
kind
          17
     0     146827
  0.36000000000000004
 OBS            2
   285.5
   286.0
   0.0
           1           3          -1
obdef
loc3d
     0.4363323129985824        0.8726646259971648         0.000000000000000     -1
kind
          31
  43200     146827
   1.0
 OBS            3
   1.25
   1.2
   1.0
           2          -1          -1
obdef
loc3d
     3.141592653589793       -0.2617993877991494         0.000000000000000     -1
kind
          17
     0     146835
   4.0000000000000001E-02
"""


def test_obs_seq_import_hand_written(tmp_path, f45):
    grid, _ = f45
    path = tmp_path / "obs_seq.out"
    path.write_text(HAND_WRITTEN)
    seq = ob.read_obs_seq(path)
    assert seq.n == 3 and seq.copy_names == ["observation", "truth"] and seq.qc_names == ["Quality Control"]
    assert list(seq.kind) == ["MODIS_LEAF_AREA_INDEX", "SOIL_TEMPERATURE", "MODIS_LEAF_AREA_INDEX"]
    np.testing.assert_array_equal(seq.copy("truth"), [3.1, 286.0, 1.2])
    np.testing.assert_allclose(seq.lon, [25.0, 25.0, 180.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(seq.lat, [50.0, 50.0, -15.0], rtol=0, atol=1e-12)
    # DART day 146827 = 2003-01-01 (days since 1601-01-01, Gregorian)
    assert seq.time[0] == np.datetime64("2003-01-01T00:00:00") and seq.time[1] == np.datetime64("2003-01-01T12:00:00")
    np.testing.assert_array_equal(seq.error_variance, [0.36000000000000004, 1.0, 0.04])
    b, counts = ob.obs_seq_to_batch(seq, grid)
    # obs 2 is a soil temperature; obs 3 (180 E, 15 S) lies in the Pacific
    assert counts == dict(not_lai=1, not_land=1) and b.n == 1
    assert b.y.tolist() == [3.25] and b.r.tolist() == [0.36000000000000004] and b.kind == "MODIS_LEAF_AREA_INDEX"
    j, i = divmod(int(grid.land_parent_index[b.cell[0]]), 72)
    assert (j, i) == (35, 5)  # f45 row 35 spans 48-52 N (centre 50 N), column 5 is centred on 25 E


def test_obs_seq_bad_files(tmp_path):
    p = tmp_path / "bad"
    p.write_text("hello\n")
    with pytest.raises(ob.ObservationError, match="not an ASCII DART obs_seq"):
        ob.read_obs_seq(p)
    p.write_text(HAND_WRITTEN.replace("loc3d", "loc1d", 1))
    with pytest.raises(ob.ObservationError, match="only loc3d"):
        ob.read_obs_seq(p)
    p.write_text(HAND_WRITTEN.replace("num_obs:            3", "num_obs:            4"))
    with pytest.raises(ob.ObservationError, match="ends early in observation 4"):
        ob.read_obs_seq(p)
    p.write_text(HAND_WRITTEN.replace("          17\n     0     146835", "          99\n     0     146835"))
    with pytest.raises(ob.ObservationError, match="kind 99 not in the type table"):
        ob.read_obs_seq(p)


# ----------------------------------------------------------------------------------------------
# MPI: each rank observes its own block; the gathered result equals the one-process result
# ----------------------------------------------------------------------------------------------
@pytest.mark.mpi
def test_observations_on_rank_blocks_equal_serial(f45, truth):
    from engine import comm
    from engine.decomposition import cell_weights, decompose, local_block

    grid, sf = f45
    dec = decompose(cell_weights(grid, "patches"), comm.size())
    start, count = local_block(dec, comm.rank())
    mine = np.arange(start, start + count, dtype=np.int64)
    part, _ = ob.synthetic_observations(grid, truth[1], TIME, seed=21, cells=mine)
    full, _ = ob.synthetic_observations(grid, truth[1], TIME, seed=21)
    for k in ("y", "r", "cell"):
        got = comm.gather_array(np.asarray(getattr(part, k)), allgather=True)
        np.testing.assert_array_equal(got, getattr(full, k))  # bit for bit, any rank count
    # the operator rows of a rank's observations only touch that rank's patches
    H, keep, _ = part.operator(sf)
    if H[1].size:
        assert np.all(np.isin(sf.patch_cell[H[1]], mine))


def test_product_plain_hdf5_raster_with_given_edges(tmp_path, f45):
    """A GEOV1-like plain HDF5 raster (no coordinate variables, north-up, packed uint8)."""
    import h5py

    grid, _ = f45
    res = 1.0
    lat = 90.0 - res * (np.arange(180) + 0.5)
    lon = -180.0 + res * (np.arange(360) + 0.5)
    vals = _field_05(lat, lon)
    raw = np.round(vals / 0.1).astype(np.uint8)
    raw[:10] = 255  # fill in the far north
    with h5py.File(tmp_path / "geov1.h5", "w") as f:
        d = f.create_dataset("LAI", data=raw)
        d.attrs["scale_factor"] = np.float64(0.1)
        d.attrs["_FillValue"] = np.uint8(255)
        d.attrs["valid_range"] = np.array([0, 100], dtype=np.uint8)
    with pytest.raises(ob.ObservationError, match="no latitude coordinate"):
        ob.read_lai_product(tmp_path / "geov1.h5", "LAI")
    p = ob.read_lai_product(tmp_path / "geov1.h5", "LAI", lat_edges=90.0 - res * np.arange(181),
                            lon_edges=-180.0 + res * np.arange(361))
    expect = raw * 0.1
    expect[raw > 100] = np.nan
    np.testing.assert_array_equal(p.values, expect)
    b, _ = ob.product_observations(p, grid, TIME, min_valid_fraction=0.0)
    _, _, plat_e, plon_e = gridmod.global_coordinates("f45")
    sd = ob.LaiErrorModel().pixel_sd(np.nan_to_num(p.values))
    for c in (10, 500):
        k = int(np.flatnonzero(b.cell == c)[0])
        pj, pi = divmod(int(grid.land_parent_index[c]), 72)
        m, _ = _hand_mean(p.lat_edges, p.lon_edges, p.values, sd, *plat_e[pj:pj + 2], *plon_e[pi:pi + 2])
        assert b.y[k] == pytest.approx(m, rel=1e-12, abs=0)
