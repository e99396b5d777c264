"""CLM4CN carbon and nitrogen state: the declared table of pools, phenology/annual accumulators and
per-step fluxes, their packed array layout, the cold start, and the C and N budget check kernel.

Pools as in CLM4.0 (Oleson et al. 2010, NCAR/TN-478+STR, the CN chapters; CLM4.0 ``clmtype``
``pft_cstate_type``, ``pft_nstate_type``, ``column_cstate_type``, ``column_nstate_type``):

- per patch (gC or gN per m2 of patch area): six plant tissues (leaf, fine root, live stem, dead stem,
  live coarse root, dead coarse root), each displayed + storage + transfer (tech note chapters
  "Carbon-Nitrogen Pools, Allocation, and Respiration" and "Vegetation Phenology"); growth-respiration storage and transfer; ``cpool`` (temporary photosynthate pool) and
  ``xsmrpool`` (excess maintenance respiration pool, CLM4.0 CNAllocation); N: the same 18 tissue pools,
  ``retransn`` (retranslocated N) and ``npool`` (temporary plant N pool);
- per column (g per m2 of column area): litter 1-3 (labile, cellulose, lignin), coarse woody debris
  (CWD), the four soil organic matter pools SOM1-4 of CLM4's converging trophic cascade (tech note
  "Decomposition"; Thornton et al. 2002, Biome-BGC), each with its N pool, and soil mineral N ``sminn``.

Layout (DESIGN.md: member axis last): every variable is a C-contiguous ``(n, nmember)`` array, packed
as ``state[ivar, n, nmember]`` so that one argument carries a whole table to a numba kernel;
``state[ivar]`` is the (patch or column, member) array of that variable, and the integer constants
below (``LEAFC``, ``SOIL4C``, ...) index ``ivar``. The tables (``PATCH_VARS``, ``COLUMN_VARS``,
``PATCH_FLUXES``, ``COLUMN_FLUXES``) give name, units, level, long name, kind and CLM history name for
allocation, checkpoints and history.

Sign and range conventions: every pool is >= 0 except ``xsmrpool``, which is CLM4's maintenance
respiration *debt* (it goes negative when maintenance respiration exceeds GPP and is repaid from
later GPP; CLM4.0 CNAllocation; declared ``nonneg=False``). Kernels that could drive a pool below zero
by round-off clamp it to zero and record the added mass in the ``clamp_c``/``clamp_n`` flux of the
patch or column; the budget counts these terms explicitly (they are never silent).

Budgets (``cn_budget_residuals``): per column and member, with patch values weighted by
``patch_wt``, over one step of length dt (s):

    carbon:   d(sum C pools) = dt * (GPP - AR - HR + clamps)
    nitrogen: d(sum N pools) = dt * (Ndep + Nfix - denitrification - leaching + clamps)

GPP is the photosynthesis realised after CLM4's N down-regulation (``gpp`` patch flux), AR the
autotrophic (maintenance + growth) respiration, HR heterotrophic respiration. Fire and land-use
losses are not modelled (no CLM4 fire model, no harvest): they are zero by construction.

Step sequence (CLM4.0 ``CNEcosystemDyn`` order; the driver zeroes both flux arrays first and calls
``cn_totals`` before and ``cn_budget_residuals`` after):

    cn_allocation.maintenance_respiration -> cn_allocation.allocation_demand
    -> cn_decomposition.decomp_scalars -> cn_decomposition.decomp_potential
    -> cn_allocation.nitrogen_competition -> cn_allocation.allocation_fluxes
    -> cn_decomposition.decomposition -> cn_phenology.phenology
    -> cn_decomposition.nitrogen_inputs_losses -> cn_canopy.veg_struct_update
    -> cn_allocation.annual_update

(``tests/test_physics_cn.py::Column.step`` is this sequence in code.)

Reads nothing but its arguments. ``cn_budget_residuals`` writes only its out arrays; the Python
helpers allocate and cold-start arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels._jit import njit



@dataclass(frozen=True)
class CnVar:
    """One declared CN variable.

    ``level`` is ``"patch"`` or ``"column"``; ``kind`` is ``"C"`` (carbon pool, in the C budget),
    ``"N"`` (nitrogen pool, in the N budget), ``"aux"`` (phenology flag/accumulator or canopy
    structure, restart yes) or ``"flux"`` (per-step flux/diagnostic, history only). ``hist`` is the
    CLM4 history field name. ``init`` is the cold-start value; ``nonneg`` whether the value must stay
    >= 0.
    """

    name: str
    units: str
    level: str
    long_name: str
    kind: str
    hist: str
    init: float = 0.0
    nonneg: bool = True

    @property
    def restart(self) -> bool:
        return self.kind != "flux"


_TISSUES = (
    ("leaf", "leaf"),
    ("froot", "fine root"),
    ("livestem", "live stem"),
    ("deadstem", "dead stem"),
    ("livecroot", "live coarse root"),
    ("deadcroot", "dead coarse root"),
)


def _tissue_vars(element: str, units: str, kind: str) -> list[CnVar]:
    out = []
    for short, long in _TISSUES:
        for suffix, what in (("", "displayed"), ("_storage", "storage"), ("_xfer", "transfer")):
            name = f"{short}{element}{suffix}"
            out.append(CnVar(name, units, "patch", f"{long} {'C' if element == 'c' else 'N'} ({what})",
                             kind, name.upper()))
    return out


_GC = "gC m-2"
_GN = "gN m-2"
_GCS = "gC m-2 s-1"
_GNS = "gN m-2 s-1"

PATCH_VARS: tuple[CnVar, ...] = tuple(
    _tissue_vars("c", _GC, "C")
    + [
        CnVar("gresp_storage", _GC, "patch", "growth respiration storage", "C", "GRESP_STORAGE"),
        CnVar("gresp_xfer", _GC, "patch", "growth respiration transfer", "C", "GRESP_XFER"),
        CnVar("cpool", _GC, "patch", "temporary photosynthate C pool", "C", "CPOOL"),
        CnVar("xsmrpool", _GC, "patch", "excess maintenance respiration pool (negative = debt)", "C",
              "XSMRPOOL", nonneg=False),
    ]
    + _tissue_vars("n", _GN, "N")
    + [
        CnVar("retransn", _GN, "patch", "plant pool of retranslocated N", "N", "RETRANSN"),
        CnVar("npool", _GN, "patch", "temporary plant N pool", "N", "NPOOL"),
        # ---- phenology state (CLM4.0 CNPhenologyMod) ----
        CnVar("dormant_flag", "1", "patch", "dormancy flag (1 dormant)", "aux", "DORMANT_FLAG", 1.0),
        CnVar("onset_flag", "1", "patch", "onset flag (1 in the onset period)", "aux", "ONSET_FLAG"),
        CnVar("offset_flag", "1", "patch", "offset flag (1 in the offset period)", "aux", "OFFSET_FLAG"),
        CnVar("onset_counter", "s", "patch", "time left in the onset period", "aux", "ONSET_COUNTER"),
        CnVar("offset_counter", "s", "patch", "time left in the offset period", "aux", "OFFSET_COUNTER"),
        CnVar("onset_gddflag", "1", "patch", "onset growing-degree-day summation flag", "aux",
              "ONSET_GDDFLAG"),
        CnVar("onset_gdd", "degC day", "patch", "onset growing degree days (soil layer 3)", "aux",
              "ONSET_GDD"),
        CnVar("onset_fdd", "day", "patch", "onset freezing days counter", "aux", "ONSET_FDD"),
        CnVar("onset_swi", "day", "patch", "onset soil water index", "aux", "ONSET_SWI"),
        CnVar("offset_fdd", "day", "patch", "offset freezing days counter", "aux", "OFFSET_FDD"),
        CnVar("offset_swi", "day", "patch", "offset soil water index", "aux", "OFFSET_SWI"),
        CnVar("days_active", "day", "patch", "days since the last dormancy", "aux", "DAYS_ACTIVE"),
        CnVar("lgsf", "1", "patch", "long growing season factor", "aux", "LGSF"),
        CnVar("bglfr", "s-1", "patch", "background litterfall rate", "aux", "BGLFR"),
        CnVar("bgtr", "s-1", "patch", "background transfer rate (storage -> transfer)", "aux", "BGTR"),
        CnVar("prev_leafc_to_litter", _GCS, "patch", "leaf litterfall of the previous step (offset)",
              "aux", "PREV_LEAFC_TO_LITTER"),
        CnVar("prev_frootc_to_litter", _GCS, "patch", "fine root litterfall of the previous step (offset)",
              "aux", "PREV_FROOTC_TO_LITTER"),
        # ---- annual accumulators (CLM4 CNAnnualUpdateMod) ----
        CnVar("annsum_counter", "s", "patch", "seconds since the last annual accumulator turnover", "aux",
              "ANNSUM_COUNTER"),
        CnVar("tempavg_t2m", "K", "patch", "running (partial-year) average 2-m temperature", "aux",
              "TEMPAVG_T2M"),
        CnVar("annavg_t2m", "K", "patch", "annual average 2-m temperature", "aux", "ANNAVG_T2M", 280.0),
        CnVar("tempsum_npp", "gC m-2 yr-1", "patch", "running (partial-year) NPP sum", "aux", "TEMPSUM_NPP",
              nonneg=False),
        CnVar("annsum_npp", "gC m-2 yr-1", "patch", "annual NPP", "aux", "ANNSUM_NPP", nonneg=False),
        CnVar("tempsum_potential_gpp", "gC m-2 yr-1", "patch", "running (partial-year) potential GPP sum",
              "aux", "TEMPSUM_POTENTIAL_GPP"),
        CnVar("annsum_potential_gpp", "gC m-2 yr-1", "patch", "annual potential GPP", "aux",
              "ANNSUM_POTENTIAL_GPP"),
        CnVar("tempmax_retransn", _GN, "patch", "running (partial-year) maximum of retransn", "aux",
              "TEMPMAX_RETRANSN"),
        CnVar("annmax_retransn", _GN, "patch", "annual maximum of retransn", "aux", "ANNMAX_RETRANSN"),
        # ---- canopy structure (CLM4 CNVegStructUpdateMod) ----
        CnVar("tlai", "m2 m-2", "patch", "total one-sided leaf area index", "aux", "TLAI"),
        CnVar("tsai", "m2 m-2", "patch", "total one-sided stem area index", "aux", "TSAI"),
        CnVar("elai", "m2 m-2", "patch", "exposed one-sided leaf area index (snow burial)", "aux", "ELAI"),
        CnVar("esai", "m2 m-2", "patch", "exposed one-sided stem area index (snow burial)", "aux", "ESAI"),
        CnVar("htop", "m", "patch", "canopy top height", "aux", "HTOP"),
        CnVar("hbot", "m", "patch", "canopy bottom height", "aux", "HBOT"),
    ]
)

_SOM = (("litr1", "litter 1 (labile)"), ("litr2", "litter 2 (cellulose)"), ("litr3", "litter 3 (lignin)"),
        ("cwd", "coarse woody debris"), ("soil1", "soil organic matter 1 (fast)"),
        ("soil2", "soil organic matter 2 (medium)"), ("soil3", "soil organic matter 3 (slow)"),
        ("soil4", "soil organic matter 4 (recalcitrant)"))

COLUMN_VARS: tuple[CnVar, ...] = tuple(
    [CnVar(f"{s}c", _GC, "column", f"{d} C", "C", f"{s.upper()}C") for s, d in _SOM]
    + [CnVar(f"{s}n", _GN, "column", f"{d} N", "N", f"{s.upper()}N") for s, d in _SOM]
    + [CnVar("sminn", _GN, "column", "soil mineral N", "N", "SMINN")]
)

_PF = [
    ("gpp", _GCS, "gross primary production after N down-regulation", "GPP"),
    ("gpp_pot", _GCS, "potential gross primary production (input, before N limitation)", "PSNSUN_TO_CPOOL"),
    ("downreg", "1", "fractional reduction of GPP by N limitation", "DOWNREG"),
    ("mr", _GCS, "maintenance respiration", "MR"),
    ("leaf_mr", _GCS, "leaf maintenance respiration", "LEAF_MR"),
    ("froot_mr", _GCS, "fine root maintenance respiration", "FROOT_MR"),
    ("livestem_mr", _GCS, "live stem maintenance respiration", "LIVESTEM_MR"),
    ("livecroot_mr", _GCS, "live coarse root maintenance respiration", "LIVECROOT_MR"),
    ("xsmr", _GCS, "maintenance respiration paid from xsmrpool", "XSMR"),
    ("gr", _GCS, "growth respiration", "GR"),
    ("ar", _GCS, "autotrophic respiration (MR + GR)", "AR"),
    ("npp", _GCS, "net primary production", "NPP"),
    ("availc", _GCS, "C available for allocation", "AVAILC"),
    ("xsmrpool_recover", _GCS, "C flux repaying the xsmrpool debt", "XSMRPOOL_RECOVER"),
    ("c_allometry", "1", "C allocation index", "C_ALLOMETRY"),
    ("n_allometry", "gN gC-1", "N allocation index", "N_ALLOMETRY"),
    ("plant_ndemand", _GNS, "plant N demand on soil mineral N", "PLANT_NDEMAND"),
    ("retransn_to_npool", _GNS, "deployment of retranslocated N", "RETRANSN_TO_NPOOL"),
    ("sminn_to_npool", _GNS, "plant uptake of soil mineral N", "SMINN_TO_NPOOL"),
    ("plant_calloc", _GCS, "total allocated C flux", "PLANT_CALLOC"),
    ("plant_nalloc", _GNS, "total allocated N flux", "PLANT_NALLOC"),
    ("excess_cflux", _GCS, "C flux not allocated for lack of N (removed from GPP)", "EXCESS_CFLUX"),
    ("leafc_to_litter", _GCS, "leaf litterfall C", "LEAFC_TO_LITTER"),
    ("frootc_to_litter", _GCS, "fine root litterfall C", "FROOTC_TO_LITTER"),
    ("leafn_to_retransn", _GNS, "leaf N retranslocated at litterfall", "LEAFN_TO_RETRANSN"),
    ("litfall_c", _GCS, "all C from the patch to litter and CWD (litterfall + mortality)", "LITFALL"),
    ("litfall_n", _GNS, "all N from the patch to litter and CWD", "LITFALL_N"),
    ("mort_c", _GCS, "gap-phase mortality C", "M_C"),
    ("clamp_c", _GCS, "C added to keep patch pools >= 0 (round-off accounting)", "CLAMP_C"),
    ("clamp_n", _GNS, "N added to keep patch pools >= 0 (round-off accounting)", "CLAMP_N"),
]
PATCH_FLUXES: tuple[CnVar, ...] = tuple(CnVar(n, u, "patch", d, "flux", h) for n, u, d, h in _PF)

_TRANS = ("l1s1", "l2s2", "l3s3", "s1s2", "s2s3", "s3s4", "s4")
_CF = (
    [("hr", _GCS, "heterotrophic respiration", "HR"),
     ("t_scalar", "1", "decomposition temperature scalar", "T_SCALAR"),
     ("w_scalar", "1", "decomposition water scalar", "W_SCALAR"),
     ("potential_immob", _GNS, "potential N immobilisation", "POTENTIAL_IMMOB"),
     ("actual_immob", _GNS, "actual N immobilisation", "ACTUAL_IMMOB"),
     ("gross_nmin", _GNS, "gross N mineralisation", "GROSS_NMIN"),
     ("net_nmin", _GNS, "net N mineralisation", "NET_NMIN"),
     ("col_plant_ndemand", _GNS, "plant N demand (column sum)", "PLANT_NDEMAND_COL"),
     ("sminn_to_plant", _GNS, "plant uptake of soil mineral N (column sum)", "SMINN_TO_PLANT"),
     ("fpi", "1", "fraction of potential immobilisation realised", "FPI"),
     ("fpg", "1", "fraction of potential plant N uptake realised", "FPG"),
     ("ndep", _GNS, "atmospheric N deposition", "NDEP_TO_SMINN"),
     ("nfix", _GNS, "biological N fixation", "NFIX_TO_SMINN"),
     ("denit", _GNS, "total denitrification (mineralisation fraction + excess)", "DENIT"),
     ("denit_excess", _GNS, "denitrification of excess mineral N", "SMINN_TO_DENIT_EXCESS"),
     ("leached", _GNS, "mineral N leached with drainage", "SMINN_LEACHED"),
     ("cwdc_loss", _GCS, "CWD fragmentation C", "CWDC_LOSS"),
     ("clamp_c", _GCS, "C added to keep column pools >= 0 (round-off accounting)", "CLAMP_C"),
     ("clamp_n", _GNS, "N added to keep column pools >= 0 (round-off accounting)", "CLAMP_N"),
     ("supplement_to_sminn", _GNS, "supplemental mineral N that removes N limitation (spin-up only)",
      "SUPPLEMENT_TO_SMINN")]
    + [(f"pc_{t}", _GCS, f"potential C loss of decomposition step {t.upper()}", f"PC_{t.upper()}")
       for t in _TRANS]
    + [(f"pmnf_{t}", _GNS, f"potential mineral N flux of step {t.upper()} (> 0: immobilisation)",
        f"PMNF_{t.upper()}") for t in _TRANS]
)
COLUMN_FLUXES: tuple[CnVar, ...] = tuple(CnVar(n, u, "column", d, "flux", h) for n, u, d, h in _CF)


def _index(table) -> dict[str, int]:
    out = {v.name: i for i, v in enumerate(table)}
    if len(out) != len(table):  # pragma: no cover - guards the literal tables
        raise RuntimeError("duplicate name in a CN variable table")
    return out


PATCH_INDEX = _index(PATCH_VARS)
COLUMN_INDEX = _index(COLUMN_VARS)
PATCH_FLUX_INDEX = _index(PATCH_FLUXES)
COLUMN_FLUX_INDEX = _index(COLUMN_FLUXES)
NPV, NCV, NPF, NCF = len(PATCH_VARS), len(COLUMN_VARS), len(PATCH_FLUXES), len(COLUMN_FLUXES)

# ---- integer indices (numba compile-time constants) ---------------------------------------------------
# Tissues t = 0..5 (leaf, froot, livestem, deadstem, livecroot, deadcroot): C displayed 3t, storage
# 3t+1, transfer 3t+2; N the same offset by NC0.
NTISSUE = 6
T_LEAF, T_FROOT, T_LIVESTEM, T_DEADSTEM, T_LIVECROOT, T_DEADCROOT = range(6)
(LEAFC, LEAFC_STORAGE, LEAFC_XFER, FROOTC, FROOTC_STORAGE, FROOTC_XFER,
 LIVESTEMC, LIVESTEMC_STORAGE, LIVESTEMC_XFER, DEADSTEMC, DEADSTEMC_STORAGE, DEADSTEMC_XFER,
 LIVECROOTC, LIVECROOTC_STORAGE, LIVECROOTC_XFER, DEADCROOTC, DEADCROOTC_STORAGE, DEADCROOTC_XFER,
 GRESP_STORAGE, GRESP_XFER, CPOOL, XSMRPOOL) = range(22)
NC0 = 22
(LEAFN, LEAFN_STORAGE, LEAFN_XFER, FROOTN, FROOTN_STORAGE, FROOTN_XFER,
 LIVESTEMN, LIVESTEMN_STORAGE, LIVESTEMN_XFER, DEADSTEMN, DEADSTEMN_STORAGE, DEADSTEMN_XFER,
 LIVECROOTN, LIVECROOTN_STORAGE, LIVECROOTN_XFER, DEADCROOTN, DEADCROOTN_STORAGE, DEADCROOTN_XFER,
 RETRANSN, NPOOL) = range(NC0, NC0 + 20)
(DORMANT_FLAG, ONSET_FLAG, OFFSET_FLAG, ONSET_COUNTER, OFFSET_COUNTER, ONSET_GDDFLAG, ONSET_GDD,
 ONSET_FDD, ONSET_SWI, OFFSET_FDD, OFFSET_SWI, DAYS_ACTIVE, LGSF, BGLFR, BGTR,
 PREV_LEAFC_TO_LITTER, PREV_FROOTC_TO_LITTER,
 ANNSUM_COUNTER, TEMPAVG_T2M, ANNAVG_T2M, TEMPSUM_NPP, ANNSUM_NPP, TEMPSUM_POTENTIAL_GPP,
 ANNSUM_POTENTIAL_GPP, TEMPMAX_RETRANSN, ANNMAX_RETRANSN,
 TLAI, TSAI, ELAI, ESAI, HTOP, HBOT) = range(NC0 + 20, NPV)
NPATCH_C = 22  # patch C pools are 0..21
NPATCH_N_END = NC0 + 20  # patch N pools are NC0..NPATCH_N_END-1

(LITR1C, LITR2C, LITR3C, CWDC, SOIL1C, SOIL2C, SOIL3C, SOIL4C,
 LITR1N, LITR2N, LITR3N, CWDN, SOIL1N, SOIL2N, SOIL3N, SOIL4N, SMINN) = range(NCV)
NCOL_C = 8  # column C pools 0..7, N pools 8..16 (incl. sminn)

(F_GPP, F_GPP_POT, F_DOWNREG, F_MR, F_LEAF_MR, F_FROOT_MR, F_LIVESTEM_MR, F_LIVECROOT_MR, F_XSMR, F_GR,
 F_AR, F_NPP, F_AVAILC, F_XSMRPOOL_RECOVER, F_C_ALLOMETRY, F_N_ALLOMETRY, F_PLANT_NDEMAND,
 F_RETRANSN_TO_NPOOL, F_SMINN_TO_NPOOL, F_PLANT_CALLOC, F_PLANT_NALLOC, F_EXCESS_CFLUX,
 F_LEAFC_TO_LITTER, F_FROOTC_TO_LITTER, F_LEAFN_TO_RETRANSN, F_LITFALL_C, F_LITFALL_N, F_MORT_C,
 F_CLAMP_C, F_CLAMP_N) = range(NPF)

(G_HR, G_T_SCALAR, G_W_SCALAR, G_POTENTIAL_IMMOB, G_ACTUAL_IMMOB, G_GROSS_NMIN, G_NET_NMIN,
 G_COL_PLANT_NDEMAND, G_SMINN_TO_PLANT, G_FPI, G_FPG, G_NDEP, G_NFIX, G_DENIT, G_DENIT_EXCESS,
 G_LEACHED, G_CWDC_LOSS, G_CLAMP_C, G_CLAMP_N, G_SUPPLEMENT_TO_SMINN) = range(20)
G_PC0 = 20  # potential C loss of the 7 transitions: G_PC0 + k, k = 0..6 (l1s1 .. s4)
G_PMNF0 = 27  # potential mineral N flux of the 7 transitions
NTRANS = 7


def _check_indices() -> None:
    """The integer constants above must match the tables (a mismatch is a programming error)."""
    g = globals()
    for table, prefix in ((PATCH_VARS, ""), (COLUMN_VARS, "")):
        for i, v in enumerate(table):
            if g[v.name.upper()] != i:  # pragma: no cover
                raise RuntimeError(f"cn_state: index constant {v.name.upper()} != table position {i}")
    for i, v in enumerate(PATCH_FLUXES):
        if g["F_" + v.name.upper()] != i:  # pragma: no cover
            raise RuntimeError(f"cn_state: index constant F_{v.name.upper()} != table position {i}")
    for i, v in enumerate(COLUMN_FLUXES[:G_PC0]):
        if g["G_" + v.name.upper()] != i:  # pragma: no cover
            raise RuntimeError(f"cn_state: index constant G_{v.name.upper()} != table position {i}")
    if NCF != G_PMNF0 + NTRANS or PATCH_VARS[NC0].name != "leafn" or PATCH_VARS[NPATCH_N_END - 1].name != "npool":
        raise RuntimeError("cn_state: flux/pool layout constants disagree with the tables")  # pragma: no cover


_check_indices()

#: Index arrays of the pools that enter the carbon and nitrogen budgets.
PATCH_C_POOLS = np.array([i for i, v in enumerate(PATCH_VARS) if v.kind == "C"], dtype=np.int64)
PATCH_N_POOLS = np.array([i for i, v in enumerate(PATCH_VARS) if v.kind == "N"], dtype=np.int64)
COLUMN_C_POOLS = np.array([i for i, v in enumerate(COLUMN_VARS) if v.kind == "C"], dtype=np.int64)
COLUMN_N_POOLS = np.array([i for i, v in enumerate(COLUMN_VARS) if v.kind == "N"], dtype=np.int64)


# ---- allocation, cold start, views --------------------------------------------------------------------


def allocate(table, n: int, nmember: int) -> np.ndarray:
    """Zeroed packed array ``(len(table), n, nmember)`` float64 for one of the four tables."""
    if n < 0 or nmember < 1:
        raise ValueError(f"cn_state.allocate: need n >= 0 and nmember >= 1, got n={n}, nmember={nmember}")
    return np.zeros((len(table), n, nmember), dtype=np.float64)


def cold_start(patch_pft: np.ndarray, ncol: int, nmember: int, pft=None, *, leafc0: float = 1.0,
               sminn0: float = 0.0, soil4c0: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Patch and column state of a CLM4CN cold start (CLM4.0 ``CNiniTimeVar``).

    Every variable starts at its table ``init`` (flags: dormant; annavg_t2m 280 K); evergreen PFTs get
    ``leafc0`` gC/m2 of displayed leaf C, deciduous PFTs the same amount as leaf storage (CLM4: 1 gC/m2),
    leaf N at the PFT's leaf C:N; columns get ``soil4c0`` gC/m2 of SOM4 at C:N 10 and ``sminn0`` gN/m2.
    ``pft`` defaults to ``engine.pftcon.pft_record()``. Returns (patch_state, column_state).
    """
    from kernels.physics.cn_decomposition import CN_SOIL

    if pft is None:
        from engine.pftcon import pft_record

        pft = pft_record()
    patch_pft = np.asarray(patch_pft, dtype=np.int64)
    if patch_pft.ndim != 1 or np.any(patch_pft < 0) or np.any(patch_pft >= len(pft.slatop)):
        raise ValueError(f"cn_state.cold_start: patch_pft must be a 1-D array of PFT indices 0..{len(pft.slatop) - 1}")
    ps = allocate(PATCH_VARS, patch_pft.size, nmember)
    cs = allocate(COLUMN_VARS, ncol, nmember)
    for i, v in enumerate(PATCH_VARS):
        ps[i] = v.init
    for i, v in enumerate(COLUMN_VARS):
        cs[i] = v.init
    for p, ivt in enumerate(patch_pft):
        if ivt == 0:
            continue
        target = LEAFC if pft.evergreen[ivt] == 1.0 else LEAFC_STORAGE
        ps[target, p] = leafc0
        ps[target + NC0, p] = leafc0 / pft.leafcn[ivt]
    cs[SOIL4C] = soil4c0
    cs[SOIL4N] = soil4c0 / CN_SOIL[3]
    cs[SMINN] = sminn0
    return ps, cs


def view(state: np.ndarray, table, name: str) -> np.ndarray:
    """The ``(n, nmember)`` array of variable ``name`` in a packed ``state`` of ``table`` (a view)."""
    idx = _index(table)
    if name not in idx:
        raise KeyError(f"CN variable {name!r} is not in this table; known: {', '.join(idx)}")
    if state.shape[0] != len(table):
        raise ValueError(f"packed CN state has {state.shape[0]} variables, the table has {len(table)}")
    return state[idx[name]]


def check_state(state: np.ndarray, table, where: str = "") -> None:
    """Raise ``ValueError`` naming variable, index and member if a variable is non-finite or a
    ``nonneg`` variable is negative."""
    for i, v in enumerate(table):
        a = state[i]
        bad = ~np.isfinite(a)
        if v.nonneg:
            bad |= a < 0.0
        if np.any(bad):
            n, m = np.argwhere(bad)[0]
            raise ValueError(f"CN state{(' ' + where) if where else ''}: {v.level} variable {v.name!r} "
                             f"({v.units}) = {a[n, m]!r} at {v.level} {n}, member {m}")


# ---- budget kernels -----------------------------------------------------------------------------------


@njit
def clamp_negative_pools(x, j, m, nc, n, skip, dt, flux, i_clamp_c, i_clamp_n):
    """Round-off clamp of packed pools ``x[i, j, m]``, i = 0..n-1 (i < nc carbon, else nitrogen; pool
    ``skip`` may stay negative, -1 for none): a negative pool is set to 0 and the added mass (g m-2) / dt
    (s) is accumulated into ``flux[i_clamp_c, j, m]`` or ``flux[i_clamp_n, j, m]`` (g m-2 s-1), so the
    C and N budgets stay closed (CLM4.0 CNPrecisionControl, done where the pools are changed)."""
    for i in range(n):
        if i == skip:
            continue
        if x[i, j, m] < 0.0:
            if i < nc:
                flux[i_clamp_c, j, m] += -x[i, j, m] / dt
            else:
                flux[i_clamp_n, j, m] += -x[i, j, m] / dt
            x[i, j, m] = 0.0


@njit
def cn_totals(patch_col, patch_wt, ps, cs, out_totc, out_totn):
    """Total ecosystem C (gC/m2) and N (gN/m2) per column and member: column pools plus the
    patch pools weighted by ``patch_wt`` (fraction of the column). ``ps``/``cs`` packed patch/column
    states; fills ``out_totc[c, m]``, ``out_totn[c, m]``."""
    ncol = cs.shape[1]
    nmem = cs.shape[2]
    for c in range(ncol):
        for m in range(nmem):
            tc = 0.0
            for i in range(NCOL_C):
                tc += cs[i, c, m]
            tn = 0.0
            for i in range(NCOL_C, NCV):
                tn += cs[i, c, m]
            out_totc[c, m] = tc
            out_totn[c, m] = tn
    for p in range(ps.shape[1]):
        c = patch_col[p]
        w = patch_wt[p]
        for m in range(nmem):
            tc = 0.0
            for i in range(NPATCH_C):
                tc += ps[i, p, m]
            tn = 0.0
            for i in range(NC0, NPATCH_N_END):
                tn += ps[i, p, m]
            out_totc[c, m] += w * tc
            out_totn[c, m] += w * tn


@njit
def cn_budget_residuals(patch_col, patch_wt, totc_old, totn_old, ps, cs, pf, cf, dt, out_resid_c,
                        out_resid_n):
    """Carbon and nitrogen budget residuals of one step per column and member (gC/m2, gN/m2).

    residual_C = (C_new - C_old) - dt (sum_p wt (GPP - AR + clamp_c) - HR + clamp_c_col)
    residual_N = (N_new - N_old) - dt (Ndep + Nfix + supplement - denit - leached + sum_p wt clamp_n + clamp_n_col)

    ``totc_old``/``totn_old`` from :func:`cn_totals` before the step; ``ps``, ``cs`` the states after
    it; ``pf``/``cf`` the packed patch/column fluxes of the step (g/m2/s); dt (s). No fire, harvest or
    land-use fluxes exist in this model (zero by construction). Fills ``out_resid_c``/``out_resid_n``.
    """
    ncol = cs.shape[1]
    nmem = cs.shape[2]
    totc = np.empty((ncol, nmem))
    totn = np.empty((ncol, nmem))
    cn_totals(patch_col, patch_wt, ps, cs, totc, totn)
    cn_budget_residuals_of_totals(patch_col, patch_wt, totc_old, totn_old, totc, totn, pf, cf, dt, out_resid_c,
                                  out_resid_n)


@njit
def cn_budget_residuals_of_totals(patch_col, patch_wt, totc_old, totn_old, totc_new, totn_new, pf, cf, dt,
                                  out_resid_c, out_resid_n):
    """:func:`cn_budget_residuals` from the totals (gC/m2, gN/m2 per column and member) that
    :func:`cn_totals` gave before (``totc_old``, ``totn_old``) and after (``totc_new``, ``totn_new``) the
    step, for a driver that keeps the totals of the step's end anyway (the next step's budget start):
    summing the pools is the expensive part (it streams through every pool of every patch). Same
    arguments and outputs otherwise; bit-identical to :func:`cn_budget_residuals`."""
    ncol = totc_new.shape[0]
    nmem = totc_new.shape[1]
    inc = np.zeros((ncol, nmem))
    inn = np.zeros((ncol, nmem))
    for p in range(pf.shape[1]):
        c = patch_col[p]
        w = patch_wt[p]
        for m in range(nmem):
            inc[c, m] += w * (pf[F_GPP, p, m] - pf[F_AR, p, m] + pf[F_CLAMP_C, p, m])
            inn[c, m] += w * pf[F_CLAMP_N, p, m]
    for c in range(ncol):
        for m in range(nmem):
            fc = inc[c, m] - cf[G_HR, c, m] + cf[G_CLAMP_C, c, m]
            fn = (inn[c, m] + cf[G_NDEP, c, m] + cf[G_NFIX, c, m] - cf[G_DENIT, c, m] - cf[G_LEACHED, c, m]
                  + cf[G_CLAMP_N, c, m] + cf[G_SUPPLEMENT_TO_SMINN, c, m])
            out_resid_c[c, m] = (totc_new[c, m] - totc_old[c, m]) - dt * fc
            out_resid_n[c, m] = (totn_new[c, m] - totn_old[c, m]) - dt * fn


def budget_failure_message(resid_c: np.ndarray, resid_n: np.ndarray, tol_c: float, tol_n: float,
                           step: int, column_ids=None) -> str | None:
    """A message naming column, member, step and residual if ``|resid| > tol``; None when closed."""
    for name, r, tol, unit in (("carbon", resid_c, tol_c, "gC/m2"), ("nitrogen", resid_n, tol_n, "gN/m2")):
        bad = ~(np.abs(r) <= tol)
        if np.any(bad):
            c, m = np.argwhere(bad)[0]
            cid = c if column_ids is None else column_ids[c]
            return (f"CN {name} budget not closed at step {step}: column {cid}, member {m}, residual "
                    f"{r[c, m]:.3e} {unit} (tolerance {tol:.1e})")
    return None


__all__ = [
    "clamp_negative_pools",
    "COLUMN_FLUXES", "COLUMN_VARS", "CnVar", "PATCH_FLUXES", "PATCH_VARS", "allocate",
    "budget_failure_message", "check_state", "cn_budget_residuals", "cn_budget_residuals_of_totals",
    "cn_totals", "cold_start", "view",
]
