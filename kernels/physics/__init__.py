"""Land physics kernels: a CLM4CN-class column model, one module per process (CLM4 technical note,
Oleson et al. 2010, NCAR/TN-478+STR; Thornton & Zimmermann 2007 for canopy integration).

Conventions shared by every module here (DESIGN.md, STYLE.md):

- Pure ``@njit`` functions from ``kernels._jit``; inputs first, then preallocated ``out_*`` arrays
  that the kernel fills. No MPI, files, configuration, logging or objects other than the PFT
  parameter record (``engine.pftcon.pft_record()``, a namedtuple of float64 arrays indexed by PFT).
- Ensemble layout, member axis last: patch variables ``x[p, m]`` (npatch, nmember); column
  variables ``x[c, m]`` or ``x[c, level, m]``. Patch ``p`` lies on column ``patch_col[p]`` with area
  weight ``patch_wt[p]`` (fractions of the column, summing to 1 per column) and PFT ``patch_pft[p]``.
  Kernels loop ``for p ...: for m ...:`` so the member loop is innermost (same code path for all
  members; contiguous memory).
- Units: SI with CLM's conventions: K, Pa, m, W/m2, water in mm (= kg/m2) and mm/s, carbon and
  nitrogen in g/m2 (gC/m2, gN/m2) and g/m2/s. Every argument's unit is in the docstring.
- Soil: CLM4's exponential layers (``soil_levels``): node depth z_i = 0.025 (exp(0.5 (i - 0.5)) - 1) m,
  i = 1..15 (CLM4 eq. 6.5-6.7, Table 6.1); the 10 upper layers (to 3.80 m at the interface below layer 10)
  are hydrologically active, the 5 below are bedrock for heat only.
"""
