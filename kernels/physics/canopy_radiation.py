"""Canopy shortwave radiation: two-stream albedos and fluxes, sunlit/shaded leaves, absorbed solar.

CLM4 technical note (Oleson et al. 2010, NCAR/TN-478+STR) chapter 3.1 (canopy radiative transfer,
the two-stream approximation of Dickinson 1983 and Sellers 1985, as in Bonan 1996) and chapter 4.1
(solar fluxes), with CLM4.0's ``SurfaceAlbedo``/``TwoStream``/``SurfaceRadiation`` code for the
details the text leaves out (sunlit/shaded partition after P. Thornton, CLM3.5/4.0). Equation
numbers below are the labels of the technical note's reStructuredText edition
(``ESCOMP/CTSM``, ``doc/source/tech_note/Surface_Albedos`` and ``.../Radiative_Fluxes``, the
CLM5.0 text, whose chapters 3 and 4 keep CLM4's equations in the same order; the 2010 PDF's
numbers may be offset where CLM5 added or removed an equation): 3.1-3.2 the
two-stream equations, 3.3-3.4 G(mu) and mu_bar, 3.5-3.16 omega, beta, beta0, 3.17-3.22 albedos,
transmitted and absorbed fluxes, 3.31-3.41 the solution's terms, 4.1-4.4 solar fluxes and their
conservation, 4.7-4.8 the sunlit leaf area.

Reads (per patch ``p``, member ``m``): exposed leaf and stem area ``elai[p, m]``, ``esai[p, m]``,
vegetation temperature ``t_veg[p, m]`` and wetted canopy fraction ``fwet[p, m]`` (snow on a frozen
canopy), the column's cosine solar zenith angle ``coszen[c]`` and ground albedos
``albgrd/albgri[c, band, m]`` (``kernels.physics.surface_albedo``), the PFT optics of
``engine.pftcon.pft_record()`` (``xl``, ``rholvis``/``rholnir``, ``taulvis``/``taulnir``,
``rhosvis``/``rhosnir``, ``tausvis``/``tausnir``) and the solar forcing
``forc_solad/forc_solai[c, band, m]``. Writes only its ``out_*`` arrays. Bands: 0 = visible
(< 0.7 um), 1 = near-infrared.

Three kernels, called in this order each radiation step:

* :func:`canopy_two_stream`: albedos and fluxes per unit incoming direct (``albd, fabd, ftdd,
  ftid``) and diffuse (``albi, fabi, ftii``) radiation, the canopy's single-scattering albedo
  ``omega`` and the sunlit fraction ``fsun``;
* :func:`solar_fluxes`: multiplies by the forcing to give ``sabv`` (absorbed by vegetation),
  ``sabg`` (absorbed by the ground), ``fsa`` (total absorbed, CLM history FSA), ``fsr`` (reflected,
  FSR), sunlit/shaded leaf area ``laisun/laisha`` and absorbed PAR per unit sunlit/shaded leaf area
  ``parsun/parsha`` (W/m2 leaf), the input of photosynthesis (tech note ch. 8);
* :func:`sunlit_shaded_sla`: the mean specific leaf area of the sunlit and of the shaded leaves
  (``slasun/slasha``), with which photosynthesis converts leaf N to Vcmax.

Solution method. The two-stream equations (tech note eqs. 3.1-3.2)

    -mu_bar dI_up/dx + [1 - (1 - beta) omega] I_up - omega beta I_dn = omega mu_bar K beta0 exp(-K x)
     mu_bar dI_dn/dx + [1 - (1 - beta) omega] I_dn - omega beta I_up = omega mu_bar K (1 - beta0) exp(-K x)

(x = cumulative leaf + stem area from the canopy top; the right-hand sides are zero for diffuse
incidence) are solved in closed form with the tech note's terms (eqs. 3.31-3.41: b, c, d, f,
h = sqrt(b^2 - c^2)/mu_bar, sigma = (mu_bar K)^2 - (b^2 - c^2), s1, s2) and its particular
solution, but with the two homogeneous modes written as exp(-h x) and exp(-h (L - x)), so that no
factor exp(+h L) appears, and with the ground boundary condition
I_up(L) = albgrd exp(-K L) + albgri I_dn(L): the direct beam is reflected with the direct ground
albedo and the diffuse flux with the diffuse one. CLM4's code (and eqs. 3.37-3.39) use ``albgrd``
for both terms of the direct-beam case. The two agree exactly whenever albgrd == albgri (every
snow-free soil: CLM's soil albedo has no zenith dependence; the tests check this against eqs.
3.17-3.57 transcribed); when they differ (snow, whose direct albedo depends on the zenith angle)
the form here keeps the canopy absorption equal to the divergence of the solved fluxes. Canopy
absorption is the net flux entering the top minus the net flux leaving the bottom,
fab = 1 - alb - (1 - albgrd) ftd - (1 - albgri) fti (tech note eqs. 3.21-3.22 with 4.1-4.2), so
absorbed + ground-absorbed + reflected equals the incoming flux in each band (eq. 4.4).

Special cases as CLM4.0 ``SurfaceAlbedo``: sun below the horizon (``coszen <= 0``): albd = albi = 1,
all fab/ft = 0, fsun = 0 (everything is "reflected": nothing absorbed); no exposed leaf or stem area
(elai + esai == 0): albd = albgrd, albi = albgri, fabd = fabi = 0, ftdd = ftii = 1, ftid = 0: exactly
bare ground.
"""

from __future__ import annotations

import math

from kernels._jit import njit, njit_inline
from kernels.physics.constants import TFRZ
from kernels.vmath import vexp

#: number of solar bands (0 visible, 1 near-infrared), CLM's ``numrad``
NUMRAD = 2


#: single-scattering albedo of intercepted snow by band (tech note ch. 3.1, CLM4.0 ``omegas``)
OMEGAS_VIS = 0.8
OMEGAS_NIR = 0.4

#: upscatter parameters of intercepted snow, diffuse and direct (CLM4.0 ``betads``, ``betais``)
BETAS = 0.5

#: CLM's ``mpe``: guard against division by zero in leaf/stem weights (1e-6)
MPE = 1.0e-6


@njit
def leaf_orientation(xl, cosz):
    """Ross-Goudriaan leaf angle terms for orientation index ``xl`` at cosine zenith ``cosz`` (> 0).

    Tech note eqs. 3.3, 3.4, 3.16 (CLM4.0 ``TwoStream``): chi_L limited to [-0.4, 0.6] and |chi_L| >= 0.01;
    phi1 = 0.5 - 0.633 chi_L - 0.33 chi_L^2, phi2 = 0.877 (1 - 2 phi1); G(mu) = phi1 + phi2 mu;
    K = G(mu)/mu; mu_bar = [1 - phi1/phi2 ln((phi1 + phi2)/phi1)]/phi2 (average inverse diffuse
    optical depth per unit leaf + stem area); and the factor of the single-scattering albedo
    a_s(mu)/(omega/2) = G/(mu phi2 + G) [1 - mu phi1/(mu phi2 + G) ln((mu phi1 + mu phi2 + G)/(mu phi1))]
    (eq. 3.16). The floor 1e-6 on mu phi2 + G is CTSM's fix of CLM bug 2431 (never active for
    CLM4's xl values). Returns (chil, gdir, K, mu_bar, a_s/omega).
    """
    chil = min(max(xl, -0.4), 0.6)
    if abs(chil) <= 0.01:
        chil = 0.01
    phi1 = 0.5 - 0.633 * chil - 0.330 * chil * chil
    phi2 = 0.877 * (1.0 - 2.0 * phi1)
    gdir = phi1 + phi2 * cosz
    ext = gdir / cosz
    avmu = (1.0 - phi1 / phi2 * math.log((phi1 + phi2) / phi1)) / phi2
    temp0 = max(gdir + phi2 * cosz, 1.0e-6)
    temp1 = phi1 * cosz
    temp2 = 1.0 - temp1 / temp0 * math.log((temp1 + temp0) / temp1)
    asu_per_omega = 0.5 * gdir / temp0 * temp2
    return chil, gdir, ext, avmu, asu_per_omega


@njit_inline
def two_stream_solution(omega, betad, betai, avmu, ext, vai, albgd, albgi, direct):
    """Closed-form two-stream solution for one canopy, one band, unit incoming flux.

    ``omega``, ``betad`` (beta0), ``betai`` (beta): scattering parameters (tech note eqs. 3.5-3.16);
    ``avmu``: mu_bar; ``ext``: K = G(mu)/mu (1/(m2/m2)); ``vai``: L + S (m2/m2); ``albgd``,
    ``albgi``: ground albedo for direct and diffuse flux; ``direct``: True for unit direct beam,
    False for unit diffuse incidence. Returns (alb, ftd, fti, fab): reflected flux at the top,
    direct beam and diffuse flux transmitted to the ground, flux absorbed by the canopy (all per unit
    incoming). Terms as tech note eqs. 3.31-3.41 (b, c, d, f, h, sigma, s1 = exp(-h L),
    s2 = exp(-K L), with CLM's cap of h L and K L at 40); see the module docstring for the modes.

    Written without calls or data-dependent branches (exponentials by ``kernels.vmath.vexp``, the
    resonance guard on sigma as a select), and inlined, so that :func:`canopy_two_stream`'s loop over
    members vectorises; ``direct`` is a constant at each call site.
    """
    b = 1.0 - omega + omega * betai
    c = omega * betai
    h = math.sqrt(abs(b * b - c * c)) / avmu  # b^2 - c^2 = (1 - omega)(1 - omega + 2 omega beta) >= 0
    big = b + avmu * h  # mode amplitude B: mode 1 (U, D) = (c, B) e^{-hx}, mode 2 = (B, c) e^{-h(L-x)}
    s1 = vexp(-min(h * vai, 40.0))
    if direct:
        s2 = vexp(-min(ext * vai, 40.0))
        tmp0 = avmu * ext
        d = tmp0 * omega * betad
        f = tmp0 * omega * (1.0 - betad)
        sigma = tmp0 * tmp0 - (b * b - c * c)
        # K == h resonance: measure-zero case, keep the solution finite
        sig_min = 1.0e-10 if sigma >= 0.0 else -1.0e-10
        sigma = sig_min if abs(sigma) < 1.0e-10 else sigma
        pu = -(d * (b - tmp0) + c * f) / sigma  # particular solution I_up = pu e^{-Kx}
        qd = -((b + tmp0) * f + c * d) / sigma  # particular solution I_dn = qd e^{-Kx}
        r1 = -qd
        r2 = s2 * (albgd + albgi * qd - pu)
    else:
        s2 = 0.0
        pu = 0.0
        qd = 0.0
        r1 = 1.0
        r2 = 0.0
    # top: D(0) = D0; bottom: U(L) = albgd s2 + albgi D(L)
    m11 = big
    m12 = c * s1
    m21 = s1 * (c - albgi * big)
    m22 = big - albgi * c
    det = m11 * m22 - m12 * m21
    c1 = (r1 * m22 - m12 * r2) / det
    c2 = (m11 * r2 - m21 * r1) / det
    alb = pu + c1 * c + c2 * big * s1
    fti = qd * s2 + c1 * big * s1 + c2 * c
    if direct:
        ftd = s2
        fab = 1.0 - alb - (1.0 - albgd) * ftd - (1.0 - albgi) * fti
    else:
        ftd = 0.0
        fab = 1.0 - alb - (1.0 - albgi) * fti
    return alb, ftd, fti, fab


@njit
def canopy_two_stream(coszen, elai, esai, t_veg, fwet, patch_col, patch_pft, pft, albgrd, albgri,
                      out_albd, out_albi, out_fabd, out_fabi, out_ftdd, out_ftid, out_ftii,
                      out_omega, out_fsun):
    """Surface albedos and canopy fluxes per unit incoming radiation (CLM4.0 ``SurfaceAlbedo`` +
    ``TwoStream``; tech note ch. 3.1, eqs. 3.1-3.41) and the sunlit fraction of the canopy.

    Inputs:
      coszen[c]         cosine of the solar zenith angle (1), one value per column for this step
      elai[p, m]        exposed one-sided leaf area index (m2/m2, above snow)
      esai[p, m]        exposed one-sided stem area index (m2/m2)
      t_veg[p, m]       vegetation temperature (K); at or below TFRZ the wetted fraction is snow
      fwet[p, m]        wetted fraction of the canopy (1); intercepted snow changes omega, beta,
                        beta0 (tech note eqs. 3.5-3.7, omega_sno = 0.8/0.4, beta_sno = 0.5; CLM4.0
                        applies it when t_veg <= TFRZ with f_can,sno = fwet)
      patch_col[p]      column of patch p
      patch_pft[p]      PFT index (0-16) of patch p
      pft               ``engine.pftcon.pft_record()``: xl, rhol*/taul*/rhos*/taus* (1)
      albgrd[c, b, m]   ground albedo for direct beam (1)
      albgri[c, b, m]   ground albedo for diffuse radiation (1)
    Outputs (band b: 0 visible, 1 near-infrared):
      out_albd[p, b, m], out_albi   surface albedo, direct / diffuse (1)
      out_fabd[p, b, m], out_fabi   flux absorbed by the canopy per unit direct / diffuse flux (1)
      out_ftdd[p, b, m]             direct beam below the canopy per unit direct flux (1)
      out_ftid[p, b, m]             diffuse flux below the canopy per unit direct flux (1)
      out_ftii[p, b, m]             diffuse flux below the canopy per unit diffuse flux (1)
      out_omega[p, b, m]            canopy single-scattering albedo used (1) (0 where not solved)
      out_fsun[p, m]                sunlit fraction of the leaf area (1): (1 - exp(-K L))/(K L)
                                    (tech note eqs. 4.7-4.8 with CLM4.0's K L from elai only),
                                    1 when elai <= 0.01,
                                    0 at night or without leaves (CLM4.0 ``SurfaceRadiation``)

    Leaf and stem optics are weighted by the fractions of L + S (tech note eqs. 3.11-3.12:
    rho = max(rho_leaf L/(L+S) + rho_stem S/(L+S), 1e-6), same for tau); omega = rho + tau,
    omega beta = [rho + tau + (rho - tau) ((1 + chi_L)/2)^2]/2 (eqs. 3.13-3.14), omega beta0 from
    eq. 3.15.
    """
    npatch = elai.shape[0]
    nmem = elai.shape[1]
    xl = pft.xl
    rho_leaf = (pft.rholvis, pft.rholnir)
    tau_leaf = (pft.taulvis, pft.taulnir)
    rho_stem = (pft.rhosvis, pft.rhosnir)
    tau_stem = (pft.tausvis, pft.tausnir)
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        cz = coszen[c]
        if cz <= 0.0:
            for ib in range(NUMRAD):
                for m in range(nmem):
                    out_albd[p, ib, m] = 1.0
                    out_albi[p, ib, m] = 1.0
                    out_fabd[p, ib, m] = 0.0
                    out_fabi[p, ib, m] = 0.0
                    out_ftdd[p, ib, m] = 0.0
                    out_ftid[p, ib, m] = 0.0
                    out_ftii[p, ib, m] = 0.0
                    out_omega[p, ib, m] = 0.0
            for m in range(nmem):
                out_fsun[p, m] = 0.0
            continue
        cosz = max(0.001, cz)
        chil, gdir, ext, avmu, asu_per_omega = leaf_orientation(xl[ivt], cosz)
        for m in range(nmem):
            lai = elai[p, m]
            t1 = min(ext * lai, 40.0)
            fs = (1.0 - vexp(-t1)) / t1
            fs = 1.0 if lai <= 0.01 else fs
            out_fsun[p, m] = fs if lai > 0.0 else 0.0
        for ib in range(NUMRAD):
            rhol = rho_leaf[ib][ivt]
            taul = tau_leaf[ib][ivt]
            rhos = rho_stem[ib][ivt]
            taus = tau_stem[ib][ivt]
            omegas = OMEGAS_VIS if ib == 0 else OMEGAS_NIR
            chil_term = ((1.0 + chil) / 2.0) ** 2
            # member loop without branches (vectorised): both cases computed, the result selected
            for m in range(nmem):
                vai = elai[p, m] + esai[p, m]
                agd = albgrd[c, ib, m]
                agi = albgri[c, ib, m]
                veg = vai > 0.0
                wl = elai[p, m] / max(vai, MPE)
                ws = esai[p, m] / max(vai, MPE)
                rho = max(rhol * wl + rhos * ws, MPE)
                tau = max(taul * wl + taus * ws, MPE)
                omegal = rho + tau
                asu = omegal * asu_per_omega
                betadl = (1.0 + avmu * ext) / (omegal * avmu * ext) * asu
                betail = 0.5 * ((rho + tau) + (rho - tau) * chil_term) / omegal
                fw = fwet[p, m]
                omega_s = (1.0 - fw) * omegal + fw * omegas
                betad_s = ((1.0 - fw) * omegal * betadl + fw * omegas * BETAS) / omega_s
                betai_s = ((1.0 - fw) * omegal * betail + fw * omegas * BETAS) / omega_s
                warm = t_veg[p, m] > TFRZ
                omega = omegal if warm else omega_s
                betad = betadl if warm else betad_s
                betai = betail if warm else betai_s
                albd, ftdd, ftid, fabd = two_stream_solution(omega, betad, betai, avmu, ext, vai, agd, agi, True)
                albi, _ftd, ftii, fabi = two_stream_solution(omega, betad, betai, avmu, ext, vai, agd, agi, False)
                # no exposed leaf or stem area: bare ground
                out_omega[p, ib, m] = omega if veg else 0.0
                out_albd[p, ib, m] = albd if veg else agd
                out_ftdd[p, ib, m] = ftdd if veg else 1.0
                out_ftid[p, ib, m] = ftid if veg else 0.0
                out_fabd[p, ib, m] = fabd if veg else 0.0
                out_albi[p, ib, m] = albi if veg else agi
                out_ftii[p, ib, m] = ftii if veg else 1.0
                out_fabi[p, ib, m] = fabi if veg else 0.0


@njit
def solar_fluxes(coszen, forc_solad, forc_solai, elai, esai, patch_col, albgrd, albgri,
                 albd, albi, fabd, fabi, ftdd, ftid, ftii, omega, fsun,
                 out_sabv, out_sabg, out_fsa, out_fsr, out_laisun, out_laisha, out_parsun, out_parsha):
    """Absorbed and reflected solar radiation for one time step (CLM4.0 ``SurfaceRadiation``; tech
    note ch. 4.1, eqs. 4.1-4.4 for the canopy, the ground and conservation; 4.5-4.8 for sunlit and
    shaded leaves, in CLM4.0's form described below).

    Inputs:
      coszen[c]                       cosine of the solar zenith angle (1)
      forc_solad[c, b, m]             incoming direct-beam solar radiation (W/m2)
      forc_solai[c, b, m]             incoming diffuse solar radiation (W/m2)
      elai[p, m], esai[p, m]          exposed leaf / stem area index (m2/m2)
      patch_col[p]                    column of patch p
      albgrd[c, b, m], albgri         ground albedo, direct / diffuse (1)
      albd, albi, fabd, fabi, ftdd, ftid, ftii, omega [p, b, m]; fsun[p, m]
                                      outputs of :func:`canopy_two_stream` for the same step
    Outputs [p, m]:
      out_sabv     solar absorbed by vegetation, sum over bands of solad fabd + solai fabi (W/m2)
      out_sabg     solar absorbed by the ground: transmitted direct (1 - albgrd) + transmitted
                   diffuse (1 - albgri) (W/m2)
      out_fsa      total absorbed, sabv + sabg (W/m2)
      out_fsr      reflected, albd solad + albi solai summed over bands (W/m2);
                   fsa + fsr = incoming, band by band
      out_laisun   sunlit leaf area elai fsun (m2/m2); out_laisha = elai - laisun
      out_parsun   visible radiation absorbed per unit sunlit leaf area (W/m2 leaf)
      out_parsha   visible radiation absorbed per unit shaded leaf area (W/m2 leaf)

    Sunlit/shaded partition (Thornton's CLM3.5/CLM4.0 algorithm): the direct beam absorbed at its
    first interception, solad (1 - ftdd)(1 - omega), goes to sunlit leaves; the rest of the
    absorbed direct beam (scattered, clipped at 0 for round-off) and the absorbed diffuse flux are
    shared by the sunlit and shaded fractions fsun and 1 - fsun; the leaf share L/(L+S) of each is
    divided by the sunlit/shaded leaf area. When elai <= 0.01 the canopy is all sunlit; at night
    laisun = 0 and laisha = elai.
    """
    npatch = elai.shape[0]
    nmem = elai.shape[1]
    for p in range(npatch):
        c = patch_col[p]
        sun_up = coszen[c] > 0.0
        for m in range(nmem):
            sabv = 0.0
            sabg = 0.0
            fsr = 0.0
            for ib in range(NUMRAD):
                sd = forc_solad[c, ib, m]
                si = forc_solai[c, ib, m]
                cad = sd * fabd[p, ib, m]
                cai = si * fabi[p, ib, m]
                sabv += cad + cai
                trd = sd * ftdd[p, ib, m]
                tri = sd * ftid[p, ib, m] + si * ftii[p, ib, m]
                sabg += trd * (1.0 - albgrd[c, ib, m]) + tri * (1.0 - albgri[c, ib, m])
                fsr += albd[p, ib, m] * sd + albi[p, ib, m] * si
            out_sabv[p, m] = sabv
            out_sabg[p, m] = sabg
            out_fsa[p, m] = sabv + sabg
            out_fsr[p, m] = fsr

            lai = elai[p, m]
            fs = fsun[p, m]
            if sun_up and lai > 0.0:
                laisun = lai * fs
                laisha = lai - laisun
                sd = forc_solad[c, 0, m]
                si = forc_solai[c, 0, m]
                sun_add = sd * (1.0 - ftdd[p, 0, m]) * (1.0 - omega[p, 0, m])
                tot_aid = max(sd * fabd[p, 0, m] - sun_add, 0.0)
                cai = si * fabi[p, 0, m]
                sun_atot = sun_add + (tot_aid + cai) * fs
                sha_atot = (tot_aid + cai) * (1.0 - fs)
                laifra = lai / (lai + esai[p, m])
                out_parsun[p, m] = sun_atot * laifra / laisun if laisun > 0.0 else 0.0
                out_parsha[p, m] = sha_atot * laifra / laisha if laisha > 0.0 else 0.0
            else:
                laisun = 0.0
                laisha = lai
                out_parsun[p, m] = 0.0
                out_parsha[p, m] = 0.0
            out_laisun[p, m] = laisun
            out_laisha[p, m] = laisha


@njit
def _sunlit_depth_fraction(t):
    """Mean cumulative-LAI depth of the sunlit leaves over the canopy LAI L, for t = K L > 0:
    g(t) = [1 - e^-t (1 + t)] / [t (1 - e^-t)] (the sunlit fraction at depth x being e^-Kx); its
    series 1/2 - t/12 + t^3/720 below t = 1e-3, where the closed form loses digits."""
    if t < 1.0e-3:
        return 0.5 - t / 12.0 + t * t * t / 720.0
    e = math.exp(-t)
    return (1.0 - e * (1.0 + t)) / (t * (1.0 - e))


@njit
def sunlit_shaded_sla(coszen, elai, patch_col, patch_pft, pft, out_slasun, out_slasha):
    """Mean specific leaf area (m2 leaf gC-1) of the sunlit and of the shaded leaves (CLM4.0
    ``SurfaceRadiation``: ``slasun``/``slasha``, Thornton and Zimmermann 2007, J. Climate 20:3902),
    the SLA with which photosynthesis converts leaf N per unit leaf area (tech note section 8.2: N_a =
    1/(CN_L SLA)).

    SLA grows linearly with the overlying leaf area x, SLA(x) = slatop + dsladlai x (the profile of
    ``kernels.physics.cn_canopy``), and the sunlit fraction at depth x is e^-Kx (tech note eq. 4.7).
    Weighting the profile by e^-Kx and by 1 - e^-Kx over 0 <= x <= L (L = elai) gives

        slasun = slatop + dsladlai L g(t),
        slasha = slatop + dsladlai L (1/2 - fsun g(t)) / (1 - fsun),

    t = K L, fsun = (1 - e^-t)/t, g(t) = [1 - e^-t (1 + t)] / [t (1 - e^-t)] the sunlit leaves' mean
    depth over L. K and the cap t <= 40 are those of ``canopy_two_stream``'s fsun (so laisun = fsun L
    is the integral weighted here). Limits: no gradient (dsladlai = 0) gives slatop for both; with the
    sun below the horizon every leaf is shaded (slasha = slatop + dsladlai L/2, the canopy mean, and
    slasun = slatop); elai <= 0.01 (fsun = 1 in canopy_two_stream): both the canopy mean; no leaves:
    both slatop.

    coszen[c] (1); elai[p, m] (m2/m2); patch_col[p], patch_pft[p]; pft: ``pft_record()`` (slatop,
    dsladlai, xl). Writes out_slasun[p, m], out_slasha[p, m].
    """
    npatch, nmem = elai.shape
    for p in range(npatch):
        ivt = patch_pft[p]
        s0 = pft.slatop[ivt]
        d = pft.dsladlai[ivt]
        cz = coszen[patch_col[p]]
        ext = 0.0
        if cz > 0.0:
            _chil, _gdir, ext, _avmu, _asu = leaf_orientation(pft.xl[ivt], max(0.001, cz))
        for m in range(nmem):
            lai = elai[p, m]
            if lai <= 0.0:
                out_slasun[p, m] = s0
                out_slasha[p, m] = s0
            elif cz <= 0.0:
                out_slasun[p, m] = s0
                out_slasha[p, m] = s0 + d * lai * 0.5
            elif lai <= 0.01:
                out_slasun[p, m] = s0 + d * lai * 0.5
                out_slasha[p, m] = s0 + d * lai * 0.5
            else:
                t = min(ext * lai, 40.0)
                fsun = (1.0 - math.exp(-t)) / t
                g = _sunlit_depth_fraction(t)
                out_slasun[p, m] = s0 + d * lai * g
                out_slasha[p, m] = s0 + d * lai * (0.5 - fsun * g) / (1.0 - fsun)


__all__ = [
    "NUMRAD",
    "canopy_two_stream",
    "leaf_orientation",
    "solar_fluxes",
    "sunlit_shaded_sla",
    "two_stream_solution",
]
