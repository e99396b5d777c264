"""Tests of engine.evaluation: the study's metrics, Table II regions (centre rule and spherical overlap
weights), the LAI and land-variable tables, and reading history files written by engine.history.

Serial (evaluation runs on one process after the experiment). Grids are the real CESM f09/f45 axes
of engine.grid; the history round trip uses a real f45 box with MODIS land cover.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.evaluation import (
    REGIONS,
    REGION_BY_KEY,
    STUDY_TABLE3,
    EvaluationError,
    LaiRow,
    VarRow,
    bias,
    compare,
    evaluation_report,
    format_table,
    improved,
    improved_fraction,
    lai_table,
    latitudinal_correlation,
    load_history,
    month_mask,
    n_valid,
    pearson_r,
    rbias,
    region_area_fraction,
    region_mask,
    region_weights,
    rmsd,
    variables_table,
)
from engine.grid import cell_areas, global_coordinates, make_grid

# Sums of a few float64 numbers: a few ulps of values of order 1-10.
TIGHT = 1e-12


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------


def test_metrics_by_hand_with_missing_samples():
    # samples 4 (NaN model), 5 (NaN obs) and 6 (CLM fill 1e36 stored as float32) are dropped
    model = np.array([1.0, 2.0, 3.0, np.nan, 4.0, np.float32(1e36)])
    obs = np.array([2.0, 2.0, 1.0, 5.0, np.nan, 3.0])
    # by hand on (1, 2), (2, 2), (3, 1): d = -1, 0, 2
    assert n_valid(model, obs) == 3
    assert bias(model, obs) == pytest.approx(1.0 / 3.0, abs=TIGHT, rel=0)
    assert rbias(model, obs) == pytest.approx(1.0 / 5.0, abs=TIGHT, rel=0)  # sum d = 1, sum obs = 5
    assert rmsd(model, obs) == pytest.approx(math.sqrt(5.0 / 3.0), abs=TIGHT, rel=0)
    # m - mean = (-1, 0, 1), o - mean = (1/3, 1/3, -2/3): cov = -1, var_m = 2, var_o = 2/3 -> r = -sqrt(3)/2
    assert pearson_r(model, obs) == pytest.approx(-math.sqrt(3.0) / 2.0, abs=TIGHT, rel=0)
    s = compare(model, obs)
    assert (s.n, s.bias, s.rbias, s.rmsd, s.r) == pytest.approx(
        (3, 1 / 3, 0.2, math.sqrt(5 / 3), -math.sqrt(3) / 2), abs=TIGHT, rel=0)
    # the fill value as float64 and a masked array are missing too
    assert n_valid(np.array([1.0, 1e36]), np.array([1.0, 1.0])) == 1
    assert n_valid(np.ma.array([1.0, 2.0], mask=[False, True]), np.array([1.0, 1.0])) == 1


def test_rbias_sign_and_offset():
    # a model below a positive reference has negative Bias and rBias: sum(m - o)/sum(o) = -2/4
    assert rbias([1.0, 1.0], [2.0, 2.0]) == pytest.approx(-0.5, abs=TIGHT, rel=0)
    assert bias([1.0, 1.0], [2.0, 2.0]) == pytest.approx(-1.0, abs=TIGHT, rel=0)
    # rBias of temperatures on degC: 1 K too warm at 10 degC is +0.1, on kelvin it would be 1/283.15
    t_ref = np.array([283.15, 283.15])
    assert compare(t_ref + 1.0, t_ref, rbias_offset=273.15).rbias == pytest.approx(0.1, abs=1e-12, rel=0)
    assert compare(t_ref + 1.0, t_ref).rbias == pytest.approx(1.0 / 283.15, abs=TIGHT, rel=0)
    # no samples, or a reference summing to zero: NaN, never an exception or a number
    assert np.isnan(rbias([1.0, -1.0], [1.0, -1.0]))
    s = compare([np.nan], [1.0])
    assert s.n == 0 and np.isnan(s.bias) and np.isnan(s.rmsd) and np.isnan(s.r)


def test_weights_equal_repeated_samples():
    rng = np.random.default_rng(3)
    m, o = rng.normal(size=5), rng.normal(size=5)
    k = np.array([2, 1, 3, 0, 1])  # integer weights = repeating samples (weight 0 drops one)
    mr, orr = np.repeat(m, k), np.repeat(o, k)
    assert n_valid(m, o, k) == 4
    for f in (bias, rbias, rmsd, pearson_r):
        # different summation orders: a few ulps of O(1) values
        assert f(m, o, k) == pytest.approx(f(mr, orr), abs=1e-12, rel=0), f.__name__
    with pytest.raises(EvaluationError, match="weights"):
        bias(m, o, -k)


def test_improved_mask_and_fraction():
    ctl = np.array([3.0, 1.0, 2.0, np.nan])
    cn = np.array([2.0, 2.0, 2.0, 1.0])
    ref = np.ones(4)
    # |CN - ref| = 1, 1, 1, 0;  |CTL - ref| = 2, 0, 1, missing -> only the first is improved (ties are not)
    assert improved(ctl, cn, ref).tolist() == [True, False, False, False]
    assert improved_fraction(ctl, cn, ref) == pytest.approx(1.0 / 3.0, abs=TIGHT, rel=0)
    assert improved_fraction(ctl, cn, ref, weights=[3.0, 1.0, 1.0, 1.0]) == pytest.approx(0.6, abs=TIGHT, rel=0)
    # per cell over time: cell 0 CN errors (1, 1) vs CTL (0, 2): RMSD 1 < sqrt(2); cell 1 the reverse
    ctl2 = np.array([[1.0, 1.0], [3.0, 2.0]])  # (time, cell)
    cn2 = np.array([[2.0, 1.0], [2.0, 3.0]])
    assert improved(ctl2, cn2, np.ones((2, 2)), time_axis=0).tolist() == [True, False]


# ------------------------------------------------------------------------------------------
# Regions
# ------------------------------------------------------------------------------------------


def test_region_table_matches_science_md():
    assert [r.key for r in REGIONS] == ["Global"] + [f"R{i}" for i in range(1, 9)]
    r2 = REGION_BY_KEY["R2"]
    assert (r2.name, r2.lon_min, r2.lon_max, r2.lat_min, r2.lat_max) == ("Eastern Amazonia", -57.5, -50.0, -5.63, -2.81)
    assert (r2.study_cn_obs, r2.study_ctl_obs) == (-2.56, 4.13)
    assert REGION_BY_KEY["R7"].lon_text == "113.75W-106.25W" and REGION_BY_KEY["R8"].lat_text == "28.13S-23.44S"
    assert STUDY_TABLE3[("NLW", "RMSD", "CN")]["R2"] == 16.22


def test_region2_centre_mask_on_f09_any_longitude_convention():
    lat, lon, _, _ = global_coordinates("f09")
    mask = region_mask(lat, lon, "R2")
    jj, ii = np.nonzero(mask)
    # f09 centres -90 + j*180/191: j = 90, 91, 92 -> -5.18, -4.24, -3.30 (j = 93 at -2.36 is north of 2.81S);
    # 1.25 deg columns 242..248 -> 302.5E (= 57.5W, on the edge: inside) ... 310E (= 50W)
    assert sorted(set(jj)) == [90, 91, 92]
    assert sorted(set(ii)) == list(range(242, 249))
    assert mask.sum() == 21
    np.testing.assert_allclose(lat[[90, 91, 92]], [-5.1832, -4.2408, -3.2984], atol=1e-4, rtol=0)
    # the same cells with centres given in -180..180 or shifted by whole turns
    lon180 = np.where(lon >= 180.0, lon - 360.0, lon)
    assert np.array_equal(region_mask(lat, lon180, "R2"), mask)
    assert np.array_equal(region_mask(lat, lon + 720.0, REGION_BY_KEY["R2"]), mask)
    # points mode: land-cell style paired coordinates
    la, lo = np.meshgrid(lat, lon180, indexing="ij")
    assert np.array_equal(region_mask(la.ravel(), lo.ravel(), 2, points=True), mask.ravel())
    assert region_mask(lat, lon, "Global").all()


def _subsampled_fraction(lat_e, lon_e, region, k=400):
    """Independent check: the fraction of a cell inside the box from k x k points spread evenly in
    (lon, sin lat), i.e. evenly in area on the sphere (midpoint rule of the area integral)."""
    s0, s1 = np.sin(np.deg2rad(lat_e))
    sin_pts = s0 + (np.arange(k) + 0.5) / k * (s1 - s0)
    lat_pts = np.rad2deg(np.arcsin(sin_pts))
    lon_pts = lon_e[0] + (np.arange(k) + 0.5) / k * (lon_e[1] - lon_e[0])
    return region_mask(lat_pts, lon_pts, region).mean()


def test_region2_overlap_weights_on_f09_by_subsampling():
    lat, lon, lat_e, lon_e = global_coordinates("f09")
    w = region_weights(lat_e, lon_e, "R2")
    jj, ii = np.nonzero(w)
    # rows 90..93 (row 93 spans -2.83..-1.88 and reaches 2.81S), columns 242..248 (edge columns half in)
    assert sorted(set(jj)) == [90, 91, 92, 93] and sorted(set(ii)) == list(range(242, 249))
    assert w[91, 245] == pytest.approx(1.0, abs=TIGHT, rel=0)
    assert w[91, 242] == pytest.approx(0.5, abs=TIGHT, rel=0) and w[91, 248] == pytest.approx(0.5, abs=TIGHT, rel=0)
    for j, i in ((90, 242), (90, 245), (93, 245), (93, 248), (92, 248)):
        # 400 x 400 midpoint samples: the edge positions are resolved to 1/400 of the cell per axis
        assert w[j, i] == pytest.approx(_subsampled_fraction(lat_e[j:j + 2], lon_e[i:i + 2], "R2"), abs=4e-3, rel=0)


@pytest.mark.parametrize("frame", ["0..360", "-180..180"])
def test_overlap_weights_sum_to_box_area(frame):
    """sum(weight x cell area) = box area, exactly on any regular grid (f09 and a 0.25 deg grid)."""
    lat, lon, lat_e, lon_e = global_coordinates("f09")
    fine_lat_e = np.linspace(-90.0, 90.0, 721)
    fine_lon_e = np.linspace(0.0, 360.0, 1441)
    shift = -180.0 if frame == "-180..180" else 0.0
    for le, oe in ((lat_e, lon_e + shift), (fine_lat_e, fine_lon_e + shift)):
        area = cell_areas(le, oe)
        for reg in REGIONS:
            w = region_weights(le, oe, reg)
            assert ((w >= 0) & (w <= 1)).all()
            # float64 sums of ~1e5..1e6 terms: relative round-off well below 1e-10
            assert (w * area).sum() / area.sum() == pytest.approx(region_area_fraction(reg), rel=1e-10, abs=0), reg.key
    # on the fine grid the centre rule approximates the box to within its ring of edge cells
    flat = 0.5 * (fine_lat_e[1:] + fine_lat_e[:-1])
    flon = 0.5 * (fine_lon_e[1:] + fine_lon_e[:-1])
    area = cell_areas(fine_lat_e, fine_lon_e)
    for reg in REGIONS[1:]:
        centre = (region_mask(flat, flon, reg) * area).sum() / area.sum()
        ring = 2 * 0.25 * ((reg.lon_max - reg.lon_min) + (reg.lat_max - reg.lat_min)) / (
            (reg.lon_max - reg.lon_min) * (reg.lat_max - reg.lat_min))  # edge cells' share of the box
        assert abs(centre / region_area_fraction(reg) - 1.0) < ring, reg.key


def test_every_region_has_weight_on_f45():
    lat, lon, lat_e, lon_e = global_coordinates("f45")
    n_centres = {r.key: int(region_mask(lat, lon, r).sum()) for r in REGIONS}
    # the motivation: on 4 x 5 deg cells some study boxes hold no centre at all (Western Europe, 46.88-49.69N,
    # between the centres 46N and 50N; Eastern Amazonia, 57.5-50W, between 60W and 50W... ) and none holds > 3
    assert n_centres["R5"] == 0 and max(v for k, v in n_centres.items() if k != "Global") <= 3
    area = cell_areas(lat_e, lon_e)
    for reg in REGIONS:
        w = region_weights(lat_e, lon_e, reg)
        assert w.sum() > 0.5, reg.key  # each box is at least ~0.6 f45 cells of area
        assert (w * area).sum() / area.sum() == pytest.approx(region_area_fraction(reg), rel=1e-10, abs=0)


# ------------------------------------------------------------------------------------------
# Latitudinal correlation
# ------------------------------------------------------------------------------------------


def _monthly(nlat, nlon, seed):
    """(12, nlat, nlon) random monthly values with the same "ocean" cells (NaN) for every seed, as
    history files of one grid have."""
    base = np.random.default_rng(seed).normal(size=(12, nlat, nlon))
    base[:, np.random.default_rng(0).random((nlat, nlon)) < 0.4] = np.nan
    return base


def test_latitudinal_correlation_of_scaled_and_negated_fields():
    lat, lon, _, _ = global_coordinates("f45")
    ctl = 3.0 + _monthly(lat.size, lon.size, 1)
    d = _monthly(lat.size, lon.size, 2)
    d += np.linspace(-2, 2, lat.size)[None, :, None]  # a latitudinal signal
    cn = ctl + d
    other_ctl = 280.0 + _monthly(lat.size, lon.size, 3)
    scaled = latitudinal_correlation(cn, ctl, other_ctl + 2.5 * d, other_ctl)
    negated = latitudinal_correlation(cn, ctl, other_ctl - d, other_ctl)
    # identical profiles up to a factor: r = +-1 to round-off of 46-term sums
    assert scaled.r == pytest.approx(1.0, abs=1e-12, rel=0)
    assert negated.r == pytest.approx(-1.0, abs=1e-12, rel=0)
    assert scaled.n_rows == np.isfinite(scaled.profile_a).sum() > 40
    # time selection: a variable that follows the LAI difference only in July
    units, cal = "days since 2002-01-01 00:00:00", "noleap"
    t = np.array([15.5, 45.0, 74.5, 105.0, 135.5, 166.0, 196.5, 227.5, 258.0, 288.5, 319.0, 349.5])  # mid-months
    july = month_mask(t, units, cal, 7)
    assert july.tolist() == [m == 6 for m in range(12)]
    b = other_ctl + np.where(july[:, None, None], d, 5.0 * _monthly(lat.size, lon.size, 4))
    assert latitudinal_correlation(cn, ctl, b, other_ctl, time=july).r == pytest.approx(1.0, abs=1e-12, rel=0)
    assert latitudinal_correlation(cn, ctl, b, other_ctl).r < 0.9


# ------------------------------------------------------------------------------------------
# Tables
# ------------------------------------------------------------------------------------------


def _lai_case(seed=5):
    lat, lon, lat_e, lon_e = global_coordinates("f45")
    rng = np.random.default_rng(seed)
    obs = rng.gamma(2.0, 1.5, size=(3, lat.size, lon.size))
    obs[:, rng.random((lat.size, lon.size)) < 0.3] = np.nan  # non-land cells: fill in history files
    return lat, lon, lat_e, lon_e, obs


def test_lai_table_cn_equal_obs_and_constructed_ctl_bias():
    lat, lon, lat_e, lon_e, obs = _lai_case()
    ctl, cn = obs + 0.9, obs.copy()
    rows = lai_table(ctl, cn, obs, lat, lon)
    assert [r.region.key for r in rows] == [r.key for r in REGIONS]
    for r in rows:
        assert r.n > 0, r.region.key
        assert r.cn_bias == 0.0 and r.cn_rmsd == 0.0 and r.cn_rbias == 0.0
        # constant bias: mean difference and RMSD are 0.9 to round-off of the weighted sums
        assert r.ctl_bias == pytest.approx(0.9, abs=1e-12, rel=0), r.region.key
        assert r.ctl_rmsd == pytest.approx(0.9, abs=1e-12, rel=0), r.region.key
        assert r.improved == 1.0
    g = rows[0]
    valid = np.isfinite(obs)
    assert g.n == valid.sum()  # plain samples (the study's): every land cell-time once
    assert g.ctl_rbias == pytest.approx(0.9 * valid.sum() / np.nansum(obs), rel=1e-12, abs=0)
    assert g.cells == valid[0].sum()
    # CTL missing somewhere: CN is scored on the same samples
    ctl2 = ctl.copy()
    ctl2[0, 30, :] = np.nan
    assert lai_table(ctl2, cn, obs, lat, lon, regions=["Global"])[0].n == g.n - valid[0, 30].sum()


def test_lai_table_area_weights():
    lat, lon, lat_e, lon_e, obs = _lai_case()
    b = np.broadcast_to(2.0 * (lat / 90.0)[None, :, None] ** 2, obs.shape)  # bias growing poleward
    plain, area = (lai_table(obs + b, obs, obs, lat, lon, w, regions=["Global"])[0] for w in (None, "area"))
    ok = np.isfinite(obs)
    a = np.broadcast_to(cell_areas(lat_e, lon_e), obs.shape)  # engine.grid's areas, an independent path
    assert plain.ctl_bias == pytest.approx(b[ok].mean(), abs=1e-12, rel=0)
    assert area.ctl_bias == pytest.approx((a[ok] * b[ok]).sum() / a[ok].sum(), abs=1e-12, rel=0)
    assert abs(area.ctl_bias - plain.ctl_bias) > 0.01  # the two choices really differ here
    explicit = lai_table(obs + b, obs, obs, lat, lon, cell_areas(lat_e, lon_e), regions=["Global"])[0]
    assert explicit.ctl_bias == pytest.approx(area.ctl_bias, abs=1e-12, rel=0)


def test_variables_table_conventions_and_study_values():
    lat, lon, _, _, obs = _lai_case()
    rng = np.random.default_rng(8)
    shape3, shape4 = obs.shape, (obs.shape[0], 4, *obs.shape[1:])
    land = np.isfinite(obs)
    ref = {"FIRA": np.where(land, 60.0 + 10 * rng.random(shape3), np.nan),
           "TSA": np.where(land, 283.15, np.nan),
           "FSH": np.where(land, 40.0 + rng.random(shape3), np.nan),
           "EFLX_LH_TOT": np.where(land, 80.0 + rng.random(shape3), np.nan),
           "TSOI": np.where(land[:, None], 278.15 + rng.random(shape4), np.nan),
           "H2OSOI": np.where(land[:, None], 0.2 + 0.1 * rng.random(shape4), np.nan)}
    ctl = {k: (v + 1.0 if k in ("TSA", "TSOI") else 1.1 * v) for k, v in ref.items()}
    rows = variables_table(ctl, ref, ref, lat, lon)
    assert all(isinstance(r, VarRow) for r in rows)
    get = {(r.var, r.band, r.stat, r.exp): r for r in rows}
    t2m = get[("T2m", "", "rBias", "CTL")]
    # 1 K too warm at 10 degC everywhere: rBias on degC = 0.1; RMSD 1 (K = degC)
    assert t2m.values["Global"] == pytest.approx(0.1, abs=1e-12, rel=0)
    assert get[("T2m", "", "RMSD", "CTL")].values["R1"] == pytest.approx(1.0, abs=1e-12, rel=0)
    assert get[("T2m", "", "RMSD", "CN")].values["R5"] == 0.0
    assert get[("NLW", "", "rBias", "CTL")].values["R3"] == pytest.approx(0.1, abs=1e-12, rel=0)  # 10 % too large
    # NLW: rBias and RMSD are the same in the GLDAS (downward) sign convention, both sides negated
    neg = variables_table({"FIRA": -ctl["FIRA"]}, {"FIRA": -ref["FIRA"]}, {"FIRA": -ref["FIRA"]}, lat, lon,
                          variables=["NLW"])
    for r in neg:
        for k, v in r.values.items():
            assert v == pytest.approx(get[("NLW", "", r.stat, r.exp)].values[k], abs=1e-12, rel=0)
    # soil variables: 4 bands and the pooled 0-255 cm rows, which alone carry the study's values
    assert {r.band for r in rows if r.var == "ST"} == {"0-7 cm", "7-28 cm", "28-100 cm", "100-255 cm", "0-255 cm"}
    assert get[("ST", "0-255 cm", "RMSD", "CTL")].study == STUDY_TABLE3[("ST", "RMSD", "CTL")]
    assert get[("ST", "0-7 cm", "RMSD", "CTL")].study is None
    # ST: 5 degC soil, 1 K too warm: rBias 1/5 +- the 0..1 K noise of the reference (mean 5.5 degC)
    assert get[("ST", "0-255 cm", "rBias", "CTL")].values["Global"] == pytest.approx(1 / 5.5, abs=0.01, rel=0)
    assert get[("ST", "0-255 cm", "rBias", "CTL")].n["Global"] == 4 * land.sum()
    with pytest.raises(EvaluationError, match="H2OSOI"):
        variables_table(ctl, {k: v for k, v in ref.items() if k != "H2OSOI"}, ref, lat, lon)


def test_format_table_names_every_region():
    lat, lon, _, _, obs = _lai_case()
    lai = lai_table(obs + 0.9, obs, obs, lat, lon)
    text = format_table(lai, ref_label="truth", title="LAI")
    for r in REGIONS:
        assert r.name in text
        assert f"{r.study_ctl_obs:.2f}" in text  # the study's CTL-OBS value printed alongside
    assert "CN-truth" in text and text.startswith("LAI\n")
    assert len({len(line) for line in text.splitlines()[1:3]}) == 1  # header and rule aligned
    land = np.isfinite(obs)
    v = {"FSH": np.where(land, 50.0, np.nan)}
    vt = format_table(variables_table(v, v, v, lat, lon, variables=["HS"]))
    for r in REGIONS:
        assert r.key in vt and (r.number == 0 or r.name in vt)
    assert "-0.500" in vt and "study" in vt  # the study's HS rBias (CTL, global) beside ours
    with pytest.raises(EvaluationError):
        format_table(lai + variables_table(v, v, v, lat, lon, variables=["HS"]))


# ------------------------------------------------------------------------------------------
# History files
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def box():
    # a real f45 box over equatorial Africa that contains the study's region 1 (Central Africa)
    return make_grid("f45", lat_min=-12.0, lat_max=12.0, lon_min=0.0, lon_max=45.0)


def _write(path, grid, lai_shift, seed):
    from engine.history import HistoryWriter

    rng = np.random.default_rng(seed)
    steps = []
    with HistoryWriter(path, grid, ["TLAI", "TSA", "TSOI"], config_toml="", title="evaluation test",
                       frequency="daily", collective=False) as w:
        for k in range(8):  # 4 steps of 6 h on 2 days
            vals = {"TLAI": rng.gamma(2.0, 1.5, (grid.n_land, 3)) + lai_shift,
                    "TSA": 290.0 + rng.random((grid.n_land, 3)),
                    "TSOI": 285.0 + rng.random((grid.n_land, 4, 3))}
            w.add(0.25 * (k + 1), vals, 0, grid.n_land)
            steps.append(vals)
    return path, steps


def test_load_history_round_trip(tmp_path, box):
    path, steps = _write(tmp_path / "ctl.h0.nc", box, 0.0, 1)
    h = load_history(path, ["TLAI", "TSOI", "TLAI_SPREAD"])
    nlat, nlon = box.shape
    assert h["TLAI"].shape == (2, nlat, nlon) and h["TSOI"].shape == (2, 4, nlat, nlon)
    np.testing.assert_array_equal(h["lat"], box.lat)
    np.testing.assert_array_equal(h["lon"], box.lon)
    np.testing.assert_array_equal(h["lat_edges"], box.lat_edges)
    np.testing.assert_array_equal(h["lon_edges"], box.lon_edges)
    assert h["time"].tolist() == [0.5, 1.5] and h["calendar"] == "noleap" and h["units"]["TLAI"] == "m^2/m^2"
    # land cells hold the ensemble mean of the day's time mean (float32 storage: 2 ulps), the rest NaN
    day1 = np.mean([s["TLAI"] for s in steps[:4]], axis=0).mean(axis=1)
    got = h["TLAI"][0][box.land_j, box.land_i]
    np.testing.assert_allclose(got, day1, rtol=2.4e-7, atol=0)
    off = np.ones(box.shape, bool)
    off[box.land_j, box.land_i] = False
    assert off.any() and np.isnan(h["TLAI"][:, off]).all() and np.isnan(h["TSOI"][:, :, off]).all()
    assert np.isfinite(h["TLAI_SPREAD"][:, box.land_j, box.land_i]).all()
    with pytest.raises(EvaluationError, match="LEAFC"):
        load_history(path, ["TLAI", "LEAFC"])
    with pytest.raises(EvaluationError, match="no such history file"):
        load_history(tmp_path / "missing.nc", "TLAI")
    (tmp_path / "junk.nc").write_bytes(b"not netcdf")
    with pytest.raises(EvaluationError, match="junk.nc"):
        load_history(tmp_path / "junk.nc", "TLAI")


def test_evaluation_report_from_three_history_files(tmp_path, box):
    truth, _ = _write(tmp_path / "truth.nc", box, 0.0, 1)
    cn, _ = _write(tmp_path / "cn.nc", box, 0.0, 1)  # same seed: CN = truth
    ctl, _ = _write(tmp_path / "ctl.nc", box, 2.0, 1)  # CTL's LAI 2 m2/m2 too high everywhere
    text = evaluation_report(ctl, cn, truth, variables=["T2m", "ST"])
    assert "Central Africa" in text and "CTL-truth" in text and "T2m" in text and "0-255 cm" in text
    h = {k: load_history(p, ["TLAI"]) for k, p in (("ctl", ctl), ("cn", cn), ("truth", truth))}
    rows = lai_table(h["ctl"]["TLAI"], h["cn"]["TLAI"], h["truth"]["TLAI"], h["ctl"]["lat"], h["ctl"]["lon"],
                     lat_edges=h["ctl"]["lat_edges"], lon_edges=h["ctl"]["lon_edges"])
    by = {r.region.key: r for r in rows}
    assert by["R1"].n > 0 and by["R2"].n == 0 and np.isnan(by["R2"].ctl_bias)  # Amazonia is outside the box
    # float32 storage of the two means (values ~3-5): differences exact to ~1e-6
    assert by["R1"].ctl_bias == pytest.approx(2.0, abs=2e-6, rel=0)
    assert by["R1"].cn_bias == 0.0
    assert isinstance(rows[0], LaiRow)
