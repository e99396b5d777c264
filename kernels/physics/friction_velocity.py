"""Monin-Obukhov similarity for the surface layer: stability functions, friction velocity,
aerodynamic resistances, roughness lengths and displacement height (CLM4 tech note, Oleson et al.
2010, chapter 5, sections 5.1-5.3; CLM4.0 ``FrictionVelocityMod``, after Zeng, Zhao and Dickinson 1998,
J. Climate 11, 2628-2644).

Profile relations (CLM4 tech note section 5.1), zeta = (z - d)/L:

- momentum: zeta < -1.574 (very unstable: free-convection limit), -1.574 <= zeta < 0 (unstable,
  Businger-Dyer psi_m), 0 <= zeta <= 1 (stable, psi = -5 zeta), zeta > 1 (very stable);
- heat and moisture: the same with the transition at zeta = -0.465;
- 2-m diagnostics use the heat profile between z0h and 2 m + z0h (CLM4.0 ``FrictionVelocity``).
CLM4 limits zeta to [-100, 2], done by :func:`update_obukhov` and :func:`monin_obukhov_ini` as CLM does.
Section 5.1's equation numbering is not repeated here; every function names the CLM4.0 routine it ports.

Each profile function returns the *integrated* profile denominator Phi, so that
ustar = k u / Phi_m and theta* = k dtheta / Phi_h (``temp1 = k / Phi_h`` in CLM's notation).
All functions are scalar ``@njit`` functions used inside the patch loops of ``canopy_fluxes``, plus
one array kernel (:func:`vegetation_roughness`), and two branch-free forms for the vectorised member loops
of the vegetated iteration (:func:`profiles_ln_lanes`, :func:`update_obukhov_lanes`). Reads and writes no model state.
"""

from __future__ import annotations

import math

from kernels._jit import njit, njit_inline
from kernels.physics.constants import GRAV, VKC
from kernels.vmath import vatan, vexp, vlog

#: transition of the momentum flux-gradient relation to free convection (CLM ``zetam``).
ZETAM = 1.574
#: transition of the heat/moisture flux-gradient relation to free convection (CLM ``zetat``).
ZETAT = 0.465
#: momentum roughness length of bare soil (m) (CLM ``zlnd``) and of snow (m) (CLM ``zsno``).
Z0_SOIL = 0.01
Z0_SNOW = 0.0024
#: Sparse/dense canopy aerodynamics of X. Zeng in CLM4.0 (CanopyFluxes, 2008): LAI+SAI at which the
#: canopy counts as dense (CLM ``tlsai_crit``) and the coefficient ``alpha_aero``.
TLSAI_CRIT = 2.0
ALPHA_AERO = 1.0


@njit
def psi_m_unstable(zeta):
    """Businger-Dyer integrated stability function for momentum, zeta < 0 (CLM ``StabilityFunc1``):
    2 ln((1+x)/2) + ln((1+x^2)/2) - 2 atan(x) + pi/2, x = (1 - 16 zeta)^(1/4)."""
    chik2 = math.sqrt(1.0 - 16.0 * zeta)
    chik = math.sqrt(chik2)
    return 2.0 * math.log((1.0 + chik) * 0.5) + math.log((1.0 + chik2) * 0.5) - 2.0 * math.atan(chik) + math.pi * 0.5


@njit
def psi_h_unstable(zeta):
    """Integrated stability function for heat and moisture, zeta < 0 (CLM ``StabilityFunc2``):
    2 ln((1 + x^2)/2), x^2 = (1 - 16 zeta)^(1/2)."""
    chik2 = math.sqrt(1.0 - 16.0 * zeta)
    return 2.0 * math.log((1.0 + chik2) * 0.5)


@njit
def profile_momentum(zldis, z0m, obu):
    """Integrated momentum profile Phi_m between z0m and zldis = z - d (m) for Monin-Obukhov length
    ``obu`` (m): ustar = k u / Phi_m; CLM ``FrictionVelocity``)."""
    return profile_momentum_ln(zldis, z0m, obu, math.log(zldis / z0m))


@njit
def profile_momentum_ln(zldis, z0m, obu, ln_zldis_z0m):
    """:func:`profile_momentum` with ln(zldis / z0m) given (used only for -ZETAM <= zeta <= 1)."""
    zeta = zldis / obu
    if zeta < -ZETAM:  # very unstable (free convection)
        return (math.log(-ZETAM * obu / z0m) - psi_m_unstable(-ZETAM) + psi_m_unstable(z0m / obu)
                + 1.14 * ((-zeta) ** 0.333 - ZETAM ** 0.333))
    elif zeta < 0.0:  # unstable
        return ln_zldis_z0m - psi_m_unstable(zeta) + psi_m_unstable(z0m / obu)
    elif zeta <= 1.0:  # stable
        return ln_zldis_z0m + 5.0 * zeta - 5.0 * z0m / obu
    else:  # very stable
        return math.log(obu / z0m) + 5.0 - 5.0 * z0m / obu + (5.0 * math.log(zeta) + zeta - 1.0)


@njit
def profile_scalar(zldis, z0h, obu):
    """Integrated heat (or moisture) profile Phi_h between z0h and zldis = z - d (m): theta* =
    k dtheta / Phi_h; CLM ``FrictionVelocity``)."""
    return profile_scalar_ln(zldis, z0h, obu, math.log(zldis / z0h))


@njit
def profile_scalar_ln(zldis, z0h, obu, ln_zldis_z0h):
    """:func:`profile_scalar` with ln(zldis / z0h) given (used only for -ZETAT <= zeta <= 1)."""
    zeta = zldis / obu
    if zeta < -ZETAT:  # very unstable
        return (math.log(-ZETAT * obu / z0h) - psi_h_unstable(-ZETAT) + psi_h_unstable(z0h / obu)
                + 0.8 * (ZETAT ** (-0.333) - (-zeta) ** (-0.333)))
    elif zeta < 0.0:
        return ln_zldis_z0h - psi_h_unstable(zeta) + psi_h_unstable(z0h / obu)
    elif zeta <= 1.0:
        return ln_zldis_z0h + 5.0 * zeta - 5.0 * z0h / obu
    else:
        return math.log(obu / z0h) + 5.0 - 5.0 * z0h / obu + (5.0 * math.log(zeta) + zeta - 1.0)


@njit
def friction_velocity(zldis, z0m, z0h, z0q, obu, um):
    """CLM4 ``FrictionVelocity`` for one point (forcing heights of wind, temperature and humidity equal).

    zldis: forcing height minus displacement height (m); z0m, z0h, z0q: roughness lengths (m); obu:
    Monin-Obukhov length (m); um: wind speed including the convective velocity (m/s).
    Returns (ustar [m/s], temp1, temp2, temp12m, temp22m): temp1 = k/Phi_h(zldis), temp2 = k/Phi_q,
    temp12m/temp22m the same to 2 m + z0 (for 2-m diagnostics, [dimensionless].
    """
    ustar = VKC * um / profile_momentum(zldis, z0m, obu)
    temp1 = VKC / profile_scalar(zldis, z0h, obu)
    if z0q == z0h:
        temp2 = temp1
    else:
        temp2 = VKC / profile_scalar(zldis, z0q, obu)
    temp12m = VKC / profile_scalar(2.0 + z0h, z0h, obu)
    if z0q == z0h:
        temp22m = temp12m
    else:
        temp22m = VKC / profile_scalar(2.0 + z0q, z0q, obu)
    return ustar, temp1, temp2, temp12m, temp22m


@njit
def momentum_and_heat_profiles(zldis, z0m, z0h, obu, um):
    """The first two outputs of :func:`friction_velocity`: (ustar [m/s], temp1 = k/Phi_h [1]), for loops
    that need the 2-m profile only after their last iteration."""
    return VKC * um / profile_momentum(zldis, z0m, obu), VKC / profile_scalar(zldis, z0h, obu)


# Constants of the free-convection regimes, for the lane forms (the scalar forms evaluate them per call).
_LN_ZETAM = math.log(ZETAM)
_LN_ZETAT = math.log(ZETAT)
_ZETAM_P = ZETAM ** 0.333
_ZETAT_P = ZETAT ** (-0.333)
_PSI_M_ZETAM = (2.0 * math.log((1.0 + (1.0 + 16.0 * ZETAM) ** 0.25) * 0.5)
                + math.log((1.0 + (1.0 + 16.0 * ZETAM) ** 0.5) * 0.5)
                - 2.0 * math.atan((1.0 + 16.0 * ZETAM) ** 0.25) + math.pi * 0.5)
_PSI_H_ZETAT = 2.0 * math.log((1.0 + (1.0 + 16.0 * ZETAT) ** 0.5) * 0.5)


@njit_inline
def _phi_stable(zeta, r0, la, lz, ln_zldis_z0):
    """Phi_m = Phi_h for zeta >= 0 (stable and very stable, the same for momentum and heat), from zeta,
    r0 = z0 / L, la = ln(L / z0), lz = ln(zeta) and ln(zldis / z0); branch-free."""
    very_stable = la + 5.0 - 5.0 * r0 + (5.0 * lz + zeta - 1.0)
    return very_stable if zeta > 1.0 else ln_zldis_z0 + (5.0 * zeta - 5.0 * r0)


@njit_inline
def _zeta_terms(zldis, z0, obu):
    """zeta = zldis / L, r0 = z0 / L, ln|L / z0| and ln|zeta| (``kernels.vmath``) of the lane forms."""
    zeta = zldis / obu
    return zeta, z0 / obu, vlog(abs(obu) / z0), vlog(abs(zeta))


@njit_inline
def _psim_lanes(x2):
    """psi_m of :func:`psi_m_unstable` from x^2 = sqrt|1 - 16 zeta|, branch-free with ``kernels.vmath``
    (the two logarithms taken as one, ln(((1+x)/2)^2 (1+x^2)/2))."""
    x1 = math.sqrt(x2)
    h = (1.0 + x1) * 0.5
    return vlog(h * h * ((1.0 + x2) * 0.5)) - 2.0 * vatan(x1) + math.pi * 0.5


@njit_inline
def _psih_lanes(x2):
    """psi_h of :func:`psi_h_unstable` from x^2 = sqrt|1 - 16 zeta|, with ``kernels.vmath``."""
    return 2.0 * vlog((1.0 + x2) * 0.5)


@njit_inline
def profile_momentum_ln_lanes(zldis, z0m, obu, ln_zldis_z0m):
    """:func:`profile_momentum` with ln(zldis / z0m) given, branch-free with ``kernels.vmath`` (every
    regime formed, the right one selected), for vectorised member loops; within a few ulp of it."""
    zeta, r0, la, lz = _zeta_terms(zldis, z0m, obu)
    psim_0 = _psim_lanes(math.sqrt(abs(1.0 - 16.0 * r0)))
    phi = (ln_zldis_z0m - _psim_lanes(math.sqrt(abs(1.0 - 16.0 * zeta))) + psim_0 if zeta < 0.0
           else _phi_stable(zeta, r0, la, lz, ln_zldis_z0m))
    return (la + _LN_ZETAM) - _PSI_M_ZETAM + psim_0 + 1.14 * (vexp(0.333 * lz) - _ZETAM_P) if zeta < -ZETAM else phi


@njit_inline
def profile_scalar_ln_lanes(zldis, z0h, obu, ln_zldis_z0h):
    """:func:`profile_scalar` with ln(zldis / z0h) given, branch-free with ``kernels.vmath``, for
    vectorised member loops; within a few ulp of it."""
    zeta, r0, la, lz = _zeta_terms(zldis, z0h, obu)
    psih_0 = _psih_lanes(math.sqrt(abs(1.0 - 16.0 * r0)))
    phi = (ln_zldis_z0h - _psih_lanes(math.sqrt(abs(1.0 - 16.0 * zeta))) + psih_0 if zeta < 0.0
           else _phi_stable(zeta, r0, la, lz, ln_zldis_z0h))
    return (la + _LN_ZETAT) - _PSI_H_ZETAT + psih_0 + 0.8 * (_ZETAT_P - 1.0 / vexp(0.333 * lz)) if zeta < -ZETAT else phi


@njit_inline
def profiles_ln_stable_lanes(zldis, z0, obu, ln_zldis_z0):
    """:func:`profiles_ln_lanes` (and :func:`profile_momentum_ln_lanes`, :func:`profile_scalar_ln_lanes`
    with z0 = z0m or z0h) for L > 0 only (stable and very stable): the same operations for these
    regimes, so the same bits, without the unstable regimes' roots, logarithms and arctangents.
    Returns Phi_m = Phi_h."""
    zeta, r0, la, lz = _zeta_terms(zldis, z0, obu)
    return _phi_stable(zeta, r0, la, lz, ln_zldis_z0)


@njit_inline
def profiles_ln_lanes(zldis, z0, obu, ln_zldis_z0):
    """(Phi_m, Phi_h) of :func:`profile_momentum` and :func:`profile_scalar` for z0m = z0h = ``z0`` (m),
    ln(zldis / z0) given, without branches, for loops over ensemble members that must vectorise:
    every regime's value is formed and the right one selected (the other regimes' values may be
    meaningless and are discarded), sharing ln|L/z0|, ln|zeta| and the square roots between the
    regimes and between momentum and heat, with ``kernels.vmath``'s functions. The same formulas as
    the scalar forms (the two logarithms of psi_m taken as one, ln(((1+x)/2)^2 (1+x^2)/2)); equal to
    them within a few ulp, not bit for bit."""
    zeta, r0, la, lz = _zeta_terms(zldis, z0, obu)
    pz = vexp(0.333 * lz)  # |zeta|^0.333
    # square roots of |1 - 16 zeta|: only the unstable regimes (zeta < 0) use them; the abs() lets the
    # compiler use the vector square-root instruction (no C-library call for negative arguments)
    c2 = math.sqrt(abs(1.0 - 16.0 * zeta))
    d2 = math.sqrt(abs(1.0 - 16.0 * r0))
    psim_z = _psim_lanes(c2)
    psim_0 = _psim_lanes(d2)
    psih_z = _psih_lanes(c2)
    psih_0 = _psih_lanes(d2)
    phis = _phi_stable(zeta, r0, la, lz, ln_zldis_z0)
    phim = ln_zldis_z0 - psim_z + psim_0 if zeta < 0.0 else phis
    phim = (la + _LN_ZETAM) - _PSI_M_ZETAM + psim_0 + 1.14 * (pz - _ZETAM_P) if zeta < -ZETAM else phim
    phih = ln_zldis_z0 - psih_z + psih_0 if zeta < 0.0 else phis
    phih = (la + _LN_ZETAT) - _PSI_H_ZETAT + psih_0 + 0.8 * (_ZETAT_P - 1.0 / pz) if zeta < -ZETAT else phih
    return phim, phih


@njit
def monin_obukhov_ini(ur, thv, dthv, zldis, z0m):
    """CLM4 ``MoninObukIni``: first guess of the wind speed with
    convective velocity ``um`` (m/s) and Monin-Obukhov length ``obu`` (m) from the bulk Richardson
    number. ur: wind (m/s); thv: virtual potential temperature (K); dthv: its difference between the
    reference height and the surface (K); zldis (m); z0m (m). Returns (um, obu)."""
    wc = 0.5
    if dthv >= 0.0:
        um = max(ur, 0.1)
    else:
        um = math.sqrt(ur * ur + wc * wc)
    rib = GRAV * zldis * dthv / (thv * um * um)
    if rib >= 0.0:
        zeta = rib * math.log(zldis / z0m) / (1.0 - 5.0 * min(rib, 0.19))
        zeta = min(2.0, max(zeta, 0.01))
    else:
        zeta = rib * math.log(zldis / z0m)
        zeta = max(-100.0, min(zeta, -0.01))
    return um, zldis / zeta


@njit_inline
def monin_obukhov_ini_lanes(ur, thv, dthv, zldis, ln_zldis_z0m):
    """:func:`monin_obukhov_ini` with ln(zldis / z0m) given and without branches (both stability cases
    formed, one selected), for vectorised member loops; the same operations, so bit-identical to it
    for the same logarithm. Returns (um [m/s], obu [m])."""
    wc = 0.5
    um = max(ur, 0.1) if dthv >= 0.0 else math.sqrt(ur * ur + wc * wc)
    rib = GRAV * zldis * dthv / (thv * um * um)
    zs = min(2.0, max(rib * ln_zldis_z0m / (1.0 - 5.0 * min(rib, 0.19)), 0.01))
    zu = max(-100.0, min(rib * ln_zldis_z0m, -0.01))
    return um, zldis / (zs if rib >= 0.0 else zu)


@njit
def update_obukhov(zldis, ustar, thvstar, thv, ur):
    """Stability update of CLM4.0 ``CanopyFluxes``/``BareGroundFluxes``: zeta = zldis k g thv* /
    (ustar^2 thv) limited to [0.01, 2] (stable) or [-100, -0.01] (unstable); wind with the Zeng et al.
    (1998) convective velocity wc = (-g ustar thv* zi / thv)^(1/3), zi = 1000 m. Returns (um [m/s], obu [m])."""
    zeta = zldis * VKC * GRAV * thvstar / (ustar * ustar * thv)
    if zeta >= 0.0:
        zeta = min(2.0, max(zeta, 0.01))
        um = max(ur, 0.1)
    else:
        zeta = max(-100.0, min(zeta, -0.01))
        wc = (-GRAV * ustar * thvstar * 1000.0 / thv) ** 0.333
        um = math.sqrt(ur * ur + wc * wc)
    return um, zldis / zeta


@njit_inline
def update_obukhov_lanes(zldis, ustar, thvstar, thv, ur):
    """:func:`update_obukhov` without branches and with ``kernels.vmath.vexp``/``vlog`` for the cube
    root, for vectorised member loops (equal within a few ulp)."""
    zeta = zldis * VKC * GRAV * thvstar / (ustar * ustar * thv)
    stable = zeta >= 0.0
    zs = min(2.0, max(zeta, 0.01))
    zu = max(-100.0, min(zeta, -0.01))
    wc = vexp(0.333 * vlog(abs(GRAV * ustar * thvstar * 1000.0 / thv)))
    um = max(ur, 0.1) if stable else math.sqrt(ur * ur + wc * wc)
    return um, zldis / (zs if stable else zu)


@njit
def aerodynamic_resistances(ustar, um, temp1, temp2):
    """Aerodynamic resistances (s/m) for momentum ram = um/ustar^2, heat rah = 1/(temp1 ustar) and
    water vapour raw = 1/(temp2 ustar)."""
    return um / (ustar * ustar), 1.0 / (temp1 * ustar), 1.0 / (temp2 * ustar)


@njit
def canopy_roughness(z0mr, displar, htop, elai, esai, z0mg):
    """Momentum roughness (m) and displacement height (m) of a vegetated patch: z0m = z0mr htop,
    d = displar htop, modified for sparse canopies as CLM4.0's CanopyFluxes does: with
    L = min(elai + esai, 2), V = (1 - exp(-L)) / (1 - exp(-2)), d <- V d, ln z0m <- V ln z0m +
    (1 - V) ln z0mg (ground roughness z0mg, m). z0h = z0q = z0m."""
    lt = min(elai + esai, TLSAI_CRIT)
    egvf = (1.0 - ALPHA_AERO * math.exp(-lt)) / (1.0 - ALPHA_AERO * math.exp(-TLSAI_CRIT))
    displa = egvf * displar * htop
    z0m = math.exp(egvf * math.log(z0mr * htop) + (1.0 - egvf) * math.log(z0mg))
    return z0m, displa


_EGVF_DENOM = 1.0 - ALPHA_AERO * math.exp(-TLSAI_CRIT)


@njit_inline
def canopy_roughness_lanes(z0mr, displar, htop, elai, esai, z0mg):
    """:func:`canopy_roughness` with ``kernels.vmath``'s exp and log, for vectorised member loops
    (equal within a few ulp). Returns (z0m [m], displa [m])."""
    lt = min(elai + esai, TLSAI_CRIT)
    egvf = (1.0 - ALPHA_AERO * vexp(-lt)) / _EGVF_DENOM
    displa = egvf * displar * htop
    z0m = vexp(egvf * vlog(z0mr * htop) + (1.0 - egvf) * vlog(z0mg))
    return z0m, displa


@njit
def vegetation_roughness(patch_col, patch_pft, htop, elai, esai, z0mg, z0mr, displar, out_z0m, out_displa):
    """Patch kernel of :func:`canopy_roughness`.

    patch_col (npatch,) int; patch_pft (npatch,) int; htop, elai, esai (npatch, nmem) [m, m2/m2, m2/m2];
    z0mg (ncol, nmem) ground roughness (m); z0mr, displar: PFT arrays (``pft_record().z0mr``, ``.displar``).
    Fills out_z0m, out_displa (npatch, nmem) [m]. Bare-soil patches (PFT 0) get z0m = z0mg, d = 0.
    """
    npatch, nmem = htop.shape
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        for m in range(nmem):
            if ivt == 0 or htop[p, m] <= 0.0:
                out_z0m[p, m] = z0mg[c, m]
                out_displa[p, m] = 0.0
            else:
                z0m, d = canopy_roughness(z0mr[ivt], displar[ivt], htop[p, m], elai[p, m], esai[p, m], z0mg[c, m])
                out_z0m[p, m] = z0m
                out_displa[p, m] = d


__all__ = [
    "ALPHA_AERO", "TLSAI_CRIT", "Z0_SNOW", "Z0_SOIL", "ZETAM", "ZETAT",
    "aerodynamic_resistances", "canopy_roughness", "canopy_roughness_lanes", "friction_velocity",
    "momentum_and_heat_profiles", "monin_obukhov_ini", "monin_obukhov_ini_lanes", "profile_momentum", "profile_momentum_ln",
    "profile_momentum_ln_lanes", "profile_scalar", "profile_scalar_ln", "profile_scalar_ln_lanes",
    "profiles_ln_lanes", "profiles_ln_stable_lanes", "psi_h_unstable", "psi_m_unstable", "update_obukhov",
    "update_obukhov_lanes", "vegetation_roughness",
]
