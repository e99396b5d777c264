"""``laida surface``: builds (or finds) the cached surface file, copies it, plots the dominant PFT."""

from __future__ import annotations

import numpy as np
import pytest

from engine import cli, comm
from engine import grid as gridmod
from engine import surface as surf


def test_surface_subcommand_writes_copy_and_plot(shared_tmp_path, capsys):
    out, png = shared_tmp_path / "f45.nc", shared_tmp_path / "f45.png"
    assert cli.main(["surface", "--grid", "f45", "--out", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    g = gridmod.make_grid("f45")
    if comm.rank() == 0:
        assert f"{g.n_land} land cells" in text and str(surf.cache_path(g)) in text
    s = surf.read_surface(out, g)  # the copy is a complete surface file of this grid
    assert s.n_land == g.n_land and np.all(s.pct_pft.sum(axis=1) == 100.0)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_surface_subcommand_box_and_threshold(shared_tmp_path, capsys):
    out = shared_tmp_path / "africa.nc"
    args = ["surface", "--grid", "f45", "--box", "-35", "38", "-20", "52", "--land-threshold", "0.8",
            "--out", str(out)]
    assert cli.main(args) == 0
    g = gridmod.make_grid("f45", lat_min=-35, lat_max=38, lon_min=-20, lon_max=52, land_threshold=0.8)
    s = surf.read_surface(out, g)
    assert s.n_land == g.n_land and s.landfrac.min() >= 0.8


def test_surface_subcommand_rejects_a_bad_box_and_grid(capsys):
    assert cli.main(["surface", "--grid", "f45", "--box", "10", "0", "0", "10"]) == 2
    assert "lat_min (10) is greater than lat_max (0)" in capsys.readouterr().err
    assert cli.main(["surface", "--grid", "f07"]) == 2  # argparse: invalid choice
    assert "invalid choice: 'f07'" in capsys.readouterr().err


def test_surface_subcommand_reports_an_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where a directory is needed
    assert cli.main(["surface", "--grid", "f45", "--out", str(blocker / "sub" / "f45.nc")]) == 1
    assert "laida surface: cannot write" in capsys.readouterr().err


@pytest.mark.mpi
def test_surface_subcommand_under_mpi(shared_tmp_path, capsys):
    out = shared_tmp_path / "box.nc"
    assert cli.main(["surface", "--grid", "f45", "--box", "-10", "40", "60", "140", "--out", str(out)]) == 0
    g = gridmod.make_grid("f45", lat_min=-10, lat_max=40, lon_min=60, lon_max=140)
    assert surf.read_surface(out, g).n_land == g.n_land
