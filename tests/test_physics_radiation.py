"""kernels.physics canopy_radiation, surface_albedo, longwave: analytic, limiting and conservation
cases (CLM4 tech note ch. 3 and 4; equation labels as in the kernels' docstrings)."""

import math
import time

import numpy as np
import pytest

from engine.pftcon import NPFT, pft_arrays, pft_record
from kernels.physics import canopy_radiation as CR
from kernels.physics import longwave as LW
from kernels.physics import surface_albedo as SA

# Conservation is an identity of a few dozen float64 operations on O(1) numbers (fluxes of
# O(1000) W/m2 checked relatively): 1e-12 relative leaves a margin of >1000 over round-off.
CONSERVE_RTOL = 1e-12
# Independent re-derivations (closed forms, quadrature, ODE integration) agree to round-off of
# O(100) operations, or to the stated discretisation error where one is used.
ROUNDOFF = 1e-12

SB = 5.67e-8


# ----------------------------------------------------------------------------------------------
# helpers

def _run_two_stream(coszen, elai, esai, patch_col, patch_pft, albgrd, albgri, pft=None, t_veg=None,
                    fwet=None):
    npatch, nmem = elai.shape
    pft = pft_record() if pft is None else pft
    t_veg = np.full((npatch, nmem), 290.0) if t_veg is None else t_veg
    fwet = np.zeros((npatch, nmem)) if fwet is None else fwet
    names = ("albd", "albi", "fabd", "fabi", "ftdd", "ftid", "ftii", "omega")
    out = {k: np.full((npatch, 2, nmem), np.nan) for k in names}
    out["fsun"] = np.full((npatch, nmem), np.nan)
    CR.canopy_two_stream(np.asarray(coszen, float), elai, esai, t_veg, fwet, np.asarray(patch_col),
                         np.asarray(patch_pft), pft, albgrd, albgri,
                         *(out[k] for k in names), out["fsun"])
    return out


def _run_solar(coszen, solad, solai, elai, esai, patch_col, albgrd, albgri, ts):
    npatch, nmem = elai.shape
    names = ("sabv", "sabg", "fsa", "fsr", "laisun", "laisha", "parsun", "parsha")
    out = {k: np.full((npatch, nmem), np.nan) for k in names}
    CR.solar_fluxes(np.asarray(coszen, float), solad, solai, elai, esai, np.asarray(patch_col),
                    albgrd, albgri, ts["albd"], ts["albi"], ts["fabd"], ts["fabi"], ts["ftdd"],
                    ts["ftid"], ts["ftii"], ts["omega"], ts["fsun"], *(out[k] for k in names))
    return out


def _ground(ncol, nmem, coszen, theta, frac_sno, snow_age, isoicol):
    albsod = np.empty((ncol, 2, nmem))
    albsoi = np.empty_like(albsod)
    albsnd = np.empty_like(albsod)
    albsni = np.empty_like(albsod)
    albgrd = np.empty_like(albsod)
    albgri = np.empty_like(albsod)
    SA.soil_albedo(isoicol, theta, SA.SOIL_ALBSAT, SA.SOIL_ALBDRY, albsod, albsoi)
    SA.snow_albedo_bats(coszen, snow_age, albsnd, albsni)
    SA.ground_albedo(albsod, albsoi, albsnd, albsni, frac_sno, albgrd, albgri)
    return albgrd, albgri


def _independent_optics(xl, cosz, rho, tau):
    """Two-stream parameters from the tech note's integral definitions (eqs. 3.3, 3.4, 3.13-3.16)
    evaluated by Gauss-Legendre quadrature instead of the closed forms used in the kernel."""
    chil = min(max(xl, -0.4), 0.6)
    if abs(chil) <= 0.01:
        chil = 0.01
    phi1 = 0.5 - 0.633 * chil - 0.33 * chil ** 2
    phi2 = 0.877 * (1 - 2 * phi1)

    def g(mu):
        return phi1 + phi2 * mu

    x, w = np.polynomial.legendre.leggauss(200)
    mup = 0.5 * (x + 1.0)
    w = 0.5 * w
    mubar = float(np.sum(w * mup / g(mup)))                                      # eq. 3.4 integral
    k = g(cosz) / cosz
    om = rho + tau
    a_s = om / 2 * float(np.sum(w * mup * g(cosz) / (cosz * g(mup) + mup * g(cosz))))  # eq. 3.16
    om_beta0 = (1 + mubar * k) / (mubar * k) * a_s                               # eq. 3.15
    om_beta = 0.5 * (rho + tau + (rho - tau) * ((1 + chil) / 2) ** 2)            # eqs. 3.13-3.14
    return om, om_beta / om, om_beta0 / om, mubar, k


def _ode_two_stream(om, beta, beta0, mubar, k, vai, agd, agi, direct, n=2000):
    """Shooting solution of tech note eqs. 3.1-3.2 by classical RK4 (independent of the closed form).

    Returns (albedo, diffuse down at the ground, canopy absorption integrated as
    (1 - omega)[(I_up + I_dn)/mu_bar + K exp(-K x)] over x)."""
    b = 1 - om + om * beta
    c = om * beta
    d = om * mubar * k * beta0 if direct else 0.0
    f = om * mubar * k * (1 - beta0) if direct else 0.0
    src = 1.0 if direct else 0.0

    def rhs(x, y, forced):
        u, dn, _ = y
        e = math.exp(-k * x) if forced else 0.0
        return np.array([(b * u - c * dn - d * e) / mubar,
                         (c * u - b * dn + f * e) / mubar,
                         (1 - om) * ((u + dn) / mubar + src * k * e)])

    def integrate(y0, forced):
        y = np.array(y0, float)
        h = vai / n
        x = 0.0
        for _ in range(n):
            k1 = rhs(x, y, forced)
            k2 = rhs(x + h / 2, y + h / 2 * k1, forced)
            k3 = rhs(x + h / 2, y + h / 2 * k2, forced)
            k4 = rhs(x + h, y + h * k3, forced)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            x += h
        return y

    yp = integrate([0.0, 0.0 if direct else 1.0, 0.0], True)   # particular: U(0) = 0
    yh = integrate([1.0, 0.0, 0.0], False)                      # homogeneous: U(0) = 1
    s2 = math.exp(-k * vai) if direct else 0.0
    a = (agd * s2 + agi * yp[1] - yp[0]) / (yh[0] - agi * yh[1])  # bottom boundary condition
    y = yp + a * yh
    return a, y[1], y[2]


def _tech_note_two_stream(om, betad, betai, avmu, ext, vai, alb_g):
    """The tech note's own closed form (eqs. 3.17-3.22, 3.31-3.57) for ground albedo alb_g (direct
    = diffuse), transcribed from the equations; returns (albd, ftid, fabd, albi, ftii, fabi)."""
    b = 1 - om + om * betai
    c = om * betai
    tmp0 = avmu * ext
    d = tmp0 * om * betad
    f = tmp0 * om * (1 - betad)
    h = math.sqrt(b * b - c * c) / avmu
    sigma = tmp0 * tmp0 - (b * b - c * c)
    p1, p2, p3, p4 = b + avmu * h, b - avmu * h, b + tmp0, b - tmp0
    s1 = math.exp(-min(h * vai, 40.0))
    s2 = math.exp(-min(ext * vai, 40.0))
    u1, u2, u3 = b - c / alb_g, b - c * alb_g, f + c * alb_g
    d1 = p1 * (u1 - avmu * h) / s1 - p2 * (u1 + avmu * h) * s1
    d2 = (u2 + avmu * h) / s1 - (u2 - avmu * h) * s1
    h1 = -d * p4 - c * f
    h2 = ((d - h1 / sigma * p3) * (u1 - avmu * h) / s1 - p2 * (d - c - h1 / sigma * (u1 + tmp0)) * s2) / d1
    h3 = -((d - h1 / sigma * p3) * (u1 + avmu * h) * s1 - p1 * (d - c - h1 / sigma * (u1 + tmp0)) * s2) / d1
    h4 = -f * p3 - c * d
    h5 = -(h4 * (u2 + avmu * h) / (sigma * s1) + (u3 - h4 / sigma * (u2 - tmp0)) * s2) / d2
    h6 = (h4 / sigma * (u2 - avmu * h) * s1 + (u3 - h4 / sigma * (u2 - tmp0)) * s2) / d2
    h7 = c * (u1 - avmu * h) / (d1 * s1)
    h8 = -c * (u1 + avmu * h) * s1 / d1
    h9 = (u2 + avmu * h) / (d2 * s1)
    h10 = -s1 * (u2 - avmu * h) / d2
    albd = h1 / sigma + h2 + h3
    ftid = h4 * s2 / sigma + h5 * s1 + h6 / s1
    fabd = 1 - albd - (1 - alb_g) * ftid - (1 - alb_g) * s2
    albi = h7 + h8
    ftii = h9 * s1 + h10 / s1
    fabi = 1 - albi - (1 - alb_g) * ftii
    return albd, ftid, fabd, albi, ftii, fabi


def _record_with(**changes):
    a = pft_arrays()
    for name, values in changes.items():
        a[name] = np.asarray(values, dtype=np.float64) * np.ones(NPFT)
    return pft_record(a)


# ----------------------------------------------------------------------------------------------
# shortwave: conservation and limits

def test_shortwave_conserves_energy_per_band_every_pft_lai_zenith_and_snow():
    lais = np.array([0.0, 0.005, 0.3, 1.0, 3.0, 6.0, 10.0])
    coszens = np.array([0.01, 0.05, 0.3, 0.7, 1.0])
    snows = [(0.0, 0.0), (0.5, 2.0), (1.0, 0.0)]  # (frac_sno, snow age): bare, half old snow, fresh
    pfts = np.arange(NPFT)
    # patches: every pft x lai x canopy state (warm dry / frozen and half snow-covered), on columns
    # = zenith x snow; members carry different soil moisture
    nmem = 3
    ncol = coszens.size * len(snows)
    col_cz = np.repeat(coszens, len(snows))
    col_fsno = np.tile([s[0] for s in snows], coszens.size)
    col_age = np.tile([s[1] for s in snows], coszens.size)
    theta = np.tile(np.array([0.05, 0.2, 0.4]), (ncol, 1))
    isoicol = (np.arange(ncol) % 20 + 1).astype(np.int64)
    albgrd, albgri = _ground(ncol, nmem, col_cz, theta, np.repeat(col_fsno[:, None], nmem, 1),
                             np.repeat(col_age[:, None], nmem, 1), isoicol)
    assert np.any(np.abs(albgrd - albgri) > 0.05)  # snow makes direct and diffuse ground albedo differ
    grid = [(c, ip, lai, frozen) for c in range(ncol) for ip in pfts for lai in lais for frozen in (0, 1)]
    patch_col = np.array([g[0] for g in grid])
    patch_pft = np.array([g[1] for g in grid])
    elai = np.repeat(np.array([g[2] for g in grid])[:, None], nmem, 1)
    esai = np.where(patch_pft[:, None] == 0, 0.0, 0.1 + 0.1 * elai)
    elai = np.where(patch_pft[:, None] == 0, 0.0, elai)
    frozen = np.array([g[3] for g in grid])
    t_veg = np.where(frozen[:, None] == 1, 265.0, 295.0) * np.ones((1, nmem))
    fwet = np.where(frozen[:, None] == 1, 0.5, 0.2) * np.ones((1, nmem))
    ts = _run_two_stream(col_cz, elai, esai, patch_col, patch_pft, albgrd, albgri, t_veg=t_veg, fwet=fwet)
    # physical bounds of every per-unit flux (non-trivial: they are not enforced anywhere)
    tiny = 1e-13
    for k in ("albd", "albi", "ftdd", "ftid", "ftii", "fabd", "fabi"):
        assert np.all(ts[k] >= -tiny) and np.all(ts[k] <= 1 + tiny), k
    rng = np.random.default_rng(7)
    for band in (0, 1):
        for kind in ("direct", "diffuse"):
            solad = np.zeros((ncol, 2, nmem))
            solai = np.zeros((ncol, 2, nmem))
            flux = rng.uniform(50.0, 600.0, (ncol, nmem))
            (solad if kind == "direct" else solai)[:, band, :] = flux
            out = _run_solar(col_cz, solad, solai, elai, esai, patch_col, albgrd, albgri, ts)
            incoming = flux[patch_col]
            np.testing.assert_allclose(out["sabv"] + out["sabg"] + out["fsr"], incoming,
                                       rtol=CONSERVE_RTOL, atol=0)
            np.testing.assert_array_equal(out["fsa"], out["sabv"] + out["sabg"])
            assert np.all(out["sabv"] >= -tiny * incoming) and np.all(out["sabg"] >= 0)
            # no exposed leaf or stem: the canopy absorbs nothing
            bare = (elai + esai) == 0
            assert np.all(out["sabv"][bare] == 0.0)


def test_zero_lai_and_sai_is_exactly_bare_ground():
    nmem = 4
    albgrd, albgri = _ground(1, nmem, np.array([0.4]), np.full((1, nmem), 0.15), np.full((1, nmem), 0.3),
                             np.full((1, nmem), 1.0), np.array([7]))
    elai = np.zeros((3, nmem))
    esai = np.zeros((3, nmem))
    ts = _run_two_stream([0.4], elai, esai, [0, 0, 0], [0, 7, 13], albgrd, albgri)
    for p in range(3):
        np.testing.assert_array_equal(ts["albd"][p], albgrd[0])
        np.testing.assert_array_equal(ts["albi"][p], albgri[0])
    assert np.all(ts["fabd"] == 0) and np.all(ts["fabi"] == 0) and np.all(ts["ftid"] == 0)
    assert np.all(ts["ftdd"] == 1) and np.all(ts["ftii"] == 1) and np.all(ts["fsun"] == 0)
    solad = np.full((1, 2, nmem), 300.0)
    solai = np.full((1, 2, nmem), 120.0)
    out = _run_solar([0.4], solad, solai, elai, esai, [0, 0, 0], albgrd, albgri, ts)
    bare_sabg = np.sum(solad[0] * (1 - albgrd[0]) + solai[0] * (1 - albgri[0]), axis=0)
    for p in range(3):
        np.testing.assert_array_equal(out["sabv"][p], 0.0)
        np.testing.assert_allclose(out["sabg"][p], bare_sabg, rtol=1e-15, atol=0)
    assert np.all(out["laisun"] == 0) and np.all(out["laisha"] == 0) and np.all(out["parsun"] == 0)


def test_sun_below_horizon_absorbs_nothing():
    nmem = 2
    albgrd = np.full((2, 2, nmem), 0.2)
    elai = np.full((2, nmem), 3.0)
    esai = np.full((2, nmem), 0.5)
    ts = _run_two_stream([0.0, -0.3], elai, esai, [0, 1], [4, 13], albgrd, albgrd)
    solad = np.full((2, 2, nmem), 5.0)  # forcing grid may still see a little sun
    solai = np.full((2, 2, nmem), 7.0)
    out = _run_solar([0.0, -0.3], solad, solai, elai, esai, [0, 1], albgrd, albgrd, ts)
    assert np.all(out["fsa"] == 0) and np.all(out["sabv"] == 0) and np.all(out["sabg"] == 0)
    np.testing.assert_array_equal(out["fsr"], 24.0)  # everything reflected, as CLM4.0
    np.testing.assert_array_equal(out["laisha"], elai)  # night: all leaves shaded, none sunlit
    assert np.all(out["laisun"] == 0) and np.all(out["parsun"] == 0) and np.all(out["parsha"] == 0)


# ----------------------------------------------------------------------------------------------
# shortwave: analytic and independent solutions

def test_dense_canopy_on_black_ground_tends_to_semi_infinite_albedo():
    # rho = tau for leaves and stems: omega beta = omega/2 for any leaf angle (eq. 3.13), and the
    # semi-infinite diffuse albedo of eqs. 3.1-3.2 is (b - sqrt(b^2 - c^2))/c = (1 - sqrt(1-w))^2 / w
    rec = _record_with(xl=0.0, rholvis=0.1, taulvis=0.1, rhosvis=0.1, tausvis=0.1,
                       rholnir=0.3, taulnir=0.3, rhosnir=0.3, tausnir=0.3)
    nmem = 2
    black = np.zeros((1, 2, nmem))
    cz = 0.6
    ts = _run_two_stream([cz], np.full((1, nmem), 40.0), np.full((1, nmem), 0.0), [0], [7], black, black,
                         pft=rec)
    for band, w in ((0, 0.2), (1, 0.6)):
        albi_inf = (1 - math.sqrt(1 - w)) ** 2 / w
        np.testing.assert_allclose(ts["albi"][0, band], albi_inf, rtol=ROUNDOFF, atol=0)
        # direct beam: particular solution (P, Q) e^{-Kx} plus the decaying mode that cancels
        # I_dn(0); parameters from the integral definitions (xl = 0 -> chi_L = 0.01, CLM's floor)
        om, beta, beta0, mubar, k = _independent_optics(0.0, cz, w / 2, w / 2)
        b, c = 1 - om + om * beta, om * beta
        d, f = om * mubar * k * beta0, om * mubar * k * (1 - beta0)
        det = (b + mubar * k) * (b - mubar * k) - c * c
        p_up = (d * (b - mubar * k) + c * f) / det
        q_dn = ((b + mubar * k) * f + c * d) / det
        albd_inf = p_up - q_dn * (b - math.sqrt(b * b - c * c)) / c
        # quadrature of the smooth integrands is exact to round-off with 200 Gauss points
        np.testing.assert_allclose(ts["albd"][0, band], albd_inf, rtol=1e-11, atol=0)
        assert ts["ftdd"][0, band, 0] < 1e-12 and ts["ftii"][0, band, 0] < 1e-10  # exp(-K 40), exp(-h 40)


@pytest.mark.parametrize("ipft,cz,vai_leaf,vai_stem",
                         [(7, 0.6, 1.5, 0.5), (13, 0.25, 2.0, 0.3), (2, 0.95, 0.7, 0.4)])
def test_finite_canopy_matches_ode_integration(ipft, cz, vai_leaf, vai_stem):
    # ground albedos differ for direct and diffuse (snow-like), so the bottom boundary condition
    # I_up(L) = agd e^{-KL} + agi I_dn(L) is exercised
    agd = np.array([0.55, 0.45])
    agi = np.array([0.35, 0.30])
    nmem = 1
    albgrd = agd.reshape(1, 2, 1).copy()
    albgri = agi.reshape(1, 2, 1).copy()
    ts = _run_two_stream([cz], np.array([[vai_leaf]]), np.array([[vai_stem]]), [0], [ipft], albgrd, albgri)
    a = pft_arrays()
    vai = vai_leaf + vai_stem
    wl, ws = vai_leaf / vai, vai_stem / vai
    for band, sfx in ((0, "vis"), (1, "nir")):
        rho = a["rhol" + sfx][ipft] * wl + a["rhos" + sfx][ipft] * ws
        tau = a["taul" + sfx][ipft] * wl + a["taus" + sfx][ipft] * ws
        om, beta, beta0, mubar, k = _independent_optics(a["xl"][ipft], cz, rho, tau)
        albd, ftid, absd = _ode_two_stream(om, beta, beta0, mubar, k, vai, agd[band], agi[band], True)
        albi, ftii, absi = _ode_two_stream(om, beta, beta0, mubar, k, vai, agd[band], agi[band], False)
        # RK4 with 2000 steps (h <= 1.4e-3, rates <= ~2): global error ~ (h rate)^4 ~ 1e-11 or less
        tol = 1e-10
        assert ts["albd"][0, band, 0] == pytest.approx(albd, abs=tol)
        assert ts["ftid"][0, band, 0] == pytest.approx(ftid, abs=tol)
        assert ts["fabd"][0, band, 0] == pytest.approx(absd, abs=tol)  # absorption = flux divergence
        assert ts["albi"][0, band, 0] == pytest.approx(albi, abs=tol)
        assert ts["ftii"][0, band, 0] == pytest.approx(ftii, abs=tol)
        assert ts["fabi"][0, band, 0] == pytest.approx(absi, abs=tol)
        assert ts["ftdd"][0, band, 0] == pytest.approx(math.exp(-k * vai), rel=ROUNDOFF)
        assert ts["omega"][0, band, 0] == pytest.approx(om, rel=ROUNDOFF)


@pytest.mark.parametrize("ipft", [1, 4, 7, 10, 13, 14])
def test_equals_tech_note_closed_form_when_ground_albedos_agree(ipft):
    # snow-free soil has one albedo for direct and diffuse: the kernel's mode form must give the
    # tech note's h1..h10 solution (eqs. 3.17-3.22, 3.31-3.57) exactly
    lais = np.array([0.2, 1.0, 4.0, 9.0])
    nmem = lais.size
    cz = 0.45
    for alb_g in (0.08, 0.3):
        g = np.full((1, 2, nmem), alb_g)
        ts = _run_two_stream([cz], lais[None, :], np.full((1, nmem), 0.6), [0], [ipft], g, g)
        a = pft_arrays()
        chil, gdir, ext, avmu, asu_om = CR.leaf_orientation(a["xl"][ipft], cz)
        for m, lai in enumerate(lais):
            vai = lai + 0.6
            for band, sfx in ((0, "vis"), (1, "nir")):
                rho = a["rhol" + sfx][ipft] * lai / vai + a["rhos" + sfx][ipft] * 0.6 / vai
                tau = a["taul" + sfx][ipft] * lai / vai + a["taus" + sfx][ipft] * 0.6 / vai
                om = rho + tau
                betad = (1 + avmu * ext) / (om * avmu * ext) * om * asu_om
                betai = 0.5 * (rho + tau + (rho - tau) * ((1 + chil) / 2) ** 2) / om
                ref = _tech_note_two_stream(om, betad, betai, avmu, ext, vai, alb_g)
                got = [ts[k][0, band, m] for k in ("albd", "ftid", "fabd", "albi", "ftii", "fabi")]
                np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


def test_albedo_increases_with_leaf_reflectance():
    nmem = 1
    g = np.full((1, 2, nmem), 0.15)
    albs = []
    for scale in (0.8, 1.0, 1.2):
        a = pft_arrays()
        a["rholvis"] = a["rholvis"] * scale
        a["rholnir"] = a["rholnir"] * scale
        ts = _run_two_stream([0.5], np.full((4, nmem), 3.0), np.full((4, nmem), 0.5), [0] * 4,
                             [1, 5, 8, 13], g, g, pft=pft_record(a))
        albs.append((ts["albd"].copy(), ts["albi"].copy()))
    for lo, hi in zip(albs[:-1], albs[1:]):
        assert np.all(hi[0] > lo[0]) and np.all(hi[1] > lo[1])


def test_intercepted_snow_brightens_a_frozen_canopy():
    nmem = 2
    g = np.full((1, 2, nmem), 0.1)
    elai = np.full((1, nmem), 4.0)
    esai = np.full((1, nmem), 1.0)
    fwet = np.array([[0.0, 0.6]])
    warm = _run_two_stream([0.5], elai, esai, [0], [2], g, g, t_veg=np.full((1, nmem), 280.0), fwet=fwet)
    cold = _run_two_stream([0.5], elai, esai, [0], [2], g, g, t_veg=np.full((1, nmem), 260.0), fwet=fwet)
    np.testing.assert_array_equal(warm["albd"][..., 0], warm["albd"][..., 1])  # rain: optics unchanged
    np.testing.assert_array_equal(cold["albd"][..., 0], warm["albd"][..., 0])  # no water, no change
    # eqs. 3.5-3.7: omega_sno = 0.8 brightens the visible a lot; 0.4 is close to the needleleaf
    # NIR omega (0.35 + 0.10), so the NIR albedo only shifts
    assert cold["albd"][0, 0, 1] > warm["albd"][0, 0, 1] + 0.1
    assert cold["albi"][0, 0, 1] > warm["albi"][0, 0, 1] + 0.1
    assert cold["albd"][0, 1, 1] != warm["albd"][0, 1, 1]


# ----------------------------------------------------------------------------------------------
# sunlit and shaded leaves

def test_sunlit_and_shaded_leaf_area_and_par():
    lais = np.array([0.0, 0.005, 0.011, 0.05, 0.5, 2.0, 5.0, 10.0])
    nmem = lais.size
    g = np.full((1, 2, nmem), 0.2)
    elai = np.tile(lais, (3, 1))
    esai = np.full((3, nmem), 0.4)
    cz = 0.7
    ts = _run_two_stream([cz], elai, esai, [0, 0, 0], [1, 7, 13], g, g)
    solad = np.full((1, 2, nmem), 400.0)
    solai = np.full((1, 2, nmem), 100.0)
    out = _run_solar([cz], solad, solai, elai, esai, [0, 0, 0], g, g, ts)
    np.testing.assert_allclose(out["laisun"] + out["laisha"], elai, rtol=1e-15, atol=0)
    leafy = elai > 0
    assert np.all(ts["fsun"][leafy] > 0) and np.all(ts["fsun"][leafy] <= 1)
    assert np.all(ts["fsun"][elai <= 0.01] == np.where(elai[elai <= 0.01] > 0, 1.0, 0.0))
    # fsun = (1 - e^{-KL})/(KL) -> 1 - KL/2 as L -> 0 (eq. 4.7 with CLM4.0's leaf-only L)
    for p, ipft in enumerate((1, 7, 13)):
        k = CR.leaf_orientation(pft_arrays()["xl"][ipft], cz)[2]
        m = 3  # L = 0.05
        assert ts["fsun"][p, m] == pytest.approx(1 - k * 0.05 / 2, abs=(k * 0.05) ** 2 / 6 + 1e-15)
        np.testing.assert_allclose(ts["fsun"][p, 4:], (1 - np.exp(-k * lais[4:])) / (k * lais[4:]),
                                   rtol=ROUNDOFF, atol=0)
        assert np.all(np.diff(ts["fsun"][p, 2:]) < 0)  # more leaves, smaller sunlit fraction
    # visible absorbed by leaves = parsun laisun + parsha laisha = (vis absorbed) L/(L+S)
    vis_abs = solad[0, 0] * ts["fabd"][:, 0, :] + solai[0, 0] * ts["fabi"][:, 0, :]
    leaf_share = np.where(leafy, elai / (elai + esai), 0.0)
    np.testing.assert_allclose(out["parsun"] * out["laisun"] + out["parsha"] * out["laisha"],
                               vis_abs * leaf_share, rtol=1e-12, atol=1e-12)
    # sunlit leaves get the direct beam: more PAR per leaf area than shaded ones
    both = (out["laisun"] > 0) & (out["laisha"] > 0)
    assert np.all(out["parsun"][both] > out["parsha"][both]) and np.all(out["parsha"][both] > 0)


# ----------------------------------------------------------------------------------------------
# ground albedo

def test_soil_albedo_wetter_is_darker_within_table_bounds():
    thetas = np.linspace(0.0, 0.6, 61)
    isoicol = np.arange(1, 21)
    theta = np.tile(thetas, (20, 1))
    albsod = np.empty((20, 2, thetas.size))
    albsoi = np.empty_like(albsod)
    SA.soil_albedo(isoicol, theta, SA.SOIL_ALBSAT, SA.SOIL_ALBDRY, albsod, albsoi)
    np.testing.assert_array_equal(albsod, albsoi)
    assert np.all(np.diff(albsod, axis=2) <= 0)  # wetter -> darker (or equal once saturated)
    sat = SA.SOIL_ALBSAT[1:, :, None]
    dry = SA.SOIL_ALBDRY[1:, :, None]
    assert np.all(albsod >= sat) and np.all(albsod <= dry)
    np.testing.assert_array_equal(albsod[:, :, -1], SA.SOIL_ALBSAT[1:])  # theta >= 0.275: saturated
    np.testing.assert_allclose(albsod[:, :, 0], np.minimum(SA.SOIL_ALBSAT[1:] + 0.11, SA.SOIL_ALBDRY[1:]),
                               rtol=0, atol=1e-15)
    # spot values of the CLM4 table (class 1 and 20, vis/nir, saturated/dry)
    assert tuple(SA.SOIL_ALBSAT[1]) == (0.25, 0.50) and tuple(SA.SOIL_ALBDRY[1]) == (0.36, 0.61)
    assert tuple(SA.SOIL_ALBSAT[20]) == (0.04, 0.08) and tuple(SA.SOIL_ALBDRY[20]) == (0.08, 0.16)
    with pytest.raises(ValueError, match="soil colour"):
        SA.check_soil_color(np.array([3, 0, 21]))


def test_snow_albedo_bounds_age_and_zenith():
    coszen = np.array([0.01, 0.2, 0.5, 1.0])
    ages = np.array([0.0, 0.5, 3.0, 1e6])
    age = np.tile(ages, (4, 1))
    albsnd = np.empty((4, 2, 4))
    albsni = np.empty_like(albsnd)
    SA.snow_albedo_bats(coszen, age, albsnd, albsni)
    assert np.all(albsnd > 0) and np.all(albsnd <= 1) and np.all(albsni > 0) and np.all(albsni <= 1)
    np.testing.assert_array_equal(albsni[:, :, 0], [[0.95, 0.65]] * 4)  # fresh snow
    np.testing.assert_allclose(albsni[0, :, -1], [0.95 * 0.8, 0.65 * 0.5], rtol=1e-6)  # very old
    assert np.all(np.diff(albsni, axis=2) < 0)  # ageing darkens
    assert np.all(albsnd >= albsni)  # low sun brightens the direct beam
    np.testing.assert_array_equal(albsnd[2:], albsni[2:])  # no correction for mu >= 0.5 (zenith <= 60)
    assert np.all(np.diff(albsnd[:3, :, 0], axis=0) < 0)
    # ground albedo: soil when bare, snow when covered, linear in between
    nmem = 3
    fs = np.array([[0.0, 0.5, 1.0]])
    soil = np.full((1, 2, nmem), 0.2)
    snd = np.full((1, 2, nmem), 0.8)
    gd = np.empty((1, 2, nmem))
    gi = np.empty_like(gd)
    SA.ground_albedo(soil, soil, snd, snd, fs, gd, gi)
    np.testing.assert_allclose(gd[0, 0], [0.2, 0.5, 0.8], rtol=0, atol=1e-15)


def test_snow_age_grows_faster_when_warm_and_resets_with_new_snow():
    dt = 1800.0
    t = np.array([[250.0, 270.0, 273.15, 270.0, 270.0, 270.0]])
    w = np.array([[10.0, 10.0, 10.0, 0.0, 900.0, 25.0]])
    w_old = np.array([[10.0, 10.0, 10.0, 0.0, 900.0, 15.0]])  # last column: 10 mm fresh snow
    age0 = np.full((1, 6), 1.0)
    age = np.empty_like(age0)
    SA.snow_age_bats(dt, t, w, w_old, age0, age)
    assert 1.0 < age[0, 0] < age[0, 1] < age[0, 2]
    # at the melting point all three BATS terms are at their maximum: 1e-6 dt (1 + 1 + 0.3)
    assert age[0, 2] == pytest.approx(1.0 + 1e-6 * dt * 2.3, rel=1e-14)
    assert age[0, 3] == 0.0 and age[0, 4] == 0.0 and age[0, 5] == 0.0


# ----------------------------------------------------------------------------------------------
# longwave

def _lw(latm, tg, dtg, emg, tv, dtv, emv, fveg):
    npatch, nmem = tv.shape
    names = ("lv", "dlv", "lg", "dlg", "dlrad", "ulrad", "lout", "fira")
    out = {k: np.full((npatch, nmem), np.nan) for k in names}
    LW.longwave_fluxes(latm, tg, dtg, emg, tv, dtv, emv, fveg, np.arange(npatch) * 0,
                       *(out[k] for k in names))
    return out


def test_canopy_and_ground_emissivity():
    elai = np.array([[0.0, 0.1, 1.0, 5.0, 30.0]])
    esai = np.array([[0.0, 0.0, 0.5, 1.0, 5.0]])
    emv = np.empty_like(elai)
    LW.canopy_emissivity(elai, esai, emv)
    assert emv[0, 0] == 0.0 and np.all(emv >= 0) and np.all(emv < 1) and np.all(np.diff(emv) > 0)
    np.testing.assert_allclose(emv, 1 - np.exp(-(elai + esai)), rtol=1e-15)
    emg = np.empty((1, 3))
    LW.ground_emissivity(np.array([[0.0, 0.5, 1.0]]), emg)
    np.testing.assert_allclose(emg, [[0.96, 0.965, 0.97]], rtol=1e-15)


def test_bare_ground_fira_is_emission_minus_absorbed_atmosphere():
    nmem = 4
    tg = np.array([[250.0, 280.0, 300.0, 320.0]])
    latm = np.array([[200.0, 300.0, 350.0, 420.0]])
    emg = np.full((1, nmem), 0.96)
    z = np.zeros((1, nmem))
    out = _lw(latm, tg, z, emg, np.full((1, nmem), 290.0), z, z + 0.7, z)  # fveg = 0: bare
    np.testing.assert_allclose(out["fira"], 0.96 * SB * tg ** 4 - 0.96 * latm, rtol=1e-13)
    np.testing.assert_allclose(out["lg"], out["fira"], rtol=1e-13)
    assert np.all(out["lv"] == 0) and np.all(out["ulrad"] == 0)


def test_ground_emission_closes_the_ground_longwave_balance():
    nmem = 3
    tg = np.array([[255.0, 285.0, 315.0]])
    emg = np.array([[0.96, 0.965, 0.97]])
    emit = np.empty((1, nmem))
    demit = np.empty((1, nmem))
    LW.ground_emission(tg, emg, emit, demit)
    np.testing.assert_allclose(emit, emg * SB * tg ** 4, rtol=1e-15)
    np.testing.assert_allclose(demit, 4 * emg * SB * tg ** 3, rtol=1e-15)
    # net ground loss = emission - absorbed downward longwave, vegetated and bare alike
    z = np.zeros((1, nmem))
    for fveg in (0.0, 1.0):
        out = _lw(np.full((1, nmem), 320.0), tg, z, emg, np.full((1, nmem), 290.0), z,
                  np.full((1, nmem), 0.6), np.full((1, nmem), fveg))
        np.testing.assert_allclose(out["lg"], emit - out["dlrad"], rtol=0, atol=1e-12)
        np.testing.assert_array_equal(out["dlg"], demit)


def test_longwave_energy_partition_and_fira_budget():
    rng = np.random.default_rng(3)
    npatch, nmem = 5, 6
    latm = rng.uniform(150, 450, (1, nmem))
    emg = rng.uniform(0.9, 0.98, (1, nmem))
    emv = np.empty((npatch, nmem))
    LW.canopy_emissivity(rng.uniform(0.0, 6.0, (npatch, nmem)), rng.uniform(0.0, 1.0, (npatch, nmem)), emv)
    veg = np.ones((npatch, nmem))
    z = np.zeros((1, nmem))
    # with nothing emitting (T = 0 K) the atmospheric flux splits into canopy-absorbed, ground-
    # absorbed and reflected parts that sum to the flux at the top
    cold = _lw(latm, z, z, emg, np.zeros((npatch, nmem)), np.zeros((npatch, nmem)), emv, veg)
    absorbed_v = -cold["lv"]
    absorbed_g = -cold["lg"]
    reflected = cold["lout"]
    np.testing.assert_allclose(absorbed_v + absorbed_g + reflected, np.broadcast_to(latm, (npatch, nmem)),
                               rtol=1e-14)
    np.testing.assert_allclose(absorbed_v, emv * (1 + (1 - emg) * (1 - emv)) * latm, rtol=1e-14)
    np.testing.assert_allclose(absorbed_g, emg * (1 - emv) * latm, rtol=1e-14)
    assert np.all(absorbed_v >= 0) and np.all(absorbed_g > 0) and np.all(reflected > 0)
    # with emission and temperature increments: FIRA = L_v + L_g (eqs. 4.9, 4.13, 4.17, 4.18)
    tg = rng.uniform(240, 320, (1, nmem))
    tv = rng.uniform(240, 320, (npatch, nmem))
    dtg = rng.uniform(-2, 2, (1, nmem))
    dtv = rng.uniform(-2, 2, (npatch, nmem))
    out = _lw(latm, tg, dtg, emg, tv, dtv, emv, veg)
    np.testing.assert_allclose(out["fira"], out["lv"] + out["lg"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(out["fira"], out["lout"] - latm, rtol=0, atol=1e-12)
    # eq. 4.18 as printed, at dT = 0
    at_n = _lw(latm, tg, z, emg, tv, np.zeros((npatch, nmem)), emv, veg)
    lv_418 = ((2 - emv * (1 - emg)) * emv * SB * tv ** 4 - emv * emg * SB * tg ** 4
              - emv * (1 + (1 - emg) * (1 - emv)) * latm)
    np.testing.assert_allclose(at_n["lv"], lv_418, rtol=0, atol=1e-10)


def test_longwave_temperature_derivatives():
    nmem = 3
    latm = np.full((1, nmem), 330.0)
    emg = np.full((1, nmem), 0.96)
    tg = np.array([[270.0, 290.0, 310.0]])
    tv = np.array([[265.0, 295.0, 305.0]])
    emv = np.array([[0.3, 0.8, 0.99]])
    veg = np.ones((1, nmem))
    z = np.zeros((1, nmem))
    base = _lw(latm, tg, z, emg, tv, z, emv, veg)
    dv = _lw(latm, tg, z, emg, tv, z + 1.0, emv, veg)
    dg = _lw(latm, tg, z + 1.0, emg, tv, z, emv, veg)
    # the fluxes are linear in dT (CLM's linearisation): a 1 K step gives the derivative exactly
    np.testing.assert_allclose(dv["lv"] - base["lv"], base["dlv"], rtol=1e-10)
    np.testing.assert_allclose(dg["lg"] - base["lg"], base["dlg"], rtol=1e-10)
    np.testing.assert_allclose(base["dlv"], 4 * emv * SB * tv ** 3 * (2 - emv * (1 - emg)), rtol=1e-14)
    # and the linearisation is the tangent of the true sigma T^4 law: central difference at T_n
    h = 1e-3
    up = _lw(latm, tg, z, emg, tv + h, z, emv, veg)
    dn = _lw(latm, tg, z, emg, tv - h, z, emv, veg)
    np.testing.assert_allclose((up["lv"] - dn["lv"]) / (2 * h), base["dlv"], rtol=1e-7)


# ----------------------------------------------------------------------------------------------
# ensemble shape, member independence and speed

def test_compiled_kernels_on_an_ensemble_shape_and_time_per_patch_member():
    npatch, nmem, ncol = 200, 40, 50
    rng = np.random.default_rng(11)
    patch_col = np.repeat(np.arange(ncol), npatch // ncol)
    patch_pft = rng.integers(0, NPFT, npatch)
    elai = rng.uniform(0.0, 7.0, (npatch, nmem))
    elai[patch_pft == 0] = 0.0
    esai = np.where(patch_pft[:, None] == 0, 0.0, rng.uniform(0.1, 1.5, (npatch, nmem)))
    elai[:5] = elai[:5, :1]  # first patches: identical members
    esai[:5] = esai[:5, :1]
    coszen = rng.uniform(-0.2, 1.0, ncol)
    albgrd, albgri = _ground(ncol, nmem, coszen, rng.uniform(0.05, 0.45, (ncol, nmem)),
                             rng.uniform(0, 1, (ncol, nmem)), rng.uniform(0, 3, (ncol, nmem)),
                             rng.integers(1, 21, ncol))
    albgrd[:, :, :] = albgrd[:, :, :1]  # identical members on the ground too
    albgri[:, :, :] = albgri[:, :, :1]
    solad = rng.uniform(0, 500, (ncol, 2, 1)) * np.ones((1, 1, nmem))
    solai = rng.uniform(0, 200, (ncol, 2, 1)) * np.ones((1, 1, nmem))
    ts = _run_two_stream(coszen, elai, esai, patch_col, patch_pft, albgrd, albgri)  # compiles
    out = _run_solar(coszen, solad, solai, elai, esai, patch_col, albgrd, albgri, ts)
    for k, v in list(ts.items()) + list(out.items()):
        assert np.all(np.isfinite(v)), k
        if v.ndim == 2:
            assert np.all(v[:5] == v[:5, :1]), k  # same inputs, same code path, same bits
    reps = 5
    t0 = time.perf_counter()
    for _ in range(reps):
        ts = _run_two_stream(coszen, elai, esai, patch_col, patch_pft, albgrd, albgri)
        _run_solar(coszen, solad, solai, elai, esai, patch_col, albgrd, albgri, ts)
    per = (time.perf_counter() - t0) / reps / (npatch * nmem)
    print(f"\nshortwave (two-stream + solar fluxes): {per * 1e6:.3f} us per patch-member")
    emv = np.empty((npatch, nmem))
    LW.canopy_emissivity(elai, esai, emv)
    lw_names = [np.empty((npatch, nmem)) for _ in range(8)]
    args = (rng.uniform(200, 400, (ncol, nmem)), rng.uniform(250, 310, (ncol, nmem)), np.zeros((ncol, nmem)),
            np.full((ncol, nmem), 0.96), rng.uniform(250, 310, (npatch, nmem)), np.zeros((npatch, nmem)),
            emv, (elai + esai >= 0.05).astype(np.float64), patch_col)
    LW.longwave_fluxes(*args, *lw_names)
    t0 = time.perf_counter()
    for _ in range(reps):
        LW.longwave_fluxes(*args, *lw_names)
    per_lw = (time.perf_counter() - t0) / reps / (npatch * nmem)
    print(f"longwave fluxes: {per_lw * 1e6:.3f} us per patch-member")
    # generous bound (shared 2-core machine): a broken (object-mode, allocating) path is ~100x slower
    assert per < 20e-6 and per_lw < 5e-6


# ----------------------------------------------------------------------------------------------
# sunlit and shaded specific leaf area (Thornton and Zimmermann 2007; CLM4.0 slasun/slasha)

def _sla_run(coszen, elai, pfts):
    sun, sha = np.full_like(elai, np.nan), np.full_like(elai, np.nan)
    CR.sunlit_shaded_sla(np.asarray(coszen, float), elai, np.zeros(len(pfts), np.int64), np.asarray(pfts, np.int64),
                         pft_record(), sun, sha)
    return sun, sha


def test_sunlit_shaded_sla_against_quadrature_and_leaf_area_weighted_sum():
    pft = pft_record()
    pfts = [1, 4, 7, 13, 14]  # needleleaf, broadleaf evergreen, deciduous tree, C3 grass (no gradient), C4
    lai = np.array([0.005, 0.3, 1.0, 3.0, 6.0, 9.0, 40.0])
    elai = np.tile(lai, (len(pfts), 1))
    for cz in (0.05, 0.5, 1.0):
        sun, sha = _sla_run([cz], elai, pfts)
        ts = _run_two_stream([cz], elai, np.zeros_like(elai), np.zeros(len(pfts), np.int64), pfts,
                             np.full((1, 2, lai.size), 0.2), np.full((1, 2, lai.size), 0.2))
        for i, ivt in enumerate(pfts):
            s0, d = pft.slatop[ivt], pft.dsladlai[ivt]
            for m, L in enumerate(lai):
                if L <= 0.01:
                    assert sun[i, m] == sha[i, m] == s0 + d * L / 2
                    continue
                fsun = ts["fsun"][i, m]
                # the sunlit fraction at depth x is exp(-K x), K = t/L with t solving (1 - e^-t)/t = fsun
                lo, hi = 1e-12, 40.0
                for _ in range(200):
                    mid = 0.5 * (lo + hi)
                    lo, hi = (mid, hi) if (1.0 - math.exp(-mid)) / mid > fsun else (lo, mid)
                k = 0.5 * (lo + hi) / L
                x = (np.arange(20000) + 0.5) * (L / 20000)  # midpoint rule
                prof = s0 + d * x
                wsun = np.exp(-k * x)
                ref_sun = np.sum(prof * wsun) / np.sum(wsun)
                ref_sha = np.sum(prof * (1 - wsun)) / np.sum(1 - wsun)
                assert sun[i, m] == pytest.approx(ref_sun, rel=1e-7, abs=1e-12), (cz, ivt, L)
                assert sha[i, m] == pytest.approx(ref_sha, rel=1e-7, abs=1e-12), (cz, ivt, L)
                # the two classes share the canopy's leaf area: laisun slasun + laisha slasha = int SLA dx
                total = fsun * L * sun[i, m] + (1 - fsun) * L * sha[i, m]
                assert total == pytest.approx(s0 * L + d * L * L / 2, rel=1e-12)
                if d > 0:
                    assert s0 < sun[i, m] < sha[i, m] < s0 + d * L  # the shade lies deeper
                else:
                    assert sun[i, m] == sha[i, m] == s0
    # at night every leaf is shaded: the canopy mean; no leaves: slatop
    sun, sha = _sla_run([0.0], elai, pfts)
    for i, ivt in enumerate(pfts):
        assert np.all(sun[i] == pft.slatop[ivt])
        np.testing.assert_array_equal(sha[i], pft.slatop[ivt] + pft.dsladlai[ivt] * lai / 2)
    sun, sha = _sla_run([0.5], np.zeros((1, 3)), [4])
    assert np.all(sun == pft.slatop[4]) and np.all(sha == pft.slatop[4])


def test_sunlit_depth_series_meets_the_closed_form():
    for t in (2e-4, 9.99e-4, 1.001e-3, 1e-2):
        e = math.exp(-t)
        closed = (1.0 - e * (1.0 + t)) / (t * (1.0 - e))
        assert CR._sunlit_depth_fraction(t) == pytest.approx(closed, rel=1e-7 if t < 1e-3 else 1e-15)
    assert abs(CR._sunlit_depth_fraction(9.999e-4) - CR._sunlit_depth_fraction(1.0001e-3)) < 1e-7
