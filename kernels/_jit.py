"""The one place where laida's numba JIT options are chosen; every kernel uses ``njit`` from here.

- ``cache=True``: compiled machine code is kept in ``NUMBA_CACHE_DIR`` so that MPI ranks and
  repeated runs skip compilation.
- ``fastmath=False``: no reassociation of floating-point sums. The filter's results must be
  bit-identical for any number of ranks and reproducible against the NumPy reference, which
  rules out compiler-chosen summation orders.
- ``error_model="numpy"``: division by zero gives inf/nan as in NumPy instead of raising, so
  kernels carry no hidden Python exception paths (kernels check their own special cases).

Reads and writes no model state.
"""

from __future__ import annotations

import functools

import numba

njit = functools.partial(numba.njit, cache=True, fastmath=False, error_model="numpy")

__all__ = ["njit"]
