"""Turbulent fluxes of momentum, sensible and latent heat, vegetation temperature and the ground heat
flux: CLM4 tech note (Oleson et al. 2010) chapter 5, section 5.2 (non-vegetated surfaces) and 5.3
(vegetated surfaces), ported from CLM4.0 ``Biogeophysics1Mod`` (ground humidity, soil beta and alpha),
``BareGroundFluxesMod`` and ``CanopyFluxesMod`` (without irrigation and isotopes).

Vegetated patches (exposed elai + esai >= 0.05): the canopy air space exchanges heat and water vapour
with the atmosphere (r_ah, r_aw from Monin-Obukhov similarity, ``friction_velocity``), the leaves
(leaf boundary layer resistance r_b = 1/(C_v sqrt(u_af / d_leaf)), C_v = 0.01 m s^-1/2, u_af = u*) and
the ground (under-canopy resistance r_ah' = r_aw' = 1/(C_s u_af) with C_s interpolated between the
bare-soil value and C_soilc = 0.004 by exp(-(L+S)), reduced under a stable canopy air space after
Sakaguchi and Zeng 2009, and a dry litter resistance for ground evaporation). The vegetation
temperature T_v solves the canopy energy balance (the canopy holds no heat in CLM4)

    S_v + L_v(T_v) - H_v(T_v) - lambda E_v(T_v) = 0

by CLM4's Newton-Raphson iteration (CLM's ``do while (itlef <= itmax)`` with itmax = 40, i.e. at
most 41 passes; step limited to 1 K; converged when the T_v changes of the last two iterations are
< 0.01 K and the change of the leaf latent heat flux is < 0.1 W m-2, tested from the third pass on),
recomputing the Monin-Obukhov
length, the resistances and the sunlit/shaded stomatal resistances (``photosynthesis.stomata_sun_shade``)
at every iteration as CLM4 does. As in CLM4, the fluxes of the last iteration are linearised about
the T_v of that iteration's start, so the canopy balance closes by construction; the energy CLM4
moves into the sensible heat (the remainder when the step is limited, the damped sign change of the
leaf latent heat, evaporation demand beyond the available canopy water) is moved there here too,
and the final residual of the canopy balance (round-off, reported as ``out_err_veg``) is added to
the vegetation sensible heat so that the balance closes to round-off.

Transpiration comes from the dry leaf fraction through r_b + r_s (sunlit and shaded leaves weighted by
their LAI) when BTRAN > 0; evaporation of intercepted water from the wet fraction fwet, limited to the
canopy water available in the step; dew and frost go onto all leaves and stems. Ground evaporation
uses the ground humidity q_g = alpha q_sat(T_g) (alpha from the top soil layer's matric potential,
Philip 1957, and the snow fraction) and the Lee and Pielke (1992) soil beta on the conductance (CLM4
section 5.2). The ground heat flux is the residual of the ground surface energy balance,
G = S_g + L_g^abs - L_g^emit - H_g - lambda E_g, so the whole surface satisfies Rn = H + LE + G.

2-m air temperature and humidity follow CLM4: T_2m = theta_m + theta* / k (Phi_h(2 m + z0h) -
Phi_h(z_atm - d)) (``temp12m``), RH2M from q_2m and q_sat(T_2m).

Reads (arguments): atmospheric forcing per column, ground state per column (T_g, q_g, soil beta, latent
heat of vaporisation/sublimation, ground roughness, emissivity, snow depth) from
:func:`ground_surface_state`, and per patch: exposed LAI/SAI, canopy height, absorbed shortwave of
canopy and ground, canopy emissivity, sunlit/shaded LAI and absorbed PAR, BTRAN, canopy water, fwet,
fdry and the vegetation temperature of the previous step. Writes only its out_* arrays (CLM history
names: TV, FSH, FSH_V, FSH_G, EFLX_LH_TOT, FCTR, FCEV, FGEV, QVEGT, QVEGE, QSOIL, FGR, FIRA, TSA, Q2M,
RH2M, H2OCAN, rssun/rssha, psnsun/psnsha, FPSN, GPP).
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.constants import (
    CPAIR, DENH2O, DENICE, GRAV, HSUB, HVAP, RAIR, RWAT, SB, SMPMIN, VAI_MIN, VKC,
)
from kernels.physics.friction_velocity import (
    Z0_SNOW,
    Z0_SOIL,
    canopy_roughness,
    friction_velocity,
    momentum_and_heat_profiles_ln,
    monin_obukhov_ini,
    profile_scalar,
    update_obukhov,
)
from kernels.physics.photosynthesis import GC_PER_UMOL, O2_MOLAR, stomata_sun_shade
from kernels.physics.saturation import qsat

# Physical constants of CLM4 (clm_varcon/shr_const): Stefan-Boltzmann SB (W m-2 K-4), specific heat of
# dry air CPAIR (J kg-1 K-1), latent heats of vaporisation HVAP and sublimation HSUB = HVAP + HFUS
# (J/kg; CLM4's hsub = SHR_CONST_LATSUB = 2.8347e6), gas constants of dry air RAIR and water vapour
# RWAT (J kg-1 K-1), densities of liquid water DENH2O and ice DENICE (kg m-3), gravity GRAV (m s-2),
# von Karman VKC, the minimum soil matric potential SMPMIN (mm) and the bare-ground threshold VAI_MIN of
# LAI+SAI: imported above from kernels.physics.constants.
#: Turbulent transfer coefficient between the ground and the canopy air (CLM ``csoilc``).
CSOILC = 0.004
#: Kinematic viscosity of air (m2/s) in the bare-soil z0h and C_s relations.
KVISC = 1.5e-5

# CLM4.0 CanopyFluxes iteration constants.
_DELMAX = 1.0  # maximum change of T_v in one iteration (K)
_DLEMIN = 0.1  # convergence of the leaf latent heat (W/m2)
_DTMIN = 0.01  # convergence of T_v (K)
ITMAX = 40  # CLM's itmax
_ITMIN = 2
_RIA = 0.5  # Sakaguchi and Zeng (2009) gamma for the stable under-canopy C_s
_LAI_DL = 0.5  # plant litter area index (m2/m2)
_Z_DL = 0.05  # litter layer thickness (m)
_NITER_BARE = 3  # BareGroundFluxes stability iterations


@njit
def field_capacity(watsat, hksat, bsw):
    """Volumetric water at field capacity (CLM4.0 ``watfc``): the content at which the Clapp-Hornberger
    hydraulic conductivity is 0.1 mm/day, watsat (0.1 / (hksat 86400))^(1 / (2 b + 3)); hksat in mm/s."""
    return watsat * (0.1 / (hksat * 86400.0)) ** (1.0 / (2.0 * bsw + 3.0))


@njit
def ground_surface_state(t_grnd, forc_pbot, forc_q, h2osoi_liq, h2osoi_ice, dz, watsat, sucsat, bsw, watfc,
                         frac_sno, sfc_liq, sfc_ice, out_qg, out_dqgdt, out_soilalpha, out_soilbeta, out_htvp,
                         out_z0mg):
    """Ground surface humidity, soil evaporation factors, latent heat and roughness per column (CLM4
    section 5.2; CLM4.0 ``Biogeophysics1``).

    t_grnd, forc_pbot, forc_q, frac_sno, sfc_liq, sfc_ice: (ncol, nmem) [K, Pa, kg/kg, 1, kg/m2, kg/m2]
    (sfc_*: liquid and ice of the top layer of the snow/soil column: the top snow layer if there is one);
    h2osoi_liq, h2osoi_ice (ncol, nlev, nmem) [kg/m2] (only layer 0, the top soil layer, is used);
    dz, watsat, sucsat, bsw, watfc (ncol, nlev) [m, 1, mm, 1, 1].

    Fills (ncol, nmem): out_soilalpha = (1 - fsno) exp(psi_1 / (R_wv/g T_g)) + fsno (Philip 1957,
    psi_1 = max(-sucsat s^-b, -1e8 mm), s = clamp(theta_1/theta_sat, 0.01, 1)); out_qg = alpha
    q_sat(T_g) (set to forc_q with zero derivative when q_sat > forc_q > alpha q_sat, as CLM does);
    out_dqgdt (1/K); out_soilbeta: Lee and Pielke (1992) beta = (1 - fsno) 0.25 (1 - cos(pi
    theta_1/theta_fc))^2 + fsno below field capacity, else 1; out_htvp: latent heat of sublimation if
    the top layer holds ice and no liquid, else of vaporisation (J/kg); out_z0mg: 0.0024 m over snow
    (fsno > 0), 0.01 m over soil.
    """
    ncol, nmem = t_grnd.shape
    roverg = RWAT / GRAV * 1000.0  # mm/K
    for c in range(ncol):
        for m in range(nmem):
            wx = (h2osoi_liq[c, 0, m] / DENH2O + h2osoi_ice[c, 0, m] / DENICE) / dz[c, 0]
            fac = max(min(1.0, wx / watsat[c, 0]), 0.01)
            psit = max(SMPMIN, -sucsat[c, 0] * fac ** (-bsw[c, 0]))
            hr = math.exp(psit / roverg / t_grnd[c, m])
            fsno = frac_sno[c, m]
            qred = (1.0 - fsno) * hr + fsno
            if wx < watfc[c, 0]:
                fac_fc = max(min(1.0, wx / watfc[c, 0]), 0.01)
                beta = (1.0 - fsno) * 0.25 * (1.0 - math.cos(math.pi * fac_fc)) ** 2 + fsno
            else:
                beta = 1.0
            _es, _d, qsatg, qsatgdt = qsat(t_grnd[c, m], forc_pbot[c, m])
            qg = qred * qsatg
            dqgdt = qred * qsatgdt
            if qsatg > forc_q[c, m] and forc_q[c, m] > qred * qsatg:
                qg = forc_q[c, m]
                dqgdt = 0.0
            out_qg[c, m] = qg
            out_dqgdt[c, m] = dqgdt
            out_soilalpha[c, m] = qred
            out_soilbeta[c, m] = beta
            if sfc_liq[c, m] <= 0.0 and sfc_ice[c, m] > 0.0:
                out_htvp[c, m] = HSUB
            else:
                out_htvp[c, m] = HVAP
            out_z0mg[c, m] = Z0_SNOW if fsno > 0.0 else Z0_SOIL


@njit
def air_density(forc_t, forc_q, forc_pbot):
    """Moist air density (kg/m3) as CLM's atmosphere-land interface computes it:
    (p - 0.378 e) / (R_d T), e = q p / (0.622 + 0.378 q)."""
    vp = forc_q * forc_pbot / (0.622 + 0.378 * forc_q)
    return (forc_pbot - 0.378 * vp) / (RAIR * forc_t)


@njit
def canopy_fluxes(patch_col, patch_pft, forc_t, forc_q, forc_pbot, forc_wind, forc_lwrad, t_grnd, qg, dqgdt,
                  soilbeta, htvp, z0mg, emg, snowdp, elai, esai, htop, sabv, sabg, emv, laisun, laisha, parsun,
                  parsha, btran, h2ocan, fwet, fdry, t_veg, forc_hgt, co2_ppmv, dt, pft, cons,
                  out_t_veg, out_h2ocan, out_fsh, out_fsh_v, out_fsh_g, out_eflx_lh_tot, out_fctr, out_fcev,
                  out_fgev, out_qflx_tran_veg, out_qflx_evap_can, out_qflx_evap_soi, out_fgr, out_fira,
                  out_lwnet_veg, out_lwnet_grnd, out_tsa, out_q2m, out_rh2m, out_rssun, out_rssha,
                  out_psnsun, out_psnsha, out_fpsn, out_gpp, out_cgrnd, out_ustar, out_err_veg, out_niter,
                  out_cgrndl):
    """Surface fluxes of every patch and member: the vegetated solution (CLM4 section 5.3) where the
    exposed elai + esai >= 0.05 and the PFT is vegetated, the bare-ground solution (section 5.2)
    otherwise (bare soil, leafless and stemless or snow-buried canopies).

    Indices: patch_col, patch_pft (npatch,) int.
    Column forcing (ncol, nmem): forc_t air temperature (K), forc_q specific humidity (kg/kg), forc_pbot
    pressure (Pa), forc_wind wind speed (m/s), forc_lwrad downward longwave (W/m2). The potential
    temperature is taken equal to forc_t (surface pressure = forcing pressure, as CLM offline).
    Column ground state (ncol, nmem), from :func:`ground_surface_state` and the longwave/snow modules:
    t_grnd (K), qg (kg/kg), dqgdt (1/K), soilbeta (1), htvp (J/kg), z0mg (m), emg ground emissivity (1),
    snowdp snow depth (m).
    Patch state (npatch, nmem): elai, esai exposed LAI and SAI (m2/m2), htop canopy top height (m),
    sabv, sabg shortwave absorbed by vegetation and ground (W/m2), emv canopy emissivity (1), laisun,
    laisha sunlit/shaded LAI (m2/m2), parsun, parsha PAR absorbed per unit sunlit/shaded leaf area
    (W/m2), btran (1), h2ocan canopy water after interception (mm), fwet, fdry (1), t_veg vegetation
    temperature at the start of the step (K; first guess of the iteration).
    Scalars: forc_hgt forcing height above the roughness sublayer (m; CLM adds z0m + d), co2_ppmv CO2
    (umol/mol), dt time step (s), pft = ``pft_record()``, cons = ``constants_record()``.

    On bare-ground patches any ``sabv`` given (CLM4's radiation gives 0 there) is absorbed by the ground.

    Fills (npatch, nmem): out_t_veg (K; forc_t on bare patches, as CLM), out_h2ocan (mm, after canopy
    evaporation and dew), out_fsh = out_fsh_v + out_fsh_g (W/m2), out_eflx_lh_tot = out_fctr +
    out_fcev + out_fgev (W/m2: transpiration, canopy evaporation, ground evaporation),
    out_qflx_tran_veg, out_qflx_evap_can (evaporation minus dew of intercepted water), out_qflx_evap_soi
    (mm/s, + up), out_fgr ground heat flux (W/m2, + into the ground), out_fira net longwave (W/m2,
    + up), out_lwnet_veg, out_lwnet_grnd net longwave absorbed by canopy and ground (W/m2), out_tsa
    (K), out_q2m (kg/kg), out_rh2m (%), out_rssun, out_rssha (s/m), out_psnsun, out_psnsha
    (umol CO2 m-2 leaf s-1), out_fpsn (umol CO2 m-2 s-1), out_gpp (gC m-2 s-1), out_cgrnd
    (d(H_g + lambda E_g)/dT_g, W m-2 K-1, for the soil temperature solve), out_ustar (m/s),
    out_err_veg (canopy energy residual before it is added to FSH_V, W/m2), out_niter (iterations),
    out_cgrndl (d(E_g)/dT_g, kg m-2 s-1 K-1 = mm s-1 K-1, CLM's ``cgrndl``: the latent part of
    out_cgrnd is htvp out_cgrndl, the sensible part out_cgrnd - htvp out_cgrndl; the driver moves
    the ground fluxes to the new T_g with them after the soil temperature solve, as CLM4.0
    ``Biogeophysics2`` does).
    """
    npatch, nmem = elai.shape
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        for m in range(nmem):
            pbot = forc_pbot[c, m]
            q = forc_q[c, m]
            th = forc_t[c, m]
            tg = t_grnd[c, m]
            lw = forc_lwrad[c, m]
            eg = emg[c, m]
            rho = air_density(forc_t[c, m], q, pbot)
            thv = th * (1.0 + 0.61 * q)
            ur = max(1.0, forc_wind[c, m])
            vai = elai[p, m] + esai[p, m]
            if ivt > 0 and vai >= VAI_MIN and htop[p, m] > 0.0:
                # ---------------- vegetated surface (CLM4.0 CanopyFluxes) ----------------
                z0mr = pft.z0mr[ivt]
                hgt = forc_hgt + z0mr * htop[p, m] + pft.displar[ivt] * htop[p, m]
                thm = forc_t[c, m] + 0.0098 * hgt
                z0mv, displa = canopy_roughness(z0mr, pft.displar[ivt], htop[p, m], elai[p, m], esai[p, m],
                                                z0mg[c, m])
                zldis = hgt - displa
                ev = emv[p, m]
                air = ev * (1.0 + (1.0 - ev) * (1.0 - eg)) * lw
                bir = -(2.0 - ev * (1.0 - eg)) * ev * SB
                cir = ev * eg * SB
                tv = t_veg[p, m]
                el, _d, qsatl, qsatldt = qsat(tv, pbot)
                co2 = co2_ppmv * 1.0e-6 * pbot
                o2 = O2_MOLAR * pbot
                w_can = h2ocan[p, m]
                bt = btran[p, m]
                sv = sabv[p, m]
                taf = (tg + thm) / 2.0
                qaf = (q + qg[c, m]) / 2.0
                dth = thm - taf
                dqh = q - qaf
                delq = qg[c, m] - qaf
                dthv = dth * (1.0 + 0.61 * q) + 0.61 * th * dqh
                um, obu = monin_obukhov_ini(ur, thv, dthv, zldis, z0mv)
                dleaf = pft.dleaf[ivt]
                w_ext = math.exp(-vai)
                fsno_dl = snowdp[c, m] / _Z_DL
                elai_dl = _LAI_DL * (1.0 - min(fsno_dl, 1.0))
                # iteration-invariant factors of cfl, rdl and the log-law part of the profiles
                sqrt_dleaf = math.sqrt(dleaf)
                exp_elai_dl = math.exp(-elai_dl)
                ln_zldis_z0 = math.log(zldis / z0mv)
                del_ = 0.0
                efeb = 0.0
                obuold = 0.0
                nmozsgn = 0
                itlef = 0
                # values carried out of the loop
                tlbef = tv
                dt_veg = 0.0
                ustar = 0.0
                temp1 = 0.0
                temp2 = 0.0
                obu_fv = obu
                wtg = 0.0
                wtal = 0.0
                wtl0 = 0.0
                wta0 = 0.0
                wtgq = 0.0
                wtalq = 0.0
                rssun = 0.0
                rssha = 0.0
                psnsun = 0.0
                psnsha = 0.0
                evap_veg = 0.0
                tran = 0.0
                sh_veg = 0.0
                while itlef <= ITMAX:
                    ustar, temp1 = momentum_and_heat_profiles_ln(zldis, z0mv, obu, um, ln_zldis_z0)
                    temp2 = temp1  # z0q = z0h and equal forcing heights
                    obu_fv = obu
                    tlbef = tv
                    del2 = del_
                    ram1 = um / (ustar * ustar)
                    rah1 = 1.0 / (temp1 * ustar)
                    raw1 = 1.0 / (temp2 * ustar)
                    uaf = um * math.sqrt(1.0 / (ram1 * um))
                    cfl = 0.01 / (math.sqrt(uaf) * sqrt_dleaf)
                    rb = 1.0 / (cfl * uaf)
                    csoilb = VKC / (0.13 * (z0mg[c, m] * uaf / KVISC) ** 0.45)
                    ri = (GRAV * htop[p, m] * (taf - tg)) / (taf * uaf * uaf)
                    if taf - tg > 0.0:
                        ricsoilc = CSOILC / (1.0 + _RIA * min(ri, 10.0))
                        csoilcn = csoilb * w_ext + ricsoilc * (1.0 - w_ext)
                    else:
                        csoilcn = csoilb * w_ext + CSOILC * (1.0 - w_ext)
                    rah2 = 1.0 / (csoilcn * uaf)
                    raw2 = rah2
                    eah = pbot * qaf / 0.622
                    rssun, psnsun, _cisun, rssha, psnsha, _cisha = stomata_sun_shade(
                        parsun[p, m], parsha[p, m], tv, el, eah, o2, co2, rb, bt, pbot, thm, ivt, pft, cons)
                    wta = 1.0 / rah1
                    wtl = vai / rb
                    wtg = 1.0 / rah2
                    wtshi = 1.0 / (wta + wtl + wtg)
                    wtl0 = wtl * wtshi
                    wtg0 = wtg * wtshi
                    wta0 = wta * wtshi
                    wtga = wta0 + wtg0
                    wtal = wta0 + wtl0
                    if fdry[p, m] > 0.0:
                        rppdry = (fdry[p, m] * rb * (laisun[p, m] / (rb + rssun) + laisha[p, m] / (rb + rssha))
                                  / elai[p, m])
                    else:
                        rppdry = 0.0
                    efpot = rho * wtl * (qsatl - qaf)
                    if efpot > 0.0:
                        if bt > 0.0:
                            tran = efpot * rppdry
                            rpp = rppdry + fwet[p, m]
                        else:
                            rpp = fwet[p, m]
                            tran = 0.0
                        rpp = min(rpp, (tran + w_can / dt) / efpot)
                    else:
                        rpp = 1.0
                        tran = 0.0
                    wtaq = 1.0 / raw1
                    wtlq = vai / rb * rpp
                    rdl = (1.0 - exp_elai_dl) / (0.004 * uaf)
                    if delq < 0.0:
                        wtgq = 1.0 / (raw2 + rdl)
                    else:
                        wtgq = soilbeta[c, m] / (raw2 + rdl)
                    wtsqi = 1.0 / (wtaq + wtlq + wtgq)
                    wtgq0 = wtgq * wtsqi
                    wtlq0 = wtlq * wtsqi
                    wtaq0 = wtaq * wtsqi
                    wtgaq = wtaq0 + wtgq0
                    wtalq = wtaq0 + wtlq0
                    dc1 = rho * CPAIR * wtl
                    dc2 = HVAP * rho * wtlq
                    efsh = dc1 * (wtga * tv - wtg0 * tg - wta0 * thm)
                    efe = dc2 * (wtgaq * qsatl - wtgq0 * qg[c, m] - wtaq0 * q)
                    erre = 0.0
                    if efe * efeb < 0.0:
                        efeold = efe
                        efe = 0.1 * efeold
                        erre = efe - efeold
                    dt_veg = ((sv + air + bir * tv ** 4 + cir * tg ** 4 - efsh - efe)
                              / (-4.0 * bir * tv ** 3 + dc1 * wtga + dc2 * wtgaq * qsatldt))
                    tv = tlbef + dt_veg
                    dels = dt_veg
                    del_ = abs(dels)
                    err = 0.0
                    if del_ > _DELMAX:
                        dt_veg = _DELMAX * dels / del_
                        tv = tlbef + dt_veg
                        err = (sv + air + bir * tlbef ** 3 * (tlbef + 4.0 * dt_veg) + cir * tg ** 4
                               - (efsh + dc1 * wtga * dt_veg) - (efe + dc2 * wtgaq * qsatldt * dt_veg))
                    efpot = rho * wtl * (wtgaq * (qsatl + qsatldt * dt_veg) - wtgq0 * qg[c, m] - wtaq0 * q)
                    evap_veg = rpp * efpot
                    if efpot > 0.0 and bt > 0.0:
                        tran = efpot * rppdry
                    else:
                        tran = 0.0
                    ecidif = max(0.0, evap_veg - tran - w_can / dt)
                    evap_veg = min(evap_veg, tran + w_can / dt)
                    sh_veg = efsh + dc1 * wtga * dt_veg + err + erre + HVAP * ecidif
                    el, _d, qsatl, qsatldt = qsat(tv, pbot)
                    taf = wtg0 * tg + wta0 * thm + wtl0 * tv
                    qaf = wtlq0 * qsatl + wtgq0 * qg[c, m] + q * wtaq0
                    dth = thm - taf
                    dqh = q - qaf
                    delq = wtalq * qg[c, m] - wtlq0 * qsatl - wtaq0 * q
                    tstar = temp1 * dth
                    qstar = temp2 * dqh
                    thvstar = tstar * (1.0 + 0.61 * q) + 0.61 * th * qstar
                    um, obu = update_obukhov(zldis, ustar, thvstar, thv, ur)
                    if obuold * obu < 0.0:
                        nmozsgn += 1
                    if nmozsgn >= 4:
                        obu = zldis / (-0.01)
                    obuold = obu
                    itlef += 1
                    if itlef > _ITMIN:
                        dele = abs(efe - efeb)
                        efeb = efe
                        det = max(del_, del2)
                        if det < _DTMIN and dele < _DLEMIN:
                            break
                # 2-m profile of the last iteration (CLM computes it inside FrictionVelocity every pass)
                temp12m = VKC / profile_scalar(2.0 + z0mv, z0mv, obu_fv)
                temp22m = temp12m
                # canopy water after evaporation / dew; round-off below zero goes to the sensible heat
                w_new = w_can + (tran - evap_veg) * dt
                if w_new < 0.0:
                    evap_new = tran + w_can / dt
                    sh_veg += HVAP * (evap_veg - evap_new)
                    evap_veg = evap_new
                    w_new = 0.0
                lv_lin = SB * tlbef ** 3 * (tlbef + 4.0 * dt_veg)  # linearised sigma T_v^4 (CLM)
                lwnet_veg = air + bir / SB * lv_lin + cir * tg ** 4
                err_v = sv + lwnet_veg - sh_veg - HVAP * evap_veg
                sh_veg += err_v  # close the canopy energy balance (round-off)
                delt = wtal * tg - wtl0 * tv - wta0 * thm
                sh_grnd = CPAIR * rho * wtg * delt
                evap_soi = rho * wtgq * delq
                t2m = thm + temp1 * dth * (1.0 / temp12m - 1.0 / temp1)
                q2m = q + temp2 * dqh * (1.0 / temp22m - 1.0 / temp2)
                dlrad = (1.0 - ev) * eg * lw + ev * eg * lv_lin
                ulrad = ((1.0 - eg) * (1.0 - ev) * (1.0 - ev) * lw + ev * (1.0 + (1.0 - eg) * (1.0 - ev)) * lv_lin
                         + eg * (1.0 - ev) * SB * tg ** 4)
                lwnet_grnd = dlrad - eg * SB * tg ** 4
                sabg_eff = sabg[p, m]
                cgrnds = CPAIR * rho * wtg * wtal
                cgrndl = rho * wtgq * wtalq * dqgdt[c, m]
                out_t_veg[p, m] = tv
                out_h2ocan[p, m] = w_new
                out_fsh_v[p, m] = sh_veg
                out_qflx_tran_veg[p, m] = tran
                out_qflx_evap_can[p, m] = evap_veg - tran
                out_fctr[p, m] = HVAP * tran
                out_fcev[p, m] = HVAP * (evap_veg - tran)
                out_fira[p, m] = ulrad - lw
                out_lwnet_veg[p, m] = lwnet_veg
                out_rssun[p, m] = rssun
                out_rssha[p, m] = rssha
                out_psnsun[p, m] = psnsun
                out_psnsha[p, m] = psnsha
                fpsn = psnsun * laisun[p, m] + psnsha * laisha[p, m]
                out_fpsn[p, m] = fpsn
                out_gpp[p, m] = fpsn * GC_PER_UMOL
                out_err_veg[p, m] = err_v
                out_niter[p, m] = itlef
            else:
                # ---------------- bare ground (CLM4.0 BareGroundFluxes) ----------------
                hgt = forc_hgt + z0mg[c, m]
                thm = forc_t[c, m] + 0.0098 * hgt
                zldis = hgt
                z0m = z0mg[c, m]
                z0h = z0m
                dth = thm - tg
                dqh = q - qg[c, m]
                dthv = dth * (1.0 + 0.61 * q) + 0.61 * th * dqh
                um, obu = monin_obukhov_ini(ur, thv, dthv, zldis, z0m)
                ustar = 0.0
                temp1 = 0.0
                temp2 = 0.0
                temp12m = 0.0
                temp22m = 0.0
                for _it in range(_NITER_BARE):
                    ustar, temp1, temp2, temp12m, temp22m = friction_velocity(zldis, z0m, z0h, z0h, obu, um)
                    tstar = temp1 * dth
                    qstar = temp2 * dqh
                    z0h = z0m / math.exp(0.13 * (ustar * z0m / KVISC) ** 0.45)
                    thvstar = tstar * (1.0 + 0.61 * q) + 0.61 * th * qstar
                    um, obu = update_obukhov(zldis, ustar, thvstar, thv, ur)
                rah = 1.0 / (temp1 * ustar)
                raw = 1.0 / (temp2 * ustar)
                raih = rho * CPAIR / rah
                if dqh > 0.0:
                    raiw = rho / raw
                else:
                    raiw = soilbeta[c, m] * rho / raw
                cgrnds = raih
                cgrndl = raiw * dqgdt[c, m]
                sh_grnd = -raih * dth
                evap_soi = -raiw * dqh
                t2m = thm + temp1 * dth * (1.0 / temp12m - 1.0 / temp1)
                q2m = q + temp2 * dqh * (1.0 / temp22m - 1.0 / temp2)
                lwnet_grnd = eg * lw - eg * SB * tg ** 4
                sabg_eff = sabg[p, m] + sabv[p, m]  # no canopy: any canopy shortwave reaches the ground
                out_t_veg[p, m] = forc_t[c, m]
                out_h2ocan[p, m] = h2ocan[p, m]
                out_fsh_v[p, m] = 0.0
                out_qflx_tran_veg[p, m] = 0.0
                out_qflx_evap_can[p, m] = 0.0
                out_fctr[p, m] = 0.0
                out_fcev[p, m] = 0.0
                out_fira[p, m] = -lwnet_grnd
                out_lwnet_veg[p, m] = 0.0
                out_rssun[p, m] = cons.rsmax0
                out_rssha[p, m] = cons.rsmax0
                out_psnsun[p, m] = 0.0
                out_psnsha[p, m] = 0.0
                out_fpsn[p, m] = 0.0
                out_gpp[p, m] = 0.0
                out_err_veg[p, m] = 0.0
                out_niter[p, m] = _NITER_BARE
            # ---------------- common: ground balance and diagnostics ----------------
            out_fsh_g[p, m] = sh_grnd
            out_fsh[p, m] = out_fsh_v[p, m] + sh_grnd
            out_qflx_evap_soi[p, m] = evap_soi
            out_fgev[p, m] = htvp[c, m] * evap_soi
            out_eflx_lh_tot[p, m] = out_fctr[p, m] + out_fcev[p, m] + out_fgev[p, m]
            out_lwnet_grnd[p, m] = lwnet_grnd
            out_fgr[p, m] = sabg_eff + lwnet_grnd - sh_grnd - htvp[c, m] * evap_soi
            out_tsa[p, m] = t2m
            out_q2m[p, m] = q2m
            _e2, _d2, qs2m, _dq2 = qsat(t2m, pbot)
            out_rh2m[p, m] = min(100.0, q2m / qs2m * 100.0)
            out_cgrnd[p, m] = cgrnds + cgrndl * htvp[c, m]
            out_cgrndl[p, m] = cgrndl
            out_ustar[p, m] = ustar


__all__ = [
    "CSOILC", "ITMAX", "air_density", "canopy_fluxes",
    "field_capacity", "ground_surface_state",
]
