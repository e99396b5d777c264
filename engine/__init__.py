"""laida engine: orchestration (config, grid, decomposition, I/O, filter driver, CLI)."""

__version__ = "0.1.0"
