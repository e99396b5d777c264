"""Tests of engine.pftcon: the CLM4.0 PFT parameter table, its array/record forms and the reader of
CLM pft-physiology netCDF files.

Exact comparisons (``==`` or ``atol=0``) are used where values are transcribed literals or pass
through float64 netCDF unchanged; sums of fractions use ``atol=1e-12`` (a few ulp of 1.0).
"""

from __future__ import annotations

import math

import netCDF4
import numpy as np
import pytest

from engine import pftcon
from engine.pftcon import NPFT, PFT_NAMES, PFT_TABLE

VEG = np.arange(1, NPFT)  # vegetated PFT indices


def _idx(*names):
    return sorted(pftcon.pft_index(n) for n in names)


def _where(a):
    return np.flatnonzero(a).tolist()


# ---- the table itself ---------------------------------------------------------------------------------


def test_every_row_has_17_values_units_description_and_source():
    assert len(PFT_NAMES) == NPFT == 17
    assert len(set(PFT_NAMES)) == 17
    assert len({row.name for row in PFT_TABLE}) == len(PFT_TABLE)
    arrays = pftcon.pft_arrays()
    assert list(arrays) == [row.name for row in PFT_TABLE]
    for row in PFT_TABLE:
        assert len(row.values) == 17, row.name
        assert row.units.strip(), row.name
        assert row.description.strip(), row.name
        assert row.source.strip(), row.name
        a = arrays[row.name]
        assert a.dtype == np.float64 and a.shape == (17,), row.name
        assert np.all(np.isfinite(a)), row.name
        if row.kind == "flag":
            assert set(np.unique(a)) <= {0.0, 1.0}, row.name
    # the parameters the land physics needs are all present
    for name in ("slatop", "dsladlai", "leafcn", "frootcn", "livewdcn", "deadwdcn", "lflitcn", "flnr",
                 "woody", "evergreen", "season_decid", "stress_decid", "c3psn", "mp", "qe25",
                 "rholvis", "rholnir", "rhosvis", "rhosnir", "taulvis", "taulnir", "tausvis", "tausnir",
                 "xl", "z0mr", "displar", "dleaf", "roota_par", "rootb_par", "smpso", "smpsc",
                 "froot_leaf", "stem_leaf", "croot_stem", "flivewd", "leaf_long", "fcur",
                 "lf_flab", "lf_fcel", "lf_flig", "fr_flab", "fr_fcel", "fr_flig", "fnitr",
                 "grperc", "grpnow", "resist"):
        assert name in arrays, name


def test_pft_arrays_are_fresh_copies():
    a = pftcon.pft_arrays()
    a["slatop"][:] = -1.0
    assert pftcon.pft_arrays()["slatop"][4] == 0.012


def test_pft_index_and_names():
    assert pftcon.pft_index("not_vegetated") == 0
    assert pftcon.pft_index("broadleaf_evergreen_tropical_tree") == 4 == pftcon.NBRDLF_EVR_TRP_TREE
    assert pftcon.pft_index("  C4_Grass ") == 14 == pftcon.NC4_GRASS
    assert pftcon.pft_index("c3 irrigated") == 16
    with pytest.raises(KeyError, match="unknown CLM4 PFT name 'oak'"):
        pftcon.pft_index("oak")
    with pytest.raises(KeyError, match="unknown PFT parameter 'vcmx25'"):
        pftcon.parameter("vcmx25")


# ---- physical consistency -----------------------------------------------------------------------------


def test_optics_scatter_less_than_one_per_band_and_element():
    a = pftcon.pft_arrays()
    for element in ("l", "s"):
        for band in ("vis", "nir"):
            rho = a[f"rho{element}{band}"][VEG]
            tau = a[f"tau{element}{band}"][VEG]
            assert np.all(rho > 0) and np.all(tau > 0), (element, band)
            assert np.all(rho + tau < 1), (element, band)
            assert np.all(rho + tau > 0), (element, band)
    # leaves scatter more in the near-infrared than in the visible
    assert np.all(a["rholnir"][VEG] + a["taulnir"][VEG] > a["rholvis"][VEG] + a["taulvis"][VEG])
    # CLM clamps chi_L to [-0.4, 0.6]; the table values are inside, so the clamp never acts
    assert np.all((a["xl"][VEG] >= -0.4) & (a["xl"][VEG] <= 0.6))


def test_carbon_nitrogen_ratios():
    a = pftcon.pft_arrays()
    for name in ("leafcn", "frootcn", "lflitcn"):
        assert np.all(a[name] > 0), name
    woody = a["woody"] == 1
    assert np.all(a["livewdcn"][woody] > 0) and np.all(a["deadwdcn"][woody] > a["livewdcn"][woody])
    assert np.all(a["livewdcn"][VEG][~woody[VEG]] == 0) and np.all(a["deadwdcn"][VEG][~woody[VEG]] == 0)
    # retranslocation: leaf litter is poorer in N than live leaves (CLM4 tech note section 14)
    assert np.all(a["lflitcn"][VEG] > a["leafcn"][VEG])


def test_flags_match_clm4_leaf_habits():
    a = pftcon.pft_arrays()
    assert _where(a["woody"]) == list(range(1, 12))  # trees and shrubs
    assert _where(a["evergreen"]) == [1, 2, 4, 5, 9]
    assert _where(a["c3psn"] == 0) == [14]  # C4 grass only
    assert _where(a["season_decid"]) == [3, 7, 8]
    assert _where(a["stress_decid"]) == [6, 10, 11, 12, 13, 14, 15, 16]
    habit = a["evergreen"] + a["season_decid"] + a["stress_decid"]
    assert np.all(habit[VEG] == 1)  # every vegetated PFT has exactly one leaf habit
    assert habit[0] == 0


def test_allocation_litter_and_rooting():
    a = pftcon.pft_arrays()
    trees = np.arange(1, 9)
    shrubs = np.arange(9, 12)
    herbs = np.arange(12, 17)
    assert np.all(a["stem_leaf"][trees] == -1)  # dynamic allocation from annual NPP (eq. 13.8 of TN4.5)
    assert np.all(a["stem_leaf"][shrubs] == 0.2)
    assert np.all(a["stem_leaf"][herbs] == 0) and np.all(a["croot_stem"][herbs] == 0)
    assert np.all((a["flivewd"][1:12] > 0) & (a["flivewd"][1:12] <= 1))
    assert np.all(a["froot_leaf"][VEG] > 0)
    for part in ("lf", "fr"):  # litter fractions are a partition of unity
        total = a[f"{part}_flab"] + a[f"{part}_fcel"] + a[f"{part}_flig"]
        np.testing.assert_allclose(total[VEG], 1.0, rtol=0, atol=1e-12)
    c = pftcon.CONSTANTS
    assert math.isclose(c.cwd_fcel + c.cwd_flig, 1.0, abs_tol=1e-12)
    # Zeng (2001): cumulative root fraction to depth d is 1 - (exp(-a d) + exp(-b d))/2; more than
    # half of the roots lie in the top metre for every PFT, and all of them within 10 m
    for d, low in ((1.0, 0.5), (10.0, 0.99)):
        cum = 1 - 0.5 * (np.exp(-a["roota_par"][VEG] * d) + np.exp(-a["rootb_par"][VEG] * d))
        assert np.all(cum > low)
    # full opening at a higher (less negative) potential than closure
    assert np.all(a["smpsc"][VEG] < a["smpso"][VEG]) and np.all(a["smpso"][VEG] < 0)
    assert np.all(a["leaf_long"][VEG] >= 1) and np.all(a["fcur"][a["evergreen"] == 1] == 1)


# ---- spot values checked against the sources --------------------------------------------------------

# Rows of NASA GMAO's CLM4.0 port (GEOS-ESM/GEOSgcm_GridComp, GEOScatchCN_GridComp/CN_DriverMod.F90,
# CN_init data statements; 20 types) and the GEOS row holding each of the 17 CLM types.
_GEOS_ROW_OF_CLM = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 16, 18, 19)
_GEOS = {
    "slatop": (0., .010, .008, .024, .012, .012, .030, .030, .030, .012, .030, .030, .030, .030, .030, .030,
               .030, .030, .030, .030),
    "fnitr": (0., .720, .780, .790, .830, .710, .660, .640, .700, .620, .600, .600, .760, .680, .610, .610,
              .640, .640, .610, .610),
    "flivewd": (0., .1, .1, .1, .1, .1, .1, .1, .1, .5, .5, .5, .1, 0., 0., 0., 0., 0., 0., 0.),
    "stress_decid": (0., 0., 0., 0., 0., 0., 1., 0., 0., 0., 1., 1., 1., 1., 1., 1., 1., 1., 1., 1.),
    "lflitcn": (1., 70., 80., 50., 60., 60., 50., 50., 50., 60., 50., 50., 50., 50., 50., 50., 50., 50., 50., 50.),
    "mp": (9., 6., 6., 6., 9., 9., 9., 9., 9., 9., 9., 9., 9., 9., 9., 9., 5., 5., 9., 9.),
    "rhosvis": (0., .16, .16, .16, .16, .16, .16, .16, .16, .16, .16, .16, .16, .31, .31, .31, .31, .31, .31, .31),
}


@pytest.mark.parametrize("name", sorted(_GEOS))
def test_table_equals_the_geos_clm40_rows(name):
    expected = np.array([_GEOS[name][g] for g in _GEOS_ROW_OF_CLM])
    np.testing.assert_array_equal(pftcon.pft_arrays()[name], expected)


def test_spot_values():
    a = pftcon.pft_arrays()
    bet = pftcon.pft_index("broadleaf_evergreen_tropical_tree")
    # pft-physiology.c110425 / CLM4.5 tech note Tables 8.1, 13.1, 3.1, 5.1
    assert (a["slatop"][bet], a["leafcn"][bet], a["flnr"][bet]) == (0.012, 30.0, 0.06)
    assert (a["z0mr"][bet], a["xl"][bet], a["rholnir"][bet], a["taulnir"][bet]) == (0.075, 0.10, 0.45, 0.25)
    assert (a["smpso"][bet], a["smpsc"][bet]) == (-66000.0, -255000.0)
    net_b = pftcon.pft_index("needleleaf_evergreen_boreal_tree")
    assert (a["slatop"][net_b], a["leafcn"][net_b], a["leaf_long"][net_b]) == (0.008, 40.0, 6.0)
    assert a["dsladlai"][1] == 0.00125
    assert (a["mp"][14], a["qe25"][14]) == (5.0, 0.04)
    assert a["froot_leaf"][pftcon.NC3_ARCTIC_GRASS] == 1.0 and a["froot_leaf"][pftcon.NC3_NONARCTIC_GRASS] == 2.0
    assert a["flivewd"][pftcon.NBRDLF_DCD_BRL_SHRUB] == 0.1
    assert (a["rholnir"][13], a["rhosnir"][13], a["taulnir"][13], a["tausnir"][13]) == (0.35, 0.53, 0.34, 0.25)
    assert (a["roota_par"][4], a["rootb_par"][4], a["roota_par"][12], a["rootb_par"][15]) == (7.0, 1.0, 11.0, 3.0)


def test_vcmax25_top_follows_clm4_cn_formula():
    v = pftcon.vcmax25_top()
    # BET tropical: 1/(0.012*30) gN m-2 * 0.06 * 7.16 * (3.6*1000/60) = 71.6 umol m-2 s-1
    assert v[4] == pytest.approx(71.6, rel=1e-12)
    assert v[0] == 0.0
    assert np.all((v[VEG] > 20) & (v[VEG] < 120))  # the range of leaf-level Vcmax25 in the literature


def test_constants_record():
    names = [c.name for c in pftcon.CONSTANT_TABLE]
    assert len(set(names)) == len(names)
    for c in pftcon.CONSTANT_TABLE:
        assert c.units.strip() and c.description.strip() and c.source.strip(), c.name
        assert math.isfinite(c.value), c.name
    c = pftcon.constants_record()
    assert (c.act25, c.q10act, c.fnr, c.mr_br, c.mr_q10) == (3.6, 2.4, 7.16, 2.525e-6, 1.5)
    # Ryan (1991): 0.0106 molC molN-1 h-1 = 0.0106 * 12.011/14.007 / 3600 gC gN-1 s-1
    assert c.mr_br == pytest.approx(0.0106 * 12.011 / 14.007 / 3600, rel=2e-3)  # rounding of 2.525e-6


# ---- record for kernels ------------------------------------------------------------------------------


def test_record_is_accepted_by_numba():
    from numba import njit

    @njit
    def vcmax_from_record(rec, act25, fnr):
        out = np.zeros(rec.slatop.shape[0])
        for p in range(1, rec.slatop.shape[0]):
            out[p] = rec.flnr[p] * fnr * act25 * 1000.0 / 60.0 / (rec.slatop[p] * rec.leafcn[p])
        return out

    rec = pftcon.pft_record()
    assert rec._fields == tuple(row.name for row in PFT_TABLE)
    assert all(isinstance(f, np.ndarray) and f.flags.c_contiguous and f.shape == (17,) for f in rec)
    c = pftcon.CONSTANTS
    # same operations in a different order than vcmax25_top: agree to a few ulp
    np.testing.assert_allclose(vcmax_from_record(rec, c.act25, c.fnr), pftcon.vcmax25_top(), rtol=1e-13, atol=0)


def test_record_rejects_incomplete_arrays():
    arrays = pftcon.pft_arrays()
    del arrays["leafcn"]
    with pytest.raises(KeyError, match="'leafcn' missing"):
        pftcon.pft_record(arrays)
    arrays = pftcon.pft_arrays()
    arrays["flnr"] = arrays["flnr"][:16]
    with pytest.raises(ValueError, match=r"'flnr' has shape \(16,\)"):
        pftcon.pft_record(arrays)


# ---- netCDF in CLM's pft-physiology layout -----------------------------------------------------------


def _write_clm_layout(path, *, extra_rows=0, drop=(), names=PFT_NAMES, fill_at=None):
    """Write a file the way CLM's pft-physiology.c110425.nc is laid out (char pftname(pft,
    pftname_len), double var(pft)), with ``extra_rows`` additional crop-like rows after the 17."""
    table = pftcon.to_netcdf_like_dict()
    n = NPFT + extra_rows
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("pft", n)
        ds.createDimension("pftname_len", 40)
        v = ds.createVariable("pftname", "S1", ("pft", "pftname_len"))
        allnames = list(names) + [f"extra_crop_{i}" for i in range(extra_rows)]
        v[:] = netCDF4.stringtochar(np.array(allnames, dtype="S40"))
        for name, values in table.items():
            if name == "pftname" or name in drop:
                continue
            var = ds.createVariable(name, "f8", ("pft",), fill_value=-9999.0)
            full = np.concatenate([values, np.full(extra_rows, values[-1])])
            if fill_at is not None and name == fill_at[0]:
                full = np.ma.masked_array(full, mask=np.arange(n) == fill_at[1])
            var[:] = full
    return path


def _assert_same_layout(got, want):
    assert list(got) == list(want)
    for name in want:
        if name == "pftname":
            assert tuple(got[name]) == tuple(want[name])
        else:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)  # float64 stored exactly


def test_read_a_file_in_clm_layout_with_crop_rows(tmp_path):
    path = _write_clm_layout(tmp_path / "pft-physiology.test.nc", extra_rows=4)  # 21 rows like c110425
    _assert_same_layout(pftcon.read_pft_physiology(path), pftcon.to_netcdf_like_dict())


def test_write_then_read_round_trip(tmp_path):
    path = pftcon.write_pft_physiology(tmp_path / "pft.nc")
    got = pftcon.read_pft_physiology(path)
    _assert_same_layout(got, pftcon.to_netcdf_like_dict())
    with netCDF4.Dataset(path) as ds:
        assert ds.variables["slatop"].units == "m2 leaf gC-1"
        assert ds.variables["pftname"].dimensions == ("pft", "pftname_len")
    rec = pftcon.pft_record(got)  # a file can replace the built-in table
    np.testing.assert_array_equal(rec.slatop, pftcon.pft_record().slatop)


def test_reader_errors_name_file_and_variable(tmp_path):
    missing = _write_clm_layout(tmp_path / "missing.nc", drop=("leafcn",))
    with pytest.raises(KeyError, match=r"missing\.nc: variable 'leafcn'.*missing"):
        pftcon.read_pft_physiology(missing)

    swapped = list(PFT_NAMES)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    wrong = _write_clm_layout(tmp_path / "order.nc", names=swapped)
    with pytest.raises(ValueError, match=r"order\.nc: variable 'pftname'.*index 3"):
        pftcon.read_pft_physiology(wrong)

    filled = _write_clm_layout(tmp_path / "fill.nc", fill_at=("flnr", 7))
    with pytest.raises(ValueError, match=r"fill\.nc: variable 'flnr' has fill values at pft indices \[7\]"):
        pftcon.read_pft_physiology(filled)

    short = tmp_path / "short.nc"
    with netCDF4.Dataset(short, "w") as ds:
        ds.createDimension("pft", 16)
    with pytest.raises(ValueError, match=r"short\.nc: dimension 'pft' has 16 entries"):
        pftcon.read_pft_physiology(short)

    with pytest.raises(FileNotFoundError, match="nothere.nc"):
        pftcon.read_pft_physiology(tmp_path / "nothere.nc")

    notnc = tmp_path / "text.nc"
    notnc.write_text("not a netCDF file")
    with pytest.raises(OSError, match=r"text\.nc"):
        pftcon.read_pft_physiology(notnc)
