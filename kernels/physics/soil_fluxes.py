"""Patch surface fluxes updated for the ground temperature change of the soil/snow heat solve (CLM4.0
``Biogeophysics2``/``SoilFluxes``, with the linearised ground emission of CLM4 tech note, Oleson et
al. 2010, section 4.2).

The canopy-flux solve holds the ground at T_g^n; the heat solve then changes the top node by dT. Each
patch's ground fluxes take the first-order change: FIRA += 4 eps_g sigma T_g^3 dT, ground evaporation
+= cgrndl dT (its latent heat htvp cgrndl dT into FGEV and EFLX_LH_TOT), FSH and FSH_G += (cgrnd -
htvp cgrndl) dT, FGR -= (cgrnd + 4 eps_g sigma T_g^3) dT.

Reads the column's realised heat flux, its linearisation and the patch derivatives; writes only its
``out_*`` arrays and the flux arrays it is asked to update in place.
"""

from __future__ import annotations

from kernels._jit import njit


@njit
def soil_fluxes_update(patch_col, fgr_real, gnet, dgnet, lw4, htvp, cgrnd, cgrndl, out_dtg, out_evap_corr,
                       fira, qevap_soi, fgev, lh, fsh_g, fsh, fgr):
    """Ground temperature change dT = (G_real - G)/(dG/dT) per column and the patch fluxes updated by it.

    patch_col[p]; fgr_real, gnet [c, m] (W/m2): heat flux into the ground realised by the heat solve
    and the one it was given; dgnet [c, m] (W m-2 K-1, < 0); lw4 [c, m] = 4 eps_g sigma T_g^3
    (W m-2 K-1); htvp [c, m] latent heat of the ground's evaporation (J/kg); cgrnd [p, m] (W m-2 K-1)
    and cgrndl [p, m] (kg m-2 s-1 K-1) the derivatives of the ground's sensible heat and evaporation.
    Writes out_dtg [c, m] (K) and out_evap_corr [p, m] (mm/s, the evaporation change) and adds the
    changes to fira, fgev, lh, fsh_g, fsh, fgr (W/m2) and qevap_soi (mm/s), all [p, m].
    """
    ncol, nm = out_dtg.shape
    for c in range(ncol):
        for m in range(nm):
            out_dtg[c, m] = (fgr_real[c, m] - gnet[c, m]) / dgnet[c, m]
    for p in range(patch_col.shape[0]):
        c = patch_col[p]
        for m in range(nm):
            d = out_dtg[c, m]
            hv = htvp[c, m]
            l4 = lw4[c, m]
            ec = cgrndl[p, m] * d
            dsh = (cgrnd[p, m] - hv * cgrndl[p, m]) * d
            out_evap_corr[p, m] = ec
            fira[p, m] += l4 * d
            qevap_soi[p, m] += ec
            fgev[p, m] += hv * ec
            lh[p, m] += hv * ec
            fsh_g[p, m] += dsh
            fsh[p, m] += dsh
            fgr[p, m] -= (cgrnd[p, m] + l4) * d


__all__ = ["soil_fluxes_update"]
