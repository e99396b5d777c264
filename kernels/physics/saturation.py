"""Saturation vapour pressure and specific humidity over water and ice, with their temperature
derivatives: CLM4's ``QSatMod`` (Oleson et al. 2010, CLM4 tech note section 5.5),
which uses the 8th-order polynomial fits of Flatau, Walko and Cotton (1992, J. Appl. Meteorol. 31,
1507-1513) to the Goff-Gratch / Wexler saturation vapour pressure, over water for T >= 0 degC and over
ice below, with temperature limited to [-75, 100] degC.

Shared by ``canopy_fluxes`` and ``photosynthesis`` (and free for any other module). Reads and writes no
model state.
"""

from __future__ import annotations

import numpy as np

from kernels._jit import njit
from kernels.physics.constants import TFRZ


# Flatau et al. (1992) coefficients as in CLM4 QSatMod: es (hPa) over water (a), its derivative
# (b, hPa/K); over ice (c) and its derivative (d). Polynomials in t = T - 273.15 (degC).
_A = np.array([6.11213476, 0.444007856, 0.143064234e-01, 0.264461437e-03, 0.305903558e-05,
               0.196237241e-07, 0.892344772e-10, -0.373208410e-12, 0.209339997e-15])
_B = np.array([0.444017302, 0.286064092e-01, 0.794683137e-03, 0.121211669e-04, 0.103354611e-06,
               0.404125005e-09, -0.788037859e-12, -0.114596802e-13, 0.381294516e-16])
_C = np.array([6.11123516, 0.503109514, 0.188369801e-01, 0.420547422e-03, 0.614396778e-05,
               0.602780717e-07, 0.387940929e-09, 0.149436277e-11, 0.262655803e-14])
_D = np.array([0.503277922, 0.377289173e-01, 0.126801703e-02, 0.249468427e-04, 0.313703411e-06,
               0.257180651e-08, 0.133268878e-10, 0.394116744e-13, 0.498070196e-16])


@njit(inline="always")
def _poly8(c, t):
    return c[0] + t * (c[1] + t * (c[2] + t * (c[3] + t * (c[4] + t * (c[5] + t * (c[6] + t * (c[7] + t * c[8])))))))


@njit
def esat(t):
    """Saturation vapour pressure ``es`` (Pa) and ``d es/dT`` (Pa/K) at temperature ``t`` (K).

    Over liquid water for t >= 273.15 K, over ice below (CLM4 QSat); t is clipped to [-75, 100] degC.
    """
    td = min(max(t - TFRZ, -75.0), 100.0)
    if td >= 0.0:
        es = _poly8(_A, td)
        desdt = _poly8(_B, td)
    else:
        es = _poly8(_C, td)
        desdt = _poly8(_D, td)
    return es * 100.0, desdt * 100.0


@njit
def qsat(t, p):
    """CLM4 ``QSat``: (es [Pa], des/dT [Pa/K], qs [kg/kg], dqs/dT [1/K]) at temperature ``t`` (K) and
    pressure ``p`` (Pa); qs = 0.622 es / (p - 0.378 es)."""
    es, desdt = esat(t)
    vp = 1.0 / (p - 0.378 * es)
    vp1 = 0.622 * vp
    vp2 = vp1 * vp
    return es, desdt, es * vp1, desdt * vp2 * p


@njit(inline="always")
def qsat_lane(t, p):
    """:func:`qsat` without branches, for loops over ensemble lanes that should vectorise: both
    polynomial pairs are evaluated and the one :func:`esat` would use is selected, so the results are
    bit-identical to :func:`qsat`. Returns (es [Pa], qs [kg/kg], dqs/dT [1/K])."""
    td = min(max(t - TFRZ, -75.0), 100.0)
    water = td >= 0.0
    es = (_poly8(_A, td) if water else _poly8(_C, td)) * 100.0
    desdt = (_poly8(_B, td) if water else _poly8(_D, td)) * 100.0
    vp = 1.0 / (p - 0.378 * es)
    vp1 = 0.622 * vp
    vp2 = vp1 * vp
    return es, es * vp1, desdt * vp2 * p


@njit
def qsat_array(t, p, out_es, out_desdt, out_qs, out_dqsdt):
    """Elementwise :func:`qsat` over 2-D arrays (e.g. patch x member).

    t (K), p (Pa) -> out_es (Pa), out_desdt (Pa/K), out_qs (kg/kg), out_dqsdt (1/K), all of t's shape.
    """
    n0, n1 = t.shape
    for i in range(n0):
        for j in range(n1):
            es, desdt, qs, dqsdt = qsat(t[i, j], p[i, j])
            out_es[i, j] = es
            out_desdt[i, j] = desdt
            out_qs[i, j] = qs
            out_dqsdt[i, j] = dqsdt


__all__ = ["esat", "qsat", "qsat_array", "qsat_lane"]
