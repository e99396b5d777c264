"""`laida demo`: what runs end to end today, on any number of ranks.

Until the experiment issue turns it into the CTL/CN twin experiment, the demo exercises the
foundation on real data: the f45 grid's land cells from the MODIS MCD12C1 land cover, their
patch-balanced decomposition over the ranks, and a 40-member ensemble checkpoint of the land-cover
state written collectively with parallel HDF5, published atomically, found again as the newest
complete checkpoint and read back with a different split of the cells, compared bit for bit.

Writes ``<run_dir>/checkpoint_*.h5`` and ``<run_dir>/laida.log``; reads the land-cover data package.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from engine import __version__, comm
from engine import config as cfgmod
from engine.decomposition import cell_weights, decompose, local_block
from engine.grid import IGBP_CLASSES, LAND_COVER_DOI, make_grid
from engine.log import get_logger
from engine.restart import latest_checkpoint, read_checkpoint, write_checkpoint

DEMO_DEFAULTS = ("run.name=demo", "run.run_dir=runs/demo", "grid.name=f45")


def main(args) -> int:
    """Run the demo; ``args`` carries ``config`` (a TOML path or None) and ``overrides``."""
    cfg = cfgmod.load(getattr(args, "config", None), [*DEMO_DEFAULTS, *(getattr(args, "overrides", None) or [])])
    run_dir = Path(cfg.run.run_dir)
    log = get_logger("laida", run_dir=run_dir, level=cfg.run.log_level)
    cfgmod.log_config(cfg, log)
    t0 = time.perf_counter()

    grid = make_grid(cfg.grid.name, lat_min=cfg.grid.lat_min, lat_max=cfg.grid.lat_max,
                     lon_min=cfg.grid.lon_min, lon_max=cfg.grid.lon_max,
                     land_threshold=cfg.grid.land_threshold)
    weights = cell_weights(grid, cfg.decomposition.weight)
    decomp = decompose(weights, comm.size())
    start, count = local_block(decomp, comm.rank())
    land_area = float(np.sum(grid.land_area * grid.land_landfrac))
    say(f"grid {grid.name}: {grid.nlat} x {grid.nlon}, {grid.n_land} land cells "
        f"(land fraction >= {grid.land_threshold}), land area {land_area:.4g} km2, "
        f"{int(weights.sum())} patches; land cover MODIS MCD12C1 ({LAND_COVER_DOI})")
    blocks = comm.gather_array(np.array([[start, count, decomp.block_weight[comm.rank()]]], dtype=np.int64))
    if comm.is_root():
        for r, (s, c, w) in enumerate(blocks):
            print(f"  rank {r}: land cells {s}..{s + c - 1} ({c} cells, {w} patches)", flush=True)
        print(f"  imbalance (max/mean patches per rank): {decomp.imbalance:.4f}", flush=True)

    # The ensemble state of the land-cover inputs: every member starts from the same surface, as an
    # ensemble does before its forcing makes members differ. Member axis last (DESIGN.md).
    members = cfg.ensemble.members
    cells = slice(start, start + count)
    fractions = np.moveaxis(grid.igbp_fractions.reshape(len(IGBP_CLASSES), -1)[:, grid.land_index[cells]], 0, 1)
    state = {
        "landfrac": np.repeat(grid.land_landfrac[cells, None], members, axis=1),
        "area": np.repeat(grid.land_area[cells, None], members, axis=1),
        "igbp_fraction": np.repeat(fractions[:, :, None], members, axis=2),
    }
    t_write = time.perf_counter()
    path = write_checkpoint(run_dir, 0, state, start=start, n_global=grid.n_land,
                            model_time=f"{cfg.time.start}T00:00:00" if "T" not in cfg.time.start else cfg.time.start,
                            config_toml=cfgmod.to_toml(cfg))
    t_write = time.perf_counter() - t_write
    nbytes = comm.allreduce(sum(int(a.nbytes) for a in state.values()))
    say(f"checkpoint {path} written collectively by {comm.size()} rank(s): "
        f"{nbytes / 1e6:.1f} MB in {t_write:.3f} s, {members} members")

    # Read back the newest complete checkpoint with the blocks rotated by one rank, so every rank
    # reads cells another rank wrote, and compare bit for bit with what was written.
    newest = latest_checkpoint(run_dir)
    other = (comm.rank() + 1) % comm.size()
    o_start, o_count = local_block(decomp, other)
    back, attrs = read_checkpoint(newest, start=o_start, count=o_count)
    o_cells = slice(o_start, o_start + o_count)
    same = (np.array_equal(back["landfrac"][:, 0], grid.land_landfrac[o_cells])
            and np.array_equal(back["area"][:, -1], grid.land_area[o_cells])
            and all(np.array_equal(back[k][..., m], back[k][..., 0]) for k in back for m in (members - 1,)))
    all_same = not comm.any_rank(not same)
    say(f"newest complete checkpoint: {newest.name} (cycle {attrs['cycle']}, model time "
        f"{attrs['model_time']}, laida {attrs['software_version']}); read back by other ranks: "
        f"{'identical' if all_same else 'DIFFERENT'}")
    say(f"demo done in {time.perf_counter() - t0:.1f} s (laida {__version__}); files in {run_dir.resolve()}")
    say("the CTL/CN twin experiment (land physics + LAI assimilation) becomes this demo in a later issue")
    return 0 if all_same else 1


def say(text: str) -> None:
    if comm.is_root():
        print(text, flush=True)
