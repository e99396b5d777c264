"""Patch-to-column averaging by PFT area weight (CLM4.0 ``subgridAveMod`` ``p2c``).

Reads patch values and the patch -> column map with the patch weights; writes only its out_* array.
"""

from __future__ import annotations

from kernels._jit import njit


@njit
def patch_to_column(patch_col, patch_wt, x, out):
    """out[c, m] = sum_p patch_wt[p] x[p, m] over the patches p of column c, summed in patch order
    (so the result does not depend on the block the column sits in).

    patch_col (npatch,) int; patch_wt (npatch,) fraction of the column (1); x (npatch, nmem) in any
    unit; out (ncol, nmem), same unit as x, overwritten (columns without patches get 0).
    """
    ncol, nm = out.shape
    for c in range(ncol):
        for m in range(nm):
            out[c, m] = 0.0
    for p in range(patch_col.shape[0]):
        c = patch_col[p]
        w = patch_wt[p]
        for m in range(nm):
            out[c, m] += w * x[p, m]


__all__ = ["patch_to_column"]
