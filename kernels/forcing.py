"""Numba kernels of the ensemble meteorological forcing: counter-based random streams, solar
geometry, the 6-hourly weather generator and the interpolation of 6-hourly records to the model step.

Pure functions on plain arrays (no files, no MPI, no configuration objects). Reads and writes only
the arrays passed in: the generator fills ``out_*`` record arrays and updates the AR(1) state
arrays it is given (``base_state``, ``member_state``) in place; the driver is
``engine/forcing.py``.

Conventions
-----------
* Time is in seconds since 00:00 UTC of 1 January of a 365-day ("noleap", CLM's default) year.
  Record ``k`` of a generator is valid at ``t_k = k * dt_rec``. State variables (TBOT, QBOT, PSRF,
  WIND, FLDS) are instantaneous at ``t_k``; FSDS and PRECTmms are means over ``[t_k, t_k + dt_rec)``.
* Record arrays are ``(record, field, cell, member)``: the member axis is last (DESIGN.md), so one
  record is a ``(field, cell, member)`` block. Field order: :data:`RECORD_FIELDS`.
* Model-step arrays are ``(step, field, cell, member)`` with field order :data:`STEP_FIELDS`.

Randomness
----------
Every random number comes from a counter-based stream: a splitmix64 hash (Steele, Lea & Flood 2014,
"Fast splittable pseudorandom number generators", OOPSLA; the finaliser of Java's SplittableRandom)
chained over the key ``(seed, member, key, record index, draw index)``, turned into normals with the
Box-Muller transform. A cell's numbers therefore depend only on its key, never on which cells are
computed together or in what order (decomposition independence).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from kernels._jit import njit

# ----------------------------------------------------------------------------------------------
# Field tables
# ----------------------------------------------------------------------------------------------
#: Fields of a 6-hourly forcing record (CLM datm stream names and units).
RECORD_FIELDS = ("TBOT", "QBOT", "PSRF", "WIND", "FSDS", "FLDS", "PRECTmms")
RECORD_UNITS = ("K", "kg/kg", "Pa", "m/s", "W/m2", "W/m2", "mm/s")
R_TBOT, R_QBOT, R_PSRF, R_WIND, R_FSDS, R_FLDS, R_PREC = range(7)

#: Fields at the model step, as CLM's land model receives them from datm (a2l):
#: shortwave split into visible/near-infrared x direct/diffuse, precipitation into rain/snow.
STEP_FIELDS = ("TBOT", "QBOT", "PSRF", "WIND", "FLDS", "FSDS",
               "SWVDR", "SWVDF", "SWNDR", "SWNDF", "RAIN", "SNOW")
STEP_UNITS = ("K", "kg/kg", "Pa", "m/s", "W/m2", "W/m2",
              "W/m2", "W/m2", "W/m2", "W/m2", "mm/s", "mm/s")
(S_TBOT, S_QBOT, S_PSRF, S_WIND, S_FLDS, S_FSDS,
 S_SWVDR, S_SWVDF, S_SWNDR, S_SWNDF, S_RAIN, S_SNOW) = range(12)

# ----------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------
SECONDS_PER_DAY = 86400.0
DAYS_PER_YEAR = 365  # CLM "noleap" calendar
SECONDS_PER_YEAR = SECONDS_PER_DAY * DAYS_PER_YEAR
MONTH_DAYS = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
MONTH_START_DAY = np.concatenate(([0], np.cumsum(MONTH_DAYS)[:-1])).astype(np.int64)
#: mid-month times (s since 1 Jan 00 UTC), the nodes of the mean-preserving temperature interpolation
MONTH_MID_SECONDS = (MONTH_START_DAY + 0.5 * MONTH_DAYS) * SECONDS_PER_DAY
DAY_TO_MONTH = np.repeat(np.arange(12, dtype=np.int64), MONTH_DAYS)

TFRZ = 273.15  # K, freezing point (CESM shr_const_mod SHR_CONST_TKFRZ)
STEBOL = 5.67e-8  # W/m2/K4, Stefan-Boltzmann (SHR_CONST_STEBOL)
GRAV = 9.80616  # m/s2 (SHR_CONST_G)
RDAIR = 287.04  # J/kg/K, dry-air gas constant (SHR_CONST_RDAIR, rounded)
LAPSE = 0.0065  # K/m, standard-atmosphere lapse rate (ICAO 1993)
P0 = 101325.0  # Pa, mean sea-level pressure
S0 = 1361.0  # W/m2, total solar irradiance (Kopp & Lean 2011, GRL 38, L01706)

_TWO_PI = 2.0 * math.pi
_INV_SQRT2 = 1.0 / math.sqrt(2.0)

#: Parameters of the member-independent weather (see engine/forcing.py for values and sources).
WeatherParams = namedtuple(
    "WeatherParams",
    ["dt_rec", "phi_t", "sq_t", "phi_p", "sq_p", "phi_w", "sq_w", "wind_scale", "wind_diurnal",
     "clear_a", "clear_b", "cloud_k", "cloud_c", "cloud_slope", "cloud_shift", "rh_cloud_max"],
)
#: Parameters of the member perturbations (see engine/forcing.py for values and sources).
PerturbParams = namedtuple(
    "PerturbParams",
    ["phi", "sq", "mu_p", "sg_p", "mu_sw", "sg_sw", "sd_lw", "sd_t",
     "max_p", "max_sw", "max_lw", "max_t", "lw_min_emis"],
)

# ----------------------------------------------------------------------------------------------
# Counter-based random streams
# ----------------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 2.0 ** -53


@njit
def mix64(z):
    """splitmix64 finaliser (Steele et al. 2014): a bijection of uint64 with full avalanche."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit
def combine(h, x):
    """Fold the uint64 key part ``x`` into the hash ``h`` (the +golden avoids mix64's fixed point 0)."""
    return mix64((h ^ x) + _GOLDEN)


@njit
def stream_prefix(seed, member, key):
    """Hash of (seed, member, key): the start of one stream; all arguments non-negative int64."""
    h = mix64(np.uint64(seed) + _GOLDEN)
    h = combine(h, np.uint64(member))
    return combine(h, np.uint64(key))


@njit
def normal_pair(prefix, k, pair):
    """Two independent standard normals for record ``k`` and draw pair ``pair`` of a stream.

    Uniforms in (0, 1) from the top 53 bits of two hashes, then Box-Muller (Box & Muller 1958).
    """
    hk = combine(prefix, np.uint64(k))
    h1 = combine(hk, np.uint64(2 * pair))
    h2 = combine(hk, np.uint64(2 * pair + 1))
    u1 = (np.float64(h1 >> _S11) + 0.5) * _INV53
    u2 = (np.float64(h2 >> _S11) + 0.5) * _INV53
    r = math.sqrt(-2.0 * math.log(u1))
    a = _TWO_PI * u2
    return r * math.cos(a), r * math.sin(a)


# ----------------------------------------------------------------------------------------------
# Solar geometry
# ----------------------------------------------------------------------------------------------
@njit
def orbit(t_year):
    """Solar declination (rad) and eccentricity factor (d0/d)**2 at ``t_year`` (s since 1 Jan 00 UTC).

    Fourier series of Spencer (1971, Search 2(5):172), as given by Iqbal (1983, An Introduction to
    Solar Radiation) eqs. 1.2.1 and 1.3.1, with the day angle from a 365-day year.
    """
    g = _TWO_PI * ((t_year / SECONDS_PER_DAY) % DAYS_PER_YEAR) / DAYS_PER_YEAR
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g)
            - 0.006758 * math.cos(2.0 * g) + 0.000907 * math.sin(2.0 * g)
            - 0.002697 * math.cos(3.0 * g) + 0.00148 * math.sin(3.0 * g))
    e0 = (1.000110 + 0.034221 * math.cos(g) + 0.001280 * math.sin(g)
          + 0.000719 * math.cos(2.0 * g) + 0.000077 * math.sin(2.0 * g))
    return decl, e0


@njit
def mean_cosz(lat, lon, t1, t2, decl):
    """Mean over [t1, t2] (s, UTC, t2 - t1 <= 1 day) of max(cos(zenith), 0) at lat, lon (rad).

    cos z = sin(lat) sin(decl) + cos(lat) cos(decl) cos(h), hour angle h = 2 pi t/86400 + lon - pi
    (CLM's shr_orb_cosz; no equation of time), integrated analytically over the daylit part of
    the interval (sunset hour angle H = arccos(-tan(lat) tan(decl)); Iqbal 1983 eq. 1.5.4), with the
    declination held at ``decl``. Integrals over sub-intervals add up to the whole interval's,
    which makes the coszen distribution of shortwave energy-conserving.
    """
    a = math.sin(lat) * math.sin(decl)
    b = math.cos(lat) * math.cos(decl)
    if t2 <= t1:
        return 0.0
    if b <= 1e-12:
        return max(a, 0.0)
    x = -a / b
    if x >= 1.0:
        return 0.0  # polar night
    half_day = math.pi if x <= -1.0 else math.acos(x)
    h1 = _TWO_PI * (t1 / SECONDS_PER_DAY) + lon - math.pi
    h2 = _TWO_PI * (t2 / SECONDS_PER_DAY) + lon - math.pi
    n = math.floor((h1 + math.pi) / _TWO_PI)
    h1 -= _TWO_PI * n
    h2 -= _TWO_PI * n
    total = 0.0
    for j in range(2):  # daylit arcs centred on h = 0 and h = 2 pi cover any interval <= 1 day
        c = _TWO_PI * j
        lo = max(h1, c - half_day)
        hi = min(h2, c + half_day)
        if hi > lo:
            total += a * (hi - lo) + b * (math.sin(hi - c) - math.sin(lo - c))
    return max(total / (h2 - h1), 0.0)


@njit
def mean_cosz_columns(lat, lon, t1, t2, decl, out):
    """:func:`mean_cosz` for every column: ``out[c]`` = mean of max(cos(zenith), 0) over [t1, t2] (s,
    UTC) at ``lat[c]``, ``lon[c]`` (rad), declination ``decl`` (rad); one call for a block of columns."""
    for c in range(lat.shape[0]):
        out[c] = mean_cosz(lat[c], lon[c], t1, t2, decl)


@njit
def step_forcing_ok(f, lo, hi, nonneg_first, nonneg_last):
    """True when the step forcing ``f[field, c, m]`` (``STEP_FIELDS`` order) is finite everywhere,
    within ``[lo[k], hi[k]]`` for every field k (bounds +-inf where a field has none) and >= 0 for the
    fields ``nonneg_first <= k < nonneg_last``; one pass over the array. The caller names the first
    offending value when this is False."""
    nf, nc, nm = f.shape
    nbad = 0
    for k in range(nf):
        a = lo[k]
        b = hi[k]
        zero = -math.inf if (k < nonneg_first or k >= nonneg_last) else 0.0
        for c in range(nc):
            for m in range(nm):
                x = f[k, c, m]
                # NaN fails every comparison; +-inf fails x - x == 0
                good = (x - x == 0.0) & (x >= a) & (x <= b) & (x >= zero)
                nbad += 0 if good else 1
    return nbad == 0


# ----------------------------------------------------------------------------------------------
# Thermodynamics and radiation formulas
# ----------------------------------------------------------------------------------------------
@njit
def esat(t):
    """Saturation vapour pressure over water (Pa) at temperature t (K): Bolton (1980, MWR 108:1046) eq. 10."""
    return 611.2 * math.exp(17.67 * (t - TFRZ) / (t - 29.65))


@njit
def specific_humidity(e, p):
    """Specific humidity (kg/kg) from vapour pressure e and pressure p (Pa), as in datm (0.622/0.378)."""
    return 0.622 * e / (p - 0.378 * e)


@njit
def longwave_down(t, e, cloud_clf):
    """Downward longwave (W/m2) from air temperature t (K), vapour pressure e (Pa) and the cloud
    factor clf (0 clear .. 1 overcast).

    Clear-sky emissivity of Prata (1996, QJRMS 122:1127, eq. 21), eps = 1 - (1 + w) exp(-(1.2 + 3 w)^0.5)
    with precipitable water w = 46.5 e[hPa]/T cm, and the cloud correction of Crawford & Duchon
    (1999, JAM 38:474, eq. 20), eps = clf + (1 - clf) eps_clr, whose clf is one minus the ratio of
    all-sky to clear-sky shortwave (the Kasten-Czeplak factor used for FSDS, so FSDS and FLDS see
    the same cloud).
    """
    w = 46.5 * 0.01 * e / t
    eps_clr = 1.0 - (1.0 + w) * math.exp(-math.sqrt(1.2 + 3.0 * w))
    eps = cloud_clf + (1.0 - cloud_clf) * eps_clr
    return eps * STEBOL * t ** 4


@njit
def surface_pressure(elev, t_surface):
    """Surface pressure (Pa) at elevation ``elev`` (m) by the hypsometric equation.

    p = p0 exp(-g z / (R_d T_m)) with the layer-mean temperature T_m = T_s + LAPSE z / 2 (the
    sea-level temperature extrapolated with the standard lapse rate; Wallace & Hobbs 2006 eq. 3.29).
    """
    tm = t_surface + 0.5 * LAPSE * elev
    return P0 * math.exp(-GRAV * elev / (RDAIR * tm))


@njit
def clim_interp(nodes, t_year):
    """Piecewise-linear cyclic interpolation of 12 mid-month node values at ``t_year`` (s)."""
    y = SECONDS_PER_YEAR
    t = t_year % y
    if t < MONTH_MID_SECONDS[0]:
        t_lo = MONTH_MID_SECONDS[11] - y
        w = (t - t_lo) / (MONTH_MID_SECONDS[0] - t_lo)
        return (1.0 - w) * nodes[11] + w * nodes[0]
    if t >= MONTH_MID_SECONDS[11]:
        w = (t - MONTH_MID_SECONDS[11]) / (MONTH_MID_SECONDS[0] + y - MONTH_MID_SECONDS[11])
        return (1.0 - w) * nodes[11] + w * nodes[0]
    m = 0
    while MONTH_MID_SECONDS[m + 1] <= t:
        m += 1
    w = (t - MONTH_MID_SECONDS[m]) / (MONTH_MID_SECONDS[m + 1] - MONTH_MID_SECONDS[m])
    return (1.0 - w) * nodes[m] + w * nodes[m + 1]


@njit
def month_of(t_year):
    """Month index 0..11 of ``t_year`` (s since 1 Jan 00 UTC, noleap)."""
    day = int((t_year % SECONDS_PER_YEAR) // SECONDS_PER_DAY)
    return DAY_TO_MONTH[day]


@njit
def datm_sw_split(sw):
    """Split total shortwave (W/m2) as datm's CLMNCEP mode does (CDEPS datm_datamode_clmncep_mod).

    Half visible, half near-infrared; the direct fraction of each half from cubic fits to a year
    of hourly CAM3.5 output (NIR: 0.29548 + 0.00504 s - 1.4957e-5 s^2 + 1.4881e-8 s^3, VIS:
    0.17639 + 0.00380 s - 9.0039e-6 s^2 + 8.1351e-9 s^3 with s the half flux, bounded to
    [0.01, 0.99]). Returns (vis direct, vis diffuse, nir direct, nir diffuse).
    """
    s = 0.5 * sw
    rn = min(0.99, max(0.29548 + 0.00504 * s - 1.4957e-05 * s * s + 1.4881e-08 * s * s * s, 0.01))
    rv = min(0.99, max(0.17639 + 0.00380 * s - 9.0039e-06 * s * s + 8.1351e-09 * s * s * s, 0.01))
    return rv * s, (1.0 - rv) * s, rn * s, (1.0 - rn) * s


# ----------------------------------------------------------------------------------------------
# AR(1) state updates (shared by the generator and the fast-forward so both do identical arithmetic)
# ----------------------------------------------------------------------------------------------
@njit
def _ar(a_prev, eps, phi, sq, k):
    """AR(1) with unit stationary variance started in equilibrium at record 0: a_0 = eps_0."""
    if k == 0:
        return eps
    return phi * a_prev + sq * eps


@njit
def _update_base(c, k, node_prefix, base_state, wp):
    """Advance the 3 synoptic anomalies (temperature, precipitation/cloud, wind) of the 4 nodes."""
    for j in range(4):
        e1, e2 = normal_pair(node_prefix[j], k, 0)
        e3, _ = normal_pair(node_prefix[j], k, 1)
        base_state[c, j, 0] = _ar(base_state[c, j, 0], e1, wp.phi_t, wp.sq_t, k)
        base_state[c, j, 1] = _ar(base_state[c, j, 1], e2, wp.phi_p, wp.sq_p, k)
        base_state[c, j, 2] = _ar(base_state[c, j, 2], e3, wp.phi_w, wp.sq_w, k)


@njit
def _update_member(c, m, k, prefix, member_state, pp):
    """Advance the 4 independent AR(1) perturbation drivers of one member."""
    e1, e2 = normal_pair(prefix, k, 0)
    e3, e4 = normal_pair(prefix, k, 1)
    member_state[c, m, 0] = _ar(member_state[c, m, 0], e1, pp.phi, pp.sq, k)
    member_state[c, m, 1] = _ar(member_state[c, m, 1], e2, pp.phi, pp.sq, k)
    member_state[c, m, 2] = _ar(member_state[c, m, 2], e3, pp.phi, pp.sq, k)
    member_state[c, m, 3] = _ar(member_state[c, m, 3], e4, pp.phi, pp.sq, k)


@njit
def _correlated(c, m, member_state, chol, zmax):
    """Cross-correlated, truncated deviates (P, SW, LW, T) = clip(L a) from the member's AR drivers."""
    z0 = chol[0, 0] * member_state[c, m, 0]
    z1 = chol[1, 0] * member_state[c, m, 0] + chol[1, 1] * member_state[c, m, 1]
    z2 = (chol[2, 0] * member_state[c, m, 0] + chol[2, 1] * member_state[c, m, 1]
          + chol[2, 2] * member_state[c, m, 2])
    z3 = (chol[3, 0] * member_state[c, m, 0] + chol[3, 1] * member_state[c, m, 1]
          + chol[3, 2] * member_state[c, m, 2] + chol[3, 3] * member_state[c, m, 3])
    return (min(max(z0, -zmax[0]), zmax[0]), min(max(z1, -zmax[1]), zmax[1]),
            min(max(z2, -zmax[2]), zmax[2]), min(max(z3, -zmax[3]), zmax[3]))


@njit
def _prefixes(seed, members, cell_key, node_keys, base_member, node_prefix, member_prefix):
    for j in range(4):
        node_prefix[j] = stream_prefix(seed, base_member, node_keys[j])
    for m in range(members.shape[0]):
        member_prefix[m] = stream_prefix(seed, members[m], cell_key)


# ----------------------------------------------------------------------------------------------
# The generator
# ----------------------------------------------------------------------------------------------
@njit
def generate_records(k0, nrec, seed, members, base_member, perturb,
                     cell_key, lat, lon, elev, sigma_t, t_nodes, p_rate, p_thresh,
                     p_norm, rh_base, dtr, node_keys, node_w, wp, pp, chol,
                     base_state, member_state, out):
    """Generate forcing records k0 .. k0+nrec-1 for every cell and member.

    Inputs (per cell c; months m = 0..11):
      cell_key[c] int64 global cell id (stream key of the member perturbations);
      lat[c], lon[c] rad; elev[c] m; sigma_t[c] K (synoptic temperature s.d.);
      t_nodes[c, m] K mid-month nodes whose piecewise-linear interpolation has the monthly means of
      the climatology at the record times; p_rate[c, m] mm/s monthly mean precipitation;
      p_thresh[c, m] wet threshold q of the latent Gaussian; p_norm[c, m] = E[(z - q)+];
      rh_base[c, m] relative humidity (fraction) of clear weather; dtr[c, m] K diurnal temperature range; node_keys[c, 4] int64 weather-lattice node
      keys and node_w[c, 4] their weights (sum of squares 1); members[n] int64 member ids;
      base_member int64 the member id reserved for the member-independent weather; perturb bool;
      wp WeatherParams, pp PerturbParams, chol (4, 4) lower Cholesky factor of the cross-correlation
      of (P, SW, LW, T) perturbations.
    State (in/out): base_state[c, 4, 3] AR(1) anomalies of the lattice nodes and
      member_state[c, n, 4] AR(1) perturbation drivers, both valid for record k0-1 on entry
      (ignored when k0 == 0) and for record k0+nrec-1 on exit.
    Output: out[k - k0, field, c, member] in the units of RECORD_UNITS.

    Model (the engine docstring gives the sources of every number):
      T   = T_clim(t) + sigma_t zT + dtr/2 cos(2 pi (h_local - 15 h)/24 h)           [K]
      P   = P_month max(zP - q, 0) / E[(zP - q)+]   (intermittent, E[P] = P_month)      [mm/s]
      cloud = 1 / (1 + exp(-slope (zP - q + shift)))
      e   = (rh + (rh_cloud_max - rh) cloud^2) esat(T_clim + sigma_t zT), capped at esat(T)  [Pa]
      SW  = S0 E0 <cos z> (clear_a + clear_b z) (1 - cloud_k cloud^cloud_c)             [W/m2]
      LW  = Prata (1996) clear sky + Crawford-Duchon (1999) cloud; PSRF hypsometric; WIND Weibull(k=2).
      Members: P x lognormal, SW x lognormal (capped at clear sky), LW + normal, T + normal.
    """
    ncell = lat.shape[0]
    nmem = members.shape[0]
    node_prefix = np.empty(4, dtype=np.uint64)
    member_prefix = np.empty(nmem, dtype=np.uint64)
    zmax = np.array([pp.max_p, pp.max_sw, pp.max_lw, pp.max_t])
    dt_rec = wp.dt_rec
    for c in range(ncell):
        _prefixes(seed, members, cell_key[c], node_keys[c], base_member, node_prefix, member_prefix)
        lon_hours = lon[c] * 12.0 / math.pi
        for i in range(nrec):
            k = k0 + i
            t = (k * dt_rec) % SECONDS_PER_YEAR
            _update_base(c, k, node_prefix, base_state, wp)
            zt = 0.0
            zp = 0.0
            zw = 0.0
            for j in range(4):
                zt += node_w[c, j] * base_state[c, j, 0]
                zp += node_w[c, j] * base_state[c, j, 1]
                zw += node_w[c, j] * base_state[c, j, 2]
            mo = month_of(t)
            t_clim = clim_interp(t_nodes[c], t)
            t_daily = t_clim + sigma_t[c] * zt
            hour_local = (t % SECONDS_PER_DAY) / 3600.0 + lon_hours
            tb = t_daily + 0.5 * dtr[c, mo] * math.cos(_TWO_PI * (hour_local - 15.0) / 24.0)
            # precipitation and cloud from the latent Gaussian zp
            q = p_thresh[c, mo]
            pb = 0.0
            if p_norm[c, mo] > 0.0:
                pb = p_rate[c, mo] * max(zp - q, 0.0) / p_norm[c, mo]
            cloud = 1.0 / (1.0 + math.exp(-wp.cloud_slope * (zp - q + wp.cloud_shift)))
            rh = rh_base[c, mo] + (wp.rh_cloud_max - rh_base[c, mo]) * cloud * cloud
            e_b = rh * esat(t_daily)
            ps = surface_pressure(elev[c], t_clim)
            # shortwave: top of atmosphere over [t, t + dt_rec), clear-sky transmission, cloud
            decl, e0 = orbit(t + 0.5 * dt_rec)
            toa = S0 * e0 * mean_cosz(lat[c], lon[c], t, t + dt_rec, decl)
            clear = toa * (wp.clear_a + wp.clear_b * elev[c])
            clf = wp.cloud_k * cloud ** wp.cloud_c  # 1 - all-sky/clear-sky shortwave
            swb = clear * (1.0 - clf)
            # wind: Weibull (shape 2) quantile of the Gaussian zw, modulated diurnally
            tail = 0.5 * math.erfc(zw * _INV_SQRT2)  # 1 - Phi(zw)
            wind = wp.wind_scale * math.sqrt(-math.log(tail))
            wind *= 1.0 + wp.wind_diurnal * math.cos(_TWO_PI * (hour_local - 14.0) / 24.0)
            wind = max(wind, 0.1)
            for m in range(nmem):
                tm = tb
                dlw = 0.0
                f_p = 1.0
                f_sw = 1.0
                if perturb:
                    _update_member(c, m, k, member_prefix[m], member_state, pp)
                    zP, zS, zL, zT = _correlated(c, m, member_state, chol, zmax)
                    tm = tb + pp.sd_t * zT
                    dlw = pp.sd_lw * zL
                    f_p = math.exp(pp.mu_p + pp.sg_p * zP)
                    f_sw = math.exp(pp.mu_sw + pp.sg_sw * zS)
                em = min(e_b, esat(tm))
                lw = longwave_down(tm, em, clf) + dlw
                lw = max(lw, pp.lw_min_emis * STEBOL * tm ** 4)
                sw = min(swb * f_sw, clear)
                out[i, R_TBOT, c, m] = tm
                out[i, R_QBOT, c, m] = specific_humidity(em, ps)
                out[i, R_PSRF, c, m] = ps
                out[i, R_WIND, c, m] = wind
                out[i, R_FSDS, c, m] = sw
                out[i, R_FLDS, c, m] = lw
                out[i, R_PREC, c, m] = pb * f_p


@njit
def advance_state(k_from, k_to, seed, members, base_member, perturb, cell_key, node_keys, wp, pp,
                  base_state, member_state):
    """Advance the AR(1) states through records k_from .. k_to-1 without producing forcing.

    Same draws and the same arithmetic (the shared ``_update_*`` helpers) as generate_records, so a
    generator that fast-forwards reaches bit-identical states.
    """
    ncell = cell_key.shape[0]
    nmem = members.shape[0]
    node_prefix = np.empty(4, dtype=np.uint64)
    member_prefix = np.empty(nmem, dtype=np.uint64)
    for c in range(ncell):
        _prefixes(seed, members, cell_key[c], node_keys[c], base_member, node_prefix, member_prefix)
        for k in range(k_from, k_to):
            _update_base(c, k, node_prefix, base_state, wp)
            if perturb:
                for m in range(nmem):
                    _update_member(c, m, k, member_prefix[m], member_state, pp)


@njit
def perturbation_deviates(k0, nrec, seed, members, cell_key, pp, chol, member_state, out):
    """The correlated, truncated member deviates (P, SW, LW, T) of records k0.. (diagnostics, tests).

    Same streams as generate_records; member_state[c, n, 4] in/out as there; out[k-k0, c, n, 4].
    """
    ncell = cell_key.shape[0]
    nmem = members.shape[0]
    zmax = np.array([pp.max_p, pp.max_sw, pp.max_lw, pp.max_t])
    for c in range(ncell):
        for m in range(nmem):
            prefix = stream_prefix(seed, members[m], cell_key[c])
            for i in range(nrec):
                _update_member(c, m, k0 + i, prefix, member_state, pp)
                z = _correlated(c, m, member_state, chol, zmax)
                for v in range(4):
                    out[i, c, m, v] = z[v]


# ----------------------------------------------------------------------------------------------
# Records -> model steps (CLM datm time interpolation)
# ----------------------------------------------------------------------------------------------
@njit
def records_to_steps(rec, t0, dt_rec, nsub, lat, lon, out):
    """Interpolate records to model steps of dt_rec/nsub seconds, as CLM's datm does.

    rec[r, field, c, m] (RECORD_FIELDS) are records at t0 + r dt_rec (t0 in s since 1 Jan 00 UTC);
    out[s, field, c, m] (STEP_FIELDS) receives the (nrec - 1) * nsub steps covering the record
    intervals; step s starts at t0 + s dt_rec/nsub. lat, lon in rad.
    - State variables (TBOT, QBOT, PSRF, WIND, FLDS): linear in time between the bracketing records,
      evaluated at the step's start (datm tintalgo 'linear'); a step that starts on a record equals it.
    - FSDS: datm tintalgo 'coszen': the interval mean is distributed in proportion to the cosine of
      the solar zenith angle, FSDS_step = FSDS_rec <cos z>_step / <cos z>_rec, with <.> exact
      interval means (mean_cosz) at the interval's declination, so the mean over the steps of an
      interval equals the record (energy conserved) and night steps get 0. Split by datm_sw_split.
    - PRECTmms: constant within the interval (datm 'nearest'/'lower'), split into rain and snow by
      the step's TBOT with CESM's shr_precip_partition_rain_snow_ramp: rain fraction
      (TBOT - 273.15 K) * 0.5, bounded to [0, 1].
    """
    nrec = rec.shape[0]
    ncell = rec.shape[2]
    nmem = rec.shape[3]
    dt_step = dt_rec / nsub
    for a in range(nrec - 1):
        ta = t0 + a * dt_rec
        decl, e0 = orbit(ta + 0.5 * dt_rec)
        for c in range(ncell):
            mcz_rec = mean_cosz(lat[c], lon[c], ta, ta + dt_rec, decl)
            for j in range(nsub):
                s = a * nsub + j
                t1 = ta + j * dt_step
                t2 = ta + (j + 1) * dt_step
                w = j / nsub
                fac = 0.0
                if mcz_rec > 0.0:
                    fac = mean_cosz(lat[c], lon[c], t1, t2, decl) / mcz_rec
                for m in range(nmem):
                    tb = (1.0 - w) * rec[a, R_TBOT, c, m] + w * rec[a + 1, R_TBOT, c, m]
                    out[s, S_TBOT, c, m] = tb
                    out[s, S_QBOT, c, m] = (1.0 - w) * rec[a, R_QBOT, c, m] + w * rec[a + 1, R_QBOT, c, m]
                    out[s, S_PSRF, c, m] = (1.0 - w) * rec[a, R_PSRF, c, m] + w * rec[a + 1, R_PSRF, c, m]
                    out[s, S_WIND, c, m] = (1.0 - w) * rec[a, R_WIND, c, m] + w * rec[a + 1, R_WIND, c, m]
                    out[s, S_FLDS, c, m] = (1.0 - w) * rec[a, R_FLDS, c, m] + w * rec[a + 1, R_FLDS, c, m]
                    sw = rec[a, R_FSDS, c, m] * fac
                    out[s, S_FSDS, c, m] = sw
                    vdr, vdf, ndr, ndf = datm_sw_split(sw)
                    out[s, S_SWVDR, c, m] = vdr
                    out[s, S_SWVDF, c, m] = vdf
                    out[s, S_SWNDR, c, m] = ndr
                    out[s, S_SWNDF, c, m] = ndf
                    p = rec[a, R_PREC, c, m]
                    frac_rain = min(1.0, max(0.0, (tb - TFRZ) * 0.5))
                    out[s, S_RAIN, c, m] = max(0.0, p * frac_rain)
                    out[s, S_SNOW, c, m] = max(0.0, p * (1.0 - frac_rain))


@njit
def toa_at_steps(t0, dt_rec, nsub, nint, lat, lon, out):
    """Top-of-atmosphere shortwave (W/m2) mean over each model step, out[s, c], same geometry as
    records_to_steps (the declination and eccentricity of the enclosing record interval)."""
    ncell = lat.shape[0]
    dt_step = dt_rec / nsub
    for a in range(nint):
        ta = t0 + a * dt_rec
        decl, e0 = orbit(ta + 0.5 * dt_rec)
        for c in range(ncell):
            for j in range(nsub):
                t1 = ta + j * dt_step
                t2 = ta + (j + 1) * dt_step
                out[a * nsub + j, c] = S0 * e0 * mean_cosz(lat[c], lon[c], t1, t2, decl)


@njit
def monthly_interp_matrix(dt_rec):
    """W[m, j]: mean over the records of month m (times k dt_rec in one noleap year) of the weight
    that clim_interp gives node j. Solving W x = monthly means gives nodes whose interpolation
    reproduces the monthly means exactly at the record times (a discrete form of the
    mean-preserving interpolation of Killworth 1996, JPO 26:136)."""
    nrec = int(round(SECONDS_PER_YEAR / dt_rec))
    w = np.zeros((12, 12))
    count = np.zeros(12)
    unit = np.zeros(12)
    for k in range(nrec):
        t = k * dt_rec
        mo = month_of(t)
        count[mo] += 1.0
        for j in range(12):
            unit[:] = 0.0
            unit[j] = 1.0
            w[mo, j] += clim_interp(unit, t)
    for mo in range(12):
        for j in range(12):
            w[mo, j] /= count[mo]
    return w


@njit
def box_mean(band, wrow, r_lo, r_hi, c_lo, c_hi, out):
    """Weighted box means on a latitude band (area averaging of a source grid to model cells).

    band[l, r, j]: field l on band row r, column j (nlon columns, periodic: column indices are taken
    modulo nlon); wrow[r] row weights (cos latitude); for point p the rows r_lo[p]..r_hi[p] and
    columns c_lo[p]..c_hi[p] (inclusive). out[l, p] = sum(w v) / sum(w). The sums run in a fixed
    order over the box, so a point's value does not depend on how many rows the band holds.
    """
    nlon = band.shape[2]
    for p in range(r_lo.shape[0]):
        for l in range(band.shape[0]):
            s = 0.0
            ws = 0.0
            for r in range(r_lo[p], r_hi[p] + 1):
                for jj in range(c_lo[p], c_hi[p] + 1):
                    j = jj % nlon
                    s += wrow[r] * band[l, r, j]
                    ws += wrow[r]
            out[l, p] = s / ws
