"""The declared table of the land model's prognostic biogeophysical state, and its allocation,
restart and history views (STYLE.md: declare each variable once; Veros/DART practice).

Every variable has a name, its dimensions (``"patch"`` or ``"column"``, optionally followed by the
soil level axis ``"levgrnd"`` of CLM4's 15 levels), units, long name, whether it belongs in the restart
and in history, and a cold-start value (``None``: set by the cold start of ``engine.landmodel``,
which computes it from the climate or the soil). Arrays are float64, member axis last
(DESIGN.md): ``x[n, member]`` or ``x[n, level, member]``.

The CLM4CN carbon and nitrogen state is the packed pair of ``kernels.physics.cn_state`` (``ps`` patch
table, ``cs`` column table); its restart names are the table names with the prefix ``cn_``.

:class:`PhysicsState` holds the arrays of one rank's block (allocated from the table),
``restart_variables()`` returns the dict of arrays to checkpoint (name -> array, views of the state,
no copies) and ``set_from_restart()`` copies such a dict back after checking names and shapes.
Reads and writes only its own arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kernels.physics import cn_state as S
from kernels.physics.soil_layers import NLEVGRND


@dataclass(frozen=True)
class StateVar:
    """One declared biogeophysical state variable (see the module docstring)."""

    name: str
    dims: tuple
    units: str
    long_name: str
    restart: bool
    history: bool
    init: float | None


#: CLM4 names where one exists (clmtype); units as CLM's history/restart files.
STATE_VARS: tuple[StateVar, ...] = (
    StateVar("t_soisno", ("column", "levgrnd"), "K", "soil temperature", True, True, None),
    StateVar("h2osoi_liq", ("column", "levgrnd"), "kg m-2", "soil liquid water", True, True, None),
    StateVar("h2osoi_ice", ("column", "levgrnd"), "kg m-2", "soil ice", True, True, None),
    StateVar("t_snow", ("column",), "K", "temperature of the snow layer", True, False, None),
    StateVar("snow_liq", ("column",), "kg m-2", "liquid water in the snow pack", True, False, 0.0),
    StateVar("snow_ice", ("column",), "kg m-2", "ice in the snow pack", True, False, 0.0),
    StateVar("snow_depth", ("column",), "m", "snow depth", True, True, 0.0),
    StateVar("frac_sno", ("column",), "1", "fraction of the ground covered by snow", True, True, 0.0),
    StateVar("snow_age", ("column",), "1", "non-dimensional snow age (BATS)", True, False, 0.0),
    StateVar("t_veg", ("patch",), "K", "vegetation temperature", True, True, None),
    StateVar("h2ocan", ("patch",), "kg m-2", "intercepted canopy water", True, True, 0.0),
    StateVar("fwet", ("patch",), "1", "wetted fraction of the canopy (at the end of the step)", True, False, 0.0),
)

STATE_INDEX = {v.name: v for v in STATE_VARS}


def _shape(v: StateVar, ncol: int, npatch: int, nmember: int) -> tuple:
    n = ncol if v.dims[0] == "column" else npatch
    lev = (NLEVGRND,) if len(v.dims) > 1 else ()
    return (n, *lev, nmember)


class PhysicsState:
    """All prognostic arrays of one block of ``ncol`` columns and ``npatch`` patches, ``nmember``
    members: the declared table plus the packed CN state ``ps``/``cs``. Access by attribute
    (``state.t_soisno``)."""

    def __init__(self, ncol: int, npatch: int, nmember: int):
        if ncol < 1 or npatch < 1 or nmember < 1:
            raise ValueError(f"PhysicsState: need ncol, npatch, nmember >= 1, got {ncol}, {npatch}, {nmember}")
        self.ncol, self.npatch, self.nmember = int(ncol), int(npatch), int(nmember)
        self.arrays: dict[str, np.ndarray] = {}
        for v in STATE_VARS:
            a = np.zeros(_shape(v, ncol, npatch, nmember))
            if v.init is not None:
                a[...] = v.init
            self.arrays[v.name] = a
        self.ps = S.allocate(S.PATCH_VARS, npatch, nmember)
        self.cs = S.allocate(S.COLUMN_VARS, ncol, nmember)

    def __getattr__(self, name):
        arrays = self.__dict__.get("arrays")
        if arrays is not None and name in arrays:
            return arrays[name]
        raise AttributeError(f"PhysicsState has no variable {name!r}")

    def restart_variables(self) -> dict[str, np.ndarray]:
        """name -> array (views) of everything a restart must hold to continue bit for bit."""
        out = {v.name: self.arrays[v.name] for v in STATE_VARS if v.restart}
        for i, v in enumerate(S.PATCH_VARS):
            if v.restart:
                out["cn_" + v.name] = self.ps[i]
        for i, v in enumerate(S.COLUMN_VARS):
            if v.restart:
                out["cn_" + v.name] = self.cs[i]
        return out

    def set_from_restart(self, values: dict) -> None:
        """Copy ``values`` (name -> array, as :meth:`restart_variables`) into the state. Every restart
        variable must be present with its exact shape and finite values; unknown names are errors."""
        target = self.restart_variables()
        missing = sorted(set(target) - set(values))
        extra = sorted(set(values) - set(target))
        if missing or extra:
            raise KeyError(f"set_from_restart: missing variables {missing[:8]}, unknown variables {extra[:8]}")
        for name, dst in target.items():
            src = np.asarray(values[name])
            if src.shape != dst.shape:
                raise ValueError(f"set_from_restart: variable {name!r} has shape {src.shape}, expected {dst.shape}")
            if not np.all(np.isfinite(src)):
                raise ValueError(f"set_from_restart: variable {name!r} holds non-finite values")
        for name, dst in target.items():
            dst[...] = values[name]


__all__ = ["STATE_INDEX", "STATE_VARS", "PhysicsState", "StateVar"]
