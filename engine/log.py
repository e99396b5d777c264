"""Logging for laida runs: rank 0 tells the story, the other ranks speak only about trouble.

Writes to stderr and, on rank 0 when a run directory is given, appends to ``run_dir/laida.log``.
Times are UTC. Reads the rank from ``engine.comm``; holds no model state.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from engine import comm

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever ``sys.stderr`` is at the time of the message."""

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def get_logger(name: str = "laida", run_dir: str | Path | None = None, level: str | int = "INFO") -> logging.Logger:
    """The logger ``name``, (re)configured for this rank.

    Rank 0 logs at ``level`` to stderr and, if ``run_dir`` is given, also appends to
    ``run_dir/laida.log`` (the directory is created). Other ranks log WARNING and above only, to
    stderr, each line prefixed with ``[rank r]``. Calling again replaces the handlers set up before.
    """
    if isinstance(level, str):
        if level.upper() not in _LEVELS:
            raise ValueError(f"log level must be one of {', '.join(_LEVELS)}, got {level!r}")
        level = getattr(logging, level.upper())
    rank = comm.rank()
    logger = logging.getLogger(name)
    for handler in [h for h in logger.handlers if getattr(h, "_laida", False)]:
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = False  # our handlers are the whole story; no second copy via the root logger
    prefix = f"[rank {rank}] " if rank != 0 else ""
    formatter = logging.Formatter(f"%(asctime)sZ {prefix}%(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handlers: list[logging.Handler] = [_Stderr()]
    if rank == 0 and run_dir is not None:
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(Path(run_dir) / "laida.log", mode="a", encoding="utf-8"))
    for handler in handlers:
        handler._laida = True
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    logger.setLevel(level if rank == 0 else max(level, logging.WARNING))
    return logger
