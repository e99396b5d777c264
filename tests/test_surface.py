"""engine.surface: PFT composition from MODIS IGBP + Koppen-Geiger + ERA5 climate rules, soil fields,
the CLM-surfdata-layout file (write, read, cache), and the reader on real CLM4 / CLM5 layouts."""

from __future__ import annotations

import numpy as np
import pytest

from engine import comm
from engine import grid as gridmod
from engine import surface as surf
from engine.pftcon import NPFT


@pytest.fixture(scope="module")
def f45():
    g = gridmod.make_grid("f45")
    return g, surf.build_surface(g)


@pytest.fixture(scope="module")
def f09():
    g = gridmod.make_grid("f09")
    return g, surf.load_or_build_surface(g)


def _cell(g, lat, lon):
    """Land-cell position nearest to (lat, lon) (deg), by great-circle-ish distance in degrees."""
    dlon = (g.land_lon - lon + 180.0) % 360.0 - 180.0
    return int(np.argmin((g.land_lat - lat) ** 2 + (dlon * np.cos(np.deg2rad(lat))) ** 2))


# ------------------------------------------------------------------ sources


def test_koppen_geiger_coding_and_orientation_at_known_places():
    kg = surf.koppen_005()
    assert kg.shape == (3600, 7200) and kg.dtype == np.uint8

    def at(lat, lon):
        return int(kg[int((90.0 - lat) / 0.05), int((lon + 180.0) / 0.05)])

    # Beck et al. (2018) main classes 1 A, 2 B, 3 C, 4 D, 5 E; row 0 north, column 0 at 180 W
    assert at(-3.1, -60.0) == surf.KG_A  # Manaus
    assert at(23.0, 10.0) == surf.KG_B  # central Sahara
    assert at(48.85, 2.35) == surf.KG_C  # Paris
    assert at(55.75, 37.6) == surf.KG_D  # Moscow
    assert at(72.0, -40.0) == surf.KG_E  # Greenland ice sheet
    assert at(0.0, -30.0) == 0  # Atlantic: no class


def test_joint_fractions_add_up_to_the_igbp_fractions_of_the_grid():
    g = gridmod.make_grid("f45")
    joint = surf.joint_fractions("f45")
    # same pixels, same weights, only split further: agreement to round-off
    np.testing.assert_allclose(joint.sum(axis=1), g.igbp_fractions, rtol=0, atol=1e-12)


def test_koppen_classes_agree_with_the_class_derived_from_era5(f45):
    g, _ = f45
    t, p, _ = surf._cell_climate(g)
    clim = surf.climate_indices(t, p, g.land_lat)
    joint = surf.joint_fractions("f45")[:, :, g.parent_j[g.land_j], g.parent_i[g.land_i]]
    kg_major = np.argmax(joint[:, 1:].sum(axis=0), axis=0) + 1
    agree = np.mean(kg_major == clim.koppen)
    # two independent climatologies (Beck et al. 1980-2016 at 1 km vs ERA5 2000-2025 cell means, same
    # Peel et al. criteria) agree in 90 % of the 4x5 deg cells (measured; 92 % at f09); the margin
    # allows for boundary cells; a wrong class coding or a flipped raster gives < 0.4
    assert agree > 0.85, agree


def test_climate_indices_analytic():
    months = np.arange(12)
    t = np.array([10.0 + 15.0 * np.sin(np.pi * months / 11.0),  # 10 .. ~25 degC
                  np.full(12, 26.0),  # tropical
                  np.full(12, -30.0)])  # polar
    t[2, 6] = 8.0  # one thawed month, Tw < 10
    p = np.array([np.full(12, 50.0), np.r_[np.zeros(6), np.full(6, 200.0)], np.full(12, 10.0)])
    c = surf.climate_indices(t, p, np.array([45.0, 5.0, 75.0]))
    days = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], float)
    np.testing.assert_allclose(c.tc, t.min(axis=1), rtol=0, atol=0)
    np.testing.assert_allclose(c.gdd5[1], 21.0 * 365.0, rtol=0, atol=1e-9)
    np.testing.assert_allclose(c.gdd5[2], 3.0 * days[6], rtol=0, atol=1e-9)
    expect_c4 = np.sum((t[0] >= 22) & (p[0] >= 25)) / np.sum((t[0] >= 5) & (p[0] >= 25))
    assert c.c4_share[0] == pytest.approx(expect_c4, abs=1e-15)
    assert c.c4_share[1] == 1.0 and c.c4_share[2] == 0.0
    assert c.zone.tolist() == [1, 0, 2]
    assert c.koppen.tolist() == [surf.KG_C, surf.KG_A, surf.KG_E]
    assert c.p_ann.tolist() == [600.0, 1200.0, 120.0]


def test_merge_small_patches_drops_renormalises_and_sums_exactly():
    pct = np.array([[50.0, 46.0, 4.0] + [0.0] * 14,
                    [100.0 / 3] * 3 + [0.0] * 14,
                    [1.0] * 17])
    pct[2, 0] = 100.0 - 16.0  # 84 + sixteen 1 %
    out = surf.merge_small_patches(pct, 5.0)
    assert np.all(out.sum(axis=1) == 100.0)  # exactly, not approximately
    q = 2.0**surf.PCT_QUANTUM_BITS
    assert np.all(out * q == np.round(out * q))  # multiples of 2**-10 percent
    # dropped 4 % redistributed proportionally: 50/96 and 46/96 of 100, to one quantum
    np.testing.assert_allclose(out[0, :2], [5000 / 96, 4600 / 96], rtol=0, atol=1 / q)
    assert out[0, 2] == 0.0
    np.testing.assert_allclose(out[1, :3], 100 / 3, rtol=0, atol=1 / q)
    assert out[2, 0] == 100.0 and np.count_nonzero(out[2]) == 1


# ------------------------------------------------------------------ the built dataset


@pytest.mark.parametrize("name", ["f45", "f19"])
def test_fractions_texture_colour_and_patches_are_consistent(name, f45):
    g, s = f45 if name == "f45" else (gridmod.make_grid(name), None)
    s = s if s is not None else surf.build_surface(g)
    assert s.n_land == g.n_land and s.pct_pft.shape == (g.n_land, NPFT)
    assert np.all(s.pct_pft.sum(axis=1) == 100.0)
    kept = s.pct_pft[s.pct_pft > 0]
    assert kept.min() >= surf.MIN_PATCH_PCT  # small patches merged away
    assert s.pct_pft[:, 16].max() == 0.0  # no irrigation data: c3_irrigated unused
    assert s.pct_sand.shape == s.pct_clay.shape == (g.n_land, surf.NLEVSOI)
    assert s.pct_sand.min() >= 0 and s.pct_clay.min() >= 0
    assert (s.pct_sand + s.pct_clay).max() <= 100.0
    assert s.soil_color.min() >= 1 and s.soil_color.max() <= 20
    assert 0.0 <= s.topo.min() and s.topo.max() < 7000.0  # cell means of ETOPO5 (Tibet ~5000 m)
    for v in (s.pct_wetland, s.pct_glacier, s.pct_urban):
        assert v.min() >= 0.0 and v.max() <= 100.0 + 1e-9
    # patch list: cells ascending, weights = pct/100, summing to 1 per cell
    assert np.all(np.diff(s.patch_cell) >= 0)
    np.testing.assert_array_equal(s.patch_weight, s.pct_pft[s.patch_cell, s.patch_pft] / 100.0)
    np.testing.assert_allclose(np.bincount(s.patch_cell, weights=s.patch_weight), 1.0, rtol=0, atol=1e-14)
    assert s.patches_per_cell().min() >= 1 and s.n_patch == np.count_nonzero(s.pct_pft)


def test_f09_land_cell_count_and_spot_checks(f09):
    g, s = f09
    assert 15000 <= s.n_land <= 21000
    dom = s.dominant_pft
    at = lambda lat, lon: dom[_cell(g, lat, lon)]  # noqa: E731
    assert at(-4.0, -62.0) == 4  # central Amazon: broadleaf evergreen tropical tree
    assert at(0.0, 22.0) == 4  # Congo basin
    assert at(42.0, -93.5) == 15  # Iowa, US corn belt: crop
    assert at(23.0, 10.0) == 0  # central Sahara: bare soil
    assert at(13.0, 20.0) == 14  # Sahel (Chad): C4 grass
    assert at(-15.0, 28.0) in (6, 14)  # Zambian miombo savanna: tropical deciduous trees or C4 grass
    assert at(33.5, 87.5) in (11, 12)  # Tibetan plateau: arctic grass or boreal shrub
    assert at(72.0, -100.0) in (11, 12)  # Canadian Arctic tundra
    assert at(64.0, -150.0) in (2, 3, 11, 12)  # interior Alaska
    # Siberian taiga (55-65 N, 90-130 E): boreal needleleaf trees are the largest PFT of the region
    # and every cell's largest tree PFT is boreal
    box = (s.lat >= 55) & (s.lat <= 65) & (s.lon >= 90) & (s.lon <= 130)
    assert box.sum() > 100
    total = s.pct_pft[box].sum(axis=0)
    assert total[2] + total[3] > max(total[k] for k in range(NPFT) if k not in (2, 3))
    trees = s.pct_pft[box][:, 1:9]
    has_tree = trees.max(axis=1) > 0
    assert np.isin(np.argmax(trees[has_tree], axis=1) + 1, (2, 3, 8)).all()
    # Antarctica and Greenland: glacier land unit, no vegetation
    ant = s.lat < -70
    assert s.pct_glacier[ant].mean() > 95 and np.all(s.pct_pft[ant, 0] == 100.0)


def test_regional_box_equals_the_global_cells(f45):
    g, s = f45
    box = gridmod.make_grid("f45", lat_min=-20, lat_max=30, lon_min=-20, lon_max=60)
    sb = surf.build_surface(box)
    pos = np.searchsorted(g.land_parent_index, box.land_parent_index)
    assert np.array_equal(g.land_parent_index[pos], box.land_parent_index)
    # per-cell rules: the box is the global subset; the climate is read from a different latitude band
    # (summed-area tables start at other rows), so precipitation can differ by round-off, and the
    # rounding of PCT_PFT to 2**-10 % by up to one quantum
    np.testing.assert_allclose(sb.pct_pft, s.pct_pft[pos], rtol=0, atol=2.0**-surf.PCT_QUANTUM_BITS)
    np.testing.assert_allclose(sb.pct_sand, s.pct_sand[pos], rtol=0, atol=1e-9)
    np.testing.assert_allclose(sb.topo, s.topo[pos], rtol=0, atol=1e-6)  # m


# ------------------------------------------------------------------ file: write, read, cache


def test_write_read_round_trip(f45, tmp_path):
    g, s = f45
    path = surf.write_surface(s, g, tmp_path / "surfdata.nc")
    r = surf.read_surface(path, g)
    assert r.source == str(path) and r.shape == g.shape
    np.testing.assert_array_equal(r.land_index, g.land_index)
    for name in ("pct_pft", "pct_sand", "pct_clay", "soil_color", "topo", "area", "landfrac", "lat", "lon",
                 "pct_wetland", "pct_glacier", "pct_urban", "patch_cell", "patch_pft", "patch_weight"):
        np.testing.assert_array_equal(getattr(r, name), getattr(s, name), err_msg=name)
    for key in ("source_land_cover", "source_koppen_geiger", "source_climate", "source_elevation",
                "pft_rules", "soil_texture_and_color", "references"):
        assert key in r.attrs
    assert "doi:10.5067/MODIS/MCD12C1.006" in r.attrs["references"]
    assert "GENERATED" in r.attrs["soil_texture_and_color"]
    import netCDF4

    with netCDF4.Dataset(path) as ds:
        assert ds["PCT_PFT"].dimensions == ("lsmpft", "lsmlat", "lsmlon")
        assert ds["PCT_SAND"].dimensions == ("nlevsoi", "lsmlat", "lsmlon")
        assert "GENERATED" in ds["PCT_CLAY"].long_name
    with pytest.raises(surf.SurfaceError, match="grid mismatch"):
        surf.read_surface(path, gridmod.make_grid("f19"))


def _write_clm_file(path, layout, drop=(), nan_in=None):
    """A small CLM surfdata file (2 x 3 cells, cell (0, 2) ocean) in CLM4 or CLM5 layout."""
    import netCDF4

    nlat, nlon = 2, 3
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("lsmlat", nlat)
        ds.createDimension("lsmlon", nlon)
        ds.createDimension("nlevsoi", 10)

        def put(name, dims, values, dtype="f8", fill=None):
            if name in drop:
                return
            v = ds.createVariable(name, dtype, dims, fill_value=fill)
            v[...] = values

        lat2 = np.repeat(np.array([10.0, 20.0])[:, None], nlon, axis=1)
        lon2 = np.repeat(np.array([0.0, 1.25, 2.5])[None, :], nlat, axis=0)
        put("LATIXY", ("lsmlat", "lsmlon"), lat2)
        put("LONGXY", ("lsmlat", "lsmlon"), lon2)
        put("PFTDATA_MASK", ("lsmlat", "lsmlon"), mask, "i4")
        put("LANDFRAC_PFT", ("lsmlat", "lsmlon"), mask * 0.75)
        put("AREA", ("lsmlat", "lsmlon"), np.full((nlat, nlon), 1.0e4))
        sand = np.full((10, nlat, nlon), 40.0)
        sand[:, 1, 2] = 70.0
        put("PCT_SAND", ("nlevsoi", "lsmlat", "lsmlon"), sand)
        put("PCT_CLAY", ("nlevsoi", "lsmlat", "lsmlon"), np.full((10, nlat, nlon), 20.0), fill=1e36)
        put("SOIL_COLOR", ("lsmlat", "lsmlon"), np.array([[15, 16, 0], [3, 4, 5]]), "i4")
        if layout == "clm4":
            ds.createDimension("lsmpft", 17)
            pct = np.zeros((17, nlat, nlon))
            pct[4] = 70.0
            pct[14] = 30.0
            pct[:, 1, 2] = 0.0
            pct[0, 1, 2] = 100.0
            put("PCT_PFT", ("lsmpft", "lsmlat", "lsmlon"), pct)
        else:
            ds.createDimension("natpft", 15)
            ds.createDimension("cft", 2)
            nat = np.zeros((15, nlat, nlon))
            nat[13] = 100.0
            put("PCT_NAT_PFT", ("natpft", "lsmlat", "lsmlon"), nat)
            put("PCT_NATVEG", ("lsmlat", "lsmlon"), np.full((nlat, nlon), 60.0))
            put("PCT_CROP", ("lsmlat", "lsmlon"), np.full((nlat, nlon), 20.0))
            cft = np.zeros((2, nlat, nlon))
            cft[0], cft[1] = 75.0, 25.0
            put("PCT_CFT", ("cft", "lsmlat", "lsmlon"), cft)
        if nan_in is not None:
            ds[nan_in][..., 0, 0] = np.nan
    return path


def test_reader_accepts_a_clm4_surfdata_file(tmp_path):
    s = surf.read_surface(_write_clm_file(tmp_path / "clm4.nc", "clm4"))
    assert s.shape == (2, 3) and s.land_index.tolist() == [0, 1, 3, 4, 5]
    assert s.pct_pft[:, 4].tolist() == [70.0, 70.0, 70.0, 70.0, 0.0]
    assert s.pct_pft[4, 0] == 100.0
    assert s.pct_sand.shape == (5, 10) and s.pct_sand[4, 0] == 70.0
    assert s.soil_color.tolist() == [15, 16, 3, 4, 5]
    assert np.all(s.landfrac == 0.75) and np.all(s.area == 1.0e4)
    assert np.isnan(s.topo).all()  # optional, absent
    assert np.all(s.pct_wetland == 0.0)
    assert s.patch_pft.tolist() == [4, 14, 4, 14, 4, 14, 4, 14, 0]
    assert s.patch_cell.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4]


def test_reader_maps_a_clm5_surfdata_file_to_the_17_clm4_pfts(tmp_path):
    s = surf.read_surface(_write_clm_file(tmp_path / "clm5.nc", "clm5"))
    # natural vegetation 60 %, crop 20 % of the cell: the vegetated part is 3/4 grass, 1/4 crop,
    # the crop 75 % rainfed (PFT 15) and 25 % irrigated (PFT 16)
    np.testing.assert_allclose(s.pct_pft[:, 13], 75.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.pct_pft[:, 15], 18.75, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.pct_pft[:, 16], 6.25, rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.pct_pft.sum(axis=1), 100.0, rtol=0, atol=1e-12)


@pytest.mark.parametrize("var", ["PCT_SAND", "LATIXY", "SOIL_COLOR"])
def test_reader_names_file_and_variable_when_one_is_missing(tmp_path, var):
    path = _write_clm_file(tmp_path / "bad.nc", "clm4", drop=(var,))
    with pytest.raises(surf.SurfaceError, match=f"{path}.*{var}"):
        surf.read_surface(path)


def test_reader_errors_on_missing_pft_variable_nan_and_fill(tmp_path):
    path = _write_clm_file(tmp_path / "nopft.nc", "clm4", drop=("PCT_PFT",))
    with pytest.raises(surf.SurfaceError, match="'PCT_PFT' .*'PCT_NAT_PFT'.* missing"):
        surf.read_surface(path)
    path = _write_clm_file(tmp_path / "nan.nc", "clm4", nan_in="PCT_SAND")
    with pytest.raises(surf.SurfaceError, match=f"{path}.*'PCT_SAND' has NaN"):
        surf.read_surface(path)
    path = _write_clm_file(tmp_path / "fill.nc", "clm4")
    import netCDF4

    with netCDF4.Dataset(path, "a") as ds:
        ds["PCT_CLAY"][3, 1, 1] = 1e36  # the fill value, at a land cell
    with pytest.raises(surf.SurfaceError, match="'PCT_CLAY' has fill values"):
        surf.read_surface(path)
    with pytest.raises(surf.SurfaceError, match="does not exist"):
        surf.read_surface(tmp_path / "nothing.nc")


@pytest.mark.mpi
def test_load_or_build_is_collective_cached_and_rank_independent(shared_tmp_path):
    g = gridmod.make_grid("f45", lat_min=-40, lat_max=40, lon_min=-20, lon_max=60)
    path = shared_tmp_path / "surf.nc"
    s1 = surf.load_or_build_surface(g, path=path)  # rank 0 builds and writes, all read
    assert path.exists() and s1.source == str(path)
    mtime = path.stat().st_mtime_ns
    comm.barrier()
    s2 = surf.load_or_build_surface(g, path=path)  # from the file: not rewritten
    assert path.stat().st_mtime_ns == mtime
    np.testing.assert_array_equal(s1.pct_pft, s2.pct_pft)
    # every rank holds the same dataset, bit for bit
    digest = float(np.sum(s1.pct_pft * np.arange(1, NPFT + 1)) + np.sum(s1.pct_sand) + np.sum(s1.topo))
    assert comm.allreduce(digest, "max") == comm.allreduce(digest, "min") == digest
    assert [p for p in shared_tmp_path.iterdir() if p.suffix == ".tmp"] == []
    # a file for another grid is rebuilt, not trusted
    g2 = gridmod.make_grid("f45", lat_min=-40, lat_max=40, lon_min=-20, lon_max=50)
    s3 = surf.load_or_build_surface(g2, path=path)
    assert s3.n_land == g2.n_land < s1.n_land


@pytest.mark.mpi
def test_load_or_build_reports_a_build_failure_on_every_rank(shared_tmp_path):
    g = gridmod.make_grid("f45", lat_min=-40, lat_max=40, lon_min=-20, lon_max=60)
    with pytest.raises(surf.SurfaceError, match="failed on rank 0: ValueError: surface: min_patch_pct"):
        surf.load_or_build_surface(g, min_patch_pct=80.0, path=shared_tmp_path / "x.nc")
