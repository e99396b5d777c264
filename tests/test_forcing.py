"""Tests of the ensemble meteorological forcing (engine/forcing.py, kernels/forcing.py) and the real
climatology it is anchored on (engine/climatology.py: ERA5 t2m/tp, ETOPO5 elevation)."""

from __future__ import annotations

import math

import netCDF4
import numpy as np
import pytest

from engine import climatology as cl
from engine import comm
from engine import forcing as F
from kernels import forcing as kf

# Amazon (Manaus), Sahara (southern Libya), Siberia (Yakutia), Europe (southern Germany)
POINTS = {"amazon": (-3.0, -60.0), "sahara": (23.0, 10.0), "siberia": (62.0, 100.0), "europe": (48.0, 10.0)}
LAT = np.array([p[0] for p in POINTS.values()])
LON = np.array([p[1] for p in POINTS.values()])
IDS = np.array([101, 202, 303, 404], dtype=np.int64)
DAYS = kf.MONTH_DAYS
REC_PER_YEAR = 1460


@pytest.fixture(scope="module")
def clim():
    return cl.point_climatology(LAT, LON)


def _month_index(nrec, dt=21600.0):
    t = (np.arange(nrec) * dt) % kf.SECONDS_PER_YEAR
    return kf.DAY_TO_MONTH[(t // 86400).astype(int)]


def _ar_mean_var(phi, n):
    """Variance of the mean of n consecutive samples of a unit-variance AR(1) with coefficient phi."""
    lag = np.arange(1, n)
    return (n + 2.0 * np.sum((n - lag) * phi ** lag)) / n ** 2


# ----------------------------------------------------------------------------------------------
# Climatology
# ----------------------------------------------------------------------------------------------
def test_era5_units_and_provenance():
    res = cl.check_era5()
    # ERA5 2000-2025: 14.56 degC and 88.0 mm/month area-weighted global means (2-degree subsample)
    assert res["t2m"] == pytest.approx(14.56, abs=0.3)
    assert res["tp"] == pytest.approx(88.0, abs=3.0)
    assert "Copernicus" in cl.ERA5_PROVENANCE and "ERA5" in cl.ERA5_PROVENANCE


def test_era5_wrong_units_is_a_clear_error(tmp_path):
    path = tmp_path / "era5_in_kelvin.nc"
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("month", 12)
        ds.createDimension("latitude", 91)
        ds.createDimension("longitude", 180)
        ds.createVariable("latitude", "f8", ("latitude",))[:] = np.linspace(90, -90, 91)
        ds.createVariable("longitude", "f8", ("longitude",))[:] = np.arange(180) * 2.0
        t = ds.createVariable("t2m", "f4", ("month", "latitude", "longitude"))
        t.units = "K"
        t[:] = 288.0  # really Kelvin: must be rejected (laida expects degC values)
        ds.createVariable("tp", "f4", ("month", "latitude", "longitude"))[:] = 88.0
    with pytest.raises(ValueError, match=r"era5_in_kelvin.nc.*'t2m'"):
        cl.check_era5(path)


def test_point_climatology_is_plausible(clim):
    t_ann = clim.t2m.mean(axis=1) - 273.15
    p_ann = clim.precip.mean(axis=1) * 86400 * 365  # mm/yr
    # well-known annual means: Amazon ~27 degC / >2000 mm, Sahara ~25 degC / <50 mm,
    # Yakutia ~ -8..-3 degC with a > 50 K annual range, southern Germany ~8-10 degC / ~900-1300 mm
    assert 25 < t_ann[0] < 29 and p_ann[0] > 2000
    assert 22 < t_ann[1] < 29 and p_ann[1] < 50
    assert -12 < t_ann[2] < 0 and np.ptp(clim.t2m[2]) > 45
    assert 6 < t_ann[3] < 12 and 700 < p_ann[3] < 1600
    assert clim.elev[1] > 300 and clim.elev[0] < 200  # Saharan plateau vs Amazon lowland
    # decomposition independence of the area average: a subset reads a smaller band, same values
    full = cl.point_climatology(LAT, LON, method="area", half_width=(0.47, 0.625))
    part = cl.point_climatology(LAT[2:], LON[2:], method="area", half_width=(0.47, 0.625))
    assert np.array_equal(full.t2m[2:], part.t2m) and np.array_equal(full.elev[2:], part.elev)


# ----------------------------------------------------------------------------------------------
# Monthly means over a simulated year
# ----------------------------------------------------------------------------------------------
def test_monthly_means_reproduce_climatology(clim):
    """Generated monthly TBOT and precipitation means match ERA5 at four real points over a year.

    Each point's real climatology drives NREP = 256 independent weather realisations: copies placed
    on distinct weather-lattice nodes (10 deg apart, so each copy's weather comes from one node
    stream of its own) with 4 members each. The sample mean over them estimates the expectation.
    TBOT: the deterministic part reproduces the monthly means exactly (mean-preserving nodes,
    zero-sum diurnal cycle); the tolerance is 4 standard deviations of the remaining AR(1) weather
    and member-perturbation noise of the monthly mean (computed from the AR(1) parameters).
    Precipitation: E[P] = P_month by construction; the tolerance is 4 standard errors estimated from
    the realisations (rain is too intermittent for a formula), and the annual total of the rainy
    points (>= 300 mm/yr) must be within 3 %. A single realisation at the real location is also
    checked against its own 4-sd temperature tolerance.
    """
    nmem = 4
    lat_rep, lon_rep = np.meshgrid(np.arange(-70.0, 80.0, 20.0), np.arange(0.0, 320.0, 10.0), indexing="ij")
    lat_rep, lon_rep = lat_rep.ravel(), lon_rep.ravel()
    nrep = lat_rep.size  # 8 x 32 = 256
    n = 4 * nrep
    big = cl.PointClimatology(np.tile(lat_rep, 4), np.tile(lon_rep, 4), np.repeat(clim.t2m, nrep, axis=0),
                              np.repeat(clim.precip, nrep, axis=0), np.repeat(clim.elev, nrep), "test", "test")
    g = F.ForcingGenerator(big.lat, big.lon, np.arange(n), n_members=nmem, seed=0, climatology=big)
    r = g.records(0, REC_PER_YEAR)
    months = _month_index(REC_PER_YEAR)
    t = r.field("TBOT").mean(axis=2).reshape(REC_PER_YEAR, 4, nrep)
    p = r.field("PRECTmms").mean(axis=2).reshape(REC_PER_YEAR, 4, nrep)
    wp = F.DEFAULT_WEATHER.params(21600.0)
    pp = F.DEFAULT_PERTURBATIONS.params(21600.0)
    sig2 = np.mean((1.0 + 3.0 * np.sin(np.deg2rad(lat_rep)) ** 2) ** 2)  # synoptic variance of the copies
    pm = np.zeros((4, nrep, 12))
    for m in range(12):
        sel = months == m
        nm = int(sel.sum())
        tm = t[sel].mean(axis=0)  # (point, copy)
        pm[:, :, m] = p[sel].mean(axis=0)
        sd = math.sqrt(sig2 * _ar_mean_var(wp.phi_t, nm) + pp.sd_t ** 2 * _ar_mean_var(pp.phi, nm) / nmem)
        tol = 4.0 * sd / math.sqrt(nrep) + 1e-6
        err = tm.mean(axis=1) - clim.t2m[:, m]
        assert np.all(np.abs(err) <= tol), f"month {m + 1}: TBOT errors {err} K exceed {tol:.3f} K"
        se = pm[:, :, m].std(axis=1, ddof=1) / math.sqrt(nrep)
        perr = pm[:, :, m].mean(axis=1) - clim.precip[:, m]
        assert np.all(np.abs(perr) <= 4.0 * se + 1e-12), f"month {m + 1}: precip errors {perr} vs 4 SE {4 * se}"
    annual = pm.mean(axis=(1, 2)) / clim.precip.mean(axis=1)
    wet = clim.precip.mean(axis=1) * 86400 * 365 >= 300
    assert np.all(np.abs(annual[wet] - 1.0) < 0.03), f"annual precipitation ratios {annual}"
    # one realisation at the real locations, month by month within its own 4 sd
    one = F.ForcingGenerator(LAT, LON, IDS, n_members=nmem, seed=0, climatology=clim).records(0, REC_PER_YEAR)
    t1 = one.field("TBOT").mean(axis=2)
    sig1 = 1.0 + 3.0 * np.sin(np.deg2rad(LAT)) ** 2
    for m in range(12):
        sel = months == m
        nm = int(sel.sum())
        sd1 = np.sqrt(sig1 ** 2 * _ar_mean_var(wp.phi_t, nm) + pp.sd_t ** 2 * _ar_mean_var(pp.phi, nm) / nmem)
        assert np.all(np.abs(t1[sel].mean(axis=0) - clim.t2m[:, m]) <= 4 * sd1)


def test_weather_is_realistic(clim):
    """Diurnal cycle, intermittency, humidity, pressure and wind in physically sensible ranges."""
    g = F.ForcingGenerator(LAT, LON, IDS, n_members=2, seed=3, climatology=clim, perturb=False)
    r = g.records(0, REC_PER_YEAR)
    t = r.field("TBOT")[:, :, 0]
    # Sahara: local 12-18 h is warmer than local 00-06 h (diurnal cycle), by several K on average
    hour_local = ((np.arange(REC_PER_YEAR) * 6) % 24 + LON[1] / 15) % 24
    day = (hour_local >= 11) & (hour_local <= 17)
    night = (hour_local >= 23) | (hour_local <= 5)
    assert t[day, 1].mean() - t[night, 1].mean() > 5.0
    p = r.field("PRECTmms")[:, :, 0]
    wet_frac = (p > 0).mean(axis=0)
    assert 0.2 < wet_frac[0] <= 0.55 and wet_frac[1] < 0.05  # Amazon rains often, the Sahara rarely
    q = r.field("QBOT")[:, :, 0]
    ps = r.field("PSRF")[:, :, 0]
    e = q * ps / (0.622 + 0.378 * q)
    rh = e / np.vectorize(kf.esat)(t)
    assert rh.max() <= 1.0 + 1e-12 and rh.min() > 0.02
    assert rh[:, 0].mean() > 0.6 and rh[:, 1].mean() < 0.45  # humid Amazon, dry Sahara
    # pressure from elevation: ~101 kPa at the Amazon lowland, lower on the Saharan plateau
    assert 99000 < ps[:, 0].mean() < 101500 and ps[:, 1].mean() < ps[:, 0].mean() - 5000
    w = r.field("WIND")[:, :, 0]
    assert 2.8 < w.mean() < 4.2 and w.min() >= 0.1 and w.max() < 30
    lw = r.field("FLDS")[:, :, 0].mean(axis=0)
    assert 390 < lw[0] < 450 and 300 < lw[1] < 400  # Amazon ~420, Sahara ~350 W/m2


# ----------------------------------------------------------------------------------------------
# Shortwave geometry and the datm time interpolation
# ----------------------------------------------------------------------------------------------
def _toa_records(r, lat, lon):
    out = np.empty((r.values.shape[0], lat.size))
    for i in range(r.values.shape[0]):
        t = r.t0 + i * r.dt
        decl, e0 = kf.orbit(t + 0.5 * r.dt)
        for c in range(lat.size):
            out[i, c] = kf.S0 * e0 * kf.mean_cosz(math.radians(lat[c]), math.radians(lon[c]), t, t + r.dt, decl)
    return out


def test_solar_geometry():
    """Spencer (1971) declination/eccentricity and the analytic interval mean of cos z."""
    day = 86400.0
    decl, e0 = kf.orbit(171.5 * day)  # 21 June
    assert math.degrees(decl) == pytest.approx(23.44, abs=0.3)
    decl, _ = kf.orbit(354.5 * day)  # 21 December
    assert math.degrees(decl) == pytest.approx(-23.44, abs=0.3)
    assert kf.orbit(2.5 * day)[1] == pytest.approx(1.0342, abs=0.002)  # perihelion, early January
    assert kf.orbit(184.5 * day)[1] == pytest.approx(0.9666, abs=0.002)  # aphelion, early July
    rng = np.random.default_rng(1)
    for _ in range(40):
        lat, lon = math.radians(rng.uniform(-89, 89)), math.radians(rng.uniform(-180, 180))
        decl = math.radians(rng.uniform(-23.44, 23.44))
        t1 = rng.uniform(0, 3e7)
        dt = rng.choice([1800.0, 21600.0, 86400.0])
        tt = t1 + (np.arange(200000) + 0.5) * dt / 200000
        h = 2 * np.pi * tt / day + lon - np.pi
        cz = np.maximum(math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * np.cos(h), 0)
        # midpoint rule with 2e5 nodes: error well below 1e-6 (the kink at sunrise is O(h^2))
        assert kf.mean_cosz(lat, lon, t1, t1 + dt, decl) == pytest.approx(cz.mean(), abs=1e-6)
        parts = [kf.mean_cosz(lat, lon, t1 + j * dt / 12, t1 + (j + 1) * dt / 12, decl) for j in range(12)]
        assert np.mean(parts) == pytest.approx(kf.mean_cosz(lat, lon, t1, t1 + dt, decl), rel=1e-12, abs=1e-15)


def test_rank_without_cells():
    """A rank that owns no cells reads no files and produces empty (record, field, 0, member) arrays."""
    e = np.array([])
    g = F.ForcingGenerator(e, e, np.array([], dtype=np.int64), n_members=3)
    r = g.records(0, 5)
    assert r.values.shape == (5, 7, 0, 3)
    assert F.records_to_steps(r, e, e).shape == (48, 12, 0, 3)


def test_shortwave_below_toa_and_zero_at_night(clim):
    lat = np.array([-3.0, 23.0, 62.0, 78.0, -75.0])
    lon = np.array([-60.0, 10.0, 100.0, 15.0, 120.0])
    c5 = cl.PointClimatology(lat, lon, np.vstack([clim.t2m[:3], clim.t2m[2:3], clim.t2m[2:3]]),
                             np.vstack([clim.precip[:3], clim.precip[2:3], clim.precip[2:3]]),
                             np.array([50.0, 800.0, 400.0, 100.0, 2800.0]), "test", "test")
    g = F.ForcingGenerator(lat, lon, np.arange(5), n_members=8, seed=5, climatology=c5)
    for k0 in (0, 4 * 170, 4 * 355):  # January, June (polar day at 78N, night at 75S), December
        r = g.records(k0, 41)
        toa = _toa_records(r, lat, lon)
        sw = r.field("FSDS")
        assert np.all(sw >= 0) and np.all(sw <= toa[:, :, None] * (1 + 1e-12))
        assert np.all(sw[toa == 0] == 0)
        steps = F.records_to_steps(r, lat, lon, 1800.0)
        toa_s = F.toa_at_steps(r, lat, lon, 1800.0)
        s = steps[:, kf.S_FSDS]
        assert np.all(s >= 0) and np.all(s <= toa_s[:, :, None] * (1 + 1e-12) + 1e-12)
        assert np.all(s[toa_s == 0] == 0) and np.any(toa_s == 0) and np.any(s > 300)
        parts = steps[:, [kf.S_SWVDR, kf.S_SWVDF, kf.S_SWNDR, kf.S_SWNDF]].sum(axis=1)
        np.testing.assert_allclose(parts, s, rtol=1e-12, atol=1e-12)
    assert np.all(g.records(4 * 172, 4).field("FSDS")[:, 4] == 0)  # Antarctic winter: polar night


def test_coszen_interpolation_conserves_energy_and_state_variables_are_linear(clim):
    g = F.ForcingGenerator(LAT, LON, IDS, n_members=5, seed=9, climatology=clim)
    r = g.records(4 * 100, 13)
    for dt_step in (1800.0, 3600.0, 900.0):
        steps = F.records_to_steps(r, LAT, LON, dt_step)
        nsub = int(21600 / dt_step)
        sw = steps[:, kf.S_FSDS].reshape(12, nsub, 4, 5).mean(axis=1)
        # the interval mean of the step values equals the 6-hourly mean (round-off only)
        np.testing.assert_allclose(sw, r.field("FSDS")[:-1], rtol=1e-12, atol=1e-9)
        for sf, rf in (("TBOT", "TBOT"), ("QBOT", "QBOT"), ("PSRF", "PSRF"), ("WIND", "WIND"), ("FLDS", "FLDS")):
            x = steps[:, kf.STEP_FIELDS.index(sf)].reshape(12, nsub, 4, 5)
            rec = r.field(rf)
            np.testing.assert_array_equal(x[:, 0], rec[:-1])  # steps starting on a record equal it
            mid = x[:, nsub // 2] if nsub % 2 == 0 else None
            if mid is not None:  # the step starting half-way is the average of the two records
                np.testing.assert_allclose(mid, 0.5 * (rec[:-1] + rec[1:]), rtol=1e-13)
        prec = steps[:, kf.S_RAIN] + steps[:, kf.S_SNOW]
        np.testing.assert_allclose(prec.reshape(12, nsub, 4, 5), np.repeat(r.field("PRECTmms")[:-1, None], nsub, 1),
                                   rtol=1e-14, atol=0)
        tb = steps[:, kf.S_TBOT]
        assert np.all(steps[:, kf.S_SNOW][tb >= kf.TFRZ + 2] == 0)
        assert np.all(steps[:, kf.S_RAIN][tb <= kf.TFRZ] == 0)
    with pytest.raises(ValueError, match="must divide"):
        F.records_to_steps(r, LAT, LON, 7000.0)


def test_iter_model_steps_matches_window_interpolation(clim):
    g = F.ForcingGenerator(LAT, LON, IDS, n_members=3, seed=2, climatology=clim)
    whole = F.records_to_steps(g.records(0, 9), LAT, LON, 1800.0)  # 8 intervals = 96 steps
    g2 = F.ForcingGenerator(LAT, LON, IDS, n_members=3, seed=2, climatology=clim)
    got = list(F.iter_model_steps(g2, LAT, LON, 5, 80, 1800.0, block=3))
    assert [j for j, _ in got] == list(range(5, 85))
    for j, x in got:
        np.testing.assert_array_equal(x, whole[j])


# ----------------------------------------------------------------------------------------------
# Determinism: decomposition, time windows, members
# ----------------------------------------------------------------------------------------------
def _scattered_cells(n, offset=0, lat_range=(-60.0, 75.0)):
    rng = np.random.default_rng(12345)
    lat = rng.uniform(*lat_range, n)
    lon = rng.uniform(-180, 180, n)
    ids = (np.arange(n) * 7919 + 13 + offset).astype(np.int64)
    return lat, lon, ids


def test_decomposition_independence():
    lat, lon, ids = _scattered_cells(12)
    g = F.ForcingGenerator(lat, lon, ids, n_members=6, seed=11)
    full = g.records(0, 30).values
    # each subset reads its own climatology slab and computes only its cells
    for sel in (slice(0, 5), slice(5, 12), np.array([9, 2, 7])):
        part = F.ForcingGenerator(lat[sel], lon[sel], ids[sel], n_members=6, seed=11).records(0, 30).values
        assert np.array_equal(part, full[:, :, sel])
    # members too: a subset of member ids gives those members' forcing
    sub = F.ForcingGenerator(lat, lon, ids, members=[4, 1], seed=11, climatology=g.climatology).records(0, 30).values
    assert np.array_equal(sub, full[..., [4, 1]])
    # a different seed gives different weather
    other = F.ForcingGenerator(lat, lon, ids, n_members=6, seed=12, climatology=g.climatology).records(0, 30).values
    assert not np.array_equal(other, full)


def test_time_windows_are_consistent(clim):
    """Days 1-10 in one call, in two calls, overlapping calls, or from a fresh generator: identical."""
    kw = dict(n_members=4, seed=7, climatology=clim)
    one = F.ForcingGenerator(LAT, LON, IDS, **kw).records(0, 40).values
    g = F.ForcingGenerator(LAT, LON, IDS, **kw)
    two = np.concatenate([g.records(0, 17).values, g.records(17, 23).values])
    assert np.array_equal(one, two)
    g = F.ForcingGenerator(LAT, LON, IDS, **kw)
    a = g.records(0, 11).values
    b = g.records(10, 30).values  # overlaps the last record (as the step interpolation asks)
    assert np.array_equal(np.concatenate([a, b[1:]]), one)
    late = F.ForcingGenerator(LAT, LON, IDS, **kw).records(25, 15).values  # fast-forward from record 0
    assert np.array_equal(late, one[25:])
    g.records(3, 2)  # going back recomputes from record 0
    assert np.array_equal(g.records(5, 35).values, one[5:])
    st = g.state()
    g2 = F.ForcingGenerator(LAT, LON, IDS, **kw)
    g2.set_state(st)
    assert np.array_equal(g2.records(40, 8).values, g.records(40, 8).values)


def test_members_identical_without_perturbations(clim):
    g = F.ForcingGenerator(LAT, LON, IDS, n_members=5, seed=1, climatology=clim, perturb=False)
    v = g.records(0, 60).values
    assert np.array_equal(v, np.broadcast_to(v[..., :1], v.shape))
    on = F.ForcingGenerator(LAT, LON, IDS, n_members=5, seed=1, climatology=clim).records(0, 60).values
    assert not np.array_equal(on[..., 0], on[..., 1])
    # the perturbations do not touch the member-independent fields
    for f in ("PSRF", "WIND"):
        i = kf.RECORD_FIELDS.index(f)
        assert np.array_equal(on[:, i], v[:, i])


def test_member_spread_has_documented_magnitudes():
    spec = F.DEFAULT_PERTURBATIONS
    lat, lon, ids = _scattered_cells(40)
    clim40 = cl.PointClimatology(lat, lon, np.full((40, 12), 290.0), np.full((40, 12), 3.0 / 86400),
                                 np.zeros(40), "test", "test")
    nmem, nrec = 40, 240
    on = F.ForcingGenerator(lat, lon, ids, n_members=nmem, seed=4, climatology=clim40)
    off = F.ForcingGenerator(lat, lon, ids, n_members=nmem, seed=4, climatology=clim40, perturb=False)
    z = on.deviates(0, nrec).reshape(-1, 4)
    # ~40 cells x 40 members x 60 independent days: sampling error of a s.d. or correlation < 0.01
    trunc = np.array([spec.max_p, spec.max_sw, spec.max_lw, spec.max_t])
    x = np.random.default_rng(0).standard_normal((2_000_000, 1))
    sd_expected = np.clip(x, -trunc, trunc).std(axis=0)  # clipping at 2.5-3 sd trims the s.d. by < 1 %
    np.testing.assert_allclose(z.std(axis=0), sd_expected, atol=0.03)
    np.testing.assert_allclose(np.corrcoef(z.T), np.asarray(spec.correlation), atol=0.03)
    assert np.abs(z.mean(axis=0)).max() < 0.05
    # lag-1 (6 h) autocorrelation of an AR(1) with a 1-day e-folding time: exp(-0.25) = 0.78
    zz = on.deviates(0, nrec)
    r1 = np.mean(zz[1:] * zz[:-1], axis=(0, 1, 2)) / np.mean(zz ** 2, axis=(0, 1, 2))
    np.testing.assert_allclose(r1, math.exp(-0.25), atol=0.03)
    a, b = on.records(0, nrec), off.records(0, nrec)
    dt = (a.field("TBOT") - b.field("TBOT")).ravel()
    assert dt.std() == pytest.approx(spec.t_sd * sd_expected[3], rel=0.03)  # 1 K
    pa, pb = a.field("PRECTmms"), b.field("PRECTmms")
    wet = pb > 0
    ratio = pa[wet] / pb[wet]
    mu, sg = spec.lognormal(spec.precip_sd)
    assert np.log(ratio).std() == pytest.approx(sg * sd_expected[0], rel=0.03)
    assert ratio.std() == pytest.approx(spec.precip_sd, rel=0.08)  # s.d. 0.5 of the mean-1 factor
    assert ratio.mean() == pytest.approx(1.0, abs=0.02)
    sa, sb = a.field("FSDS"), b.field("FSDS")
    day = (sb > 50) & (sa < sb * 1.5)  # below the clear-sky cap: the lognormal factor is visible
    assert np.log(sa[day] / sb[day]).std() == pytest.approx(spec.lognormal(spec.sw_sd)[1], rel=0.25)
    # FLDS spread: the 20 W/m2 additive perturbation plus the effect of the 1 K temperature perturbation
    dl = (a.field("FLDS") - b.field("FLDS")).ravel()
    assert 18.0 < dl.std() < 26.0


# ----------------------------------------------------------------------------------------------
# datm reader
# ----------------------------------------------------------------------------------------------
def _write_datm(path, lat_axis, lon_axis, values, t_hours, *, member_dim=True, units=None, drop=None,
                two_d=False, start="2002-01-01 00:00:00"):
    """values: (time, field, nlat*nlon, member) in RECORD_FIELDS order."""
    nt, _, _, nm = values.shape
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("time", None)
        ds.createDimension("lat", lat_axis.size)
        ds.createDimension("lon", lon_axis.size)
        if member_dim:
            ds.createDimension("member", nm)
        tv = ds.createVariable("time", "f8", ("time",))
        tv.units = f"hours since {start}"
        tv.calendar = "noleap"
        tv[:] = t_hours
        if two_d:
            la = ds.createVariable("LATIXY", "f8", ("lat", "lon"))
            lo = ds.createVariable("LONGXY", "f8", ("lat", "lon"))
            la[:] = np.repeat(lat_axis[:, None], lon_axis.size, 1)
            lo[:] = np.repeat(lon_axis[None, :], lat_axis.size, 0)
        else:
            ds.createVariable("lat", "f8", ("lat",))[:] = lat_axis
            ds.createVariable("lon", "f8", ("lon",))[:] = lon_axis
        for i, name in enumerate(kf.RECORD_FIELDS):
            if name == drop:
                continue
            dims = ("time", "member", "lat", "lon") if member_dim else ("time", "lat", "lon")
            v = ds.createVariable(name, "f8", dims)
            v.units = (units or {}).get(name, {"PRECTmms": "mm H2O / sec", "FSDS": "W/m**2"}.get(name, kf.RECORD_UNITS[i]))
            x = values[:, i].reshape(nt, lat_axis.size, lon_axis.size, nm)
            v[:] = np.moveaxis(x, 3, 1) if member_dim else x[..., 0]


@pytest.fixture(scope="module")
def datm_source():
    lat_axis = np.arange(30.0, 62.0, 2.0)  # a regional 2 x 2.5 deg grid over Europe
    lon_axis = np.arange(-10.0, 30.0, 2.5)
    glat, glon = np.meshgrid(lat_axis, lon_axis, indexing="ij")
    ncell = glat.size
    cl_ = cl.PointClimatology(glat.ravel(), glon.ravel(), np.full((ncell, 12), 280.0) + glat.ravel()[:, None] * 0,
                              np.full((ncell, 12), 2.0 / 86400), np.full(ncell, 200.0), "test", "test")
    g = F.ForcingGenerator(glat.ravel(), glon.ravel(), np.arange(ncell), n_members=3, seed=8, climatology=cl_)
    r = g.records(0, 12)
    return lat_axis, lon_axis, r


def test_datm_reader_round_trip(tmp_path, datm_source):
    lat_axis, lon_axis, r = datm_source
    t_hours = np.arange(12) * 6.0
    one = tmp_path / "ens.nc"
    _write_datm(one, lat_axis, lon_axis, r.values, t_hours)
    files = []
    for m in range(3):  # one file per member, CLM's 2-D LATIXY/LONGXY coordinates
        p = tmp_path / f"mem{m:03d}.nc"
        _write_datm(p, lat_axis, lon_axis, r.values[..., m:m + 1], t_hours, member_dim=False, two_d=True)
        files.append(p)
    glat, glon = np.meshgrid(lat_axis, lon_axis, indexing="ij")
    pick = np.array([0, 17, 100, glat.size - 1])
    for src in (one, files):
        rd = F.DatmReader(src, glat.ravel()[pick], glon.ravel()[pick])
        assert rd.n_members == 3 and rd.dt_record == 21600.0 and rd.n_records == 12
        got = rd.records(2, 9)
        # at grid points the bilinear weights are 0/1: the written values come back (round-off only)
        np.testing.assert_allclose(got.values, r.values[2:11][:, :, pick], rtol=1e-12, atol=0)
        assert got.t0 == 2 * 21600.0 and got.k0 == 2
    # between grid points: bilinear interpolation of the four neighbours
    rd = F.DatmReader(one, [41.0], [-3.75 + 360.0])  # lat midway 40/42, lon midway -5/-2.5, given as 356.25
    i, j = 5, 2
    nb = r.values.reshape(12, 7, lat_axis.size, lon_axis.size, 3)[:, :, i:i + 2, j:j + 2]
    np.testing.assert_allclose(rd.records(0, 12).values[:, :, 0], nb.mean(axis=(2, 3)), rtol=1e-12)
    # the generated-then-read records interpolate to model steps like the generator's own
    steps = F.records_to_steps(F.DatmReader(one, glat.ravel()[pick], glon.ravel()[pick]).records(0, 5),
                               glat.ravel()[pick], glon.ravel()[pick])
    ref = F.records_to_steps(F.ForcingRecords(0, r.dt, r.t0, r.values[:5][:, :, pick]),
                             glat.ravel()[pick], glon.ravel()[pick])
    np.testing.assert_allclose(steps, ref, rtol=1e-12, atol=1e-12)


def test_datm_reader_clear_errors(tmp_path, datm_source):
    lat_axis, lon_axis, r = datm_source
    t_hours = np.arange(12) * 6.0
    pts = (np.array([45.0]), np.array([10.0]))
    p = tmp_path / "missing.nc"
    _write_datm(p, lat_axis, lon_axis, r.values, t_hours, drop="FLDS")
    with pytest.raises(KeyError, match=r"missing.nc.*'FLDS'"):
        F.DatmReader(p, *pts)
    p = tmp_path / "units.nc"
    _write_datm(p, lat_axis, lon_axis, r.values, t_hours, units={"TBOT": "degC"})
    with pytest.raises(ValueError, match=r"units.nc.*'TBOT'.*'degC'"):
        F.DatmReader(p, *pts)
    p = tmp_path / "gap.nc"
    _write_datm(p, lat_axis, lon_axis, r.values, np.r_[t_hours[:6], t_hours[6:] + 6.0])
    with pytest.raises(ValueError, match=r"gap.nc.*'time'.*gap"):
        F.DatmReader(p, *pts)
    ok = tmp_path / "ok.nc"
    _write_datm(ok, lat_axis, lon_axis, r.values, t_hours)
    with pytest.raises(ValueError, match=r"ok.nc.*outside the grid.*grid mismatch"):
        F.DatmReader(ok, np.array([10.0]), np.array([10.0]))  # 10 N is south of this European grid
    other = tmp_path / "other_grid.nc"
    _write_datm(other, lat_axis + 1.0, lon_axis, r.values[..., :1], t_hours, member_dim=False)
    single = tmp_path / "single.nc"
    _write_datm(single, lat_axis, lon_axis, r.values[..., :1], t_hours, member_dim=False)
    with pytest.raises(ValueError, match=r"grid mismatch.*other_grid.nc"):
        F.DatmReader([single, other], *pts)
    with pytest.raises(ValueError, match=r"ok.nc.*records 10..14"):
        F.DatmReader(ok, *pts).records(10, 5)


# ----------------------------------------------------------------------------------------------
# MPI: each rank generates its block; the gathered result equals one rank's full generation
# ----------------------------------------------------------------------------------------------
@pytest.mark.mpi
def test_forcing_identical_under_any_rank_count():
    n_per_rank = 30
    ntot = n_per_rank * comm.size()
    lat, lon, ids = _scattered_cells(ntot, offset=1000, lat_range=(20.0, 70.0))
    mine = slice(comm.rank() * n_per_rank, (comm.rank() + 1) * n_per_rank)
    g = F.ForcingGenerator(lat[mine], lon[mine], ids[mine], n_members=40, seed=21)  # reads its own slab
    local = np.ascontiguousarray(np.moveaxis(g.records(0, 8).values, 2, 0))  # (cell, record, field, member)
    gathered = comm.gather_array(local, root=0)
    same = None
    if comm.rank() == 0:
        full = F.ForcingGenerator(lat, lon, ids, n_members=40, seed=21).records(0, 8).values
        same = bool(np.array_equal(gathered, np.moveaxis(full, 2, 0)))
    assert comm.bcast(same), "gathered per-rank forcing differs from the one-rank generation"
