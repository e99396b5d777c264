"""Small file helpers shared by the engine: atomic publication of a file and reading the shipped
global GeoTIFF rasters. Reads and writes only the paths it is given.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, mode: int = 0o644):
    """Yield a temporary path beside ``path``; publish it under ``path`` only if the block succeeds.

    The temporary file is created in the same directory (so ``os.replace`` is atomic), made
    readable (``mode``; mkstemp makes 0600) and renamed over ``path`` at the end. On any exception
    it is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_npz_atomic(path: str | os.PathLike, **arrays) -> None:
    """``np.savez_compressed`` to ``path``, published atomically (a cache never holds half a file)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)


def read_global_geotiff(path: str | os.PathLike, resolution: float, label: str, error=ValueError) -> np.ndarray:
    """Read a global, north-up lat/lon GeoTIFF whose pixel (0, 0) has its north-west corner at
    (90 N, 180 W) and whose pixels are ``resolution`` degrees; returns the first page's array.

    Raises ``error`` naming ``label`` and the file if it cannot be read or is georeferenced otherwise.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            scale, tie = (page.tags.get(t) for t in ("ModelPixelScaleTag", "ModelTiepointTag"))
            scale, tie = (None if t is None else tuple(float(v) for v in t.value) for t in (scale, tie))
            data = page.asarray()
    except Exception as exc:  # noqa: BLE001 - tifffile raises many kinds; all mean "unreadable"
        raise error(f"{label}: cannot read {path} ({type(exc).__name__}: {exc})") from exc
    if scale is None or tie is None or not (
        np.allclose(scale[:2], (resolution, resolution), rtol=0, atol=1e-12)
        and np.allclose(tie[:5], (0.0, 0.0, 0.0, -180.0, 90.0), rtol=0, atol=1e-9)
    ):
        raise error(f"{label}: {path} is not a global {resolution} deg grid starting at (90 N, 180 W): "
                    f"pixel scale {scale}, tie point {tie}")
    return data
