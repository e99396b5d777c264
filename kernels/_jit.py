"""The one place where laida's numba JIT options are chosen; every kernel uses ``njit`` from here.

- ``cache=True``: compiled machine code is kept in ``NUMBA_CACHE_DIR`` so that MPI ranks and
  repeated runs skip compilation.
- ``fastmath=False``: no reassociation of floating-point sums. The filter's results must be
  bit-identical for any number of ranks and reproducible against the NumPy reference, which
  rules out compiler-chosen summation orders.
- ``error_model="numpy"``: division by zero gives inf/nan as in NumPy instead of raising, so
  kernels carry no hidden Python exception paths (kernels check their own special cases).

``njit_inline`` is the same with ``inline="always"``: numba inlines the function into every caller
before LLVM sees it. Used for the small elementary functions (``kernels.vmath``) and the per-lane
physics functions called inside loops that must vectorise: LLVM's own inliner gives up on them once
they have grown past its size threshold, and a call inside a loop keeps the loop scalar.

Reads and writes no model state.
"""

from __future__ import annotations

import functools

import numba

njit = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")
njit_inline = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy", inline="always")

__all__ = ["njit", "njit_inline"]
