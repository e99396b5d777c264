"""The twin experiment: nature run, ensemble spin-up, CTL and CN cycling with LAI assimilation,
checkpoints and resume (experiment issue, items 1-9; SCIENCE.md, Table I).

State read and written
----------------------
Per rank: one block of land cells (``engine.decomposition``, balanced by patches per cell) and three
land models over it (:class:`engine.landmodel.LandModel`): the nature run (1 member, the truth), CTL
and CN (N members each, the same ensemble forcing), plus two forcing generators (the unperturbed base
weather of the truth, the perturbed ensemble) and CN's adaptive inflation fields. Writes, under
``run.run_dir``: ``config.toml`` (the resolved configuration), ``laida.log``, and per experiment
``nature/``, ``ctl/``, ``cn/``: checkpoints ``checkpoint_<cycle>.h5`` (engine.restart) and history
``<exp>.h0.c<first cycle>.nc`` (engine.history, daily ensemble mean and spread; one file per
checkpoint interval, named by its first cycle: engine.evaluation.history_segments joins them); CN also
``cn.obs_diag.c<first>.nc`` (observation-space diagnostics and the analysis C/N budget term) and
``cn.analysis.c<first>.nc`` (prior/posterior mean and spread of TLAI, LEAFC, LEAFN at analysis times)
and one DART ``obs_seq.final.<cycle>`` per analysis (engine.observations.write_obs_seq). Reads, with
``observations.source`` = "product" or "obs_seq", the observation files of each analysis time (rank 0).

The experiment (twin / OSSE)
----------------------------
* Truth: one model run with the base (unperturbed) member of the forcing generator and CLM4.0's PFT
  parameters. The ensemble's model differs by a documented parameter bias: for the PFTs of
  ``experiment.bias_pft`` (default 4, broadleaf evergreen tropical tree) the canopy-top specific
  leaf area ``slatop`` is the truth's times ``experiment.bias_slatop_factor`` (default 1.5). The
  same leaf carbon then makes at least 1.5 times the leaf area (CLM4: LAI = slatop (exp(leafC
  dsladlai) - 1) / dsladlai, Thornton & Zimmermann 2007), and the larger canopy assimilates more
  carbon, so CTL overestimates LAI in dense tropical forest as CLM4CN did in
  the study (Table II: +7.5 m2/m2 in central Africa, +4.1 in eastern Amazonia). The truth's history
  is also the reference ("GLDAS-like") for TSA, FIRA, FSH, EFLX_LH_TOT, TSOI and H2OSOI.
* Observations (CN only), ``observations.source``:

  - ``synthetic`` (the twin): at every analysis time, synthetic GLASS-like LAI at 0.05 deg from the
    truth's cell LAI with cloud gaps and an error growing with LAI, aggregated to the model grid
    (:func:`engine.observations.synthetic_observations`; its docstring documents the error model).
  - ``product``: gridded LAI files (netCDF4/HDF5, GLASS/MODIS/GEOV1-like) read by
    :func:`engine.observations.read_lai_product` (fill values, valid range, scale/offset honoured)
    and aggregated to the model's land cells by :func:`engine.observations.product_observations`
    (exact overlap weights; pixel error from the uncertainty layer ``observations.uncertainty``
    where valid, else the error model sd_a + sd_b LAI; plus the representativeness error). The
    file of analysis time T is ``observations.files`` with its date fields filled from T, or from
    the start of the composite containing T (``observations.composite_days``: GLASS's 8-day
    composites dated day-of-year 1, 9, ..., 361); a glob instead takes every record of the
    matching files whose CF time lies in the analysis window (T - w, T + w], w =
    ``observations.window_hours`` (:func:`engine.observations.product_batch`).
  - ``obs_seq``: DART ASCII obs_seq.out files found the same way (one per analysis time, or a glob),
    read by :func:`engine.observations.read_obs_seq` and placed in land cells by
    :func:`engine.observations.obs_seq_to_batch`; observations that are not LAI, lie outside the
    region's land cells, outside the analysis window or carry incoming QC > 3 (DART's
    input_qc_threshold) are rejected and counted in the log (:func:`engine.observations.obs_seq_batch`).

  Rank 0 reads the files and broadcasts the observations. No file for an analysis time:
  ``observations.missing = "error"`` stops with an error naming the expected path (or glob);
  ``"skip"`` logs it and does no analysis that cycle (the obs diagnostics get an empty cycle, the
  state and inflation are left alone). The obs diagnostics record each observation's own time.
* Analysis: serial EAKF (:func:`engine.filter.assimilate_block`) with column-only localization by
  default (with ``filter.cutoff_km`` > 0 the observations are processed in
  :func:`engine.filter.tiled_order`, a decomposition-independent order that lets ranks work at the
  same time), adaptive or fixed inflation, lower bound 0 on every state element; H = the
  patch-weight operator (grid-cell LAI = sum_p w_p LAI_p). ``filter.update``:

  - ``allometric``: state = patch LAI of every member (element = global patch number, each rank's
    block = the patches of its cells); then ``LandModel.set_lai``: leaf C from the inverse SLA
    relation, leaf N = leaf C / leafcn.
  - ``regression`` (as DART's CLM interface, which puts LAI, LEAFC and LEAFN in the state vector):
    state = patch LAI, leaf C and leaf N of every member, interleaved per patch (element 3p + v, v =
    0 LAI, 1 leaf C, 2 leaf N of global patch p, so each rank's block stays contiguous and H acts on
    the LAI elements 3p only); all three are updated by the serial EAKF regression on the
    observation increments (their own adaptive inflation fields; no C:N is imposed, the ensemble's
    covariances carry it), then ``LandModel.set_leaf`` sets leaf C and N. What happens to the
    regressed LAI: CLM4CN's LAI is a diagnostic of leaf C (CNVegStructUpdate recomputes TLAI from
    leaf C at every step); under DART, CLM reads the regressed TLAI/ELAI from the restart, uses
    them for the first step's radiation and fluxes, and its first CNVegStructUpdate replaces them
    by the LAI of the regressed leaf C. laida recomputes TLAI (and ELAI, ESAI, heights) from the
    regressed leaf C right away: the analysed state is then self-consistent (the checkpoint and
    history hold one canopy, and the first step's radiation sees the canopy the carbon pools
    describe), nothing depends on the restart round trip, and SAI does not grow by a spurious
    "leaf loss" (CNVegStructUpdate adds any LAI decrease to SAI). The regressed LAI is kept where
    DART keeps it: the filter's posterior H(x) in the obs diagnostics and obs_seq.final are those of
    the regressed LAI, while the analysis statistics (``cn.analysis``) hold the model's LAI; the log
    reports the difference per cycle (LAI grows exponentially with leaf C, so the two differ by
    the curvature of the SLA integral over the update: a few hundredths of m2/m2 or less in the
    tiny tests, where the LAI of the regressed leaf C is slightly the larger).

  Either way the C and N the analysis adds or removes are recorded as an analysis budget term
  (``ANALYSIS_DLEAFC``, ``ANALYSIS_DLEAFN`` in the obs diagnostics) that the next step's C/N
  budget check includes.
* CTL: the same ensemble from the same spun-up checkpoint with the same forcing, no analyses.
* Checkpoints hold CN's adaptive inflation fields per state variable (``inflation_mean_<slot>`` for
  LAI, ``inflation_mean_leafc_<slot>`` and ``inflation_mean_leafn_<slot>`` with the regression
  update; the same for ``sd``).

Time
----
Model time is seconds of a noleap calendar. Forcing record 0 (and model step 0) lies at 1 January
00 UTC of the year in which the spin-up starts (the spin-up stages end at ``time.start``; the forcing
generator's seasonal cycle and random streams are indexed by the record number from that origin,
and its AR(1) state must be advanced record by record from it, so the origin is kept within a year
of the spin-up's start). The experiment's weather therefore depends on the spin-up length only
through the number of whole years it reaches back.

Spin-up (the study: 4000 years one forcing, 1000 years ensemble-mean forcing, 4 years own forcing;
here configurable days): stage 1 a 1-member model with the base forcing (AD mode if ``spinup.ad``,
left with ``LandModel.exit_spinup``: SOM, CWD and dead wood times their AD factors), stage 2 the 1-member model with the mean of the
ensemble's forcing, stage 3 the N-member ensemble (every member a copy of the 1-member state, its
patch LAI multiplied by a lognormal factor of sd ``spinup.lai_spread`` with leaf C and N following
allometrically: the spread that days of perturbed forcing cannot build) with its own forcing.
Cold start: ``spinup.leafc0`` gC/m2 of leaf carbon in every vegetated patch. The truth runs the same days with the base forcing and its own parameters.
The spun-up states are checkpoint cycle 0 of ``nature/``, ``ctl/`` and ``cn/``.

Cycling and checkpoints: each cycle advances the three models ``experiment.cycle_days`` days in
lockstep (history every step), then CN's analysis, then every ``restart.every_cycles`` cycles a
checkpoint of each experiment (all prognostic variables of all members, the forcing generator's
AR(1) state, CN's inflation fields; cycle, model time and configuration as attributes), and old
checkpoints are pruned (``restart.keep``) only after all three are written. ``resume`` continues
from the newest cycle all three hold. Patch variables are stored on the cell axis padded to the
largest number of patches per cell; arrays without a member axis are stored as 1-D datasets.

Bit-identical for any rank count: forcing and synthetic observations come from counter-based
streams keyed by global cell ids, observation files are read and aggregated on rank 0 only, the
physics has no lateral exchange, the filter is rank-invariant, history reductions are per cell, and
global sums are taken on rank 0 in global cell order.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from pathlib import Path

import cftime
import numpy as np

from engine import comm, pftcon
from engine import config as cfgmod
from engine import filter as filt
from engine import observations as obsmod
from engine.climatology import point_climatology
from engine.decomposition import decompose, local_block
from engine.forcing import ForcingGenerator, ForcingRecords, records_to_steps
from engine.grid import make_grid
from engine.history import ObsDiagnosticsWriter, AnalysisStatsWriter, HistoryWriter, DEFAULT_FIELDS
from engine.landmodel import LandModel
from engine.log import get_logger
from engine.physics_state import STATE_VARS
from engine.restart import latest_checkpoint, prune_checkpoints, read_checkpoint, write_checkpoint
from engine.surface import load_or_build_surface
from kernels.physics import cn_state as S

__all__ = ["Experiment", "EXPERIMENTS", "biased_pft_arrays", "run", "resume", "run_config",
           "pack_patch", "unpack_patch"]

#: The three runs, in the order they are stepped and written.
EXPERIMENTS = ("nature", "ctl", "cn")
EARTH_RADIUS_KM = 6371.0
SECONDS_PER_DAY = 86400
_RECORD_BLOCK = 4  # forcing record intervals fetched at a time (memory: block + 1 records)
_ANALYSIS_FIELDS = ("TLAI", "LEAFC", "LEAFN")


def biased_pft_arrays(pfts, slatop_factor: float) -> dict:
    """CLM4.0's PFT parameter arrays with ``slatop`` of ``pfts`` multiplied by ``slatop_factor``
    (the ensemble model's documented bias against the truth)."""
    arrays = {k: np.array(v, copy=True) for k, v in pftcon.pft_arrays().items()}
    for p in pfts:
        arrays["slatop"][int(p)] *= float(slatop_factor)
    return arrays


def _patch_names() -> set:
    names = {v.name for v in STATE_VARS if v.dims[0] == "patch"}
    names |= {"cn_" + v.name for v in S.PATCH_VARS}
    return names


def pack_patch(a: np.ndarray, slot: np.ndarray, col: np.ndarray, ncol: int, maxp: int) -> np.ndarray:
    """Patch array ``a[p, ...]`` -> cell array ``out[c, slot, ...]`` padded with 0 (checkpoint layout)."""
    out = np.zeros((ncol, maxp) + a.shape[1:], dtype=a.dtype)
    out[col, slot] = a
    return out


def unpack_patch(a: np.ndarray, slot: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_patch`."""
    return np.ascontiguousarray(a[col, slot])


class _Run:
    """One of the three runs on this rank: its model, forcing generator and (CN) inflation."""

    def __init__(self, name, model, gen, inflation=None):
        self.name, self.model, self.gen, self.inflation = name, model, gen, inflation
        self.snapshot = gen.state()  # generator state with k_next = the next cycle's first record


class Experiment:
    """The twin experiment built from a :class:`engine.config.Config` on all ranks (collective).

    ``Experiment(cfg)`` builds grid -> surface -> decomposition -> this rank's block -> forcing
    generators -> land models (nothing is run). :meth:`run` spins up (unless a checkpoint exists)
    and cycles; :meth:`resume` continues from the newest complete checkpoint.
    """

    def __init__(self, cfg: cfgmod.Config):
        self.cfg = cfg
        self.N = int(cfg.ensemble.members)
        if self.N < 2:
            raise cfgmod.ConfigError(f"ensemble.members = {self.N}: the experiment needs at least 2 members")
        self.run_dir = Path(cfg.run.run_dir)
        self.log = get_logger("laida", run_dir=self.run_dir, level=cfg.run.log_level)
        self.config_toml = cfgmod.to_toml(cfg)
        self.dt = float(cfg.time.step_seconds)
        rec_s = 3600 * int(cfg.time.forcing_step_hours)
        if rec_s % int(self.dt):
            raise cfgmod.ConfigError(f"time.step_seconds = {int(self.dt)} must divide the forcing interval "
                                     f"time.forcing_step_hours = {cfg.time.forcing_step_hours} h")
        self.rec_s = rec_s
        self.nsub = rec_s // int(self.dt)
        # calendar: noleap; step 0 at 1 Jan 00 UTC of the year in which the spin-up starts
        start = cfgmod.parse_date(cfg.time.start)
        stop = cfgmod.parse_date(cfg.time.stop)
        if (start.month, start.day) == (2, 29):
            raise cfgmod.ConfigError("time.start = 29 February: the model calendar is noleap")
        self.start_date = cftime.DatetimeNoLeap(start.year, start.month, start.day, start.hour, start.minute,
                                                start.second)
        doy_s = (self.start_date - cftime.DatetimeNoLeap(start.year, 1, 1)).total_seconds()
        self.cycle_s = int(cfg.experiment.cycle_days) * SECONDS_PER_DAY
        if self.cycle_s % rec_s or doy_s % rec_s:
            raise cfgmod.ConfigError("time.start must fall on a forcing record time")
        sp = cfg.spinup
        spin_s = (int(sp.stage1_days) + int(sp.stage2_days) + int(sp.stage3_days)) * SECONDS_PER_DAY
        year_s = 365 * SECONDS_PER_DAY
        origin_years = -(-max(0, spin_s - int(doy_s)) // year_s)  # whole years before the start year
        self.start_s = origin_years * year_s + int(doy_s)  # model seconds of time.start
        self.n_cycles = int((stop - start).total_seconds() // self.cycle_s)
        if self.n_cycles < 1:
            raise cfgmod.ConfigError(f"time.start = {cfg.time.start}, time.stop = {cfg.time.stop}: shorter than one "
                                     f"cycle of experiment.cycle_days = {cfg.experiment.cycle_days} days")
        self.time_units = f"days since {self.start_date.strftime('%Y-%m-%d %H:%M:%S')}"

        g = cfg.grid
        self.grid = make_grid(g.name, lat_min=g.lat_min, lat_max=g.lat_max, lon_min=g.lon_min, lon_max=g.lon_max,
                              land_threshold=g.land_threshold)
        self.surface = load_or_build_surface(self.grid, min_patch_pct=cfg.surface.min_patch_pct,
                                             path=cfg.surface.file or None)
        sf = self.surface
        ppc = sf.patches_per_cell()
        weights = np.maximum(ppc, 1).astype(np.float64) if cfg.decomposition.weight == "patches" \
            else np.ones(sf.n_land)
        self.decomp = decompose(weights, comm.size())
        self.start, self.count = local_block(self.decomp, comm.rank())
        self.cells = np.arange(self.start, self.start + self.count, dtype=np.int64)
        bounds = np.searchsorted(sf.patch_cell, np.r_[self.decomp.starts, sf.n_land])
        self.patch_starts = bounds[:-1].astype(np.int64)
        self.patch_counts = np.diff(bounds).astype(np.int64)
        p0, p1 = int(bounds[comm.rank()]), int(bounds[comm.rank() + 1])
        self.patches = np.arange(p0, p1, dtype=np.int64)
        self.maxp = int(ppc.max())
        first_of_cell = np.searchsorted(sf.patch_cell, sf.patch_cell[self.patches])
        self.patch_slot = (self.patches - first_of_cell).astype(np.int64)
        self.patch_col = (sf.patch_cell[self.patches] - self.start).astype(np.int64)
        self.patch_loc = np.column_stack((sf.lat[sf.patch_cell[self.patches]],
                                          np.mod(sf.lon[sf.patch_cell[self.patches]], 360.0)))
        self.lat = sf.lat[self.cells]
        self.lon = sf.lon[self.cells]
        self.cell_id = np.asarray(self.grid.land_parent_index, dtype=np.int64)[self.cells]
        self.cell_area_m2 = (np.asarray(self.grid.land_area) * np.asarray(self.grid.land_landfrac) * 1e6)[self.cells]

        e = cfg.experiment
        self.truth_pft = pftcon.pft_arrays()
        self.ens_pft = biased_pft_arrays([e.bias_pft], e.bias_slatop_factor)
        self.update = str(cfg.filter.update)
        #: state variables per patch in the filter's state vector: LAI (allometric) or LAI, leaf C, leaf N
        self.state_vars = ("TLAI", "LEAFC", "LEAFN") if self.update == "regression" else ("TLAI",)
        self.runs: dict[str, _Run] = {}
        self.cycle = 0
        self._patch_names = _patch_names()
        self._climatology = None

    # ------------------------------------------------------------------------------ building blocks
    def _model(self, n_members, pft, ad=False):
        m = LandModel(self.surface, n_members, self.dt, cells=self.cells, pft=pft, spinup_ad=ad,
                      supplemental_n=ad and float(self.cfg.spinup.supplemental_n_fraction) > 0.0,
                      leafc0=float(self.cfg.spinup.leafc0))
        if not np.array_equal(m.patch_index, self.patches):
            raise RuntimeError("LandModel's patches of the block are not the surface's contiguous patch range")
        return m

    def _generator(self, n_members, perturb):
        if self._climatology is None:  # ERA5/ETOPO5 at this block's cells, read once for all generators
            self._climatology = point_climatology(self.lat, self.lon)
        return ForcingGenerator(self.lat, self.lon, self.cell_id, n_members=n_members, seed=self.cfg.ensemble.seed,
                                perturb=perturb, dt_record=float(self.rec_s), climatology=self._climatology)

    def _inflation(self):
        f = self.cfg.filter
        if f.inflation == "adaptive":
            return filt.AdaptiveInflation.initial(self.patches.size * len(self.state_vars), mean=f.inflation_factor,
                                                  sd=f.inflation_sd, damping=f.inflation_damping)
        return None

    def _say(self, text):
        self.log.info(text)

    # ------------------------------------------------------------------------------ forcing
    def _forcing_steps(self, gen, k0, nrec, mean, snaps):
        """Yield the model-step forcing (STEP_FIELDS, cell, member) of record intervals k0..k0+nrec.

        The last block stops the generator at record k0+nrec (``state()`` then has k_next = k0+nrec,
        kept in ``snaps[id(gen)]``) before producing that bracketing record; the next window starts
        from that state (``set_state``), in a continuous run as after a resume."""
        k, end = k0, k0 + nrec
        while k < end:
            nb = min(_RECORD_BLOCK, end - k)
            if k + nb < end:
                recs = gen.records(k, nb + 1)
            else:
                head = gen.records(k, nb)
                snaps[id(gen)] = gen.state()
                tail = gen.records(end - 1, 2)
                recs = ForcingRecords(head.k0, head.dt, head.t0, np.concatenate([head.values, tail.values[1:]]))
            if mean:  # the ensemble-mean forcing, as one member (spin-up stage 2)
                recs = ForcingRecords(recs.k0, recs.dt, recs.t0, recs.values.mean(axis=3, keepdims=True))
            yield from records_to_steps(recs, self.lat, self.lon, self.dt)
            k += nb

    def _advance(self, runs, t0_s, seconds, mean=False, history=None, counter=None):
        """Advance ``runs`` (name -> (model, generator)) from model second t0_s by ``seconds``; runs
        sharing a generator object share its forcing. ``history``: name -> HistoryWriter."""
        k0, nrec = t0_s // self.rec_s, seconds // self.rec_s
        gens = {}
        for name, (model, gen) in runs.items():
            gens.setdefault(id(gen), (gen, []))[1].append((name, model))
        snaps = {}
        iters = [(self._forcing_steps(gen, k0, nrec, mean, snaps), members) for gen, members in gens.values()]
        nsteps = nrec * self.nsub
        for j in range(nsteps):
            t = t0_s + j * self.dt
            for it, members in iters:
                f = next(it)
                for name, model in members:
                    model.step(f, t)
                    if history is not None and name in history:
                        out = model.outputs()
                        vals = {k: out[k + "_BANDS"] if k in ("TSOI", "H2OSOI") else out[k]
                                for k in DEFAULT_FIELDS}
                        history[name].add((t + self.dt - self.start_s) / SECONDS_PER_DAY, vals,
                                          self.start, self.count)
                    if counter is not None:
                        counter[0] += model.npatch * model.nm
        for it, members in iters:  # finish the generators
            for _ in it:
                raise RuntimeError("forcing generator yielded more steps than the window holds")
        return {name: snaps[id(gen)] for name, (model, gen) in runs.items()}

    # ------------------------------------------------------------------------------ spin-up
    def spinup(self):
        """The three spin-up stages; leaves the runs at time.start (cycle 0) and checkpoints them."""
        sp = self.cfg.spinup
        d1, d2, d3 = int(sp.stage1_days), int(sp.stage2_days), int(sp.stage3_days)
        t = self.start_s - (d1 + d2 + d3) * SECONDS_PER_DAY
        t_wall = _time.perf_counter()
        base_t = self._generator(1, False)
        base_e = self._generator(1, False)
        ens_gen = self._generator(self.N, True)
        snap_nat, snap_ens = base_t.state(), ens_gen.state()
        truth = self._model(1, self.truth_pft, ad=sp.ad and d1 > 0)
        ens1 = self._model(1, self.ens_pft, ad=sp.ad and d1 > 0)
        if d1:
            # AD mode: supplemental mineral N during the first supplemental_n_fraction of the stage
            d1s = int(round(float(sp.supplemental_n_fraction) * d1)) if sp.ad else 0
            for days, supplement in ((d1s, True), (d1 - d1s, False)):
                if days == 0:
                    continue
                truth.supplemental_n = ens1.supplemental_n = supplement
                s = self._advance({"nature": (truth, base_t), "ens": (ens1, base_e)}, t, days * SECONDS_PER_DAY)
                snap_nat = s["nature"]
                t += days * SECONDS_PER_DAY
            if sp.ad:
                truth = self._leave_ad(truth, 1, self.truth_pft)
                ens1 = self._leave_ad(ens1, 1, self.ens_pft)
            self._say(f"spin-up stage 1 ({d1} days, one forcing{', AD' if sp.ad else ''}) done in "
                      f"{_time.perf_counter() - t_wall:.1f} s")
        if d2:
            snap_nat = self._advance({"nature": (truth, base_t)}, t, d2 * SECONDS_PER_DAY)["nature"]
            snap_ens = self._advance({"ens": (ens1, ens_gen)}, t, d2 * SECONDS_PER_DAY, mean=True)["ens"]
            t += d2 * SECONDS_PER_DAY
            self._say(f"spin-up stage 2 ({d2} days, ensemble-mean forcing) done")
        ens = self._model(self.N, self.ens_pft)
        ens.set_from_restart({k: np.repeat(v, self.N, axis=-1) for k, v in ens1.restart_variables().items()})
        self._perturb_lai(ens)
        if d3:
            s = self._advance({"nature": (truth, base_t), "ens": (ens, ens_gen)}, t, d3 * SECONDS_PER_DAY)
            snap_nat, snap_ens = s["nature"], s["ens"]
            t += d3 * SECONDS_PER_DAY
            self._say(f"spin-up stage 3 ({d3} days, each member its own forcing) done")
        assert t == self.start_s
        # CTL and CN start from the same spun-up ensemble and share one forcing generator
        ctl = self._model(self.N, self.ens_pft)
        cn = self._model(self.N, self.ens_pft)
        for m in (ctl, cn):
            m.set_from_restart(ens.restart_variables())
        ens_gen_cycles = self._generator(self.N, True)
        self.runs = {"nature": _Run("nature", truth, self._generator(1, False)),
                     "ctl": _Run("ctl", ctl, ens_gen_cycles),
                     "cn": _Run("cn", cn, ens_gen_cycles, self._inflation())}
        self.runs["nature"].snapshot = snap_nat
        self.runs["ctl"].snapshot = self.runs["cn"].snapshot = snap_ens
        self._restore_generators()
        self.cycle = 0
        self._say(f"spin-up done ({d1} + {d2} + {d3} days) in {_time.perf_counter() - t_wall:.1f} s")
        self._checkpoint()

    def _restore_generators(self):
        for r in self.runs.values():
            r.gen.set_state(r.snapshot)

    def _perturb_lai(self, model):
        """Multiply each member's patch LAI by exp(s z - s^2/2), z ~ N(0, 1) from a stream keyed by
        (ensemble.seed, global patch number), so the draw does not depend on the decomposition; leaf C
        and N follow allometrically (``set_lai``; the change is booked as an analysis term)."""
        s = float(self.cfg.spinup.lai_spread)
        if s == 0.0:
            return
        z = np.empty((self.patches.size, self.N))
        for i, p in enumerate(self.patches):
            z[i] = np.random.default_rng([int(self.cfg.ensemble.seed), 20020101, int(p)]).standard_normal(self.N)
        model.set_lai(model.state.ps[S.TLAI] * np.exp(s * z - 0.5 * s * s))

    def _leave_ad(self, model, n, pft):
        """Leave AD spin-up (``LandModel.exit_spinup``: SOM, CWD and dead wood times their AD factors),
        into a model without AD."""
        add_c, _ = model.exit_spinup()
        new = self._model(n, pft, ad=False)
        new.set_from_restart(model.restart_variables())
        self.log.info("left AD spin-up: SOM, CWD and dead-wood carbon added %.4g gC/m2 (mean over columns and "
                      "members)",
                      float(add_c.mean()))
        return new

    # ------------------------------------------------------------------------------ checkpoints
    def _exp_dir(self, name):
        return self.run_dir / name

    def _checkpoint_vars(self, r: _Run) -> dict:
        out = {}
        m = r.model
        for k, a in m.restart_variables().items():
            out[k] = pack_patch(a, self.patch_slot, self.patch_col, m.ncol, self.maxp) if k in self._patch_names \
                else np.ascontiguousarray(a)
        st = r.snapshot
        base = np.asarray(st["base_state"]).reshape(self.count, -1)
        for j in range(base.shape[1]):
            out[f"forcing_base_state_{j:02d}"] = base[:, j].copy()
        out["forcing_member_state"] = np.ascontiguousarray(np.moveaxis(st["member_state"], 1, 2))
        if r.inflation is not None:
            nv = len(self.state_vars)
            for what in ("mean", "sd"):
                field = getattr(r.inflation, what).reshape(self.patches.size, nv)  # element nv*p + v
                for v, tag in enumerate(_inflation_tags(nv)):
                    a = pack_patch(np.ascontiguousarray(field[:, v]), self.patch_slot, self.patch_col, self.count,
                                   self.maxp)
                    for j in range(self.maxp):
                        out[f"inflation_{what}_{tag}{j:02d}"] = a[:, j].copy()
        return out

    def _checkpoint(self):
        c = self.cycle
        for name, r in self.runs.items():
            write_checkpoint(self._exp_dir(name), c, self._checkpoint_vars(r), start=self.start,
                             n_global=self.surface.n_land, model_time=self.model_date(c).isoformat(),
                             config_toml=self.config_toml,
                             extra_attrs={"experiment": name, "forcing_k_next": int(r.snapshot["k_next"]),
                                          "model_seconds": int(self.start_s + c * self.cycle_s)})
        for name in self.runs:
            prune_checkpoints(self._exp_dir(name), int(self.cfg.restart.keep))

    def _load(self, cycle):
        """Build the three runs from their checkpoints of ``cycle`` (collective)."""
        self.runs = {}
        for name in EXPERIMENTS:
            path = self._exp_dir(name) / f"checkpoint_{cycle:06d}.h5"
            data, attrs = read_checkpoint(path, start=self.start, count=self.count)
            n = 1 if name == "nature" else self.N
            if int(attrs["n_members"]) != n:
                raise RuntimeError(f"{path}: {attrs['n_members']} members, the configuration has {n}")
            model = self._model(n, self.truth_pft if name == "nature" else self.ens_pft)
            values = {k: unpack_patch(data[k], self.patch_slot, self.patch_col) if k in self._patch_names else data[k]
                      for k in model.restart_variables()}
            model.set_from_restart(values)
            nb = sum(1 for k in data if k.startswith("forcing_base_state_"))
            base = np.stack([data[f"forcing_base_state_{j:02d}"] for j in range(nb)], axis=1).reshape(self.count, 4, 3)
            snap = {"k_next": int(attrs["forcing_k_next"]), "base_state": base,
                    "member_state": np.ascontiguousarray(np.moveaxis(data["forcing_member_state"], 2, 1))}
            infl = None
            if name == "cn" and self.cfg.filter.inflation == "adaptive":
                infl = self._inflation()
                nv = len(self.state_vars)
                for what in ("mean", "sd"):
                    field = getattr(infl, what).reshape(self.patches.size, nv)
                    for v, tag in enumerate(_inflation_tags(nv)):
                        names = [f"inflation_{what}_{tag}{j:02d}" for j in range(self.maxp)]
                        if any(k not in data for k in names):
                            raise RuntimeError(f"{path}: no adaptive inflation fields {names[0]}... for "
                                               f"filter.update = {self.update!r}")
                        packed = np.stack([data[k] for k in names], axis=1)
                        field[:, v] = unpack_patch(packed, self.patch_slot, self.patch_col)
            gen = self.runs["ctl"].gen if name == "cn" else self._generator(n, name != "nature")
            r = _Run(name, model, gen, infl)
            r.snapshot = snap
            self.runs[name] = r
        self._restore_generators()
        self.cycle = cycle

    def newest_cycle(self):
        """Newest cycle whose checkpoint is complete in nature/, ctl/ and cn/, or None (collective)."""
        cycles = []
        for name in EXPERIMENTS:
            p = latest_checkpoint(self._exp_dir(name))
            if p is None:
                return None
            cycles.append(int(p.stem.split("_")[1]))
        c = min(cycles)
        ok = all((self._exp_dir(n) / f"checkpoint_{c:06d}.h5").is_file() for n in EXPERIMENTS)
        return c if comm.bcast(ok) else None

    # ------------------------------------------------------------------------------ time
    def model_date(self, cycle: int):
        return self.start_date + _dt.timedelta(seconds=cycle * self.cycle_s)

    # ------------------------------------------------------------------------------ the cycle
    def run(self, max_cycles: int | None = None, *, resume: bool = False) -> int:
        """Spin up (or resume from the newest checkpoint) and cycle to time.stop or ``max_cycles``
        more cycles. Returns the last cycle done."""
        if comm.is_root():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(self.config_toml)
        comm.barrier()
        cfgmod.log_config(self.cfg, self.log)
        self._say(f"grid {self.grid.name}: {self.grid.n_land} land cells, {self.surface.n_patch} patches, "
                  f"{self.N} members, {comm.size()} rank(s); rank 0 holds {self.count} cells")
        c0 = self.newest_cycle()
        if c0 is None:
            if resume:
                raise RuntimeError(f"{self.run_dir}: no complete checkpoint to resume from")
            self.spinup()
        else:
            self._load(c0)
            self._say(f"resuming from cycle {c0} ({self.model_date(c0).isoformat()})")
        last = self.n_cycles if max_cycles is None else min(self.n_cycles, self.cycle + int(max_cycles))
        if last > self.cycle:
            self._cycles(self.cycle + 1, last)
        return self.cycle

    def _writers(self, first):
        tag = f"c{first:05d}"
        kw = dict(config_toml=self.config_toml, time_units=self.time_units, calendar="noleap")
        hist = {n: HistoryWriter(self._exp_dir(n) / f"{n}.h0.{tag}.nc", self.grid, DEFAULT_FIELDS,
                                 title=f"laida {self.cfg.run.name}: {n}", frequency=self.cfg.history.frequency, **kw)
                for n in EXPERIMENTS}
        obsw = ObsDiagnosticsWriter(self._exp_dir("cn") / f"cn.obs_diag.{tag}.nc",
                                    title=f"laida {self.cfg.run.name}: CN observation-space diagnostics", **kw)
        stats = AnalysisStatsWriter(self._exp_dir("cn") / f"cn.analysis.{tag}.nc", self.grid, _ANALYSIS_FIELDS,
                                    title=f"laida {self.cfg.run.name}: CN analysis statistics", **kw)
        return hist, obsw, stats

    def _cycles(self, first, last):
        """Cycles ``first..last``. The history, observation diagnostics and analysis statistics are
        published (closed) at every checkpoint and new files begin with the next cycle: each file
        covers one checkpoint interval, so a run stopped later (failure, wall time) loses only the
        unpublished files of the cycles after its newest checkpoint, which a resume runs again."""
        hist, obsw, stats = self._writers(first)
        writers = [*hist.values(), obsw, stats]
        t_start = _time.perf_counter()
        counter = [0]
        try:
            for c in range(first, last + 1):
                if c > first and (c - 1) % int(self.cfg.restart.every_cycles) == 0:
                    for w in writers:  # the previous cycle wrote a checkpoint: publish what it covers
                        w.close()
                    hist, obsw, stats = self._writers(c)
                    writers = [*hist.values(), obsw, stats]
                t0_s = self.start_s + (c - 1) * self.cycle_s
                self._restore_generators()  # every window starts from the saved states, as a resume does
                runs = {n: (r.model, r.gen) for n, r in self.runs.items()}  # CTL and CN share a generator
                snaps = self._advance(runs, t0_s, self.cycle_s, history=hist, counter=counter)
                self._analysis(c, obsw, stats)
                self.cycle = c
                for n, r in self.runs.items():
                    r.snapshot = snaps[n]
                if c % int(self.cfg.restart.every_cycles) == 0 or c == last:
                    self._checkpoint()
                self._progress(c, first, last, t_start, counter[0])
        except BaseException:
            for w in writers:
                w.discard()
            raise
        for w in writers:
            w.close()

    def _progress(self, c, first, last, t_start, pms):
        el = _time.perf_counter() - t_start
        done = c - first + 1
        eta = el / done * (last - c)
        rate = comm.allreduce(pms) / max(el, 1e-9)
        self._say(f"cycle {c}/{self.n_cycles}  {self.model_date(c).strftime('%Y-%m-%d')}  elapsed {el:7.1f} s  "
                  f"ETA {eta:7.1f} s  {rate:,.0f} patch-member-steps/s")

    def _observations(self, c, when):
        """The observations of the analysis at the end of cycle c (an ObsBatch, the same on every
        rank), or None when there is nothing to assimilate (observations.missing = "skip" and no
        file for this time, or no usable observation in the file). Collective."""
        cfg = self.cfg
        o = cfg.observations
        error = obsmod.LaiErrorModel(sd_a=o.sd_a, sd_b=o.sd_b, repr_a=o.repr_a, repr_b=o.repr_b)
        if o.source == "synthetic":
            truth = self.runs["nature"].model
            cell_lai_local = truth.to_column(truth.state.ps[S.TLAI])[:, 0]
            truth_cells = comm.gather_array(np.ascontiguousarray(cell_lai_local), allgather=True)
            batch, _ = obsmod.synthetic_observations(
                self.grid, np.maximum(truth_cells, 0.0), when, seed=int(o.seed), error=error,
                clouds=obsmod.CloudModel(p_dry=o.p_dry, p_wet=o.p_wet), min_valid_fraction=o.min_valid_fraction)
            return batch
        result = None
        if comm.is_root():  # rank 0 reads and aggregates; everyone gets the batch (or the error)
            common = dict(cycle=c, composite_days=int(o.composite_days), window_hours=float(o.window_hours))
            try:
                if o.source == "product":
                    batch, info = obsmod.product_batch(
                        o.files, when, self.grid, variable=o.variable, uncertainty=o.uncertainty,
                        lat_name=o.lat_name, lon_name=o.lon_name, time_name=o.time_name,
                        grid_box=o.grid_box or None, error=error, min_valid_fraction=float(o.min_valid_fraction),
                        **common)
                else:
                    batch, info = obsmod.obs_seq_batch(o.files, when, self.grid, **common)
                result = ("ok", batch, info)
            except (obsmod.ObservationError, OSError) as exc:
                result = ("error", str(exc), None)
        status, batch, info = comm.bcast(result)
        if status == "error":
            raise obsmod.ObservationError(f"cycle {c} analysis at {when}: {batch}")
        if batch is None:
            text = f"cycle {c} analysis at {when}: no {o.source} observations: {info['missing']}"
            if o.missing == "error":
                raise obsmod.ObservationError(f"{text} (observations.files = {o.files!r}; set observations.missing "
                                              "= \"skip\" to cycle on without an analysis)")
            self.log.warning("%s; no analysis this cycle (observations.missing = \"skip\")", text)
            return None
        files = ", ".join(f if o.source == "obs_seq" else f"{f}[{i}]" for f, i in info["files"])
        if o.source == "obs_seq":
            self.log.info("cycle %d: %d observations read from %s; rejected: %d not LAI, %d outside the region's "
                          "land cells, %d outside the analysis window (%s, %s], %d with incoming QC > %d; %d kept",
                          c, info["n_read"], files, info["not_lai"], info["not_land"], info["outside_window"],
                          info["window"][0], info["window"][1], info["bad_qc"], obsmod.INPUT_QC_THRESHOLD, batch.n)
        else:
            self.log.info("cycle %d: %d cells observed in %s; %d cells dropped (valid fraction below %g)", c,
                          batch.n, files, info["n_dropped_valid_fraction"], float(o.min_valid_fraction))
        if batch.n == 0:
            self.log.warning("cycle %d analysis at %s: no usable observation; no analysis this cycle", c, when)
            return None
        return batch

    def _analysis(self, c, obsw, stats):
        """CN's analysis at the end of cycle c: observations (synthetic, product or obs_seq), serial
        EAKF on patch LAI (allometric) or patch LAI, leaf C and leaf N (regression), then set_lai or
        set_leaf, diagnostics."""
        cfg = self.cfg
        sf = self.surface
        date = self.model_date(c)
        when = np.datetime64(date.strftime("%Y-%m-%dT%H:%M:%S"), "s")
        days = (c * self.cycle_s) / SECONDS_PER_DAY
        batch = self._observations(c, when)
        if batch is None:  # no analysis: an empty cycle in the diagnostics, nothing else changes
            empty = {k: np.empty(0, dtype=np.int32 if k == "qc" else (np.int64 if k in ("cell", "obs_number")
                                                                     else np.float64))
                     for k in ("time", "lat", "lon", "cell", "value", "error_variance", "prior_mean",
                               "prior_spread", "posterior_mean", "posterior_spread", "qc", "obs_number")}
            obsw.add_cycle(c, days, empty, {})
            return
        f = cfg.filter
        cutoff = float(f.cutoff_km) / EARTH_RADIUS_KM
        if cutoff > 0:  # a decomposition-independent order that lets ranks work at the same time
            batch = batch.select(filt.tiled_order(np.column_stack((batch.lat, batch.lon)), cutoff, "sphere"))
        nv = len(self.state_vars)
        H, keep, _ = obsmod.operator_from_surface(sf, batch.cell, state_index=nv * np.arange(sf.n_patch))
        batch = batch.select(keep)
        cn = self.runs["cn"]
        model = cn.model
        ps = model.state.ps
        fields = (("TLAI", S.TLAI), ("LEAFC", S.LEAFC), ("LEAFN", S.LEAFN))
        prior = {k: model.to_column(ps[i]) for k, i in fields}
        c_before, n_before = ps[S.LEAFC].copy(), ps[S.LEAFN].copy()
        if nv == 3:  # element 3p + v: v = 0 LAI, 1 leaf C, 2 leaf N of local patch p
            X = np.empty((3 * self.patches.size, self.N))
            X[0::3], X[1::3], X[2::3] = ps[S.TLAI], ps[S.LEAFC], ps[S.LEAFN]
        else:
            X = np.ascontiguousarray(ps[S.TLAI])
        inflation = cn.inflation if cn.inflation is not None else float(f.inflation_factor)
        res = filt.assimilate_block(
            X, nv * self.patch_starts, nv * self.patch_counts, np.repeat(self.patch_loc, nv, axis=0),
            batch.y, batch.r, H, np.column_stack((batch.lat, batch.lon)), cutoff=cutoff, geometry="sphere",
            kind=f.kind, inflation=inflation, seed=int(cfg.ensemble.seed) * 100003 + c,
            outlier_threshold=float(f.outlier_threshold), lower_bounds=np.zeros(X.shape[0]))
        gap = None
        if nv == 3:
            lai_regressed = res.X[0::3]
            model.set_leaf(res.X[1::3], res.X[2::3])
            # LAI the regression gave vs LAI of the regressed leaf C (which the model keeps): cell means
            gap = model.to_column(ps[S.TLAI] - lai_regressed).mean(axis=1)
        else:
            model.set_lai(res.X)
        if res.inflation is not None:
            cn.inflation = res.inflation
        post = {k: model.to_column(ps[i]) for k, i in fields}
        stats.add(days, c, prior, post, self.start, self.count)
        # analysis budget term: ensemble-mean C and N added, summed over land on rank 0 in cell order
        dc = model.to_column(ps[S.LEAFC] - c_before).mean(axis=1) * self.cell_area_m2
        dn = model.to_column(ps[S.LEAFN] - n_before).mean(axis=1) * self.cell_area_m2
        both = comm.gather_array(np.column_stack((dc, dn)))
        budget = {}
        if comm.is_root():
            budget = {"ANALYSIS_DLEAFC": float(np.sum(both[:, 0])), "ANALYSIS_DLEAFN": float(np.sum(both[:, 1]))}
        own = np.asarray(res.obs_index if res.obs_index is not None else [], dtype=np.int64)
        t_obs = days + (batch.time[own] - when).astype(np.float64) / SECONDS_PER_DAY  # observation times
        obs = {"time": t_obs, "lat": batch.lat[own], "lon": batch.lon[own],
               "cell": batch.cell[own].astype(np.int64), "value": batch.y[own], "error_variance": batch.r[own],
               "prior_mean": _or_nan(res.obs_prior_mean, own.size), "prior_spread": _or_nan(res.obs_prior_spread, own.size),
               "posterior_mean": _or_nan(res.obs_post_mean, own.size),
               "posterior_spread": _or_nan(res.obs_post_spread, own.size),
               "qc": res.qc[own].astype(np.int32), "obs_number": own}
        n = obsw.add_cycle(c, days, obs, budget)
        self._write_obs_seq(c, batch, obs, res.qc)
        n_ok = int(np.count_nonzero(res.qc == 0))
        self.log.info("cycle %d analysis (%s update): %d observations, %d assimilated; leaf C added %.4g gC, "
                      "leaf N %.4g gN; %d elements contracted to their lower bound 0", c, self.update, n, n_ok,
                      budget.get("ANALYSIS_DLEAFC", float("nan")), budget.get("ANALYSIS_DLEAFN", float("nan")),
                      res.counts.get("bound_contracted", 0) + res.counts.get("bound_collapsed", 0))
        if gap is not None:
            g = comm.gather_array(np.ascontiguousarray(gap))
            if comm.is_root():
                self.log.info("cycle %d: LAI recomputed from the regressed leaf C minus the regressed LAI, "
                              "ensemble mean: mean %.3g, max |.| %.3g m2/m2 over cells", c, float(np.mean(g)),
                              float(np.max(np.abs(g))))

    def _write_obs_seq(self, c, batch, obs, qc):
        """DART obs_seq.final-like file of cycle c (``cn/obs_seq.final.<cycle>``): the observations with
        their prior/posterior ensemble mean and spread and DART QC, for DART's obs_diag and friends."""
        cols = {k: comm.gather_array(np.ascontiguousarray(obs[k], dtype=np.float64)) for k in
                ("obs_number", "prior_mean", "posterior_mean", "prior_spread", "posterior_spread")}
        if comm.is_root():
            order = np.argsort(cols["obs_number"], kind="stable")
            num = cols["obs_number"][order].astype(np.int64)
            full = {k: np.full(batch.n, obsmod.DART_MISSING) for k in ("prior_mean", "posterior_mean",
                                                                      "prior_spread", "posterior_spread")}
            for k in full:
                v = cols[k][order]
                full[k][num] = np.where(np.isfinite(v), v, obsmod.DART_MISSING)
            copies = {"prior ensemble mean": full["prior_mean"], "posterior ensemble mean": full["posterior_mean"],
                      "prior ensemble spread": full["prior_spread"],
                      "posterior ensemble spread": full["posterior_spread"]}
            obsmod.write_obs_seq(self._exp_dir("cn") / f"obs_seq.final.{c:05d}", batch, copies=copies, dart_qc=qc)
        comm.barrier()


def _inflation_tags(nv):
    """Checkpoint name tags of the adaptive inflation fields of the nv state variables per patch
    (LAI keeps the untagged names of the allometric update)."""
    return ("", "leafc_", "leafn_")[:nv]


def _or_nan(a, n):
    return np.full(n, np.nan) if a is None else np.asarray(a, dtype=np.float64)


def run(cfg: cfgmod.Config, max_cycles: int | None = None) -> Experiment:
    """Run the experiment of ``cfg`` (collective); returns the Experiment."""
    exp = Experiment(cfg)
    exp.run(max_cycles)
    return exp


def run_config(run_dir) -> cfgmod.Config:
    """The configuration a run directory was started with (its ``config.toml``)."""
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise cfgmod.ConfigError(f"{run_dir}: not a laida run directory (no config.toml)")
    cfg = cfgmod.load(path)
    if Path(cfg.run.run_dir).resolve() != Path(run_dir).resolve():
        cfg = cfgmod.load(path, [f"run.run_dir={Path(run_dir)}"])  # the directory was moved
    return cfg


def resume(run_dir, max_cycles: int | None = None) -> Experiment:
    """Continue the run in ``run_dir`` from its newest complete checkpoint (collective)."""
    exp = Experiment(run_config(run_dir))
    exp.run(max_cycles, resume=True)
    return exp
