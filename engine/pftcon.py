"""CLM4.0 plant functional type (PFT) parameters: one declarative table, with units and sources.

The 17 PFTs of CLM4.0 (index 0 = not vegetated / bare soil, 1-16 vegetated) with the per-PFT
physiology, optics, rooting, allocation and litter parameters that CLM4 reads from its
``pft-physiology`` file (``pft-physiology.c110425.nc`` in CESM1.0.x), plus a small record of the
CLM4CN constants that go with them (Rubisco activity, maintenance and growth respiration, canopy
allometry).

Kernels never see this module's objects: :func:`pft_arrays` gives plain float64 arrays of length 17
and :func:`pft_record` a namedtuple of such arrays (numba accepts it as an argument), indexed by the
patch's PFT index. :func:`to_netcdf_like_dict` lays the table out with the variable names of CLM's
pft-physiology file and :func:`read_pft_physiology` reads a real CLM pft-physiology netCDF file into
the same layout, so a user can run with the released file instead of this table.

Reads no model state and writes none. Every value below was transcribed from a public source named
in its row's ``source`` field; nothing is tuned or invented. Where the values for index 0 (not
vegetated) were not published (CLM4 never uses them: non-vegetated patches skip the canopy, root and
CN code), 0 is stored and the row's source says so.

Sources (abbreviations used in the rows):

* ``[GEOS]`` NASA GMAO's port of CLM4.0 CN into the GEOS Catchment-CN model, data statements of
  ``CN_init`` in ``GEOS-ESM/GEOSgcm_GridComp``, file
  ``GEOSagcm_GridComp/GEOSphysics_GridComp/GEOSsurface_GridComp/GEOSland_GridComp/GEOScatchCN_GridComp/CN_DriverMod.F90``
  (commit 949520645a5495b0a0dd9d2f741d214d5d32f1d5). GEOS uses 20 types: rows 0-10 are CLM's 0-10,
  GEOS rows 11, 15 and 17 duplicate CLM 10, 13 and 14, GEOS 12, 13, 14, 16 are CLM 11, 12, 13, 14 and
  GEOS 18, 19 the two crops (CLM 15, 16). Its ``fcur`` line was tuned by GMAO; the original CLM values
  are kept there as a commented-out line, which is what this table uses.
* ``[MATLAB]`` a public MATLAB port of CLM4's ``Stomata``/``Photosynthesis`` whose arrays are stated to
  come from ``pft-physiology.c110425.nc`` (repository not identified by the code index); it agrees
  with [GEOS] on slatop, dsladlai, leafcn, flnr, fnitr, qe25, c3psn and mp.
* ``[TN45-13.1]`` CLM4.5 technical note (Oleson et al. 2013, NCAR/TN-503+STR) Table 13.1
  "Allocation and carbon:nitrogen ratio parameters" (a1..a4, CN_leaf, CN_fr, CN_lw, CN_dw), read in a
  reStructuredText transcription of that note found in the public code index; identical to [GEOS]
  for all 16 vegetated CLM4 types (the CN allocation scheme did not change from CLM4.0).
* ``[CTSM-3.1]`` CLM technical note table "Plant functional type optical properties", file
  ``doc/source/tech_note/Surface_Albedos/CLM50_Tech_Note_Surface_Albedos.rst`` in ``ESCOMP/CTSM``
  (trees and shrubs from Dorman and Sellers 1989, grasses and crops from Asner et al. 1998). Its
  visible values equal the CLM4.0 values in [GEOS] for every PFT; the NIR values are taken from it.
* ``[CTSM-8.1]`` CLM technical note table "Plant functional type (PFT) photosynthetic parameters",
  ``doc/source/tech_note/Photosynthesis/CLM50_Tech_Note_Photosynthesis.rst`` in ``ESCOMP/CTSM``
  (psi_o, psi_c unchanged since CLM3.5; SLA_0 and CN_L equal CLM4.0's slatop and leafcn).
* ``[CLM35-F90]`` data statements of a public Fortran copy of CLM3.5's pft constants (WRF-CLM
  derivative, module ``clm_varpar_my``; repository not identified by the code index): roota_par,
  rootb_par (Zeng 2001), smpso, smpsc, dleaf, and leaf/stem optics of trees and shrubs. Its slatop,
  leafcn, flnr, fnitr, mp, qe25, c3psn, smpso, smpsc and tree/shrub optics equal [GEOS], [CTSM-3.1]
  and [CTSM-8.1]; its grass and crop optics are the older CLM3 values and are not used here.
* ``[CLM4-CF]`` CLM4.0 ``CanopyFluxesMod.F90`` subroutine ``Stomata`` (CN version; the same code is in
  ``GEOScatchCNCLM40_GridComp/CLM40/compute_rc.F90`` of [GEOS]'s repository).
* ``[CLM4-MR]`` CLM4.0 ``CNMRespMod.F90`` (as in
  ``GEOScatchCNCLM40_GridComp/CLM40/CNMRespMod.F90`` of ``GEOS-ESM/GEOSgcm_GridComp``).
* ``[CLM4-VS]`` CLM4.0 ``CNVegStructUpdateMod.F90`` (as in
  ``GEOScatchCNCLM40_GridComp/CLM40/CNVegStructUpdateMod.F90`` of ``GEOS-ESM/GEOSgcm_GridComp``).
* ``[CLM4-DC]`` CLM4.0 ``CNDecompMod.F90`` (Biome-BGC v4.2.0 constants).
* ``[TN45-13.7]`` CLM4.5 technical note section 13.7.2 (growth respiration 0.3, grpnow = 1).

References: Oleson, K. W. et al. (2010) Technical description of version 4.0 of the Community Land
Model (CLM), NCAR/TN-478+STR; Oleson et al. (2013) ... version 4.5 ..., NCAR/TN-503+STR; Thornton,
P. E. and Zimmermann, N. E. (2007) J. Climate 20, 3902-3923; Zeng, X. (2001) J. Hydrometeorol. 2,
525-530; Dorman, J. L. and Sellers, P. J. (1989) J. Appl. Meteorol. 28, 833-855; Asner, G. P. et al.
(1998) Remote Sens. Environ. 63, 155-165; Ryan, M. G. (1991) Ecol. Appl. 1, 157-167.
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The 17 CLM4.0 PFT names in file order, exactly as in CLM4's ``pftname`` variable and its
#: ``expected_pftnames`` check (pftvarcon.F90); index 0 is not vegetated (bare soil).
PFT_NAMES: tuple[str, ...] = (
    "not_vegetated",
    "needleleaf_evergreen_temperate_tree",
    "needleleaf_evergreen_boreal_tree",
    "needleleaf_deciduous_boreal_tree",
    "broadleaf_evergreen_tropical_tree",
    "broadleaf_evergreen_temperate_tree",
    "broadleaf_deciduous_tropical_tree",
    "broadleaf_deciduous_temperate_tree",
    "broadleaf_deciduous_boreal_tree",
    "broadleaf_evergreen_shrub",
    "broadleaf_deciduous_temperate_shrub",
    "broadleaf_deciduous_boreal_shrub",
    "c3_arctic_grass",
    "c3_non-arctic_grass",
    "c4_grass",
    "c3_crop",
    "c3_irrigated",
)
NPFT = len(PFT_NAMES)

#: Length of the ``pftname`` character dimension in CLM's pft-physiology file.
PFTNAME_LEN = 40

# Named indices (CLM's pftvarcon integer names) for readable kernels and tests.
NOVEG = 0
NDLLF_EVR_TMP_TREE = 1
NDLLF_EVR_BRL_TREE = 2
NDLLF_DCD_BRL_TREE = 3
NBRDLF_EVR_TRP_TREE = 4
NBRDLF_EVR_TMP_TREE = 5
NBRDLF_DCD_TRP_TREE = 6
NBRDLF_DCD_TMP_TREE = 7
NBRDLF_DCD_BRL_TREE = 8
NBRDLF_EVR_SHRUB = 9
NBRDLF_DCD_TMP_SHRUB = 10
NBRDLF_DCD_BRL_SHRUB = 11
NC3_ARCTIC_GRASS = 12
NC3_NONARCTIC_GRASS = 13
NC4_GRASS = 14
NC3_CROP = 15
NC3_IRRIGATED = 16


@dataclass(frozen=True)
class PftParameter:
    """One row of the table: a CLM pft-physiology variable with its 17 values.

    ``name`` is the variable name in CLM's pft-physiology file; ``kind`` is ``"flag"`` for 0/1 switches
    (stored as float64 0.0/1.0, as CLM does) and ``"real"`` otherwise.
    """

    name: str
    units: str
    description: str
    source: str
    values: tuple[float, ...]
    kind: str = "real"

    def __post_init__(self):
        if len(self.values) != NPFT:
            raise ValueError(f"PFT parameter {self.name!r} has {len(self.values)} values, expected {NPFT}")
        if self.kind not in ("real", "flag"):
            raise ValueError(f"PFT parameter {self.name!r}: kind must be 'real' or 'flag', not {self.kind!r}")


def _rep(value: float, n: int) -> tuple[float, ...]:
    return (float(value),) * n


_NOVEG0 = " Index 0 (not vegetated) is not published and never used by CLM4; stored as 0."

# Column order of every row: see PFT_NAMES (0 bare, 1-3 needleleaf, 4-8 broadleaf trees, 9-11 shrubs,
# 12-14 grasses, 15-16 crops).
PFT_TABLE: tuple[PftParameter, ...] = (
    # ---- canopy structure / aerodynamics (CLM4 tech note sections 2.x, 5) -------------------------------
    PftParameter(
        "z0mr", "1", "ratio of momentum roughness length to canopy top height",
        "[GEOS] z0mx.",
        (0.0,) + _rep(0.055, 3) + _rep(0.075, 2) + _rep(0.055, 3) + _rep(0.120, 8)),
    PftParameter(
        "displar", "1", "ratio of displacement height to canopy top height",
        "[GEOS] displax.",
        (0.0,) + _rep(0.67, 8) + _rep(0.68, 8)),
    PftParameter(
        "dleaf", "m", "characteristic leaf dimension (leaf boundary-layer resistance)",
        "[CLM35-F90] dleaf = 0.04 for every vegetated PFT (ESCOMP/CTSM tech note aerodynamic-parameter "
        "table: d_leaf = 0.04 m)." + _NOVEG0,
        (0.0,) + _rep(0.04, 16)),
    # ---- photosynthesis and stomata (CLM4 tech note chapter 8) -----------------------------------------
    PftParameter(
        "c3psn", "1", "photosynthetic pathway flag: 1 = C3, 0 = C4",
        "[GEOS] c3psx; [MATLAB] c3psn.",
        _rep(1.0, 14) + (0.0, 1.0, 1.0), kind="flag"),
    PftParameter(
        "mp", "1", "slope m of the Ball-Berry conductance-photosynthesis relationship",
        "[GEOS] mx; [MATLAB] mp; [CLM35-F90] mp (pft-physiology.c110425: 6 needleleaf trees, 5 C4 grass, "
        "9 other; the 9 (C3) / 4 (C4) of CLM4.5 came later).",
        (9.0, 6.0, 6.0, 6.0) + _rep(9.0, 10) + (5.0, 9.0, 9.0)),
    PftParameter(
        "qe25", "umol CO2 umol-1 photon", "quantum efficiency at 25 C",
        "[GEOS] qe2x; [MATLAB] qe25.",
        (0.0,) + _rep(0.06, 13) + (0.04, 0.06, 0.06)),
    PftParameter(
        "slatop", "m2 leaf gC-1", "specific leaf area at the canopy top, projected area basis",
        "[GEOS] slatox; [MATLAB] slatop; [CTSM-8.1] SLA_0.",
        (0.0, 0.010, 0.008, 0.024, 0.012, 0.012, 0.030, 0.030, 0.030, 0.012) + _rep(0.030, 7)),
    PftParameter(
        "dsladlai", "m2 leaf gC-1 (per unit LAI)", "linear increase of SLA with overlying LAI (dSLA/dLAI)",
        "[GEOS] dsladlax; [MATLAB] dSLAdLAI (Thornton and Zimmermann 2007).",
        (0.0, 0.00125, 0.00100, 0.00300, 0.00150, 0.00150, 0.00400, 0.00400, 0.00400) + _rep(0.0, 8)),
    PftParameter(
        "leafcn", "gC gN-1", "leaf carbon:nitrogen ratio",
        "[GEOS] leafcx; [MATLAB] leafcn; [TN45-13.1] CN_leaf; index 0 = 1 in the file (avoids 1/0).",
        (1.0, 35.0, 40.0, 25.0, 30.0, 30.0, 25.0, 25.0, 25.0, 30.0) + _rep(25.0, 7)),
    PftParameter(
        "flnr", "gN Rubisco gN-1 leaf", "fraction of leaf nitrogen in Rubisco",
        "[GEOS] flnx; [MATLAB] flnr (pft-physiology.c110425 values; the CLM4.5 tech note values differ).",
        (0.0, 0.05, 0.04, 0.08, 0.06, 0.06, 0.09, 0.09, 0.09, 0.06, 0.09, 0.09, 0.09, 0.09, 0.09, 0.10, 0.10)),
    PftParameter(
        "fnitr", "1", "foliage nitrogen limitation factor (used by CLM4 without CN only)",
        "[GEOS] fnitx; [MATLAB] fnitr.",
        (0.0, 0.72, 0.78, 0.79, 0.83, 0.71, 0.66, 0.64, 0.70, 0.62, 0.60, 0.76, 0.68, 0.61, 0.64, 0.61, 0.61)),
    PftParameter(
        "smpso", "mm", "soil water potential at full stomatal opening",
        "[CLM35-F90] smpso; [CTSM-8.1] psi_o." + _NOVEG0,
        (0.0,) + _rep(-66000.0, 5) + _rep(-35000.0, 3) + _rep(-83000.0, 3) + _rep(-74000.0, 5)),
    PftParameter(
        "smpsc", "mm", "soil water potential at full stomatal closure",
        "[CLM35-F90] smpsc; [CTSM-8.1] psi_c." + _NOVEG0,
        (0.0,) + _rep(-255000.0, 5) + _rep(-224000.0, 3) + _rep(-428000.0, 3) + _rep(-275000.0, 5)),
    # ---- optics (CLM4 tech note chapter 3, Table 3.1) -----------------------------------------------------
    PftParameter(
        "xl", "1", "leaf/stem orientation index chi_L (Ross-Goudriaan)",
        "[GEOS] xlx; [CTSM-3.1] chi_L.",
        (0.0, 0.01, 0.01, 0.01, 0.10, 0.10, 0.01, 0.25, 0.25, 0.01, 0.25, 0.25) + _rep(-0.30, 5)),
    PftParameter(
        "rholvis", "1", "leaf reflectance, visible",
        "[GEOS] rholx; [CTSM-3.1]; [CLM35-F90].",
        (0.0, 0.07, 0.07, 0.07, 0.10, 0.10, 0.10, 0.10, 0.10, 0.07, 0.10, 0.10) + _rep(0.11, 5)),
    PftParameter(
        "rholnir", "1", "leaf reflectance, near-infrared",
        "[CTSM-3.1]; trees and shrubs also [CLM35-F90].",
        (0.0, 0.35, 0.35, 0.35, 0.45, 0.45, 0.45, 0.45, 0.45, 0.35, 0.45, 0.45) + _rep(0.35, 5)),
    PftParameter(
        "rhosvis", "1", "stem reflectance, visible",
        "[GEOS] rhosx; [CTSM-3.1].",
        (0.0,) + _rep(0.16, 11) + _rep(0.31, 5)),
    PftParameter(
        "rhosnir", "1", "stem reflectance, near-infrared",
        "[CTSM-3.1]; trees and shrubs also [CLM35-F90].",
        (0.0,) + _rep(0.39, 11) + _rep(0.53, 5)),
    PftParameter(
        "taulvis", "1", "leaf transmittance, visible",
        "[GEOS] taulx; [CTSM-3.1].",
        (0.0,) + _rep(0.05, 16)),
    PftParameter(
        "taulnir", "1", "leaf transmittance, near-infrared",
        "[CTSM-3.1]; trees and shrubs also [CLM35-F90].",
        (0.0, 0.10, 0.10, 0.10, 0.25, 0.25, 0.25, 0.25, 0.25, 0.10, 0.25, 0.25) + _rep(0.34, 5)),
    PftParameter(
        "tausvis", "1", "stem transmittance, visible",
        "[GEOS] tausx; [CTSM-3.1].",
        (0.0,) + _rep(0.001, 11) + _rep(0.120, 5)),
    PftParameter(
        "tausnir", "1", "stem transmittance, near-infrared",
        "[CTSM-3.1]; trees and shrubs also [CLM35-F90].",
        (0.0,) + _rep(0.001, 11) + _rep(0.250, 5)),
    # ---- rooting (Zeng 2001; CLM4 tech note Table 8.3) ---------------------------------------------------
    PftParameter(
        "roota_par", "m-1", "Zeng (2001) rooting distribution parameter r_a",
        "[CLM35-F90] roota_par (Zeng 2001; CLM4 tech note Table 8.3)." + _NOVEG0,
        (0.0, 7.0, 7.0, 7.0, 7.0, 7.0, 6.0, 6.0, 6.0, 7.0, 7.0, 7.0, 11.0, 11.0, 11.0, 6.0, 6.0)),
    PftParameter(
        "rootb_par", "m-1", "Zeng (2001) rooting distribution parameter r_b",
        "[CLM35-F90] rootb_par (Zeng 2001; CLM4 tech note Table 8.3)." + _NOVEG0,
        (0.0, 2.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.5, 1.5, 1.5, 2.0, 2.0, 2.0, 3.0, 3.0)),
    # ---- CN: life form and phenology (CLM4 tech note chapters 13-14) -------------------------------------
    PftParameter(
        "woody", "1", "woody life-form flag (trees and shrubs)",
        "[GEOS] woodx.",
        (0.0,) + _rep(1.0, 11) + _rep(0.0, 5), kind="flag"),
    PftParameter(
        "evergreen", "1", "evergreen leaf-habit flag",
        "[GEOS] evergreex.",
        (0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0) + _rep(0.0, 7), kind="flag"),
    PftParameter(
        "season_decid", "1", "seasonal-deciduous leaf-habit flag (degree-day onset, daylength offset)",
        "[GEOS] season_decix.",
        (0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0) + _rep(0.0, 8), kind="flag"),
    PftParameter(
        "stress_decid", "1", "stress-deciduous leaf-habit flag (soil water and temperature triggers)",
        "[GEOS] stress_decix (the boreal deciduous shrub is stress-deciduous in CLM4.0).",
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0) + _rep(1.0, 5), kind="flag"),
    PftParameter(
        "leaf_long", "yr", "leaf longevity (evergreen background litterfall 1/leaf_long)",
        "[GEOS] leaf_lonx.",
        (0.0, 3.0, 6.0, 1.0, 1.5, 1.5, 1.0, 1.0, 1.0, 1.5) + _rep(1.0, 7)),
    # ---- CN: stoichiometry (Table 13.1) -------------------------------------------------------------------
    PftParameter(
        "lflitcn", "gC gN-1", "leaf litter C:N ratio (after retranslocation)",
        "[GEOS] lflitcx; index 0 = 1 in the file (avoids 1/0).",
        (1.0, 70.0, 80.0, 50.0, 60.0, 60.0, 50.0, 50.0, 50.0, 60.0) + _rep(50.0, 7)),
    PftParameter(
        "frootcn", "gC gN-1", "fine root C:N ratio",
        "[GEOS] frootcx; [TN45-13.1] CN_fr; index 0 = 1 in the file.",
        (1.0,) + _rep(42.0, 16)),
    PftParameter(
        "livewdcn", "gC gN-1", "live wood (phloem and ray parenchyma) C:N ratio; 0 for non-woody PFTs",
        "[GEOS] livewdcx; [TN45-13.1] CN_lw; index 0 = 1 in the file.",
        (1.0,) + _rep(50.0, 11) + _rep(0.0, 5)),
    PftParameter(
        "deadwdcn", "gC gN-1", "dead wood (xylem and heartwood) C:N ratio; 0 for non-woody PFTs",
        "[GEOS] deadwdcx; [TN45-13.1] CN_dw; index 0 = 1 in the file.",
        (1.0,) + _rep(500.0, 11) + _rep(0.0, 5)),
    # ---- CN: allocation (Table 13.1) -----------------------------------------------------------------------
    PftParameter(
        "froot_leaf", "gC gC-1", "allocation a1: new fine root C per new leaf C",
        "[GEOS] froot_leax; [TN45-13.1] a1.",
        (0.0,) + _rep(1.0, 12) + _rep(2.0, 4)),
    PftParameter(
        "stem_leaf", "gC gC-1", "allocation a3: new stem C per new leaf C (-1 = dynamic, from annual NPP)",
        "[GEOS] stem_leax; [TN45-13.1] a3.",
        (0.0,) + _rep(-1.0, 8) + _rep(0.2, 3) + _rep(0.0, 5)),
    PftParameter(
        "croot_stem", "gC gC-1", "allocation a2: new coarse root C per new stem C",
        "[GEOS] croot_stex; [TN45-13.1] a2.",
        (0.0,) + _rep(0.3, 11) + _rep(0.0, 5)),
    PftParameter(
        "flivewd", "1", "allocation a4: fraction of new wood that is live",
        "[GEOS] flivewx; [TN45-13.1] a4.",
        (0.0,) + _rep(0.1, 8) + (0.5, 0.5, 0.1) + _rep(0.0, 5)),
    PftParameter(
        "fcur", "1", "fraction of allocation displayed in the current step (rest goes to storage)",
        "[GEOS] original CLM4 line kept commented out above GMAO's tuned fcux (1 evergreen, 0 deciduous).",
        (0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0) + _rep(0.0, 7)),
    PftParameter(
        "grperc", "1", "growth respiration per unit C allocated to new growth (g_1)",
        "[TN45-13.1] text: g_1 = 0.3 prescribed for all PFTs; [TN45-13.7] (Larcher 1995).",
        _rep(0.3, 17)),
    PftParameter(
        "grpnow", "1", "fraction of growth respiration released at allocation (rest at display)",
        "[TN45-13.7] footnote: grpnow = 1.0.",
        _rep(1.0, 17)),
    # ---- CN: litter quality (CLM4 tech note chapter 15) ---------------------------------------------------
    PftParameter(
        "lf_flab", "1", "leaf litter labile fraction",
        "[GEOS] lf_flax.",
        (0.0,) + _rep(0.25, 16)),
    PftParameter(
        "lf_fcel", "1", "leaf litter cellulose fraction",
        "[GEOS] lf_fcex.",
        (0.0,) + _rep(0.50, 16)),
    PftParameter(
        "lf_flig", "1", "leaf litter lignin fraction",
        "[GEOS] lf_flix.",
        (0.0,) + _rep(0.25, 16)),
    PftParameter(
        "fr_flab", "1", "fine root litter labile fraction",
        "[GEOS] fr_flax.",
        (0.0,) + _rep(0.25, 16)),
    PftParameter(
        "fr_fcel", "1", "fine root litter cellulose fraction",
        "[GEOS] fr_fcex.",
        (0.0,) + _rep(0.50, 16)),
    PftParameter(
        "fr_flig", "1", "fine root litter lignin fraction",
        "[GEOS] fr_flix.",
        (0.0,) + _rep(0.25, 16)),
    # ---- CN: fire (CLM4 tech note chapter 16) ------------------------------------------------------------
    PftParameter(
        "resist", "1", "resistance to fire (fraction of burned area not killed)",
        "[GEOS] resisx.",
        (1.0,) + _rep(0.12, 14) + (1.0, 1.0)),
)

#: name -> row, in table order.
PARAMETERS: dict[str, PftParameter] = {row.name: row for row in PFT_TABLE}
if len(PARAMETERS) != len(PFT_TABLE):  # pragma: no cover - guards the literal table above
    raise RuntimeError("duplicate parameter name in PFT_TABLE")

#: numba-friendly record: one float64 array of length 17 per table row, in table order.
PftRecord = namedtuple("PftRecord", [row.name for row in PFT_TABLE])


def pft_index(name: str) -> int:
    """Index (0-16) of a CLM4 PFT given its file name, e.g. ``"broadleaf_evergreen_tropical_tree"``.

    Case, surrounding blanks and spaces-for-underscores are tolerated; an unknown name raises
    ``KeyError`` listing the known names.
    """
    key = str(name).strip().lower().replace(" ", "_")
    try:
        return PFT_NAMES.index(key)
    except ValueError:
        raise KeyError(f"unknown CLM4 PFT name {name!r}; known names: {', '.join(PFT_NAMES)}") from None


def parameter(name: str) -> PftParameter:
    """The table row of one parameter (units, description, source, values); ``KeyError`` names it."""
    try:
        return PARAMETERS[name]
    except KeyError:
        raise KeyError(f"unknown PFT parameter {name!r}; known: {', '.join(PARAMETERS)}") from None


def pft_arrays() -> dict[str, np.ndarray]:
    """Every parameter as a fresh float64 array of length 17 (index = PFT), keyed by CLM name.

    Flags are float64 0.0/1.0 as in CLM. The arrays are copies: callers may modify them.
    """
    return {row.name: np.array(row.values, dtype=np.float64) for row in PFT_TABLE}


def pft_record(arrays: dict[str, np.ndarray] | None = None) -> PftRecord:
    """The table as a :class:`PftRecord` namedtuple of contiguous float64 arrays (length 17 each).

    Pass the result straight to a numba kernel (``rec.slatop[ivt[p]]``). ``arrays`` (default: this
    table) may come from :func:`read_pft_physiology` to run with a released CLM file instead; it must
    hold every table variable with 17 finite values.
    """
    if arrays is None:
        arrays = pft_arrays()
    fields = []
    for row in PFT_TABLE:
        if row.name not in arrays:
            raise KeyError(f"pft_record: parameter {row.name!r} missing from the given arrays")
        a = np.ascontiguousarray(arrays[row.name], dtype=np.float64)
        if a.shape != (NPFT,):
            raise ValueError(f"pft_record: parameter {row.name!r} has shape {a.shape}, expected ({NPFT},)")
        fields.append(a.copy())
    return PftRecord(*fields)


def to_netcdf_like_dict() -> dict[str, np.ndarray]:
    """The table in the layout of CLM's pft-physiology file.

    ``"pftname"``: array of the 17 names (dtype ``<U40``); every other key is the CLM variable name with
    a float64 array over the ``pft`` dimension. :func:`read_pft_physiology` returns the same layout.
    """
    out: dict[str, np.ndarray] = {"pftname": np.array(PFT_NAMES, dtype=f"<U{PFTNAME_LEN}")}
    out.update(pft_arrays())
    return out


def netcdf_attributes(name: str) -> dict[str, str]:
    """``units`` and ``long_name`` attributes for a variable written in the pft-physiology layout."""
    if name == "pftname":
        return {"long_name": "Description of plant type"}
    row = parameter(name)
    return {"units": row.units, "long_name": row.description}


def read_pft_physiology(path: str | Path) -> dict[str, np.ndarray]:
    """Read a CLM pft-physiology netCDF file (e.g. ``pft-physiology.c110425.nc``) into the layout of
    :func:`to_netcdf_like_dict`.

    The file needs a ``pft`` dimension with at least 17 entries whose first 17 ``pftname`` values are
    :data:`PFT_NAMES` in order (CLM4's check; files with the 4 extra crop types of CNcrop, 21 in all,
    are accepted and their extra rows ignored, as CLM4 does without the crop model), and every variable
    of :data:`PFT_TABLE` over ``pft``. Errors name the file and the variable: a missing variable, a
    wrong shape, masked (fill) or non-finite values among the first 17, or unexpected PFT names.
    """
    import netCDF4  # imported here: the table itself needs no netCDF library

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLM pft-physiology file not found: {path}")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise OSError(f"cannot open CLM pft-physiology file {path} as netCDF: {exc}") from exc
    with ds:
        if "pft" not in ds.dimensions:
            raise ValueError(f"{path}: no 'pft' dimension (dimensions: {', '.join(ds.dimensions) or 'none'})")
        npft_file = len(ds.dimensions["pft"])
        if npft_file < NPFT:
            raise ValueError(f"{path}: dimension 'pft' has {npft_file} entries, CLM4 needs at least {NPFT}")
        out: dict[str, np.ndarray] = {"pftname": _read_pftnames(ds, path)}
        for row in PFT_TABLE:
            if row.name not in ds.variables:
                raise KeyError(f"{path}: variable {row.name!r} ({row.description}) is missing")
            var = ds.variables[row.name]
            if var.dimensions != ("pft",):
                raise ValueError(f"{path}: variable {row.name!r} has dimensions {var.dimensions}, expected ('pft',)")
            data = var[:NPFT]
            if np.ma.is_masked(data):
                bad = np.flatnonzero(np.ma.getmaskarray(data))
                raise ValueError(f"{path}: variable {row.name!r} has fill values at pft indices {bad.tolist()}")
            values = np.asarray(np.ma.getdata(data), dtype=np.float64)
            if not np.all(np.isfinite(values)):
                bad = np.flatnonzero(~np.isfinite(values))
                raise ValueError(f"{path}: variable {row.name!r} has non-finite values at pft indices {bad.tolist()}")
            out[row.name] = values
    return out


def _read_pftnames(ds, path: Path) -> np.ndarray:
    import netCDF4

    if "pftname" not in ds.variables:
        raise KeyError(f"{path}: variable 'pftname' (plant type names) is missing")
    var = ds.variables["pftname"]
    var.set_auto_chartostring(False)
    raw = np.asarray(var[:NPFT])
    if raw.ndim == 2:  # char(pft, pftname_len), CLM's layout
        names = netCDF4.chartostring(raw)
    else:  # a string variable
        names = raw
    decoded = [n.decode("ascii") if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
    decoded = [n.strip().strip("\x00").strip() for n in decoded]
    if tuple(decoded) != PFT_NAMES:
        wrong = [(i, got, want) for i, (got, want) in enumerate(zip(decoded, PFT_NAMES)) if got != want]
        i, got, want = wrong[0]
        raise ValueError(
            f"{path}: variable 'pftname' does not list the CLM4 PFTs in order: index {i} is {got!r}, "
            f"expected {want!r} ({len(wrong)} mismatch(es) among the first {NPFT})"
        )
    return np.array(decoded, dtype=f"<U{PFTNAME_LEN}")


def write_pft_physiology(path: str | Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Write the table (or ``arrays`` in the same layout) as a netCDF file in CLM's pft-physiology layout.

    Dimensions ``pft`` (17) and ``pftname_len`` (40); ``pftname`` as char(pft, pftname_len); every
    parameter as double(pft) with ``units`` and ``long_name``. Returns the path.
    """
    import netCDF4

    path = Path(path)
    data = to_netcdf_like_dict() if arrays is None else arrays
    with netCDF4.Dataset(path, "w", format="NETCDF4_CLASSIC") as ds:
        ds.title = "CLM4.0 PFT physiological constants (laida engine.pftcon table)"
        ds.source = "engine/pftcon.py; values and per-variable sources documented there"
        ds.createDimension("pft", NPFT)
        ds.createDimension("pftname_len", PFTNAME_LEN)
        names = ds.createVariable("pftname", "S1", ("pft", "pftname_len"))
        names.long_name = "Description of plant type"
        names[:] = netCDF4.stringtochar(np.array(data["pftname"], dtype=f"S{PFTNAME_LEN}"))
        for row in PFT_TABLE:
            var = ds.createVariable(row.name, "f8", ("pft",))
            var.units = row.units
            var.long_name = row.description
            var[:] = np.asarray(data[row.name], dtype=np.float64)
    return path


# ------------------------------------------------------------------------------------------------------
# CLM4 CN constants that go with the table (not per PFT).


@dataclass(frozen=True)
class Clm4Constant:
    """One CLM4 constant: value, units, description and source."""

    name: str
    value: float
    units: str
    description: str
    source: str


CONSTANT_TABLE: tuple[Clm4Constant, ...] = (
    Clm4Constant("act25", 3.6, "umol CO2 mgRubisco-1 min-1", "Rubisco specific activity at 25 C",
                 "[CLM4-CF] act25 = 3.6 (CLM4 tech note eq. 8.13)"),
    Clm4Constant("q10act", 2.4, "1", "Q10 of Rubisco activity", "[CLM4-CF] q10act = 2.4"),
    Clm4Constant("fnr", 7.16, "gRubisco gN-1 in Rubisco", "mass ratio of Rubisco to its nitrogen",
                 "[CLM4-CF] fnr = 7.16"),
    Clm4Constant("kc25", 30.0, "Pa", "CO2 Michaelis-Menten constant at 25 C", "[CLM4-CF] kc25 = 30"),
    Clm4Constant("akc", 2.1, "1", "Q10 of kc25", "[CLM4-CF] akc = 2.1"),
    Clm4Constant("ko25", 30000.0, "Pa", "O2 Michaelis-Menten constant at 25 C", "[CLM4-CF] ko25 = 30000"),
    Clm4Constant("ako", 1.2, "1", "Q10 of ko25", "[CLM4-CF] ako = 1.2"),
    Clm4Constant("bp", 2000.0, "umol H2O m-2 s-1", "minimum leaf conductance (Ball-Berry intercept)",
                 "[CLM4-CF] bp = 2000"),
    Clm4Constant("rsmax0", 2.0e4, "s m-1", "maximum stomatal resistance", "[CLM4-CF] rsmax0 = 2.e4"),
    Clm4Constant("mr_br", 2.525e-6, "gC gN-1 s-1", "base rate of maintenance respiration per unit N at 20 C",
                 "[CLM4-MR] br = 2.525e-6 (Ryan 1991: 0.0106 molC molN-1 h-1)"),
    Clm4Constant("mr_q10", 1.5, "1", "Q10 of maintenance respiration",
                 "[CLM4-MR] q10 = 1.5 (P. Thornton 3/13/09; the tech note text still says 2.0)"),
    Clm4Constant("mr_tref", 20.0, "degC", "reference temperature of maintenance respiration",
                 "[CLM4-MR] q10**((T - 273.15 - 20)/10)"),
    Clm4Constant("dwood", 2.5e5, "gC m-3", "wood density (carbon) for canopy height allometry",
                 "[GEOS] dwoox; CLM4.0 pftvarcon dwood = 2.5e5"),
    Clm4Constant("stocking", 1000.0, "stems ha-1", "stocking density for woody allometry",
                 "[CLM4-VS] stocking = 1000"),
    Clm4Constant("taper_tree", 200.0, "1", "tree height to breast-height radius ratio", "[CLM4-VS] taper = 200"),
    Clm4Constant("taper_shrub", 10.0, "1", "shrub height to radius ratio (PFTs 9-11)", "[CLM4-VS] taper = 10"),
    Clm4Constant("grass_htop_per_lai", 0.25, "m", "grass/crop canopy height per unit LAI",
                 "[CLM4-VS] htop = max(0.25, tlai*0.25)"),
    Clm4Constant("grass_htop_min", 0.25, "m", "minimum grass/crop canopy height", "[CLM4-VS]"),
    Clm4Constant("tsai_min", 0.5, "m2 m-2", "minimum stem area index (1.0 scaled by 0.5, non-crop PFTs)",
                 "[CLM4-VS] tsai_min = 1.0 * 0.5 (Zeng et al. 2002)"),
    Clm4Constant("tsai_decay_per_month", 0.5, "month-1", "monthly decay rate of SAI (non-crop PFTs)",
                 "[CLM4-VS] tsai_alpha = 1 - 0.5*dt/dtsmonth"),
    Clm4Constant("cwd_fcel", 0.76, "1", "coarse woody debris cellulose fraction", "[CLM4-DC] cwd_fcel = 0.76"),
    Clm4Constant("cwd_flig", 0.24, "1", "coarse woody debris lignin fraction", "[CLM4-DC] cwd_flig = 0.24"),
)

Clm4Constants = namedtuple("Clm4Constants", [c.name for c in CONSTANT_TABLE])

#: The constants as a numba-friendly namedtuple of floats.
CONSTANTS: Clm4Constants = Clm4Constants(*(float(c.value) for c in CONSTANT_TABLE))


def constants_record() -> Clm4Constants:
    """The CLM4 constants as a namedtuple of Python floats (numba accepts it as an argument)."""
    return CONSTANTS


def vcmax25_top(arrays: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Vcmax at 25 C at the canopy top (umol CO2 m-2 s-1) implied by the CN parameters, per PFT.

    CLM4.0 Stomata with CN (tech note eq. 8.13 without the temperature, soil-water and daylength
    factors): ``vcmax25 = 1/(slatop*leafcn) * flnr * fnr * act25`` with act25 converted from
    umol mgRubisco-1 min-1 to umol gRubisco-1 s-1 (x 1000/60). Index 0 (no leaves) is 0.
    """
    a = pft_arrays() if arrays is None else arrays
    act = CONSTANTS.act25 * 1000.0 / 60.0
    out = np.zeros(NPFT)
    veg = np.asarray(a["slatop"]) > 0.0
    lnc = 1.0 / (np.asarray(a["slatop"])[veg] * np.asarray(a["leafcn"])[veg])  # gN m-2 leaf
    out[veg] = lnc * np.asarray(a["flnr"])[veg] * CONSTANTS.fnr * act
    return out


__all__ = [
    "CONSTANTS",
    "CONSTANT_TABLE",
    "Clm4Constant",
    "Clm4Constants",
    "NPFT",
    "PARAMETERS",
    "PFT_NAMES",
    "PFT_TABLE",
    "PftParameter",
    "PftRecord",
    "constants_record",
    "netcdf_attributes",
    "parameter",
    "pft_arrays",
    "pft_index",
    "pft_record",
    "read_pft_physiology",
    "to_netcdf_like_dict",
    "vcmax25_top",
    "write_pft_physiology",
]
