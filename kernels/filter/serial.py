"""The serial observation loop of the filter on one rank's piece of the state, and its spatial index.

Pure numba kernels (no MPI): :func:`process_items` assimilates a run of observations in global
order into the local state block X[element, member] and into the prior ensembles of the local
observations not yet assimilated (DART's extended state); :func:`build_bins` / :func:`query_bins`
are the uniform-bin spatial index (sorted 1-D bins on the unit circle; a lat/lon bin grid on the
sphere) used to find the elements within 2*cutoff of an observation without scanning them all;
:func:`needed_observations` tells which foreign observations touch this block;
:func:`build_dependencies` and :func:`walk_items` run the same loop out of order where that
cannot change a bit (only items with disjoint supports are reordered), so a rank keeps working
while a record from another rank is on its way.

Locations are arrays loc[n, 5]: geometry 0 ("periodic1d") uses loc[:, 0] in [0, 1); geometry 1
("sphere") uses (lat, lon) in radians with lon in [0, 2*pi) and the unit vector in columns 2-4
(:func:`unit_vectors`) for a cheap pre-test. Distances are those of
``kernels.filter.eakf``. Reads its inputs, updates X, Yp and the inflation fields in place, fills
the item buffers.
"""

from __future__ import annotations

import math

import numpy as np

from kernels._jit import njit
from kernels.filter.eakf import (bounded_inflation_factor, dist_periodic1d, dist_sphere,
                                 enforce_lower_bound, ens_mean_var, gaspari_cohn, inflate_row,
                                 obs_increment_eakf, obs_increment_enkf, regress_update, rtps_row,
                                 update_varying_ss_inflation)

GEOM_PERIODIC1D = 0
GEOM_SPHERE = 1
KIND_EAKF = 0
KIND_ENKF = 1


@njit
def distance(geometry, a0, a1, b0, b1):
    """Distance between two locations (unit-circle units, or radians on the unit sphere)."""
    if geometry == 0:
        return dist_periodic1d(a0, b0)
    return dist_sphere(a0, a1, b0, b1)


@njit
def chord2_limit(cutoff):
    """Squared chord length beyond which two points on the unit sphere are surely >= 2*cutoff apart.

    The chord of an angle t is 2 sin(t/2); the margin (1e-9 relative, 1e-15 absolute) is far above
    round-off, so this cheap test never rejects a point that the exact distance would accept.
    """
    if 2.0 * cutoff >= math.pi:
        return np.inf
    c = 2.0 * math.sin(cutoff)
    return c * c * (1.0 + 1e-9) + 1e-15


@njit
def loc_weight(geometry, a, p, b, q, cutoff, ch2max):
    """Gaspari-Cohn weight between location a[p] and b[q] (rows of loc arrays).

    On the sphere a cheap unit-vector chord test (columns 2-4) rejects far points first; the weight
    itself always comes from DART's great-circle distance on (lat, lon) (columns 0-1).
    """
    if geometry == 0:
        return gaspari_cohn(dist_periodic1d(a[p, 0], b[q, 0]), cutoff)
    dx = a[p, 2] - b[q, 2]
    dy = a[p, 3] - b[q, 3]
    dz = a[p, 4] - b[q, 4]
    if dx * dx + dy * dy + dz * dz > ch2max:
        return 0.0
    return gaspari_cohn(dist_sphere(a[p, 0], a[p, 1], b[q, 0], b[q, 1]), cutoff)


@njit
def unit_vectors(loc):
    """Fill columns 2-4 of sphere locations loc[n, 5] with the unit vector of (lat, lon) radians."""
    for i in range(loc.shape[0]):
        cl = math.cos(loc[i, 0])
        loc[i, 2] = cl * math.cos(loc[i, 1])
        loc[i, 3] = cl * math.sin(loc[i, 1])
        loc[i, 4] = math.sin(loc[i, 0])


@njit
def bin_of(geometry, l0, l1, nb1, nb2):
    """Bin number of a location: nb1 bins on [0, 1), or an nb1 (lat) x nb2 (lon) grid."""
    if geometry == 0:
        b = int(l0 * nb1)
        return min(max(b, 0), nb1 - 1)
    j = int((l0 + 0.5 * math.pi) / math.pi * nb1)
    j = min(max(j, 0), nb1 - 1)
    i = int(l1 / (2.0 * math.pi) * nb2)
    i = min(max(i, 0), nb2 - 1)
    return j * nb2 + i


@njit
def build_bins(geometry, loc, nb1, nb2):
    """Counting sort of the n locations into bins: returns (ptr[nbins+1], members[n]).

    Elements of bin b are members[ptr[b]:ptr[b+1]], in increasing element order.
    """
    n = loc.shape[0]
    nbins = nb1 if geometry == 0 else nb1 * nb2
    ptr = np.zeros(nbins + 1, dtype=np.int64)
    which = np.empty(n, dtype=np.int64)
    for e in range(n):
        b = bin_of(geometry, loc[e, 0], loc[e, 1], nb1, nb2)
        which[e] = b
        ptr[b + 1] += 1
    for b in range(nbins):
        ptr[b + 1] += ptr[b]
    fill = ptr[:-1].copy()
    members = np.empty(n, dtype=np.int64)
    for e in range(n):
        b = which[e]
        members[fill[b]] = e
        fill[b] += 1
    return ptr, members


@njit
def query_bins(geometry, l0, l1, reach, nb1, nb2, out_bins):
    """Bins that may hold points within `reach` of (l0, l1); fills out_bins, returns their count.

    A superset (a small margin covers rounding): the caller checks exact distances.
    """
    reach = reach * (1.0 + 1e-12) + 1e-15
    cnt = 0
    if geometry == 0:
        lo = int(math.floor((l0 - reach) * nb1))
        hi = int(math.floor((l0 + reach) * nb1))
        if hi - lo + 1 >= nb1:
            for b in range(nb1):
                out_bins[b] = b
            return nb1
        for b in range(lo, hi + 1):
            out_bins[cnt] = b % nb1
            cnt += 1
        return cnt
    half = 0.5 * math.pi
    jlo = int(math.floor((l0 - reach + half) / math.pi * nb1))
    jhi = int(math.floor((l0 + reach + half) / math.pi * nb1))
    jlo = min(max(jlo, 0), nb1 - 1)
    jhi = min(max(jhi, 0), nb1 - 1)
    all_lon = reach >= half or l0 - reach <= -half or l0 + reach >= half
    s = 0.0
    ilo = 0
    ihi = 0
    if not all_lon:
        s = math.sin(reach) / math.cos(l0)
        all_lon = s >= 1.0
    if not all_lon:
        dlon = math.asin(s)
        ilo = int(math.floor((l1 - dlon) / (2.0 * math.pi) * nb2))
        ihi = int(math.floor((l1 + dlon) / (2.0 * math.pi) * nb2))
        all_lon = ihi - ilo + 1 >= nb2
    for j in range(jlo, jhi + 1):
        if all_lon:
            for i in range(nb2):
                out_bins[cnt] = j * nb2 + i
                cnt += 1
        else:
            for i in range(ilo, ihi + 1):
                out_bins[cnt] = j * nb2 + (i % nb2)
                cnt += 1
    return cnt


@njit
def csr_apply(indptr, indices, weights, rows, X, first, out_Y):
    """Linear forward operator: out_Y[q] = sum_p weights[p] * X[indices[p] - first] for row rows[q].

    indices are global element numbers; `first` the global number of X's first row. Members last.
    """
    n = X.shape[1]
    for q in range(rows.shape[0]):
        k = rows[q]
        for m in range(n):
            out_Y[q, m] = 0.0
        for p in range(indptr[k], indptr[k + 1]):
            w = weights[p]
            e = indices[p] - first
            for m in range(n):
                out_Y[q, m] += w * X[e, m]


@njit
def _update_state_element(X, i, w, y, ybar, s2, dy, yo, r, adaptive, inf_mean, inf_sd, inf_base,
                          inf_lower, inf_upper, inf_sd_lower):
    cov, var = regress_update(X[i], y, ybar, s2, dy, w)
    if adaptive:
        correl = cov / math.sqrt(var * s2) if var > 0.0 else 0.0
        m, s = update_varying_ss_inflation(inf_mean[i], inf_sd[i], inf_base[i], ybar, s2, yo, r, w,
                                           correl, inf_lower, inf_upper, inf_sd_lower)
        inf_mean[i] = m
        inf_sd[i] = s


@njit
def assimilate_item(t, item_obs, item_row, item_yo, item_r, item_y, item_dy, obs_loc,
                    X, xloc, xptr, xmembers, Yp, yp_obs, yp_active, yloc, yptr, ymembers,
                    geometry, cutoff, localize, nb1, nb2, kind, seed,
                    adaptive, inf_mean, inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower, bins):
    """Assimilate work item t into the local block (one step of DART's sequential loop).

    Item t is global observation item_obs[t] with value item_yo[t] and error variance item_r[t].
    If item_row[t] >= 0 this rank owns it: its current prior ensemble Yp[item_row[t]] is copied to
    item_y[t] and its increments are computed into item_dy[t] (for sending to other ranks);
    otherwise item_y[t], item_dy[t] hold what the owner sent. Then every local state element X[i]
    within 2*cutoff gets x += rho*b*dy (rho = gaspari_cohn(distance, cutoff), or 1 if not
    localize), with the adaptive inflation fields updated on the way (if adaptive), and so does
    every local observation prior Yp[j] whose global number yp_obs[j] is later than the item's
    and that is still to be assimilated (yp_active[j]). X[element, member]; Yp[row, member].
    """
    nx = X.shape[0]
    nyl = Yp.shape[0]
    reach = 2.0 * cutoff
    k = item_obs[t]
    row = item_row[t]
    yo = item_yo[t]
    r = item_r[t]
    y = item_y[t]
    dy = item_dy[t]
    if row >= 0:
        y[:] = Yp[row]
        if kind == 0:
            obs_increment_eakf(y, yo, r, dy)
        else:
            obs_increment_enkf(y, yo, r, seed, k, dy)
    ybar, s2 = ens_mean_var(y)
    if not (s2 > 0.0):
        return  # zero spread: zero increments, nothing to regress on
    o0 = obs_loc[k, 0]
    o1 = obs_loc[k, 1]
    ch2 = chord2_limit(cutoff)
    if localize:
        nb = query_bins(geometry, o0, o1, reach, nb1, nb2, bins)
        for q in range(nb):
            b = bins[q]
            for p in range(xptr[b], xptr[b + 1]):
                i = xmembers[p]
                w = loc_weight(geometry, obs_loc, k, xloc, i, cutoff, ch2)
                if w > 0.0:
                    _update_state_element(X, i, w, y, ybar, s2, dy, yo, r, adaptive, inf_mean,
                                          inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower)
        if nyl > 0:
            for q in range(nb):
                b = bins[q]
                for p in range(yptr[b], yptr[b + 1]):
                    j = ymembers[p]
                    if yp_obs[j] > k and yp_active[j]:
                        w = loc_weight(geometry, obs_loc, k, yloc, j, cutoff, ch2)
                        if w > 0.0:
                            regress_update(Yp[j], y, ybar, s2, dy, w)
    else:
        for i in range(nx):
            _update_state_element(X, i, 1.0, y, ybar, s2, dy, yo, r, adaptive, inf_mean, inf_sd,
                                  inf_base, inf_lower, inf_upper, inf_sd_lower)
        for j in range(nyl):
            if yp_obs[j] > k and yp_active[j]:
                regress_update(Yp[j], y, ybar, s2, dy, 1.0)


@njit
def process_items(i0, i1, item_obs, item_row, item_yo, item_r, item_y, item_dy, obs_loc,
                  X, xloc, xptr, xmembers, Yp, yp_obs, yp_active, yloc, yptr, ymembers,
                  geometry, cutoff, localize, nb1, nb2, kind, seed,
                  adaptive, inf_mean, inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower, bins):
    """Assimilate work items i0..i1-1 in order (assimilate_item on each): the one-rank loop."""
    for t in range(i0, i1):
        assimilate_item(t, item_obs, item_row, item_yo, item_r, item_y, item_dy, obs_loc,
                        X, xloc, xptr, xmembers, Yp, yp_obs, yp_active, yloc, yptr, ymembers,
                        geometry, cutoff, localize, nb1, nb2, kind, seed,
                        adaptive, inf_mean, inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower, bins)


@njit
def _support_list(t, item_obs, item_row, obs_loc, nx, xloc, xptr, xmembers, yp_obs, yp_active, yloc,
                  yptr, ymembers, geometry, cutoff, localize, nb1, nb2, bins, out):
    """Everything item t reads or writes on this rank, as element ids (state i, prior row nx + j).

    The local state elements and later pending observation priors with a positive localization
    weight, and (owned item) its own prior row. Items with disjoint supports commute bit for bit.
    Fills out, returns the count.
    """
    k = item_obs[t]
    cnt = 0
    if item_row[t] >= 0:
        out[cnt] = nx + item_row[t]
        cnt += 1
    nyl = yp_obs.shape[0]
    if not localize:
        for i in range(nx):
            out[cnt] = i
            cnt += 1
        for j in range(nyl):
            if yp_obs[j] > k and yp_active[j]:
                out[cnt] = nx + j
                cnt += 1
        return cnt
    o0 = obs_loc[k, 0]
    o1 = obs_loc[k, 1]
    ch2 = chord2_limit(cutoff)
    nb = query_bins(geometry, o0, o1, 2.0 * cutoff, nb1, nb2, bins)
    for q in range(nb):
        b = bins[q]
        for p in range(xptr[b], xptr[b + 1]):
            i = xmembers[p]
            if loc_weight(geometry, obs_loc, k, xloc, i, cutoff, ch2) > 0.0:
                out[cnt] = i
                cnt += 1
        for p in range(yptr[b], yptr[b + 1]):
            j = ymembers[p]
            if yp_obs[j] > k and yp_active[j]:
                if loc_weight(geometry, obs_loc, k, yloc, j, cutoff, ch2) > 0.0:
                    out[cnt] = nx + j
                    cnt += 1
    return cnt


@njit
def build_dependencies(item_obs, item_row, obs_loc, nx, xloc, xptr, xmembers, yp_obs, yp_active, yloc,
                       yptr, ymembers, geometry, cutoff, localize, nb1, nb2, bins):
    """Dependency graph of the work list: item t waits for the last earlier item touching each
    element of its support (by transitivity that orders every element's updates as the list does).

    Returns (npred[T]: number of distinct predecessors, succ_ptr[T+1], succ[]: CSR of successors).
    """
    T = item_obs.shape[0]
    nyl = yp_obs.shape[0]
    last = np.full(nx + nyl, -1, dtype=np.int64)
    mark = np.full(T, -1, dtype=np.int64)
    npred = np.zeros(T, dtype=np.int64)
    cap = 8 * T + 16
    src = np.empty(cap, dtype=np.int64)
    dst = np.empty(cap, dtype=np.int64)
    ne = 0
    elems = np.empty(nx + nyl + 1, dtype=np.int64)
    for t in range(T):
        ns = _support_list(t, item_obs, item_row, obs_loc, nx, xloc, xptr, xmembers, yp_obs, yp_active,
                           yloc, yptr, ymembers, geometry, cutoff, localize, nb1, nb2, bins, elems)
        for q in range(ns):
            e = elems[q]
            p = last[e]
            if p >= 0 and mark[p] != t:
                mark[p] = t
                if ne == cap:
                    cap *= 2
                    src2 = np.empty(cap, dtype=np.int64)
                    dst2 = np.empty(cap, dtype=np.int64)
                    src2[:ne] = src[:ne]
                    dst2[:ne] = dst[:ne]
                    src = src2
                    dst = dst2
                src[ne] = p
                dst[ne] = t
                ne += 1
                npred[t] += 1
            last[e] = t
    succ_ptr = np.zeros(T + 1, dtype=np.int64)
    for q in range(ne):
        succ_ptr[src[q] + 1] += 1
    for t in range(T):
        succ_ptr[t + 1] += succ_ptr[t]
    fill = succ_ptr[:-1].copy()
    succ = np.empty(ne, dtype=np.int64)
    for q in range(ne):
        succ[fill[src[q]]] = dst[q]
        fill[src[q]] += 1
    return npred, succ_ptr, succ


@njit
def walk_items(head, start, available, done, npred, succ_ptr, succ, sendable, out_sent,
               item_obs, item_row, item_yo, item_r, item_y, item_dy, obs_loc,
               X, xloc, xptr, xmembers, Yp, yp_obs, yp_active, yloc, yptr, ymembers,
               geometry, cutoff, localize, nb1, nb2, kind, seed,
               adaptive, inf_mean, inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower, bins):
    """Assimilate the work items from `start` on that can go now (one pass over the list, resumable).

    An item goes when its data are here (available[t]: owned, or the owner's record arrived) and
    all its predecessors in the dependency graph (build_dependencies) are done; doing it releases
    its successors, which come later in the list and so can go in the same pass. Every element
    therefore receives its updates in list (global) order, exactly as in the one-rank loop, while
    the rank works on past an observation whose record has not arrived. The pass pauses right
    after a run of processed items with sendable[t] (listed in out_sent, so their records can go
    out at once) and is resumed from the returned position.
    Returns (head = first item not done, next position, n listed, n processed while an earlier
    item waited, status: 0 end of list, 1 paused to send).
    """
    T = item_obs.shape[0]
    nsent = 0
    ahead = 0
    new_head = head if head < start else -1
    t = start
    status = 0
    while t < T:
        if done[t]:
            t += 1
            continue
        if available[t] and npred[t] == 0:
            assimilate_item(t, item_obs, item_row, item_yo, item_r, item_y, item_dy, obs_loc,
                            X, xloc, xptr, xmembers, Yp, yp_obs, yp_active, yloc, yptr, ymembers,
                            geometry, cutoff, localize, nb1, nb2, kind, seed,
                            adaptive, inf_mean, inf_sd, inf_base, inf_lower, inf_upper, inf_sd_lower, bins)
            done[t] = True
            for q in range(succ_ptr[t], succ_ptr[t + 1]):
                npred[succ[q]] -= 1
            if new_head >= 0:
                ahead += 1
            if sendable[t]:
                out_sent[nsent] = t
                nsent += 1
                if t + 1 >= T or not sendable[t + 1]:
                    t += 1
                    status = 1
                    break
        elif new_head < 0:
            new_head = t
        t += 1
    if new_head < 0:
        new_head = t
        while new_head < T and done[new_head]:
            new_head += 1
    return new_head, t, nsent, ahead, status


@njit
def needed_observations(cands, obs_loc, nx, xloc, xptr, xmembers, yp_obs, yp_active, yloc, yptr,
                        ymembers, geometry, cutoff, localize, nb1, nb2, bins, out_flag):
    """out_flag[q] = 1 if observation cands[q] changes anything in this block, else 0.

    Same test as assimilate_item: a local state element, or a later local observation prior still
    to be assimilated, with gaspari_cohn(distance, cutoff) > 0 (everything without localization).
    """
    reach = 2.0 * cutoff
    nyl = yp_obs.shape[0]
    for q in range(cands.shape[0]):
        k = cands[q]
        out_flag[q] = 0
        if not localize:
            if nx > 0:
                out_flag[q] = 1
                continue
            for j in range(nyl):
                if yp_obs[j] > k and yp_active[j]:
                    out_flag[q] = 1
                    break
            continue
        o0 = obs_loc[k, 0]
        o1 = obs_loc[k, 1]
        ch2 = chord2_limit(cutoff)
        nb = query_bins(geometry, o0, o1, reach, nb1, nb2, bins)
        found = False
        for qb in range(nb):
            b = bins[qb]
            for p in range(xptr[b], xptr[b + 1]):
                i = xmembers[p]
                if loc_weight(geometry, obs_loc, k, xloc, i, cutoff, ch2) > 0.0:
                    found = True
                    break
            if found:
                break
            for p in range(yptr[b], yptr[b + 1]):
                j = ymembers[p]
                if yp_obs[j] > k and yp_active[j]:
                    if loc_weight(geometry, obs_loc, k, yloc, j, cutoff, ch2) > 0.0:
                        found = True
                        break
            if found:
                break
        if found:
            out_flag[q] = 1


@njit
def inflate_block(X, factors, lower, out_base):
    """Prior inflation of every element X[i] by the variance factor factors[i] (DART inflate_ens).

    Elements with a finite lower[i] get at most the factor that keeps their lowest member on or above
    the bound (eakf.bounded_inflation_factor; DART #749: inflating members that sit on a bound gave
    -4e-164 and stopped DART), then any member still below (a prior that arrived below its bound, or
    round-off) is repaired by eakf.enforce_lower_bound. Zero-spread elements are left untouched. out_base[i] receives the factor applied
    (DART's ss_inflate_base). Returns the number of prior elements repaired.
    """
    fixed = 0
    for i in range(X.shape[0]):
        x = X[i]
        mean, var = ens_mean_var(x)
        f = factors[i]
        bounded = lower[i] > -np.inf
        if bounded:
            f = bounded_inflation_factor(x, mean, f, lower[i])
        if f != 1.0 and var > 0.0:  # equal members stay exactly equal (x*s + m*(1-s) may round)
            inflate_row(x, mean, f)
        out_base[i] = f
        if bounded:
            if enforce_lower_bound(x, lower[i]) > 0:
                fixed += 1
    return fixed


@njit
def enforce_block(X, lower):
    """eakf.enforce_lower_bound on every element with a finite bound; returns the codes (0/1/2)."""
    codes = np.zeros(X.shape[0], dtype=np.int64)
    for i in range(X.shape[0]):
        if lower[i] > -np.inf:
            codes[i] = enforce_lower_bound(X[i], lower[i])
    return codes


@njit
def rtps_block(X, prior_sd, alpha):
    """eakf.rtps_row on every element X[i] with its prior spread prior_sd[i]."""
    for i in range(X.shape[0]):
        rtps_row(X[i], prior_sd[i], alpha)


@njit
def row_mean_var(X):
    """eakf.ens_mean_var of every row: (mean[n], variance[n]) with divisor N - 1, row by row, so a
    row's result does not depend on which other rows share the array (rank-count independent)."""
    n = X.shape[0]
    mean = np.empty(n)
    var = np.empty(n)
    for i in range(n):
        m, v = ens_mean_var(X[i])
        mean[i] = m
        var[i] = v
    return mean, var
