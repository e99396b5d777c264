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

import numpy as np

from kernels._jit import njit
from kernels.physics.constants import (
    CPAIR, DENH2O, DENICE, GRAV, HSUB, HVAP, RAIR, RGAS_MOL, RWAT, SB, SMPMIN, TFRZ, VAI_MIN, VKC,
)
from kernels.physics.friction_velocity import (
    Z0_SNOW,
    Z0_SOIL,
    canopy_roughness_lanes,
    monin_obukhov_ini_lanes,
    profile_momentum_ln_lanes,
    profile_scalar_ln_lanes,
    profiles_ln_lanes,
    profiles_ln_stable_lanes,
    update_obukhov_lanes,
)
from kernels.physics.photosynthesis import GC_PER_UMOL, O2_MOLAR, ci_iteration_lane, f_high_temperature, f_q10_ln
from kernels.physics.saturation import qsat_lane
from kernels.vmath import vexp, vlog, vpow

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
#: Members iterated together (lanes of the T_v iteration: four AVX-512 registers of 8 doubles).
_LANES = 32


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
        # branch-free member loops (kernels.vmath power and exponential, qsat_lane; each loop touches few
        # arrays, so that the compiler vectorises it); the cosine of the soil beta only in a last loop
        # over the members drier than field capacity, if there are any
        anydry = False
        for m in range(nmem):
            wx = (h2osoi_liq[c, 0, m] / DENH2O + h2osoi_ice[c, 0, m] / DENICE) / dz[c, 0]
            fac = max(min(1.0, wx / watsat[c, 0]), 0.01)
            psit = max(SMPMIN, -sucsat[c, 0] * vpow(fac, -bsw[c, 0]))
            hr = vexp(psit / roverg / t_grnd[c, m])
            fsno = frac_sno[c, m]
            out_soilalpha[c, m] = (1.0 - fsno) * hr + fsno
            dry = wx < watfc[c, 0]
            anydry |= dry
            # soil beta: 1 at or above field capacity; below it, -theta_1/theta_fc for the last loop
            out_soilbeta[c, m] = -max(min(1.0, wx / watfc[c, 0]), 0.01) if dry else 1.0
        for m in range(nmem):
            qred = out_soilalpha[c, m]
            _es, qsatg, qsatgdt = qsat_lane(t_grnd[c, m], forc_pbot[c, m])
            fq = forc_q[c, m]
            lim = (qsatg > fq) & (fq > qred * qsatg)
            out_qg[c, m] = fq if lim else qred * qsatg
            out_dqgdt[c, m] = 0.0 if lim else qred * qsatgdt
        for m in range(nmem):
            out_htvp[c, m] = HSUB if (sfc_liq[c, m] <= 0.0) & (sfc_ice[c, m] > 0.0) else HVAP
            out_z0mg[c, m] = Z0_SNOW if frac_sno[c, m] > 0.0 else Z0_SOIL
        if anydry:
            for m in range(nmem):
                if out_soilbeta[c, m] < 0.0:  # -theta_1/theta_fc of a member below field capacity
                    fsno = frac_sno[c, m]
                    out_soilbeta[c, m] = (1.0 - fsno) * 0.25 * (1.0 - math.cos(-math.pi * out_soilbeta[c, m])) ** 2 + fsno


@njit
def air_density(forc_t, forc_q, forc_pbot):
    """Moist air density (kg/m3) as CLM's atmosphere-land interface computes it:
    (p - 0.378 e) / (R_d T), e = q p / (0.622 + 0.378 q)."""
    vp = forc_q * forc_pbot / (0.622 + 0.378 * forc_q)
    return (forc_pbot - 0.378 * vp) / (RAIR * forc_t)


#: Rows of the per-patch set-up block of :func:`_vegetated_setup`.
_S_RHO, _S_THV, _S_THM, _S_Z0MV, _S_ZLDIS, _S_LNZ, _S_CO2, _S_O2, _S_WEXT = 0, 1, 2, 3, 4, 5, 6, 7, 8
_S_AIR, _S_BIR, _S_CIR, _S_TG4, _S_TAF, _S_QAF, _S_DELQ, _S_EDL = 9, 10, 11, 12, 13, 14, 15, 16
_S_UR, _S_TV, _S_EL, _S_QSATL, _S_QSATLDT, _S_WCANDT, _S_UM, _S_OBU = 17, 18, 19, 20, 21, 22, 23, 24
_S_ROWS = 25


@njit
def _vegetated_setup(p, c, z0mr, displar, forc_t, forc_q, forc_pbot, forc_wind, forc_lwrad, t_grnd, qg, emg, z0mg,
                     snowdp, elai, esai, htop, emv, t_veg, h2ocan, forc_hgt, co2_ppmv, dt, sblk):
    """CLM4.0 CanopyFluxes before the T_v iteration, for every member of patch ``p`` (column ``c``, PFT
    roughness ratios z0mr, displar): the iteration's invariants and first guesses into the rows _S_* of
    ``sblk`` (_S_ROWS, nmem). Three branch-free member loops (``kernels.vmath``, ``qsat_lane``), each
    reading at most seven input arrays besides ``sblk``, so that the compiler vectorises them; members
    that are not vegetated get values that are not used."""
    nmem = sblk.shape[1]
    s_rho = sblk[_S_RHO]
    s_thv = sblk[_S_THV]
    s_thm = sblk[_S_THM]
    s_z0mv = sblk[_S_Z0MV]
    s_zldis = sblk[_S_ZLDIS]
    s_lnz = sblk[_S_LNZ]
    s_co2 = sblk[_S_CO2]
    s_o2 = sblk[_S_O2]
    s_wext = sblk[_S_WEXT]
    s_air = sblk[_S_AIR]
    s_bir = sblk[_S_BIR]
    s_cir = sblk[_S_CIR]
    s_tg4 = sblk[_S_TG4]
    s_taf = sblk[_S_TAF]
    s_qaf = sblk[_S_QAF]
    s_delq = sblk[_S_DELQ]
    s_edl = sblk[_S_EDL]
    s_ur = sblk[_S_UR]
    s_tv = sblk[_S_TV]
    s_el = sblk[_S_EL]
    s_qsatl = sblk[_S_QSATL]
    s_qsatldt = sblk[_S_QSATLDT]
    s_wcandt = sblk[_S_WCANDT]
    s_um = sblk[_S_UM]
    s_obu = sblk[_S_OBU]
    # air, roughness and displacement of the sparse/dense canopy, forcing height above d
    for m in range(nmem):
        th = forc_t[c, m]
        q = forc_q[c, m]
        pbot = forc_pbot[c, m]
        ht = htop[p, m]
        s_rho[m] = air_density(th, q, pbot)
        s_thv[m] = th * (1.0 + 0.61 * q)
        hgt = forc_hgt + z0mr * ht + displar * ht
        s_thm[m] = th + 0.0098 * hgt
        z0mv, displa = canopy_roughness_lanes(z0mr, displar, ht, elai[p, m], esai[p, m], z0mg[c, m])
        s_z0mv[m] = z0mv
        zldis = hgt - displa
        s_zldis[m] = zldis
        s_lnz[m] = vlog(zldis / z0mv)
        s_co2[m] = co2_ppmv * 1.0e-6 * pbot
        s_o2[m] = O2_MOLAR * pbot
        s_wext[m] = vexp(-(elai[p, m] + esai[p, m]))
    # longwave coefficients, first guesses of the canopy air, litter
    for m in range(nmem):
        tg = t_grnd[c, m]
        eg = emg[c, m]
        ev = emv[p, m]
        s_air[m] = ev * (1.0 + (1.0 - ev) * (1.0 - eg)) * forc_lwrad[c, m]
        s_bir[m] = -(2.0 - ev * (1.0 - eg)) * ev * SB
        s_cir[m] = ev * eg * SB
        s_tg4[m] = tg ** 4
        s_taf[m] = (tg + s_thm[m]) / 2.0
        qgm = qg[c, m]
        qaf = (forc_q[c, m] + qgm) / 2.0
        s_qaf[m] = qaf
        s_delq[m] = qgm - qaf
        fsno_dl = snowdp[c, m] / _Z_DL
        s_edl[m] = vexp(-(_LAI_DL * (1.0 - min(fsno_dl, 1.0))))
    # leaf saturation humidity, canopy water rate, first Monin-Obukhov length (CLM4 MoninObukIni)
    for m in range(nmem):
        pbot = forc_pbot[c, m]
        q = forc_q[c, m]
        tv = t_veg[p, m]
        s_tv[m] = tv
        el, qsatl, qsatldt = qsat_lane(tv, pbot)
        s_el[m] = el
        s_qsatl[m] = qsatl
        s_qsatldt[m] = qsatldt
        s_wcandt[m] = h2ocan[p, m] / dt
        ur = max(1.0, forc_wind[c, m])
        s_ur[m] = ur
        thm = s_thm[m]
        dth = thm - s_taf[m]
        dqh = q - s_qaf[m]
        dthv = dth * (1.0 + 0.61 * q) + 0.61 * forc_t[c, m] * dqh
        um, obu = monin_obukhov_ini_lanes(ur, s_thv[m], dthv, s_zldis[m], s_lnz[m])
        s_um[m] = um
        s_obu[m] = obu


@njit
def canopy_fluxes(patch_col, patch_pft, forc_t, forc_q, forc_pbot, forc_wind, forc_lwrad, t_grnd, qg, dqgdt,
                  soilbeta, htvp, z0mg, emg, snowdp, elai, esai, htop, sabv, sabg, emv, laisun, laisha, parsun,
                  parsha, slasun, slasha, fdayl, btran, h2ocan, fwet, fdry, t_veg, forc_hgt, co2_ppmv, dt, pft, cons,
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
    (W/m2), slasun, slasha mean specific leaf area of the sunlit/shaded leaves (m2 gC-1,
    ``canopy_radiation.sunlit_shaded_sla``), btran (1), h2ocan canopy water after interception (mm),
    fwet, fdry (1), t_veg vegetation temperature at the start of the step (K; first guess of the
    iteration).
    fdayl[c]: the column's day-length factor of Vcmax (``photosynthesis.dayl_factor``).
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

    Implementation: the T_v iterations of the vegetated members of all patches are streamed through
    ``_LANES`` lanes (fixed-width lane loops that the compiler vectorises: the exponentials, logarithms
    and powers are ``kernels.vmath``'s, plain arithmetic, and every phase runs over all lanes, stopped
    ones included, whose results are then ignored); a lane whose member stops is loaded with the next
    waiting member before the next pass, so lanes idle only at the end of the call. 32 lanes (four
    AVX-512 vectors per phase) let the core overlap the latency-bound polynomial chains of independent
    vectors: 0.70 -> 0.57 us per patch-member-step against 8 lanes in lockstep per patch (measured on
    the physics benchmark's case). Every member does exactly the operations of its own member-by-member
    iteration, including its own number of passes and stopping test, so the results are bit-identical
    to iterating one member after the other (no fast-math, no reassociation; tested). A pass in which
    every lane is stable skips the unstable profile regimes, and one in which no lane absorbs PAR skips
    photosynthesis (the same values). The set-up of a patch's members (:func:`_vegetated_setup`), the
    bare-ground stability passes, the 2-m profile and RH2M run as vectorised member loops per patch;
    each such loop touches few arrays (rows of one block count as one), because LLVM does not
    vectorise a loop that needs too many run-time overlap checks between arrays.
    """
    npatch, nmem = elai.shape
    # Streamed layout (results bit-identical to iterating one member after the other): the vegetated
    # members of all patches are queued (items, in patch order) and streamed through _LANES lanes (lane
    # buffers L_*); when the stream reaches a patch, the set-up of all its members is computed into a
    # small block (vectorised), from which each member is loaded into a lane; each lane does exactly its
    # member's sequence of iterations and stopping test, and a lane that stops writes its values back
    # into the (npatch, nmem) arrays a_*, from which the per-member results are formed, and takes the
    # next member.
    items = np.empty(npatch * nmem, dtype=np.int64)  # p * nmem + m of the vegetated members, in order
    isveg = np.zeros((npatch, nmem), dtype=np.bool_)
    # per member, written when the member's iteration stops, used after the loop: its set-up values
    a_thm = np.empty((npatch, nmem))
    a_z0mv = np.empty((npatch, nmem))
    a_air = np.empty((npatch, nmem))
    a_bir = np.empty((npatch, nmem))
    a_cir = np.empty((npatch, nmem))
    a_rho = np.empty((npatch, nmem))
    a_tv = np.empty((npatch, nmem))
    a_delq = np.empty((npatch, nmem))
    # values of the last iteration (written back when a member stops; used after the loop)
    a_itlef = np.empty((npatch, nmem), dtype=np.int64)
    a_tlbef = np.empty((npatch, nmem))
    a_dtveg = np.empty((npatch, nmem))
    a_ustar = np.empty((npatch, nmem))
    a_temp1 = np.empty((npatch, nmem))
    a_obufv = np.empty((npatch, nmem))
    a_wtg = np.empty((npatch, nmem))
    a_wtal = np.empty((npatch, nmem))
    a_wtl0 = np.empty((npatch, nmem))
    a_wta0 = np.empty((npatch, nmem))
    a_wtgq = np.empty((npatch, nmem))
    a_wtalq = np.empty((npatch, nmem))
    a_rssun = np.empty((npatch, nmem))
    a_rssha = np.empty((npatch, nmem))
    a_psnsun = np.empty((npatch, nmem))
    a_psnsha = np.empty((npatch, nmem))
    a_evap = np.empty((npatch, nmem))
    a_tran = np.empty((npatch, nmem))
    a_shveg = np.empty((npatch, nmem))
    a_dth = np.empty((npatch, nmem))
    a_dqh = np.empty((npatch, nmem))
    # lane buffers of the streamed iteration: one row per quantity, one column per lane; a single
    # (rows, _LANES) block so that the lane rows are provably disjoint (ones: lanes that never get a
    # member, when there are fewer than _LANES, compute on harmless finite values)
    lanes = np.ones((92, _LANES))
    # trip count of the compute phases' lane loops, read from the array so that it is not a compile-time
    # constant: LLVM fully unrolls constant 8-trip loops and then leaves them scalar, but vectorises these
    nlane = lanes.shape[1]
    ln_q10act = vlog(cons.q10act)  # photosynthesis.f_q10's logarithms, once
    ln_akc = vlog(cons.akc)
    ln_ako = vlog(cons.ako)
    L_pbot = lanes[0]
    L_q = lanes[1]
    L_th = lanes[2]
    L_tg = lanes[3]
    L_qg = lanes[4]
    L_sbeta = lanes[5]
    L_z0mg = lanes[6]
    L_htop = lanes[7]
    L_vai = lanes[8]
    L_elai = lanes[9]
    L_lsun = lanes[10]
    L_lsha = lanes[11]
    L_psun = lanes[12]
    L_psha = lanes[13]
    L_fdry = lanes[14]
    L_fwet = lanes[15]
    L_bt = lanes[16]
    L_sv = lanes[17]
    L_zldis = lanes[18]
    L_z0mv = lanes[19]
    L_lnz = lanes[20]
    L_thm = lanes[21]
    L_thv = lanes[22]
    L_ur = lanes[23]
    L_rho = lanes[24]
    L_air = lanes[25]
    L_bir = lanes[26]
    L_cir = lanes[27]
    L_tg4 = lanes[28]
    L_wcandt = lanes[29]
    L_wext = lanes[30]
    L_edl = lanes[31]
    L_co2 = lanes[32]
    L_o2 = lanes[33]
    L_cf = lanes[34]
    L_rsn = lanes[35]
    L_tv = lanes[36]
    L_el = lanes[37]
    L_qsatl = lanes[38]
    L_qsatldt = lanes[39]
    L_taf = lanes[40]
    L_qaf = lanes[41]
    L_delq = lanes[42]
    L_um = lanes[43]
    L_obu = lanes[44]
    L_del = lanes[45]
    L_efeb = lanes[46]
    L_obuold = lanes[47]
    L_pq10 = lanes[48]
    L_f2 = lanes[49]
    L_pkc = lanes[50]
    L_pko = lanes[51]
    L_ustar = lanes[52]
    L_temp1 = lanes[53]
    L_obufv = lanes[54]
    L_tlbef = lanes[55]
    L_del2 = lanes[56]
    L_rah1 = lanes[57]
    L_uaf = lanes[58]
    L_rb = lanes[59]
    L_xcs = lanes[60]
    L_rah2 = lanes[61]
    L_rssun = lanes[62]
    L_psnsun = lanes[63]
    L_rssha = lanes[64]
    L_psnsha = lanes[65]
    L_shveg = lanes[66]
    L_evap = lanes[67]
    L_tran = lanes[68]
    L_efe = lanes[69]
    L_dtveg = lanes[70]
    L_wtg = lanes[71]
    L_wtal = lanes[72]
    L_wtl0 = lanes[73]
    L_wta0 = lanes[74]
    L_wtgq = lanes[75]
    L_wtalq = lanes[76]
    L_dth = lanes[77]
    L_dqh = lanes[78]
    L_thvstar = lanes[79]
    L_ssun = lanes[80]
    L_ssha = lanes[81]
    L_nmoz = lanes[82]
    L_itl = lanes[83]
    L_sqdl = lanes[84]
    L_lcn = lanes[85]
    L_fdl = lanes[86]
    L_flnr = lanes[87]
    L_c3 = lanes[88]
    L_mp = lanes[89]
    L_qe25 = lanes[90]
    L_stop = lanes[91]
    done = np.empty(_LANES, dtype=np.bool_)
    lp = np.empty(_LANES, dtype=np.int64)
    lm = np.empty(_LANES, dtype=np.int64)
    sqrt_dleaf = np.empty(npatch)  # iteration-invariant factor of cfl
    nveg = 0
    for p in range(npatch):
        c = patch_col[p]
        ivt = patch_pft[p]
        veg_pft = ivt > 0
        sqrt_dleaf[p] = math.sqrt(pft.dleaf[ivt])
        # ---------------- the vegetated members (their set-up is done when the stream reaches the patch) ----------------
        for m in range(nmem):
            veg = veg_pft and elai[p, m] + esai[p, m] >= VAI_MIN and htop[p, m] > 0.0
            isveg[p, m] = veg
            if veg:
                items[nveg] = p * nmem + m
                nveg += 1
            else:
                a_z0mv[p, m] = 1.0  # finite values for the vectorised 2-m profile loop (result unused)
                a_obufv[p, m] = 1.0
    # ---------------- the T_v iteration: the vegetated members of all patches streamed through _LANES lanes ----------------
    # Each lane is one member; the phases below run over all lanes, without calls or branches the compiler
    # cannot turn into selects, so that they vectorise; only the bookkeeping of (6) and the loading of
    # lanes are per lane. A lane that stops (CLM's convergence test or itlef > itmax) has its values
    # copied out at that iteration and is loaded with the next waiting member (of any patch) before the
    # next pass, so that no lane idles while members wait; lanes without a member (at the end) run on
    # with stale values that are ignored. CLM's ``do while (itlef <= itmax)``: every member enters with
    # itlef = 0 <= ITMAX.
    done[:] = True
    nrun = 0
    nxt = 0
    sblk = np.empty((_S_ROWS, nmem))  # set-up of the patch the stream is at
    p_setup = -1
    while True:
        for l in range(_LANES):
            if not done[l] or nxt >= nveg:
                continue
            k = items[nxt]
            nxt += 1
            p = k // nmem
            m = k - p * nmem
            c = patch_col[p]
            ivt = patch_pft[p]
            done[l] = False
            nrun += 1
            lp[l] = p
            lm[l] = m
            L_sqdl[l] = sqrt_dleaf[p]
            # per-PFT factors of photosynthesis.vcmax_leaf and _ci_iteration
            L_lcn[l] = pft.leafcn[ivt]
            L_fdl[l] = fdayl[c]
            L_flnr[l] = pft.flnr[ivt]
            L_c3[l] = pft.c3psn[ivt]
            L_mp[l] = pft.mp[ivt]
            L_qe25[l] = pft.qe25[ivt]
            if p != p_setup:  # the stream reaches patch p: set-up of all its members (vectorised)
                _vegetated_setup(p, c, pft.z0mr[ivt], pft.displar[ivt], forc_t, forc_q, forc_pbot, forc_wind, forc_lwrad,
                                 t_grnd, qg, emg, z0mg, snowdp, elai, esai, htop, emv, t_veg, h2ocan, forc_hgt, co2_ppmv,
                                 dt, sblk)
                p_setup = p
            pbot = forc_pbot[c, m]
            L_pbot[l] = pbot
            L_q[l] = forc_q[c, m]
            L_th[l] = forc_t[c, m]
            L_tg[l] = t_grnd[c, m]
            L_qg[l] = qg[c, m]
            L_sbeta[l] = soilbeta[c, m]
            L_z0mg[l] = z0mg[c, m]
            L_htop[l] = htop[p, m]
            L_vai[l] = elai[p, m] + esai[p, m]
            L_elai[l] = elai[p, m]
            L_lsun[l] = laisun[p, m]
            L_lsha[l] = laisha[p, m]
            L_psun[l] = parsun[p, m]
            L_psha[l] = parsha[p, m]
            L_ssun[l] = slasun[p, m]
            L_ssha[l] = slasha[p, m]
            L_fdry[l] = fdry[p, m]
            L_fwet[l] = fwet[p, m]
            L_bt[l] = btran[p, m]
            L_sv[l] = sabv[p, m]
            L_zldis[l] = sblk[_S_ZLDIS, m]
            L_z0mv[l] = sblk[_S_Z0MV, m]
            L_lnz[l] = sblk[_S_LNZ, m]
            thm = sblk[_S_THM, m]
            L_thm[l] = thm
            L_thv[l] = sblk[_S_THV, m]
            L_ur[l] = sblk[_S_UR, m]
            L_rho[l] = sblk[_S_RHO, m]
            L_air[l] = sblk[_S_AIR, m]
            L_bir[l] = sblk[_S_BIR, m]
            L_cir[l] = sblk[_S_CIR, m]
            L_tg4[l] = sblk[_S_TG4, m]
            L_wcandt[l] = sblk[_S_WCANDT, m]
            L_wext[l] = sblk[_S_WEXT, m]
            L_edl[l] = sblk[_S_EDL, m]
            L_co2[l] = sblk[_S_CO2, m]
            L_o2[l] = sblk[_S_O2, m]
            cf = pbot / (RGAS_MOL * thm) * 1.0e06  # stomata: s m2 umol-1 -> s/m (as stomata_sun_shade)
            L_cf[l] = cf
            L_rsn[l] = min(cons.rsmax0, cf / cons.bp)
            L_tv[l] = sblk[_S_TV, m]
            L_el[l] = sblk[_S_EL, m]
            L_qsatl[l] = sblk[_S_QSATL, m]
            L_qsatldt[l] = sblk[_S_QSATLDT, m]
            L_taf[l] = sblk[_S_TAF, m]
            L_qaf[l] = sblk[_S_QAF, m]
            L_delq[l] = sblk[_S_DELQ, m]
            L_um[l] = sblk[_S_UM, m]
            L_obu[l] = sblk[_S_OBU, m]
            L_del[l] = 0.0
            L_efeb[l] = 0.0
            L_obuold[l] = 0.0
            L_pq10[l] = 1.0
            L_f2[l] = 1.0
            L_pkc[l] = 1.0
            L_pko[l] = 1.0
            L_nmoz[l] = 0.0
            L_itl[l] = 0.0
        if nrun == 0:
            break
        # Passes in which every lane is stable (L > 0: mostly night) skip the unstable regimes of the
        # profiles, and passes in which no lane's leaves absorb PAR (night) skip the photosynthesis
        # phases; the lanes' values are the same as from the full forms (the same operations for the
        # regimes and cases that apply).
        unstable = False
        lit = False
        for l in range(_LANES):
            unstable |= L_obu[l] < 0.0
            lit |= (L_psun[l] > 0.0) | (L_psha[l] > 0.0)
        # (1) Monin-Obukhov profiles (all lanes: the profile functions use kernels.vmath, no calls)
        if unstable:
            for l in range(nlane):
                phim, phih = profiles_ln_lanes(L_zldis[l], L_z0mv[l], L_obu[l], L_lnz[l])
                L_ustar[l] = VKC * L_um[l] / phim
                L_temp1[l] = VKC / phih  # temp2 = temp1: z0q = z0h and equal forcing heights
        else:
            for l in range(nlane):
                phi = profiles_ln_stable_lanes(L_zldis[l], L_z0mv[l], L_obu[l], L_lnz[l])
                L_ustar[l] = VKC * L_um[l] / phi
                L_temp1[l] = VKC / phi
        # (2) aerodynamic and leaf boundary-layer resistances
        for l in range(nlane):
            L_obufv[l] = L_obu[l]
            L_tlbef[l] = L_tv[l]
            L_del2[l] = L_del[l]
            um = L_um[l]
            ustar = L_ustar[l]
            ram1 = um / (ustar * ustar)
            L_rah1[l] = 1.0 / (L_temp1[l] * ustar)  # = raw1 (temp2 = temp1)
            uaf = um * math.sqrt(1.0 / (ram1 * um))
            L_uaf[l] = uaf
            cfl = 0.01 / (math.sqrt(uaf) * L_sqdl[l])
            L_rb[l] = 1.0 / (cfl * uaf)
            L_xcs[l] = L_z0mg[l] * uaf / KVISC
        # (3) the powers and exponentials of the under-canopy resistance and of the leaf temperature
        # functions (all lanes; the latter used in (4) only where the leaves absorb PAR)
        for l in range(nlane):
            L_xcs[l] = vpow(L_xcs[l], 0.45)
        if lit:
            for l in range(nlane):
                tc = L_tv[l] - TFRZ
                L_pq10[l] = f_q10_ln(ln_q10act, tc)
                L_f2[l] = f_high_temperature(tc)
                L_pkc[l] = f_q10_ln(ln_akc, tc)
                L_pko[l] = f_q10_ln(ln_ako, tc)
        # (4) under-canopy resistance (Sakaguchi and Zeng 2009) and stomata (photosynthesis.stomata_sun_shade;
        # without absorbed PAR the stomata are at their minimum conductance and there is no photosynthesis)
        for l in range(nlane):
            uaf = L_uaf[l]
            tg = L_tg[l]
            taf = L_taf[l]
            csoilb = VKC / (0.13 * L_xcs[l])
            ri = (GRAV * L_htop[l] * (taf - tg)) / (taf * uaf * uaf)
            w_ext = L_wext[l]
            ricsoilc = CSOILC / (1.0 + _RIA * min(ri, 10.0))
            csoilcn = (csoilb * w_ext + ricsoilc * (1.0 - w_ext) if taf - tg > 0.0
                       else csoilb * w_ext + CSOILC * (1.0 - w_ext))
            L_rah2[l] = 1.0 / (csoilcn * uaf)
        if lit:
            for l in range(nlane):
                pbot = L_pbot[l]
                eah = pbot * L_qaf[l] / 0.622
                o2 = L_o2[l]
                co2 = L_co2[l]
                act25 = cons.act25 * 1000.0 / 60.0 * L_pq10[l]
                vsun = 1.0 / (L_ssun[l] * L_lcn[l]) * L_flnr[l] * cons.fnr * act25 / L_f2[l] * L_bt[l] * L_fdl[l]
                vsha = 1.0 / (L_ssha[l] * L_lcn[l]) * L_flnr[l] * cons.fnr * act25 / L_f2[l] * L_bt[l] * L_fdl[l]
                kc = cons.kc25 * L_pkc[l]
                ko = cons.ko25 * L_pko[l]
                awc = kc * (1.0 + o2 / ko)
                cp = 0.5 * kc / ko * o2 * 0.21
                ei = L_el[l]
                rb = L_rb[l]
                cf = L_cf[l]
                rsn = L_rsn[l]
                rs1, psn1 = ci_iteration_lane(L_psun[l], ei, eah, co2, rb, pbot, cf, vsun, awc, cp, L_c3[l], L_mp[l],
                                              L_qe25[l], cons.bp, cons.rsmax0)
                rs2, psn2 = ci_iteration_lane(L_psha[l], ei, eah, co2, rb, pbot, cf, vsha, awc, cp, L_c3[l], L_mp[l],
                                              L_qe25[l], cons.bp, cons.rsmax0)
                sun = L_psun[l] > 0.0
                sha = L_psha[l] > 0.0
                L_rssun[l] = rs1 if sun else rsn
                L_psnsun[l] = psn1 if sun else 0.0
                L_rssha[l] = rs2 if sha else rsn
                L_psnsha[l] = psn2 if sha else 0.0
        else:
            for l in range(nlane):
                L_rssun[l] = L_rsn[l]
                L_psnsun[l] = 0.0
                L_rssha[l] = L_rsn[l]
                L_psnsha[l] = 0.0
        # (5) canopy energy balance, Newton step of T_v, fluxes, canopy air, stability numerator
        for l in range(nlane):
            q = L_q[l]
            th = L_th[l]
            tg = L_tg[l]
            qgc = L_qg[l]
            rho = L_rho[l]
            thm = L_thm[l]
            tv = L_tv[l]
            qsatl = L_qsatl[l]
            qsatldt = L_qsatldt[l]
            qaf = L_qaf[l]
            rb = L_rb[l]
            vai = L_vai[l]
            bt = L_bt[l]
            w_can_dt = L_wcandt[l]
            rah2 = L_rah2[l]
            wta = 1.0 / L_rah1[l]
            wtl = vai / rb
            wtg = 1.0 / rah2
            wtshi = 1.0 / (wta + wtl + wtg)
            wtl0 = wtl * wtshi
            wtg0 = wtg * wtshi
            wta0 = wta * wtshi
            wtga = wta0 + wtg0
            wtal = wta0 + wtl0
            fd = L_fdry[l]
            rppdry_w = fd * rb * (L_lsun[l] / (rb + L_rssun[l]) + L_lsha[l] / (rb + L_rssha[l])) / L_elai[l]
            rppdry = rppdry_w if fd > 0.0 else 0.0
            efpot = rho * wtl * (qsatl - qaf)
            fw = L_fwet[l]
            tran0 = efpot * rppdry if bt > 0.0 else 0.0
            rpp0 = rppdry + fw if bt > 0.0 else fw
            rpp_lim = min(rpp0, (tran0 + w_can_dt) / efpot)
            rpp = rpp_lim if efpot > 0.0 else 1.0
            wtaq = 1.0 / L_rah1[l]
            wtlq = vai / rb * rpp
            rdl = (1.0 - L_edl[l]) / (0.004 * L_uaf[l])
            wtgq = 1.0 / (rah2 + rdl) if L_delq[l] < 0.0 else L_sbeta[l] / (rah2 + rdl)
            wtsqi = 1.0 / (wtaq + wtlq + wtgq)
            wtgq0 = wtgq * wtsqi
            wtlq0 = wtlq * wtsqi
            wtaq0 = wtaq * wtsqi
            wtgaq = wtaq0 + wtgq0
            wtalq = wtaq0 + wtlq0
            dc1 = rho * CPAIR * wtl
            dc2 = HVAP * rho * wtlq
            efsh = dc1 * (wtga * tv - wtg0 * tg - wta0 * thm)
            efe0 = dc2 * (wtgaq * qsatl - wtgq0 * qgc - wtaq0 * q)
            damp = efe0 * L_efeb[l] < 0.0
            efe = 0.1 * efe0 if damp else efe0
            erre = efe - efe0 if damp else 0.0
            sv = L_sv[l]
            air = L_air[l]
            bir = L_bir[l]
            cir = L_cir[l]
            tg4 = L_tg4[l]
            dt_veg0 = ((sv + air + bir * tv ** 4 + cir * tg4 - efsh - efe)
                       / (-4.0 * bir * tv ** 3 + dc1 * wtga + dc2 * wtgaq * qsatldt))
            tlbef = tv
            dels = dt_veg0
            del_ = abs(dels)
            big = del_ > _DELMAX
            dt_veg = _DELMAX * dels / del_ if big else dt_veg0
            tv = tlbef + dt_veg
            err_big = (sv + air + bir * tlbef ** 3 * (tlbef + 4.0 * dt_veg) + cir * tg4
                       - (efsh + dc1 * wtga * dt_veg) - (efe + dc2 * wtgaq * qsatldt * dt_veg))
            err = err_big if big else 0.0
            efpot = rho * wtl * (wtgaq * (qsatl + qsatldt * dt_veg) - wtgq0 * qgc - wtaq0 * q)
            evap_veg = rpp * efpot
            tran = efpot * rppdry if efpot > 0.0 and bt > 0.0 else 0.0
            ecidif = max(0.0, evap_veg - tran - w_can_dt)
            evap_veg = min(evap_veg, tran + w_can_dt)
            L_shveg[l] = efsh + dc1 * wtga * dt_veg + err + erre + HVAP * ecidif
            L_evap[l] = evap_veg
            L_tran[l] = tran
            L_efe[l] = efe
            L_del[l] = del_
            L_dtveg[l] = dt_veg
            L_tv[l] = tv
            L_wtg[l] = wtg
            L_wtal[l] = wtal
            L_wtl0[l] = wtl0
            L_wta0[l] = wta0
            L_wtgq[l] = wtgq
            L_wtalq[l] = wtalq
            el, qsatl, qsatldt = qsat_lane(tv, L_pbot[l])
            L_el[l] = el
            L_qsatl[l] = qsatl
            L_qsatldt[l] = qsatldt
            taf = wtg0 * tg + wta0 * thm + wtl0 * tv
            qaf = wtlq0 * qsatl + wtgq0 * qgc + q * wtaq0
            L_taf[l] = taf
            L_qaf[l] = qaf
            dth = thm - taf
            dqh = q - qaf
            L_dth[l] = dth
            L_dqh[l] = dqh
            L_delq[l] = wtalq * qgc - wtlq0 * qsatl - wtaq0 * q
            temp1 = L_temp1[l]
            tstar = temp1 * dth
            qstar = temp1 * dqh
            L_thvstar[l] = tstar * (1.0 + 0.61 * q) + 0.61 * th * qstar
        # (6) stability update with CLM's count of sign changes of L (nmozsgn; after 4, L is fixed to
        # the unstable limit), iteration count and CLM's stopping test (after at least _ITMIN + 1
        # passes: T_v changed < _DTMIN in the last two passes and the leaf latent heat < _DLEMIN; or
        # itlef > itmax), all lanes; the counts are small whole numbers kept exactly in float rows
        for l in range(nlane):
            um, obu = update_obukhov_lanes(L_zldis[l], L_ustar[l], L_thvstar[l], L_thv[l], L_ur[l])
            L_um[l] = um
            nmz = L_nmoz[l] + 1.0 if L_obuold[l] * obu < 0.0 else L_nmoz[l]
            L_nmoz[l] = nmz
            obu = L_zldis[l] / (-0.01) if nmz >= 4.0 else obu
            L_obu[l] = obu
            L_obuold[l] = obu
            itlef = L_itl[l] + 1.0
            L_itl[l] = itlef
            late = itlef > _ITMIN
            efe = L_efe[l]
            dele = abs(efe - L_efeb[l])
            L_efeb[l] = efe if late else L_efeb[l]
            det = max(L_del[l], L_del2[l])
            L_stop[l] = 1.0 if (itlef > ITMAX) | (late & (det < _DTMIN) & (dele < _DLEMIN)) else 0.0
        # lanes that stop: their values are copied out
        for l in range(_LANES):
            if done[l] or L_stop[l] == 0.0:
                continue
            itlef = int(L_itl[l])
            done[l] = True
            nrun -= 1
            p = lp[l]
            m = lm[l]
            a_itlef[p, m] = itlef
            a_rho[p, m] = L_rho[l]
            a_thm[p, m] = L_thm[l]
            a_z0mv[p, m] = L_z0mv[l]
            a_air[p, m] = L_air[l]
            a_bir[p, m] = L_bir[l]
            a_cir[p, m] = L_cir[l]
            a_tv[p, m] = L_tv[l]
            a_tlbef[p, m] = L_tlbef[l]
            a_dtveg[p, m] = L_dtveg[l]
            a_ustar[p, m] = L_ustar[l]
            a_temp1[p, m] = L_temp1[l]
            a_obufv[p, m] = L_obufv[l]
            a_wtg[p, m] = L_wtg[l]
            a_wtal[p, m] = L_wtal[l]
            a_wtl0[p, m] = L_wtl0[l]
            a_wta0[p, m] = L_wta0[l]
            a_wtgq[p, m] = L_wtgq[l]
            a_wtalq[p, m] = L_wtalq[l]
            a_rssun[p, m] = L_rssun[l]
            a_rssha[p, m] = L_rssha[l]
            a_psnsun[p, m] = L_psnsun[l]
            a_psnsha[p, m] = L_psnsha[l]
            a_evap[p, m] = L_evap[l]
            a_tran[p, m] = L_tran[l]
            a_shveg[p, m] = L_shveg[l]
            a_dth[p, m] = L_dth[l]
            a_dqh[p, m] = L_dqh[l]
            a_delq[p, m] = L_delq[l]
    # ---------------- per member: the vegetated results or the bare-ground solution ----------------
    # The bare-ground stability passes (CLM4.0 BareGroundFluxes) of a patch with bare members run for all
    # its members at once in vectorised member loops over the rows of one block (kernels.vmath forms of
    # the profiles; a pass in which every member is stable uses the stable-only form), before the member
    # loop that takes each member's result from the vegetated iteration or from these passes.
    bblk = np.empty((20, nmem))
    B_zl = bblk[0]
    B_z0m = bblk[1]
    B_lnzm = bblk[2]
    B_thv = bblk[3]
    B_ur = bblk[4]
    B_th = bblk[5]
    B_q = bblk[6]
    B_thm = bblk[7]
    B_dth = bblk[8]
    B_dqh = bblk[9]
    B_um = bblk[10]
    B_obu = bblk[11]
    B_z0h = bblk[12]
    B_lnzh = bblk[13]
    B_ustar = bblk[14]
    B_temp1 = bblk[15]
    B_z0hl = bblk[16]
    B_obul = bblk[17]
    B_temp12m = bblk[18]
    V_temp12m = bblk[19]
    for p in range(npatch):
        c = patch_col[p]
        anybare = False
        anyveg = False
        for m in range(nmem):
            anybare |= not isveg[p, m]
            anyveg |= isveg[p, m]
        if anyveg:
            # 2-m profile of the vegetated members' last iteration (CLM computes it inside FrictionVelocity
            # every pass)
            for m in range(nmem):
                z0mv = a_z0mv[p, m]
                V_temp12m[m] = VKC / profile_scalar_ln_lanes(2.0 + z0mv, z0mv, a_obufv[p, m], vlog((2.0 + z0mv) / z0mv))
        if anybare:
            for m in range(nmem):
                th = forc_t[c, m]
                q = forc_q[c, m]
                z0m = z0mg[c, m]
                hgt = forc_hgt + z0m
                thm = th + 0.0098 * hgt
                B_zl[m] = hgt  # zldis: no displacement over bare ground
                B_z0m[m] = z0m
                B_lnzm[m] = vlog(hgt / z0m)
                B_th[m] = th
                B_q[m] = q
                B_thv[m] = th * (1.0 + 0.61 * q)
                B_thm[m] = thm
                B_dth[m] = thm - t_grnd[c, m]
                B_dqh[m] = q - qg[c, m]
                B_ur[m] = max(1.0, forc_wind[c, m])
            for m in range(nmem):
                q = B_q[m]
                dthv = B_dth[m] * (1.0 + 0.61 * q) + 0.61 * B_th[m] * B_dqh[m]
                um, obu = monin_obukhov_ini_lanes(B_ur[m], B_thv[m], dthv, B_zl[m], B_lnzm[m])
                B_um[m] = um
                B_obu[m] = obu
                B_z0h[m] = B_z0m[m]
                B_lnzh[m] = B_lnzm[m]
            # CLM FrictionVelocity per pass (temp2 = temp1 as z0q = z0h); ln(zldis / z0h) follows from
            # z0h = z0m exp(-x), x = 0.13 (u* z0m / nu)^0.45, without a logarithm; the 2-m profile
            # (temp12m = temp22m) is needed only for the last pass's z0h and L
            for _it in range(_NITER_BARE):
                unstable = False
                for m in range(nmem):
                    unstable |= B_obu[m] < 0.0
                if unstable:
                    for m in range(nmem):
                        B_ustar[m] = VKC * B_um[m] / profile_momentum_ln_lanes(B_zl[m], B_z0m[m], B_obu[m], B_lnzm[m])
                        B_temp1[m] = VKC / profile_scalar_ln_lanes(B_zl[m], B_z0h[m], B_obu[m], B_lnzh[m])
                else:
                    for m in range(nmem):
                        B_ustar[m] = VKC * B_um[m] / profiles_ln_stable_lanes(B_zl[m], B_z0m[m], B_obu[m], B_lnzm[m])
                        B_temp1[m] = VKC / profiles_ln_stable_lanes(B_zl[m], B_z0h[m], B_obu[m], B_lnzh[m])
                for m in range(nmem):
                    ustar = B_ustar[m]
                    temp1 = B_temp1[m]
                    z0m = B_z0m[m]
                    B_z0hl[m] = B_z0h[m]
                    B_obul[m] = B_obu[m]
                    tstar = temp1 * B_dth[m]
                    qstar = temp1 * B_dqh[m]
                    xz = 0.13 * vpow(ustar * z0m / KVISC, 0.45)
                    B_z0h[m] = z0m / vexp(xz)
                    B_lnzh[m] = B_lnzm[m] + xz
                    thvstar = tstar * (1.0 + 0.61 * B_q[m]) + 0.61 * B_th[m] * qstar
                    um, obu = update_obukhov_lanes(B_zl[m], ustar, thvstar, B_thv[m], B_ur[m])
                    B_um[m] = um
                    B_obu[m] = obu
            for m in range(nmem):
                z0h = B_z0hl[m]
                B_temp12m[m] = VKC / profile_scalar_ln_lanes(2.0 + z0h, z0h, B_obul[m], vlog((2.0 + z0h) / z0h))
        for m in range(nmem):
            pbot = forc_pbot[c, m]
            q = forc_q[c, m]
            th = forc_t[c, m]
            tg = t_grnd[c, m]
            lw = forc_lwrad[c, m]
            eg = emg[c, m]
            if isveg[p, m]:
                rho = a_rho[p, m]
                thm = a_thm[p, m]
                temp1 = a_temp1[p, m]
                temp2 = temp1
                tlbef = a_tlbef[p, m]
                dt_veg = a_dtveg[p, m]
                tv = a_tv[p, m]
                ev = emv[p, m]
                air = a_air[p, m]
                bir = a_bir[p, m]
                cir = a_cir[p, m]
                sv = sabv[p, m]
                w_can = h2ocan[p, m]
                tran = a_tran[p, m]
                evap_veg = a_evap[p, m]
                sh_veg = a_shveg[p, m]
                dth = a_dth[p, m]
                dqh = a_dqh[p, m]
                wtg = a_wtg[p, m]
                wtal = a_wtal[p, m]
                wtl0 = a_wtl0[p, m]
                wta0 = a_wta0[p, m]
                wtgq = a_wtgq[p, m]
                wtalq = a_wtalq[p, m]
                temp12m = V_temp12m[m]
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
                evap_soi = rho * wtgq * a_delq[p, m]
                t2m = thm + temp1 * dth * (1.0 / temp12m - 1.0 / temp1)
                q2m = q + temp2 * dqh * (1.0 / temp22m - 1.0 / temp2)
                dlrad = (1.0 - ev) * eg * lw + ev * eg * lv_lin
                ulrad = ((1.0 - eg) * (1.0 - ev) * (1.0 - ev) * lw + ev * (1.0 + (1.0 - eg) * (1.0 - ev)) * lv_lin
                         + eg * (1.0 - ev) * SB * tg ** 4)
                lwnet_grnd = dlrad - eg * SB * tg ** 4
                sabg_eff = sabg[p, m]
                cgrnds = CPAIR * rho * wtg * wtal
                cgrndl = rho * wtgq * wtalq * dqgdt[c, m]
                ustar = a_ustar[p, m]
                out_t_veg[p, m] = tv
                out_h2ocan[p, m] = w_new
                out_fsh_v[p, m] = sh_veg
                out_qflx_tran_veg[p, m] = tran
                out_qflx_evap_can[p, m] = evap_veg - tran
                out_fctr[p, m] = HVAP * tran
                out_fcev[p, m] = HVAP * (evap_veg - tran)
                out_fira[p, m] = ulrad - lw
                out_lwnet_veg[p, m] = lwnet_veg
                rssun = a_rssun[p, m]
                rssha = a_rssha[p, m]
                psnsun = a_psnsun[p, m]
                psnsha = a_psnsha[p, m]
                out_rssun[p, m] = rssun
                out_rssha[p, m] = rssha
                out_psnsun[p, m] = psnsun
                out_psnsha[p, m] = psnsha
                fpsn = psnsun * laisun[p, m] + psnsha * laisha[p, m]
                out_fpsn[p, m] = fpsn
                out_gpp[p, m] = fpsn * GC_PER_UMOL
                out_err_veg[p, m] = err_v
                out_niter[p, m] = a_itlef[p, m]
            else:
                # ---------------- bare ground (CLM4.0 BareGroundFluxes) ----------------
                rho = air_density(forc_t[c, m], q, pbot)
                thm = B_thm[m]
                dth = B_dth[m]
                dqh = B_dqh[m]
                ustar = B_ustar[m]
                temp1 = B_temp1[m]
                temp2 = temp1
                temp12m = B_temp12m[m]
                temp22m = temp12m
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
            out_cgrnd[p, m] = cgrnds + cgrndl * htvp[c, m]
            out_cgrndl[p, m] = cgrndl
            out_ustar[p, m] = ustar
        for m in range(nmem):  # 2-m relative humidity (vectorised: qsat_lane, the same bits as qsat)
            _e2, qs2m, _dq2 = qsat_lane(out_tsa[p, m], forc_pbot[c, m])
            out_rh2m[p, m] = min(100.0, out_q2m[p, m] / qs2m * 100.0)


__all__ = [
    "CSOILC", "ITMAX", "air_density", "canopy_fluxes",
    "field_capacity", "ground_surface_state",
]
