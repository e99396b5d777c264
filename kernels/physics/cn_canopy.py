"""Canopy structure from CN state: LAI <-> leaf carbon through the specific-leaf-area profile, stem
area index, canopy heights and snow burial (CLM4 tech note, Oleson et al. 2010; CLM4.0
``CNVegStructUpdateMod``; Thornton & Zimmermann 2007, J. Climate 20, 3902-3923).

SLA profile (Thornton & Zimmermann 2007 eq. 5; CLM4 CN): specific leaf area increases linearly with
the leaf area above, SLA(x) = slatop + dsladlai x (m2 leaf gC-1), x the overlying LAI. Integrating
dC = dx / SLA(x) from 0 to LAI gives leaf C, and inverting it gives CLM4's LAI:

    dsladlai > 0:  LAI = slatop (exp(leafc dsladlai) - 1) / dsladlai,
                   leafc = ln(1 + LAI dsladlai / slatop) / dsladlai
    dsladlai = 0:  LAI = slatop leafc,  leafc = LAI / slatop

(evaluated with expm1/log1p so that the round trip is exact to ~1e-15 relative). dLAI/dleafc =
slatop + dsladlai LAI = SLA at the canopy bottom.

Stem area index (Zeng et al. 2002 J. Climate 15, 1832, as CLM4): tsai = max(a tsai_old +
max(tlai_old - tlai, 0), tsai_min), a = 1 - 0.5 dt / (30 days), tsai_min = 0.5.
Canopy top height: woody PFTs from dead stem C (CLM4.0): htop = (3 deadstemc taper^2 /
(pi stocking dwood))^(1/3) with taper 200 (trees) or 10 (shrubs), stocking 1000 stems/ha, dwood
2.5e5 gC m-3, capped at forc_hgt/(displar + z0mr) - 3 and >= 0.01 m; hbot = max(0, min(3, htop - 1)).
Grasses and crops: htop = max(0.25, 0.25 tlai), hbot = max(0, min(0.05, htop - 0.2)).
Snow burial: trees and shrubs fb = 1 - min(max(snowdp - hbot, 0), htop - hbot)/max(1e-6, htop - hbot);
grasses/crops fb = 1 - min(snowdp, 0.2)/0.2; elai = tlai fb, esai = tsai fb, each set to 0 below 0.05.

Reads leaf C (``cn_state.LEAFC``), dead stem C, the previous TLAI/TSAI and snow depth; writes TLAI,
TSAI, ELAI, ESAI, HTOP, HBOT in the packed patch state (``veg_struct_update``); the LAI <-> leaf C
kernels write only their out arrays.
"""

from __future__ import annotations

import math

from kernels._jit import njit
from kernels.physics.cn_state import (
    DEADSTEMC, ELAI, ESAI, HBOT, HTOP, LEAFC, LEAFN, TLAI, TSAI,
)

#: Length of CLM4's "month" in the SAI decay (``dtsmonth``, s).
DTSMONTH = 2592000.0
#: Snow depth that buries a grass or crop canopy completely (m, CLM4.0).
GRASS_BURIAL_DEPTH = 0.2
#: Exposed LAI/SAI below this is set to zero (CLM4.0, m2 m-2).
ELAI_MIN = 0.05


@njit
def lai_from_leafc(leafc, slatop, dsladlai):
    """Total LAI (m2 m-2) of leaf carbon ``leafc`` (gC m-2) for canopy-top SLA ``slatop``
    (m2 gC-1) and its gradient ``dsladlai`` (m2 gC-1 per unit LAI); Thornton & Zimmermann 2007,
    CLM4.0 CNVegStructUpdate. Negative leaf C gives 0."""
    if leafc <= 0.0:
        return 0.0
    if dsladlai > 0.0:
        return slatop * math.expm1(leafc * dsladlai) / dsladlai
    return slatop * leafc


@njit
def leafc_from_lai(lai, slatop, dsladlai):
    """Leaf carbon (gC m-2) that gives LAI ``lai`` (m2 m-2): the exact inverse of
    :func:`lai_from_leafc`, ln(1 + lai dsladlai / slatop) / dsladlai (lai / slatop when dsladlai = 0).
    Non-positive LAI or slatop gives 0."""
    if lai <= 0.0 or slatop <= 0.0:
        return 0.0
    if dsladlai > 0.0:
        return math.log1p(lai * dsladlai / slatop) / dsladlai
    return lai / slatop


@njit
def sla_at_depth(x, slatop, dsladlai):
    """Specific leaf area (m2 gC-1) under overlying LAI ``x`` (Thornton & Zimmermann 2007 eq. 5)."""
    return slatop + dsladlai * x


@njit
def leafc_to_lai(patch_pft, leafc, pft, out_lai):
    """LAI (m2 m-2) of every patch and member from leaf C ``leafc[p, m]`` (gC m-2); ``pft`` is
    ``engine.pftcon.pft_record()``. Fills ``out_lai[p, m]``."""
    for p in range(leafc.shape[0]):
        ivt = patch_pft[p]
        sla0 = pft.slatop[ivt]
        dsla = pft.dsladlai[ivt]
        for m in range(leafc.shape[1]):
            out_lai[p, m] = lai_from_leafc(leafc[p, m], sla0, dsla)


@njit
def lai_to_leafc(patch_pft, lai, pft, out_leafc):
    """Leaf C (gC m-2) of every patch and member that reproduces LAI ``lai[p, m]`` (m2 m-2); the
    inverse of :func:`leafc_to_lai`. Fills ``out_leafc[p, m]``."""
    for p in range(lai.shape[0]):
        ivt = patch_pft[p]
        sla0 = pft.slatop[ivt]
        dsla = pft.dsladlai[ivt]
        for m in range(lai.shape[1]):
            out_leafc[p, m] = leafc_from_lai(lai[p, m], sla0, dsla)


@njit
def set_leaf_from_lai(patch_pft, lai, pft, ps):
    """Make leaf C, leaf N and TLAI of the packed patch state ``ps`` consistent with an analysed LAI
    ``lai[p, m]`` (m2 m-2), as the assimilation needs: leafc = inverse SLA integral, leafn = leafc /
    leafcn (CLM4 fixed leaf C:N), TLAI = lai (clipped at 0). Writes ps[LEAFC], ps[LEAFN], ps[TLAI].

    This changes the C and N pools outside the model's fluxes (a data-assimilation increment): the
    driver must not include such a step in the budget check."""
    for p in range(lai.shape[0]):
        ivt = patch_pft[p]
        sla0 = pft.slatop[ivt]
        dsla = pft.dsladlai[ivt]
        cn = pft.leafcn[ivt]
        for m in range(lai.shape[1]):
            lc = leafc_from_lai(lai[p, m], sla0, dsla)
            ps[LEAFC, p, m] = lc
            ps[LEAFN, p, m] = lc / cn if cn > 0.0 else 0.0
            ps[TLAI, p, m] = lai_from_leafc(lc, sla0, dsla)


@njit
def veg_struct_update(patch_pft, patch_col, snowdp, forc_hgt, pft, cons, dt, deadwood_factor, ps):
    """CLM4.0 CNVegStructUpdate for every patch and member: TLAI from leaf C, TSAI (Zeng et al.
    2002), HTOP/HBOT from dead stem C (woody) or LAI (grasses, crops), ELAI/ESAI after snow burial.

    ``snowdp[c, m]`` snow depth (m); ``forc_hgt[c]`` height of the wind forcing above the surface
    (m, caps the canopy); ``pft`` = ``pft_record()``, ``cons`` = ``constants_record()``; dt (s);
    ``deadwood_factor``: the height is that of dead stem C times this factor (CTSM in AD spin-up, where
    the dead stem holds 1/factor of its normal C; 1.0 normally);
    ``ps`` packed patch state (reads LEAFC, DEADSTEMC, TLAI, TSAI of the previous step; writes
    TLAI, TSAI, ELAI, ESAI, HTOP, HBOT). Bare-soil patches (PFT 0) get zeros.
    """
    tsai_alpha = 1.0 - cons.tsai_decay_per_month * dt / DTSMONTH
    stocking = cons.stocking / 10000.0  # stems m-2
    for p in range(ps.shape[1]):
        ivt = patch_pft[p]
        c = patch_col[p]
        sla0 = pft.slatop[ivt]
        dsla = pft.dsladlai[ivt]
        woody = pft.woody[ivt] == 1.0
        taper = cons.taper_shrub if (ivt >= 9 and ivt <= 11) else cons.taper_tree
        hmax = forc_hgt[c] / (pft.displar[ivt] + pft.z0mr[ivt]) - 3.0 if ivt > 0 else 0.0
        for m in range(ps.shape[2]):
            if ivt == 0:
                ps[TLAI, p, m] = 0.0
                ps[TSAI, p, m] = 0.0
                ps[ELAI, p, m] = 0.0
                ps[ESAI, p, m] = 0.0
                ps[HTOP, p, m] = 0.0
                ps[HBOT, p, m] = 0.0
                continue
            tlai_old = ps[TLAI, p, m]
            tsai_old = ps[TSAI, p, m]
            tlai = lai_from_leafc(ps[LEAFC, p, m], sla0, dsla)
            tsai = max(tsai_alpha * tsai_old + max(tlai_old - tlai, 0.0), cons.tsai_min)
            if woody:
                dead = max(ps[DEADSTEMC, p, m], 0.0) * deadwood_factor
                htop = (3.0 * dead * taper * taper / (math.pi * stocking * cons.dwood)) ** (1.0 / 3.0)
                htop = min(htop, hmax)
                htop = max(htop, 0.01)
                hbot = max(0.0, min(3.0, htop - 1.0))
                ol = min(max(snowdp[c, m] - hbot, 0.0), htop - hbot)
                fb = 1.0 - ol / max(1.0e-6, htop - hbot)
            else:
                htop = max(cons.grass_htop_min, tlai * cons.grass_htop_per_lai)
                hbot = max(0.0, min(0.05, htop - 0.20))
                fb = 1.0 - max(min(snowdp[c, m], GRASS_BURIAL_DEPTH), 0.0) / GRASS_BURIAL_DEPTH
            elai = max(tlai * fb, 0.0)
            esai = max(tsai * fb, 0.0)
            if elai < ELAI_MIN:
                elai = 0.0
            if esai < ELAI_MIN:
                esai = 0.0
            ps[TLAI, p, m] = tlai
            ps[TSAI, p, m] = tsai
            ps[ELAI, p, m] = elai
            ps[ESAI, p, m] = esai
            ps[HTOP, p, m] = htop
            ps[HBOT, p, m] = hbot


__all__ = [
    "lai_from_leafc", "lai_to_leafc", "leafc_from_lai", "leafc_to_lai", "set_leaf_from_lai",
    "sla_at_depth", "veg_struct_update",
]
