"""CLM4CN litter and soil organic matter decomposition, mineralisation/immobilisation, N deposition,
fixation, denitrification and leaching, and the accelerated-decomposition (AD) spin-up (CLM4 tech note,
Oleson et al. 2010, chapters "Decomposition" and "External Nitrogen Cycle"; CLM4.0
``CNDecompMod``, ``CNNDynamicsMod`` (CNNDeposition, CNNFixation, CNNLeaching); Thornton et al. 2002 and
Biome-BGC v4.2.0 for the converging trophic cascade).

Cascade (fixed SOM C:N 12, 12, 10, 10; respired fractions rf):
    litr1 -> soil1 (rf 0.39), litr2 -> soil2 (0.55), litr3 -> soil3 (0.29),
    soil1 -> soil2 (0.28), soil2 -> soil3 (0.46), soil3 -> soil4 (0.55), soil4 -> CO2 (1.0);
    CWD fragments into litr2 (cwd_fcel 0.76) and litr3 (cwd_flig 0.24).
Base rates (Biome-BGC discrete daily fractions): k_l1 0.7, k_l2 0.07, k_l3 0.014, k_s1 0.07,
k_s2 0.014, k_s3 0.0014, k_s4 0.0001, k_frag 0.001 d-1, converted to the model step as
k_dt = 1 - exp(ln(1 - k) dt/86400) (Olson 1963, as CLM4.0). Flux = pool * t_scalar * w_scalar * k_dt / dt
(limited to the whole pool in one step).
Scalars (CLM4.0, averaged over the top 5 soil layers weighted by thickness): t_scalar =
1.5^((T - 298.15)/10) (Q10 = 1.5 at 25 degC reference; CLM4.0 replaced Lloyd-Taylor with this in 2009);
w_scalar = ln(minpsi/psi)/ln(minpsi/maxpsi) for psi > minpsi = -10 MPa, with psi = min(soilpsi, maxpsi),
maxpsi = -9.8e-6 sucsat (saturation, MPa) (Andren & Paustian 1987).
Mineral N: each step's potential mineral N flux pmnf = C loss ((1 - rf) / CN_receiver - 1/CN_donor)
(> 0 immobilises, < 0 mineralises). Immobilising steps are scaled by fpi (N competition,
``cn_allocation.nitrogen_competition``); 1 % of every mineralising flux is denitrified (dnp = 0.01).
External N (tech note "External Nitrogen Cycle"): deposition is an input (gN m-2 s-1); fixation (Cleveland et al. 1999, CLM4.0
CNNFixation) = 1.8 (1 - exp(-0.003 NPP_ann)) gN m-2 yr-1 with NPP_ann the column's annual NPP;
leaching = 0.1 sminn / (liquid soil water) * drainage, at most 0.1 sminn per step (CNNLeaching);
denitrification of surplus mineral N (0.5 d-1) comes from ``nitrogen_competition``.

Accelerated decomposition (AD) spin-up: the SOM base rates k_s1..k_s4 are multiplied by
``ad_factor`` (CLM4.0 AD_SPINUP: 20 for all four SOM pools, ``AD_FACTORS_CLM40``: CNDecompMod's
``spinup_scalar = 20`` under ``use_ad_spinup``, although its comment still says 10; CLM4.5's BGC cascade
used (1, 1, 5, 70), ``AD_FACTORS_CLM45``). In AD mode a SOM pool settles at 1/factor of its normal
steady state; leaving AD mode (``ad_exit``) multiplies each SOM pool's C and N by its factor, which is
the steady state of the normal rates for the same inputs (CLM4.0 ``exit_spinup``). This conversion is
not a model flux: ``ad_exit`` returns the C and N it adds so the driver can log it.
laida's default is CLM4.5's (1, 1, 5, 70) (``AD_FACTORS``): soil1 and soil2 turn over in about 2 and 10
weeks and need no acceleration, and accelerating them x20 (turnover in a day) moves their mineral N
release to when plants take none up (nights, dormant seasons), where CLM4's excess-N denitrification
(0.5 per day of the surplus) removes it. An AD stage with CLM4.0's uniform x20 is therefore leakier in
N than normal mode and settles at less ecosystem N than normal mode's steady state, which then keeps
gaining N and wood for centuries after the exit. Measured on f45 columns (3-h step, 40 AD years,
2026-12-04): the temperate deciduous forest's denitrification fell from 1.99 gN/m2/yr in the last AD
year to 1.03 in normal mode with (20, 20, 20, 20), and its ecosystem C then drifted by +116 gC/m2/yr;
with (1, 1, 5, 70) the denitrification is continuous across the exit (1.64 vs 1.50-1.71) and the drift
+25 gC/m2/yr (the rest: ecosystem N still accumulating, as in the AD stage).
Coarse woody debris is accelerated as CTSM does it (CNDecompCascadeBGC ``spinup_factor(i_cwd)`` times
SoilBiogeochemStateType's ``get_spinup_latitude_term``, Koven 2015): fragmentation times
``cwd_ad_factor(lat)`` = max(1, tau_cwd/2) (1 + 50 / (1 + exp(-0.15 (|lat| - 60)))), with tau_cwd =
1/k_frag at the reference temperature (2.74 yr for CLM4.0's k_frag): 1.4 at the equator, 3.8 at 38 deg,
41 at 62 deg, where cold soils make the CWD turnover decades long; ``ad_exit`` multiplies CWD C and N
back by it. (The SOM factors stay CLM4.0's, without the latitude term.)

Reads soil temperature, water potential, saturated suction and layer thickness, drainage and liquid
water; reads and writes the packed column state (litter, CWD, SOM, sminn) and column fluxes.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.vmath import vexp, vlog, vpow
from kernels.physics.cn_state import (
    ANNSUM_NPP, CWDC, G_ACTUAL_IMMOB, G_CLAMP_C, G_CLAMP_N, G_CWDC_LOSS, G_DENIT,
    G_DENIT_EXCESS, G_FPI, G_GROSS_NMIN, G_HR, G_LEACHED, G_NDEP, G_NET_NMIN, G_NFIX, G_PC0, G_PMNF0,
    G_POTENTIAL_IMMOB, G_SMINN_TO_PLANT, G_SUPPLEMENT_TO_SMINN, G_T_SCALAR, G_W_SCALAR, LITR1C, LITR2C, LITR3C, NCOL_C,
    SMINN, SOIL1C, NTRANS, clamp_negative_pools,
)
from kernels.physics.constants import DAYSPYR, DENH2O, SECSPDAY

#: SOM C:N ratios of soil1..soil4 (Biome-BGC v4.2.0).
CN_SOIL = np.array([12.0, 12.0, 10.0, 10.0])
#: Respired fractions of the 7 steps l1s1, l2s2, l3s3, s1s2, s2s3, s3s4, s4 (Biome-BGC v4.2.0).
RF = np.array([0.39, 0.55, 0.29, 0.28, 0.46, 0.55, 1.0])
#: Daily discrete decay fractions of litr1..3 and soil1..4 (Biome-BGC v4.2.0) and CWD fragmentation.
K_LITTER_DAILY = np.array([0.7, 0.07, 0.014])
K_SOIL_DAILY = np.array([0.07, 0.014, 0.0014, 0.0001])
K_FRAG_DAILY = 0.001
CWD_FCEL = 0.76
CWD_FLIG = 0.24
#: Fraction of mineralised N lost to denitrification (CLM4.0 ``dnp``).
DNP = 0.01
#: Q10 of decomposition and its reference temperature (CLM4.0).
DECOMP_Q10 = 1.5
DECOMP_TREF = 298.15
_LN_Q10 = math.log(DECOMP_Q10)
#: Dry limit of the water scalar (MPa).
MINPSI = -10.0
#: Layers over which the scalars are averaged (CLM4.0: 5).
NLEV_DECOMP = 5
#: Soluble fraction of mineral N (CLM4.0 CNNLeaching ``sf``).
SF_LEACH = 0.1
#: AD spin-up multipliers of k_s1..k_s4.
AD_FACTORS_CLM40 = np.array([20.0, 20.0, 20.0, 20.0])
AD_FACTORS_CLM45 = np.array([1.0, 1.0, 5.0, 70.0])
AD_FACTORS_OFF = np.ones(4)
#: laida's AD spin-up multipliers of k_s1..k_s4 (see the module docstring).
AD_FACTORS = AD_FACTORS_CLM45


def cwd_ad_factor(lat_deg):
    """AD spin-up multiplier of CWD fragmentation at latitude ``lat_deg`` (CTSM: max(1, tau_cwd/2)
    times the spin-up latitude term; see the module docstring)."""
    tau_cwd_yr = 1.0 / (-math.log(1.0 - K_FRAG_DAILY) * DAYSPYR)
    lat_term = 1.0 + 50.0 / (1.0 + np.exp(-0.15 * (np.abs(np.asarray(lat_deg, dtype=np.float64)) - 60.0)))
    return max(1.0, tau_cwd_yr / 2.0) * lat_term


@njit
def step_fraction(k_daily, dt):
    """Discrete decay fraction per step of length dt (s) for a daily fraction ``k_daily``:
    1 - exp(ln(1 - k) dt/86400) (CLM4.0 CNDecomp)."""
    return 1.0 - math.exp(math.log(1.0 - k_daily) * dt / SECSPDAY)


@njit
def soil_water_potential(h2osoi_liq, dz, watsat, sucsat, bsw, out_soilpsi):
    """Soil water potential (MPa) of the liquid water that CLM4.0 CNDecomp and CNPhenology use:
    psi = psi_sat s^-B 9.8e-6 MPa/mm, s = clamp(theta_liq / theta_sat, 0.01, 1), limited to >= -15 MPa.

    ``h2osoi_liq[c, lev, m]`` (kg m-2), ``dz[lev]`` (m), ``watsat``, ``sucsat`` (mm, < 0), ``bsw`` (1)
    ``[c, lev]``; fills ``out_soilpsi[c, lev, m]`` for the first ``out_soilpsi.shape[1]`` levels.
    s^-B is ``vmath.vpow`` (a few ulp from the C library's pow; the member loop vectorises).
    """
    ncol, nlev, nm = out_soilpsi.shape
    for c in range(ncol):
        for j in range(nlev):
            dzw = dz[j] * DENH2O
            ws = watsat[c, j]
            psat = sucsat[c, j]
            nb = -bsw[c, j]
            for m in range(nm):
                s = min(max(h2osoi_liq[c, j, m] / dzw / ws, 0.01), 1.0)
                out_soilpsi[c, j, m] = max(psat * vpow(s, nb) * 9.8e-6, -15.0)


@njit
def decomp_scalars(t_soi, soilpsi, sucsat, dz, cf):
    """Temperature and water scalars of decomposition per column and member (CLM4.0 CNDecomp),
    averaged over the top ``NLEV_DECOMP`` layers weighted by thickness ``dz[c, lev]`` (m).
    ``t_soi[c, lev, m]`` (K), ``soilpsi[c, lev, m]`` (MPa), ``sucsat[c, lev]`` saturated suction (mm).
    Fills ``cf[G_T_SCALAR]`` and ``cf[G_W_SCALAR]``. Q10^x is exp(x ln Q10) and the logarithm of the
    water scalar is ``vmath.vlog`` (a few ulp from the C library; the member loop vectorises); each
    member's sum runs over the layers in order, as before."""
    nlev = min(NLEV_DECOMP, dz.shape[1])
    nm = cf.shape[2]
    for c in range(cf.shape[1]):
        wsum = 0.0
        for j in range(nlev):
            wsum += dz[c, j]
        for m in range(nm):
            cf[G_T_SCALAR, c, m] = 0.0
            cf[G_W_SCALAR, c, m] = 0.0
        for j in range(nlev):
            fr = dz[c, j] / wsum if wsum > 0.0 else 0.0
            maxpsi = sucsat[c, j] * (-9.8e-6)
            logmax = math.log(MINPSI / maxpsi)
            for m in range(nm):
                ts = vexp((t_soi[c, j, m] - DECOMP_TREF) / 10.0 * _LN_Q10) * fr
                psi = min(soilpsi[c, j, m], maxpsi)
                ws = (vlog(MINPSI / psi) / logmax) * fr
                cf[G_T_SCALAR, c, m] += ts
                cf[G_W_SCALAR, c, m] += ws if psi > MINPSI else 0.0


@njit
def decomp_potential(ad_factor, dt, cs, cf):
    """Potential (N-unlimited) decomposition fluxes of the 7 cascade steps (CLM4.0 CNDecomp, first
    part): C losses ``cf[G_PC0 + k]`` (gC m-2 s-1) and mineral N fluxes ``cf[G_PMNF0 + k]``
    (gN m-2 s-1, > 0 immobilisation), the total potential immobilisation ``cf[G_POTENTIAL_IMMOB]``
    and gross mineralisation ``cf[G_GROSS_NMIN]``. Needs ``decomp_scalars`` first. ``ad_factor[4]``
    multiplies k_s1..k_s4 (ones = normal mode). dt (s). Changes no pool."""
    kl = np.empty(3)
    for i in range(3):
        kl[i] = step_fraction(K_LITTER_DAILY[i], dt)
    ks = np.empty(4)
    for i in range(4):
        ks[i] = step_fraction(K_SOIL_DAILY[i], dt) * ad_factor[i]
    for c in range(cs.shape[1]):
        for m in range(cs.shape[2]):
            scal = cf[G_T_SCALAR, c, m] * cf[G_W_SCALAR, c, m]
            pimm = 0.0
            gmin = 0.0
            for k in range(NTRANS):
                if k < 3:
                    donor = LITR1C + k
                    frac = min(kl[k] * scal, 1.0)
                    dc = cs[donor, c, m]
                    dn = cs[donor + NCOL_C, c, m]
                    cn_recv = CN_SOIL[k]
                else:
                    donor = SOIL1C + (k - 3)
                    frac = min(ks[k - 3] * scal, 1.0)
                    dc = cs[donor, c, m]
                    dn = dc / CN_SOIL[k - 3]
                    cn_recv = CN_SOIL[k - 2] if k < 6 else 0.0
                loss = 0.0
                pmnf = 0.0
                if dc > 0.0:
                    loss = dc * frac / dt
                    nloss = loss * max(dn, 0.0) / dc  # N leaving the donor with this C
                    if k < 6:
                        pmnf = loss * (1.0 - RF[k]) / cn_recv - nloss
                    else:
                        pmnf = -nloss
                cf[G_PC0 + k, c, m] = loss
                cf[G_PMNF0 + k, c, m] = pmnf
                if pmnf > 0.0:
                    pimm += pmnf
                else:
                    gmin -= pmnf
            cf[G_POTENTIAL_IMMOB, c, m] = pimm
            cf[G_GROSS_NMIN, c, m] = gmin


@njit
def decomposition(dt, cwd_factor, cs, cf):
    """Actual decomposition, CWD fragmentation and the soil mineral N budget of plant uptake,
    immobilisation, mineralisation and its denitrification (CLM4.0 CNDecomp second part and
    CNStateUpdate1/3 for these fluxes). Immobilising steps are scaled by ``cf[G_FPI]``; the plant
    uptake ``cf[G_SMINN_TO_PLANT]`` (from ``allocation_fluxes``) leaves sminn here. Fills HR,
    net mineralisation, actual immobilisation, CWD loss and the denitrification of mineralisation
    (``cf[G_DENIT]`` is set here; ``nitrogen_inputs_losses`` adds the other terms). Needs
    ``decomp_potential`` and the N competition first. dt (s); ``cwd_factor[c]`` multiplies the CWD
    fragmentation rate (AD spin-up, ``cwd_ad_factor``; 1.0 normally)."""
    kfrag0 = step_fraction(K_FRAG_DAILY, dt)
    dpool_c = np.zeros(NCOL_C)
    dpool_n = np.zeros(NCOL_C)
    for c in range(cs.shape[1]):
        kfrag = kfrag0 * cwd_factor[c]
        for m in range(cs.shape[2]):
            fpi = cf[G_FPI, c, m]
            hr = 0.0
            dsminn = 0.0  # gN m-2 s-1 into sminn
            denit = 0.0
            immob = 0.0
            # CWD fragmentation (uses the same scalars)
            scal = cf[G_T_SCALAR, c, m] * cf[G_W_SCALAR, c, m]
            fr = min(kfrag * scal, 1.0)
            cwdc = max(cs[CWDC, c, m], 0.0)
            cwdn = max(cs[CWDC + NCOL_C, c, m], 0.0)
            cl = cwdc * fr / dt
            nl = cwdn * fr / dt
            cf[G_CWDC_LOSS, c, m] = cl
            # cascade
            dpool_c[:] = 0.0
            dpool_n[:] = 0.0
            dpool_c[CWDC] -= cl
            dpool_n[CWDC] -= nl
            dpool_c[LITR2C] += cl * CWD_FCEL
            dpool_c[LITR3C] += cl * CWD_FLIG
            dpool_n[LITR2C] += nl * CWD_FCEL
            dpool_n[LITR3C] += nl * CWD_FLIG
            for k in range(NTRANS):
                loss = cf[G_PC0 + k, c, m]
                pmnf = cf[G_PMNF0 + k, c, m]
                if loss <= 0.0:
                    continue
                if pmnf > 0.0:
                    loss *= fpi
                    pmnf *= fpi
                    immob += pmnf
                else:
                    denit += -DNP * pmnf
                if k < 3:
                    donor = LITR1C + k
                    recv = SOIL1C + k
                    dc = cs[donor, c, m]
                    nloss = loss * max(cs[donor + NCOL_C, c, m], 0.0) / dc
                else:
                    donor = SOIL1C + (k - 3)
                    recv = donor + 1
                    nloss = loss / CN_SOIL[k - 3]
                dpool_c[donor] -= loss
                dpool_n[donor] -= nloss
                hr += RF[k] * loss
                if k < 6:
                    dpool_c[recv] += (1.0 - RF[k]) * loss
                    dpool_n[recv] += nloss + pmnf
                dsminn -= pmnf
            for i in range(NCOL_C):
                cs[i, c, m] += dt * dpool_c[i]
                cs[i + NCOL_C, c, m] += dt * dpool_n[i]
            cs[SMINN, c, m] += dt * (dsminn - denit - cf[G_SMINN_TO_PLANT, c, m]
                                     + cf[G_SUPPLEMENT_TO_SMINN, c, m])
            cf[G_HR, c, m] = hr
            cf[G_ACTUAL_IMMOB, c, m] = immob
            cf[G_NET_NMIN, c, m] = dsminn
            cf[G_DENIT, c, m] = denit
            clamp_negative_pools(cs, c, m, NCOL_C, 2 * NCOL_C + 1, -1, dt, cf, G_CLAMP_C, G_CLAMP_N)


@njit
def nfix_rate(annsum_npp):
    """Biological N fixation (gN m-2 s-1) from the annual NPP (gC m-2 yr-1): 1.8 (1 - exp(-0.003
    NPP)) gN m-2 yr-1 (Cleveland et al. 1999; CLM4.0 CNNFixation), >= 0."""
    return max(1.8 * (1.0 - math.exp(-0.003 * annsum_npp)) / (SECSPDAY * DAYSPYR), 0.0)


@njit
def nitrogen_inputs_losses(patch_col, patch_wt, ps, ndep, drain, h2osoi_liq_tot, dt, cs, cf):
    """External N fluxes of soil mineral N (CLM4.0 CNNDynamics): deposition ``ndep[c]`` (gN m-2 s-1),
    fixation from the column's annual NPP (patch ``annsum_npp`` weighted by ``patch_wt``), excess-N
    denitrification ``cf[G_DENIT_EXCESS]`` (from the N competition, limited to the sminn present),
    and leaching = 0.1 sminn / h2osoi_liq_tot * drain, at most 0.1 sminn per step (CLM4.0
    CNNLeaching). ``drain[c, m]`` drainage (mm s-1 = kg m-2 s-1), ``h2osoi_liq_tot[c, m]`` liquid
    water in the soil column (mm). Updates ``cs[SMINN]``; fills ``cf[G_NDEP]``, ``cf[G_NFIX]``,
    ``cf[G_LEACHED]`` and adds the excess term to ``cf[G_DENIT]``. dt (s)."""
    ncol = cs.shape[1]
    nmem = cs.shape[2]
    npp_col = np.zeros((ncol, nmem))
    for p in range(ps.shape[1]):
        c = patch_col[p]
        for m in range(nmem):
            npp_col[c, m] += patch_wt[p] * ps[ANNSUM_NPP, p, m]
    for c in range(ncol):
        for m in range(nmem):
            dep = max(ndep[c], 0.0)
            fix = nfix_rate(npp_col[c, m])
            sminn = cs[SMINN, c, m] + dt * (dep + fix)
            excess = min(max(cf[G_DENIT_EXCESS, c, m], 0.0), max(sminn, 0.0) / dt)
            sminn -= dt * excess
            leach = 0.0
            if h2osoi_liq_tot[c, m] > 0.0 and sminn > 0.0:
                conc = SF_LEACH * sminn / h2osoi_liq_tot[c, m]
                leach = max(min(conc * drain[c, m], SF_LEACH * sminn / dt), 0.0)
            sminn -= dt * leach
            if sminn < 0.0:
                cf[G_CLAMP_N, c, m] += -sminn / dt
                sminn = 0.0
            cs[SMINN, c, m] = sminn
            cf[G_NDEP, c, m] = dep
            cf[G_NFIX, c, m] = fix
            cf[G_DENIT_EXCESS, c, m] = excess
            cf[G_DENIT, c, m] += excess
            cf[G_LEACHED, c, m] = leach


@njit
def ad_exit(ad_factor, cwd_factor, cs, out_added_c, out_added_n):
    """Leave AD spin-up: multiply soil1..soil4 C and N by ``ad_factor`` (CLM4.0 exit_spinup) and CWD C
    and N by ``cwd_factor[c]``, the normal-rate steady state for the same inputs. Adds the C and N
    this creates per column and member (gC m-2, gN m-2) to ``out_added_c/n[c, m]`` (as
    ``cn_phenology.ad_exit_deadwood``); a one-off state conversion, outside any step budget."""
    for c in range(cs.shape[1]):
        for m in range(cs.shape[2]):
            ac = (cwd_factor[c] - 1.0) * cs[CWDC, c, m]
            an = (cwd_factor[c] - 1.0) * cs[CWDC + NCOL_C, c, m]
            cs[CWDC, c, m] *= cwd_factor[c]
            cs[CWDC + NCOL_C, c, m] *= cwd_factor[c]
            for k in range(4):
                i = SOIL1C + k
                ac += (ad_factor[k] - 1.0) * cs[i, c, m]
                an += (ad_factor[k] - 1.0) * cs[i + NCOL_C, c, m]
                cs[i, c, m] *= ad_factor[k]
                cs[i + NCOL_C, c, m] *= ad_factor[k]
            out_added_c[c, m] += ac
            out_added_n[c, m] += an


__all__ = [
    "soil_water_potential",
    "AD_FACTORS", "AD_FACTORS_CLM40", "AD_FACTORS_CLM45", "AD_FACTORS_OFF", "CN_SOIL", "ad_exit", "cwd_ad_factor", "decomp_potential",
    "decomp_scalars", "decomposition", "nfix_rate", "nitrogen_inputs_losses", "step_fraction",
]
